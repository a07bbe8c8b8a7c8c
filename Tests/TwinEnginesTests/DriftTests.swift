import Foundation
import Testing
import TwinCore
@testable import TwinEngines

/// A drifting sensor told from a machine fault: by the standstill check (a machine fault acts
/// under load, a sensor's offset stays when the machine stands), and, on machines that never
/// stand, by a sensor off on its own the way no machine fault moves it.
@Suite struct DriftTests {
    /// A shift-operated machine: running 06–22 h, idle at night. Current follows the load and
    /// reads ~0 at rest; the bearing temperature follows the load and, at rest, the weather.
    struct Shift {
        let engine = HealthEngine()
        var rng = SplitMix64(seed: 11)
        let start: Nanos = 1_790_035_200 * Time.second  // a midnight
        var t: Nanos
        /// Added to the current: always (a drifting sensor) or only under load (the machine).
        var currentOffset = 0.0, loadOffset = 0.0
        /// Added to the bearing temperature at rest (a warm afternoon on a day off).
        var restWarmth = 0.0
        var forceIdle = false

        init() {
            t = start
            engine.bind(device: 0, sensors: [
                SensorSpec(name: "current", unit: "A", nominalMin: 0, nominalMax: 100),
                SensorSpec(name: "bearing_temp", unit: "°C", nominalMin: 0, nominalMax: 100),
            ])
        }

        var hour: Double { Double(t % Time.day) / Double(Time.hour) }
        var running: Bool { !forceIdle && hour >= 6 && hour < 22 }

        mutating func run(until end: Nanos) {
            while t < end {
                t += Time.minute
                let load = 0.5 + 0.2 * sin(2 * Double.pi * hour / 24)
                let ambient = 18 + 3 * sin(2 * Double.pi * (hour - 9) / 24) + (running ? 0 : restWarmth)
                let current = running ? 20 + 60 * load + 0.4 * rng.normal() + loadOffset : max(0, 0.04 * rng.normal())
                let temp = ambient + (running ? 25 * load : 0) + 0.3 * rng.normal()
                engine.observe([
                    Sample(device: 0, sensor: 0, time: t, value: current + currentOffset),
                    Sample(device: 0, sensor: 1, time: t, value: temp),
                ], modes: [0: running ? .running : .idle])
            }
        }

        func verdict() throws -> HealthEngine.Verdict {
            try #require(engine.score(device: 0, state: running ? .running : .idle, outlook: nil, now: t))
        }
    }

    @Test func anOffsetAtRestIsTheSensorsAndStaysSoUnderLoadUntilServiced() throws {
        var m = Shift()
        m.run(until: m.start + 3 * Time.day)
        #expect(try m.verdict().factors.isEmpty)
        // The current sensor reads 12 A high from now on, at rest as under load.
        m.currentOffset = 12
        m.run(until: m.start + 3 * Time.day + 4 * Time.hour)  // 04:00, idle
        let resting = try m.verdict()
        let drift = try #require(resting.factors.first { $0.kind == .drift })
        #expect(drift.subject == "current" && drift.sensorFault)
        #expect(drift.description.contains("12.0 A above its idle level"), "\(drift.description)")
        // Back under load: still the sensor, and the machine is not blamed for it.
        m.run(until: m.start + 3 * Time.day + 14 * Time.hour)
        let working = try m.verdict()
        #expect(working.factors.contains { $0.kind == .drift && $0.subject == "current" })
        #expect(!working.factors.contains { !$0.sensorFault && $0.subject == "current" }, "\(working.factors.map(\.description))")
        let recs = Recommender.recommend([.init(device: Device(id: "c-1", type: "conveyor", sensors: []), verdict: working, within24h: 0, within7d: 0, rulHours: nil, lead: nil)], now: m.t)
        #expect(recs.map(\.action) == [.checkSensor] && recs[0].component == "current")
        // Recalibrated: the verdict goes, and the sensor's normals are learned anew.
        m.currentOffset = 0
        m.engine.serviced(device: 0, sensor: "current")
        #expect(!(try m.verdict().factors.contains { $0.kind == .drift }))
        m.engine.serviced(device: 0, sensor: "no such sensor")  // ignored
    }

    @Test func aFaultUnderLoadIsTheMachines() throws {
        var m = Shift()
        m.run(until: m.start + 3 * Time.day + 6 * Time.hour)
        // The machine draws 45 A more under load (a leak, a worn part); at rest it reads 0 as before.
        m.loadOffset = 45
        m.run(until: m.start + 4 * Time.day + 4 * Time.hour)
        #expect(!(try m.verdict().factors.contains { $0.kind == .drift }))
        m.run(until: m.start + 4 * Time.day + 12 * Time.hour)
        let v = try m.verdict()
        #expect(v.factors.contains { $0.kind == .deviation && $0.subject == "current" && !$0.sensorFault })
        #expect(!v.factors.contains { $0.kind == .drift })
    }

