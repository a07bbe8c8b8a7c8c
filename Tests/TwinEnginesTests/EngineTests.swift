import Foundation
import Testing
import TwinCore
@testable import TwinEngines

/// The engines on constructed signals whose answers are known.
@Suite struct StatisticsTests {
    /// A deterministic noise source.
    struct Noise {
        var state: UInt64
        mutating func next() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53) - 0.5
        }
    }

    @Test func aRampHasTheSlopeItHas() throws {
        var noise = Noise(state: 1)
        let x = (0..<100).map { Double($0) / 10 }
        let y = x.map { 3 + 2.5 * $0 + 0.4 * noise.next() }
        let t = try #require(Stats.theilSen(x: x, y: y))
        #expect(abs(t.slope - 2.5) < 0.05)
        #expect(t.low <= 2.5 && t.high >= 2.5 && t.high - t.low < 0.2)
        // Flat noise: the interval contains zero.
        let flat = try #require(Stats.theilSen(x: x, y: x.map { _ in noise.next() }))
        #expect(flat.low < 0 && flat.high > 0)
    }

    @Test func aStepIsAChangePoint() {
        var noise = Noise(state: 2)
        let y = (0..<120).map { ($0 < 70 ? 10.0 : 14.0) + noise.next() }
        let found = Stats.changePoints(y)
        #expect(found.count == 1)
        #expect(abs((found.first?.index ?? 0) - 70) <= 1)
        #expect(abs((found.first?.after ?? 0) - 14) < 0.3)
        #expect(Stats.changePoints((0..<120).map { _ in noise.next() }).isEmpty)
    }

    @Test func rocAUCAndCorrelation() {
        #expect(Stats.rocAUC(scores: [0.1, 0.2, 0.8, 0.9], labels: [false, false, true, true]) == 1)
        #expect(Stats.rocAUC(scores: [0.9, 0.8, 0.2, 0.1], labels: [false, false, true, true]) == 0)
        #expect(Stats.rocAUC(scores: [0.5, 0.5, 0.5, 0.5], labels: [false, true, false, true]) == 0.5)
        #expect(abs(Stats.pearson([1, 2, 3, 4], [2, 4, 6, 8]) - 1) < 1e-12)
        #expect(abs(Stats.median([5, 1, 3]) - 3) < 1e-12 && abs(Stats.median([4, 1, 3, 2]) - 2.5) < 1e-12)
    }
}

@Suite struct HealthEngineTests {
    let start: Nanos = 1_790_000_000 * Time.second
    let specs = [
        SensorSpec(name: "bearing_temp", unit: "°C", nominalMin: 20, nominalMax: 80, alarmHigh: 90),
        SensorSpec(name: "vibration", unit: "mm/s", nominalMin: 0, nominalMax: 6, alarmHigh: 9),
        SensorSpec(name: "current", unit: "A", nominalMin: 10, nominalMax: 50),
    ]

    /// Two days of a healthy machine at one reading a minute, then `hours` more where
    /// `change(sensor, hoursIntoChange)` alters the readings.
    func run(hours: Int, change: (Int, Double, Double) -> Double = { _, _, v in v }) -> (HealthEngine, Nanos) {
        let engine = HealthEngine()
        engine.bind(device: 0, sensors: specs)
        var noise = StatisticsTests.Noise(state: 7)
        let base = [50.0, 2.0, 30.0]
        var t = start
        let total = 48 * 60 + hours * 60
        for i in 0..<total {
            let intoChange = Double(i - 48 * 60) / 60
            let samples = base.enumerated().map { k, b in
                var v = b * (1 + 0.03 * sin(Double(i) / 60 / 24 * 2 * .pi)) + noise.next() * b * 0.02
                if intoChange >= 0 { v = change(k, intoChange, v) }
                return Sample(device: 0, sensor: Int32(k), time: t, value: v)
            }
            engine.observe(samples, modes: [0: .running])
            t += Time.minute
        }
        return (engine, t)
    }

    @Test func aHealthyMachineScoresHigh() throws {
        let (engine, now) = run(hours: 24)
        let v = try #require(engine.score(device: 0, state: .running, outlook: nil, now: now))
        #expect(v.score >= 90, "\(v.factors.map(\.description))")
        #expect(engine.anomalies(device: 0, from: 0, to: .max).isEmpty)
    }