    @Test func aTemperatureAtRestFollowsTheWeatherAndIsNotJudgedSo() throws {
        var m = Shift()
        m.run(until: m.start + 4 * Time.day)
        // A day off on a warm day: the idle bearing temperature is 8 °C above any night's.
        m.forceIdle = true
        m.restWarmth = 8
        m.run(until: m.start + 4 * Time.day + 15 * Time.hour)
        #expect(!(try m.verdict().factors.contains { $0.kind == .drift }))
    }

    /// A machine that never stands: flow, current and vibration follow a daily load cycle;
    /// the supply voltage sags a little under load.
    struct Continuous {
        let engine = HealthEngine()
        var rng = SplitMix64(seed: 5)
        let start: Nanos = 1_790_035_200 * Time.second
        var t: Nanos
        /// Added to a sensor's reading by index (flow, current, vibration, voltage).
        var offsets = [0.0, 0.0, 0.0, 0.0]

        init() {
            t = start
            engine.bind(device: 0, sensors: [
                SensorSpec(name: "flow", unit: "m³/h", nominalMin: 0, nominalMax: 150),
                SensorSpec(name: "current", unit: "A", nominalMin: 0, nominalMax: 50),
                SensorSpec(name: "vibration", unit: "mm/s", nominalMin: 0, nominalMax: 4.5),
                SensorSpec(name: "voltage", unit: "V", nominalMin: 380, nominalMax: 420),
            ])
        }

        mutating func run(until end: Nanos) {
            while t < end {
                t += Time.minute
                let hour = Double(t % Time.day) / Double(Time.hour)
                let load = 0.6 + 0.22 * sin(2 * Double.pi * (hour - 8) / 24)
                let values = [
                    25 + 95 * load + 1.5 * rng.normal(), 9 + 29 * load + 0.4 * rng.normal(),
                    1.1 + 0.9 * load + 0.08 * rng.normal(), 401 - 3 * load + 1.5 * rng.normal(),
                ]
                engine.observe(values.indices.map { Sample(device: 0, sensor: Int32($0), time: t, value: values[$0] + offsets[$0]) }, modes: [0: .running])
            }
        }

        func verdict() throws -> HealthEngine.Verdict {
            try #require(engine.score(device: 0, state: .running, outlook: nil, now: t))
        }
    }

    /// Machine faults add vibration, never take it away: a vibration reading that falls on its
    /// own while flow and current say the load is as usual is the instrument, though the
    /// machine never stands.
    @Test func vibrationFallingAloneIsTheSensorsOnAMachineThatNeverStands() throws {
        var m = Continuous()
        m.run(until: m.start + 8 * Time.day)
        #expect(try m.verdict().factors.isEmpty)
        m.offsets[2] = -0.6
        m.run(until: m.t + 3 * Time.hour)
        let v = try m.verdict()
        let drift = try #require(v.factors.first { $0.kind == .drift }, "\(v.factors.map(\.description))")
        #expect(drift.subject == "vibration" && drift.sensorFault)
        #expect(drift.description.contains("below its normal while the device's other sensors read normal"), "\(drift.description)")
        #expect(!v.factors.contains { !$0.sensorFault && $0.subject == "vibration" }, "\(v.factors.map(\.description))")
        // Still the sensor hours later (its normal does not learn the offset), until serviced.
        m.run(until: m.t + 12 * Time.hour)
        #expect(try m.verdict().factors.contains { $0.kind == .drift && $0.subject == "vibration" })
        m.offsets[2] = 0
        m.engine.serviced(device: 0, sensor: "vibration")
        #expect(!(try m.verdict().factors.contains { $0.kind == .drift }))
    }

    /// The same offset upwards is what a wearing bearing does first: the machine's, not a drift.
    @Test func vibrationRisingAloneIsTheMachines() throws {
        var m = Continuous()
        m.run(until: m.start + 8 * Time.day)
        m.offsets[2] = 1.0
        m.run(until: m.t + 6 * Time.hour)
        let v = try m.verdict()
        #expect(!v.factors.contains { $0.kind == .drift }, "\(v.factors.map(\.description))")
        #expect(v.factors.contains { $0.kind == .deviation && $0.subject == "vibration" && $0.blamesMachine })
        let recs = Recommender.recommend([.init(device: Device(id: "p-1", type: "pump", sensors: []), verdict: v, within24h: 0, within7d: 0, rulHours: nil, lead: nil)], now: m.t)
    }