    @Test func aStuckSensorIsASensorFaultNotAMachineFault() throws {
        let (engine, now) = run(hours: 2) { k, _, v in k == 0 ? 51.25 : v }
        let v = try #require(engine.score(device: 0, state: .running, outlook: nil, now: now))
        let stuck = try #require(v.factors.first { $0.kind == .stuck })
        #expect(stuck.subject == "bearing_temp" && stuck.sensorFault)
        #expect(v.score >= 80)  // the machine itself may be fine
        let recs = Recommender.recommend([.init(device: Device(id: "m-1", type: "motor", sensors: specs), verdict: v, within24h: 0.01, within7d: 0.02, rulHours: nil, lead: nil)], now: now)
        #expect(recs.map(\.action) == [.checkSensor] && recs[0].sensorFault && recs[0].component == "bearing_temp")
        // Idle machines repeat their stopped values: not stuck.
        let idle = try #require(engine.score(device: 0, state: .idle, outlook: nil, now: now))
        #expect(!idle.factors.contains { $0.kind == .stuck })
    }

    @Test func aRampGivesATrendAndADeviation() throws {
        // Bearing temperature rising 6 °C a day for two days (the trend is measured over 24-hour
        // averages, so the daily cycle is not taken for one).
        let (engine, now) = run(hours: 50) { k, h, v in k == 0 ? v + 0.25 * h : v }
        let v = try #require(engine.score(device: 0, state: .running, outlook: nil, now: now))
        let deviation = try #require(v.factors.first { $0.kind == .deviation })
        #expect(deviation.subject == "bearing_temp" && (deviation.value ?? 0) > (deviation.expected ?? 0))
        let trend = try #require(v.factors.first { $0.kind == .trend })
        #expect(abs((trend.trendPerDay ?? 0) - 6) < 1, "slope \(trend.trendPerDay ?? .nan)")
        #expect(v.score < 80)
        #expect(engine.anomalies(device: 0, from: 0, to: .max).contains { $0.sensors == ["bearing_temp"] })
    }

    @Test func beyondTheAlarmLimitIsCritical() throws {
        let (engine, now) = run(hours: 1) { k, _, v in k == 1 ? 7.5 + v : v }
        let v = try #require(engine.score(device: 0, state: .running, outlook: nil, now: now))
        #expect(v.factors.first?.kind == .limit && v.factors.first?.subject == "vibration")
        #expect(v.summary.level == .critical)
    }
}

@Suite struct FailureModelTests {
    @Test func boosterLearnsSavesAndLoads() throws {
        var noise = StatisticsTests.Noise(state: 3)
        var rows: [[Float]] = [], labels: [Float] = []
        for _ in 0..<600 {
            let a = noise.next(), b = noise.next()
            rows.append([Float(a), Float(b)])
            labels.append(a + 0.3 * b > 0.1 ? 1 : 0)
        }
        var p = Booster.Parameters(objective: "binary:logistic")
        p.rounds = 40
        let booster = try Booster.train(rows: rows, labels: labels, parameters: p)
        let scores = try booster.predict(rows)
        #expect(Stats.rocAUC(scores: scores, labels: labels.map { $0 == 1 }) > 0.97)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("booster-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try booster.save(path)
        let loaded = try Booster.load(path)
        #expect(try loaded.predict(Array(rows.prefix(50))) == Array(scores.prefix(50)))
        // Contributions add up to the raw margin (log-odds) of each prediction.
        let contributions = try loaded.contributions(Array(rows.prefix(5)))
        for (i, c) in contributions.enumerated() {
            let margin = log(scores[i] / (1 - scores[i]))
            #expect(abs(c.reduce(0, +) - margin) < 1e-3)
        }
    }

    @Test func examplesAreLabelledFromRecordedFailuresAndSkipDowntime() {
        let hour = Time.hour
        let start: Nanos = 1_790_000_000 * Time.second / hour * hour
        let hours = 24 * 12
        let spec = SensorSpec(name: "t", unit: "", nominalMin: 0, nominalMax: 100)
        let failure = start + 200 * hour, repair = start + 210 * hour
        var series: [Double] = []
        for h in 0..<hours { series.append(h > 150 && h < 200 ? Double(50 + h - 150) : 50) }
        let history = DeviceHourlyHistory(deviceID: "d", specs: [spec], start: start, hourly: [series], failures: [failure], repairs: [repair])
        let examples = history.examples(end: start + Nanos(hours) * hour)
        #expect(!examples.isEmpty)
        // Nothing while down, between the failure and the repair.
        #expect(!examples.contains { $0.time > failure && $0.time <= repair })
        for e in examples {
            if e.time < failure { #expect(e.failsWithin24h == (failure - e.time <= Time.day)) }
            #expect(e.hoursToFailure == (e.time < failure ? Double(failure - e.time) / Double(hour) : nil))
        }
        // After the repair the 7-day label is unknown near the end of the history (censored).
        #expect(examples.last?.failsWithin7d == nil)
        // The rising stretch before the failure shows in the features.
        let before = examples.filter { $0.time < failure }
        let index = FailureFeatures.names.firstIndex(of: "max_rise_6h")!
        #expect((before.last?.features[index] ?? 0) > (before.first?.features[index] ?? 0) + 5)
    }
}