    /// Before any drift verdict, a vibration reading far below its normal is already not the
    /// machine's condition (faults never lower it): it is said so, weighs as a sensor fault
    /// does and sends nobody to inspect the machine.
    @Test func aReadingOffTheWayNoFaultMovesItIsNotBlamedOnTheMachine() throws {
        var m = Continuous()
        m.run(until: m.start + 8 * Time.day)
        m.offsets[2] = -0.8
        m.run(until: m.t + 40 * Time.minute)
        let v = try m.verdict()
        #expect(!v.factors.contains { $0.kind == .drift }, "\(v.factors.map(\.description))")
        let low = try #require(v.factors.first { $0.kind == .deviation && $0.subject == "vibration" }, "\(v.factors.map(\.description))")
        #expect(low.againstFaults && !low.blamesMachine && !low.sensorFault)
        #expect(low.description.contains("below its normal") && low.description.contains("machine faults raise a mm/s reading, never lower it"), "\(low.description)")
        #expect(v.score >= 100 - 0.4 * low.penalty - 1e-9, "score \(v.score), penalty \(low.penalty)")
        let recs = Recommender.recommend([.init(device: Device(id: "p-1", type: "pump", sensors: []), verdict: v, within24h: 0, within7d: 0, rulHours: nil, lead: nil)], now: m.t)
        #expect(!recs.contains { !$0.sensorFault }, "\(recs.map(\.title))")
        // Had it been the machine's, with its full weight, it would have sent someone to look.
        var blamed = v
        blamed.factors = v.factors.map { f in var f = f; f.againstFaults = false; return f }
        blamed.score = 100 - low.penalty
        let machine = Recommender.recommend([.init(device: Device(id: "p-1", type: "pump", sensors: []), verdict: blamed, within24h: 0, within7d: 0, rulHours: nil, lead: nil)], now: m.t)
        #expect(machine.contains { $0.action == .inspect && !$0.sensorFault }, "\(machine.map(\.title))")
    }

    /// Machine faults do not move the supply voltage: an offset either way on its own is not
    /// the machine's.
    @Test(arguments: [-8.0, 8.0]) func aSupplyVoltageOffAloneIsNotTheMachines(offset: Double) throws {
        var m = Continuous()
        m.run(until: m.start + 8 * Time.day)
        m.offsets[3] = offset
        m.run(until: m.t + 3 * Time.hour)
        let v = try m.verdict()
        let drift = try #require(v.factors.first { $0.kind == .drift && $0.subject == "voltage" }, "\(v.factors.map(\.description))")
        #expect(drift.description.contains("machine faults do not move a V reading"), "\(drift.description)")
        #expect(!v.factors.contains { !$0.sensorFault }, "\(v.factors.map(\.description))")
    }

    /// A leak: the flow falls and the current rises together. Not one sensor alone, and each
    /// moves the way faults move it: the machine's (the covariance detector finds it).
    @Test func aLeakMovingFlowAndCurrentIsTheMachines() throws {
        var m = Continuous()
        m.run(until: m.start + 8 * Time.day)
        m.offsets[0] = -20
        m.offsets[1] = 4
        m.run(until: m.t + 6 * Time.hour)
        let v = try m.verdict()
        #expect(!v.factors.contains { $0.kind == .drift }, "\(v.factors.map(\.description))")
        let open = m.engine.anomalies(device: 0, from: m.t - Time.hour, to: m.t).filter { $0.end == nil }
        #expect(open.contains { $0.detector == "multivariate_mahalanobis" && Set($0.sensors).isSubset(of: ["flow", "current"]) }, "\(open)")
    }

    /// A slow drift: vibration creeping down a little, never far enough from one reading
    /// vector to the next to stand out, is still the sensor's once it has read low on its own
    /// for half a day; the same creep upwards stays the machine's.
    @Test(arguments: [-0.2, 0.2]) func aSlowDriftIsCalledOnItsHoursOfEvidence(perDay: Double) throws {
        var m = Continuous()
        m.run(until: m.start + 8 * Time.day)
        let onset = m.t
        var calledAt: Nanos?
        while m.t < onset + 36 * Time.hour {
            m.offsets[2] = perDay * Double(m.t - onset) / Double(Time.day)
            m.run(until: m.t + 10 * Time.minute)
            if calledAt == nil, try m.verdict().factors.contains(where: { $0.kind == .drift && $0.subject == "vibration" }) { calledAt = m.t }
        }
        let v = try m.verdict()
        if perDay < 0 {
            // 0.3 mm/s below after 36 h: a standardized residual of about 2–3, never 4 for two hours.
            let at = try #require(calledAt, "\(v.factors.map(\.description))")
            #expect(at - onset >= 12 * Time.hour && at - onset <= 30 * Time.hour, "called after \((at - onset) / Time.hour) h")
            let drift = try #require(v.factors.first { $0.kind == .drift && $0.subject == "vibration" }, "\(v.factors.map(\.description))")
            #expect(drift.description.contains("below its normal while the device's other sensors read normal"), "\(drift.description)")
            #expect(!v.factors.contains { !$0.sensorFault && $0.subject == "vibration" }, "\(v.factors.map(\.description))")
            m.offsets[2] = 0
            m.engine.serviced(device: 0, sensor: "vibration")
            #expect(!(try m.verdict().factors.contains { $0.kind == .drift }))
        } else {
            #expect(calledAt == nil, "\(v.factors.map(\.description))")
        }
    }

    /// A normal learned anew after a service is rough at first: no verdict from it for a week.
    @Test func noLoneVerdictOnANormalLearnedAnewThisWeek() throws {
        var m = Continuous()
        m.run(until: m.start + 8 * Time.day)
        m.engine.serviced(device: 0, sensor: "vibration")
        m.run(until: m.t + 3 * Time.day)
        m.offsets[2] = -0.6
        m.run(until: m.t + 3 * Time.hour)
        #expect(!(try m.verdict().factors.contains { $0.kind == .drift }))
    }
}
