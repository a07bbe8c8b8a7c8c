import ArgumentParser
import Foundation
import GRPCCore
import Proto
import TwinClient
import TwinCore
@_spi(Benchmarks) import TwinEngines
@_spi(Benchmarks) import TwinServer
import Metrics
import Prometheus

// MARK: - Engine cost per reading at scale (in process)

struct EnginesBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engines", abstract: "Health engine cost: readings taken in, and a scoring pass over every device, at 10,000 devices.")
    @Option var devices = 10_000
    @Option(help: "Hours of warm-up at 60 s before measuring (the normal needs a day).") var warmupHours = 26
    @Option var ticks = 60

    func run() async throws {
        let (plant, fleet, registered, engine) = try benchPlant(devices: devices)
        var t = Time.now() - Nanos(warmupHours) * Time.hour
        var sim = Simulator(devices: registered, start: t)
        var output = Simulator.Output()
        func modes() -> [Int32: DeviceState.Mode] {
            var m: [Int32: DeviceState.Mode] = [:]
            for s in output.statuses { m[s.device] = (s.state ?? .running).mode }
            return m
        }
        while t < Time.now() - 5 * Time.minute {
            t += Time.minute
            sim.tick(at: t, into: &output)
            engine.observe(output.samples, modes: modes())
        }
        var observeCost: [Double] = [], scoreCost: [Double] = []
        var readings = 0
        var states: [Int32: DeviceState] = [:]
        for _ in 0..<ticks {
            t += 5 * Time.second
            sim.tick(at: t, into: &output)
            let m = modes()
            for st in output.statuses { states[st.device] = st.state ?? .running }
            let a = ContinuousClock.now
            engine.observe(output.samples, modes: m)
            observeCost.append((ContinuousClock.now - a).milliseconds)
            readings = output.samples.count
        }
        // A scoring pass over the whole fleet (twind runs one every 5 s).
        var unhealthy = 0
        for _ in 0..<5 {
            let a = ContinuousClock.now
            unhealthy = 0
            for (index, _) in registered {
                if let v = engine.score(device: index, state: states[index] ?? .running, outlook: nil, now: t), v.score < 80 { unhealthy += 1 }
            }
            scoreCost.append((ContinuousClock.now - a).milliseconds)
        }
        let observe = percentile(observeCost, 0.5), score = percentile(scoreCost, 0.5)
        report("engines", [
            ("devices", "\(devices)"), ("readings per 5 s tick", "\(readings)"),
            ("observe p50 per tick", ms(observe)), ("per reading", String(format: "%.0f ns", observe * 1e6 / Double(max(1, readings)))),
            ("scoring pass p50 (all devices)", ms(score)),
            ("share of one core at 5 s (observe + one pass)", String(format: "%.1f %%", (observe + score) / 50)),
            ("devices scored < 80 (faults develop at the simulator's rate)", "\(unhealthy)"),
        ])
    }
}

// MARK: - False alarms on healthy machines

struct HealthyRunBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "healthy", abstract: "False alarms on healthy machines: a long run with no faults, health scored every hour.")
    @Option var devices = 200
    @Option var days = 30
    @Option var seed: UInt64 = 99

    func run() async throws {
        let (plant, fleet, registered, engine) = try benchPlant(devices: devices)
        var options = Simulator.Options()
        options.meanTimeBetweenFaults = 3_000 * Time.day
        options.meanTimeBetweenSensorFaults = 3_000 * Time.day
        options.seed = seed
        let start = Time.now() - Nanos(days) * Time.day
        var sim = Simulator(devices: registered, start: start, options: options)
        var output = Simulator.Output()
        var t = start
        var hoursScored = 0, degradedHours = 0, criticalHours = 0, alertHours = 0
        var lastState: [Int32: DeviceState] = [:]
        var causes: [String: Int] = [:]
        var faulted = Set<Int32>()
        while t < Time.now() {
            t += Time.minute
            sim.tick(at: t, into: &output)
            var m: [Int32: DeviceState.Mode] = [:]
            for s in output.statuses {
                m[s.device] = (s.state ?? .running).mode
                lastState[s.device] = s.state ?? .running
            }
            engine.observe(output.samples, modes: m)
            // Machines the simulator started with a fault (or gave one) are not healthy ones.
            for e in output.events where e.kind == .faultOnset || e.kind == .failure {
                if let i = plant.index(of: e.deviceID) { faulted.insert(i) }
            }
            // Score every hour after the first day (the warm-up).
            if t % Time.hour < Time.minute && t - start > Time.day {
                for (index, _) in registered where !faulted.contains(index) {
                    guard let v = engine.score(device: index, state: lastState[index] ?? .running, outlook: nil, now: t) else { continue }
                    hoursScored += 1
                    if ProcessInfo.processInfo.environment["TWIN_DEBUG_HEALTH"] != nil, v.score < 50, v.factors.first?.subject.contains("speed") == true {
                        print(Time.iso(t), index, lastState[index] ?? .running, v.score, v.factors.prefix(2).map(\.description))
                    }
                    if v.score < 80 {
                        degradedHours += 1
                        if let f = v.factors.first { causes["\(f.kind.rawValue) \(f.subject)", default: 0] += 1 }
                    }
                    if v.score < 50 { criticalHours += 1 }
                    let alertWorthy = v.factors.contains { (f: HealthEngine.Factor) -> Bool in
                        switch f.kind {
                        case .limit: f.penalty >= 60
                        case .deviation: f.penalty >= 30
                        case .trend: f.penalty >= 15
                        default: f.sensorFault
                        }
                    }
                    if alertWorthy { alertHours += 1 }
                }
            }
        }
        var anomalies = 0
        var byDetector: [String: Int] = [:]
        for (index, _) in registered where !faulted.contains(index) {
            let found = engine.anomalies(device: index, from: start + Time.day, to: .max)
            anomalies += found.count
            for a in found { byDetector[a.detector, default: 0] += 1 }
        }
        let deviceDays = Double(devices - faulted.count) * Double(days - 1)
        report("healthy machines (no faults)", [
            ("devices × days", "\(devices) × \(days); \(faulted.count) left out (the simulator gave them a fault)"), ("device-hours scored", "\(hoursScored)"),
            ("hours scored < 80 (degraded)", String(format: "%d (%.2f %%)", degradedHours, 100 * Double(degradedHours) / Double(max(1, hoursScored)))),
            ("hours scored < 50 (critical)", String(format: "%d (%.3f %%)", criticalHours, 100 * Double(criticalHours) / Double(max(1, hoursScored)))),
            ("hours with an alert-raising condition", String(format: "%d (%.2f %%)", alertHours, 100 * Double(alertHours) / Double(max(1, hoursScored)))),
            ("streaming anomalies", String(format: "%d (%.3f per device-day)", anomalies, Double(anomalies) / deviceDays)),
            ("  by detector", byDetector.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")),
            ("main reason of degraded hours", causes.sorted { $0.value > $1.value }.prefix(6).map { "\($0.key): \($0.value)" }.joined(separator: ", ")),
        ])
    }
}

// MARK: - Retrain time and GetRecommendations latency through twind

struct RetrainBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retrain", abstract: "Retrain time for N devices × D days of history, then GetRecommendations/GetPrediction latency.")
    @Option var devices = 100
    @Option var days = 30
    @Option(help: "Simulator interval of the backfilled history.") var interval = "60s"
    @Option var seed = 5
    @Option var calls = 50

    func run() async throws {
        let began = ContinuousClock.now
        let daemon = try await DaemonProcess.start(
            ["--devices", "\(devices)", "--backfill", "\(days)d", "--interval", interval, "--seed", "\(seed)"], timeout: .seconds(1800))
        defer { daemon.stop() }
        let backfill = ContinuousClock.now - began
        let token = try await daemon.token()
        let (job, took, model) = try await TwinConnection.with(daemon.address, bearer: token) { client in
            let models = Twin_V1_ModelService.Client(wrapping: client)
            let start = ContinuousClock.now
            var job = try await models.retrain(Twin_V1_RetrainRequest()).job
            var get = Twin_V1_GetTrainingJobRequest()
            get.jobID = job.id
            while job.state == .queued || job.state == .running {
                try await Task.sleep(for: .milliseconds(100))
                job = try await models.getTrainingJob(get).job
            }
            let took = ContinuousClock.now - start
            let list = try await models.listModels(Twin_V1_ListModelsRequest())
            return (job, took, list.models.first { $0.version == job.modelVersion })
        }
        // Let the health pass run once with the model's outlook.
        try await Task.sleep(for: .seconds(6))
        let (recCosts, predCosts, count) = try await TwinConnection.with(daemon.address, bearer: token) { client in
            let twin = Twin_V1_TwinService.Client(wrapping: client)
            var rec: [Double] = [], pred: [Double] = []
            var count = 0
            for _ in 0..<calls {
                let a = ContinuousClock.now
                count = try await twin.getRecommendations(Twin_V1_GetRecommendationsRequest()).recommendations.count
                rec.append((ContinuousClock.now - a).milliseconds)
                let b = ContinuousClock.now
                _ = try await twin.getPrediction(Twin_V1_GetPredictionRequest())
                pred.append((ContinuousClock.now - b).milliseconds)
            }
            return (rec, pred, count)
        }
        let m = model?.metrics
        func f(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "—" }
        // The manifest on disk also holds the fleet's mean lifetime (repair to failure).
        var lifetime: Double?
        if let data = try? Data(contentsOf: URL(fileURLWithPath: daemon.directory + "/models/" + job.modelVersion + "/manifest.json")),
           let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let metrics = json["metrics"] as? [String: Any] {
            lifetime = metrics["meanLifetimeHours"] as? Double
        }
        report("retrain", [
            ("devices × days", "\(devices) × \(days) (interval \(interval), seed \(seed))"), ("backfill + start", "\(backfill)"),
            ("job", "\(job.id): \(job.state == .succeeded ? "succeeded" : "failed \(job.error)")"),
            ("Retrain wall time", String(format: "%.1f s", took.milliseconds / 1000)),
            ("held-out ROC AUC 24 h (threshold rule)", "\(f(m?.rocAuc)) (\(f(m?.baselineRocAuc)))"),
            ("precision / recall at threshold", "\(f(m?.precision)) / \(f(m?.recall)) at \(f(m?.threshold))"),
            ("RUL MAE h, last 7 d before failure (fleet-mean lifetime)", "\(f(m?.rulMaeHours)) (\(f(m?.baselineRulMaeHours)))"),
            ("mean lifetime h (RUL MAE as a share of it)", "\(f(lifetime)) (\(lifetime.map { String(format: "%.1f %%", 100 * (m?.rulMaeHours ?? .nan) / $0) } ?? "—"))"),
            ("test devices / examples", "\(m?.testDevices ?? 0) / \(m?.testExamples ?? 0)"),
            ("GetRecommendations p50 / p99", "\(ms(percentile(recCosts, 0.5))) / \(ms(percentile(recCosts, 0.99))) (\(count) recommendations)"),
            ("GetPrediction p50", ms(percentile(predCosts, 0.5))),
        ])
    }
}

// MARK: - Metrics overhead on unary calls

struct MetricsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics", abstract: "Unary throughput with and without --metrics-listen (alternating runs).")
    @Option var calls = 4_000
    @Option var concurrency = 8
    @Option var rounds = 3

    func run() async throws {
        var plain: [Double] = [], measured: [Double] = []
        for _ in 0..<rounds {
            for metrics in [false, true] {
                let daemon = try await DaemonProcess.start(["--simulator", "off"] + (metrics ? ["--metrics-listen", "127.0.0.1:0"] : []))
                let token = try await daemon.token()
                let rate = try await TwinConnection.with(daemon.address, bearer: token) { client in
                    let twin = Twin_V1_TwinService.Client(wrapping: client)
                    for _ in 0..<200 { _ = try await twin.whoAmIWarmup(client) }
                    let start = ContinuousClock.now
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for _ in 0..<concurrency {
                            group.addTask {
                                for _ in 0..<(calls / concurrency) { _ = try await twin.listDevices(Twin_V1_ListDevicesRequest()) }
                            }
                        }
                        try await group.waitForAll()
                    }
                    return Double(calls) / ((ContinuousClock.now - start).milliseconds / 1000)
                }
                daemon.stop()
                if metrics { measured.append(rate) } else { plain.append(rate) }
            }
        }
        let a = percentile(plain, 0.5), b = percentile(measured, 0.5)
        // The recording itself, in process, with the Prometheus backend twind uses.
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))
        let perCall = TelemetryBenchmark.recordRPC(iterations: 200_000)
        report("metrics overhead", [
            ("recording one RPC (counter + histogram), in process", String(format: "%.2f µs = %.2f %% of a call at %.0f calls/s", perCall.milliseconds * 1000, perCall.milliseconds * 1000 / (1e6 / a) * 100, a)),
            ("unary ListDevices, \(concurrency) concurrent, \(calls) calls × \(rounds) rounds", ""),
            ("without metrics (median)", String(format: "%.0f calls/s", a)),
            ("with --metrics-listen (median)", String(format: "%.0f calls/s", b)),
            ("overhead", String(format: "%.1f %%", 100 * (a - b) / a)),
        ])
    }
}

extension Twin_V1_TwinService.Client {
    /// A cheap call to warm the connection up.
    func whoAmIWarmup(_ client: GRPCClient<Transport>) async throws -> Bool {
        _ = try await Twin_V1_AuthService.Client(wrapping: client).whoAmI(Twin_V1_WhoAmIRequest())
        return true
    }
}

// MARK: - Machine faults found by the streaming detectors

struct DetectionBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detection", abstract: "Machine faults the streaming anomaly detectors find before the failure, and how early.")
    @Option var devices = 200
    @Option var days = 30
    @Option var seed: UInt64 = 99
    @Option(help: "Mean days between sensor faults per device (drift among them).") var sensorFaultDays = 15

    func run() async throws {
        let (plant, fleet, registered, engine) = try benchPlant(devices: devices)
        var options = Simulator.Options()
        options.seed = seed
        options.meanTimeBetweenSensorFaults = Nanos(sensorFaultDays) * Time.day
        let start: Nanos = 1_796_083_200 * Time.second - Nanos(days) * Time.day
        // Hourly: which sensors the engine calls faulty, and which it blames on the machine.
        var driftSeen: [Int32: [(time: Nanos, sensor: String)]] = [:], machineSeen: [Int32: [(time: Nanos, sensor: String)]] = [:]
        // Every sensor fault (drift, stuck, spikes, dropout), to tell a wrong drift verdict from a right one.
        var sensorFaults: [(device: Int32, kind: String, sensor: String, onset: Nanos, end: Nanos)] = []
        var sensorFaultOpen: [String: (kind: String, sensor: String, onset: Nanos)] = [:]
        var driftSigns: [String: Double] = [:]
        var idleSeen: [Int32: [Nanos]] = [:]
        var driftCalled: [Int32: [(time: Nanos, sensor: String)]] = [:]
        var states: [Int32: DeviceState] = [:]
        var sim = Simulator(devices: registered, start: start, options: options)
        var output = Simulator.Output()
        var t = start
        var onsets: [String: Nanos] = [:]
        var faults: [(device: Int32, onset: Nanos, failure: Nanos)] = []
        while t < start + Nanos(days) * Time.day {
            t += Time.minute
            sim.tick(at: t, into: &output)
            var m: [Int32: DeviceState.Mode] = [:]
            for s in output.statuses { m[s.device] = (s.state ?? .running).mode }
            engine.observe(output.samples, modes: m)
            for s in output.statuses { states[s.device] = s.state ?? .running }
            if t % Time.hour < Time.minute {
                for (index, _) in registered {
                    if states[index] == .idle { idleSeen[index, default: []].append(t) }
                    guard let v = engine.score(device: index, state: states[index] ?? .running, outlook: nil, now: t) else { continue }
                    for f in v.factors where f.sensorFault { driftSeen[index, default: []].append((t, f.subject)) }
                    for f in v.factors where f.kind == .drift { driftCalled[index, default: []].append((t, f.subject)) }
                    for f in v.factors where f.blamesMachine && (f.kind == .deviation || f.kind == .trend) { machineSeen[index, default: []].append((t, f.subject)) }
                }
            }
            for e in output.events {
                if e.kind == .faultOnset && SensorFault(rawValue: e.fault) != nil { sensorFaultOpen[e.deviceID] = (e.fault, e.component, e.time) }
                if e.kind == .faultOnset && e.fault == SensorFault.drift.rawValue, let i = plant.index(of: e.deviceID) {
                    driftSigns["\(i)-\(e.time)"] = sim.driftSign(device: i)
                }
                if e.kind == .sensorServiced, let open = sensorFaultOpen.removeValue(forKey: e.deviceID), let i = plant.index(of: e.deviceID) {
                    sensorFaults.append((i, open.kind, open.sensor, open.onset, e.time))
                }
                if e.kind == .faultOnset && MachineFault(rawValue: e.fault) != nil { onsets[e.deviceID] = e.time }
                if e.kind == .failure, let onset = onsets[e.deviceID], let i = plant.index(of: e.deviceID), onset > start + 2 * Time.day {
                    faults.append((i, onset, e.time))
                }
                if e.kind == .repair, let i = plant.index(of: e.deviceID) { engine.relearn(device: i) }
                if e.kind == .sensorServiced, let i = plant.index(of: e.deviceID) { engine.serviced(device: i, sensor: e.component) }
            }
        }
        var found: [String: [Double]] = [:]
        for f in faults {
            let anomalies = engine.anomalies(device: f.device, from: f.onset, to: f.failure)
            for detector in Set(anomalies.map(\.detector)) + ["any"] {
                let first = anomalies.filter { (detector == "any" || $0.detector == detector) && $0.start >= f.onset && $0.start < f.failure }.map(\.start).min()
                if let first { found[detector, default: []].append(Double(f.failure - first) / Double(Time.hour)) }
            }
        }
        // Drifts (ended, begun after the warm-up) told as a fault of that sensor, and machine faults told as a sensor fault.
        let drifts = sensorFaults.filter { $0.kind == SensorFault.drift.rawValue && $0.onset > start + 2 * Time.day }
        let toldDrift = drifts.filter { d in driftSeen[d.device, default: []].contains { $0.sensor == d.sensor && $0.time >= d.onset && $0.time <= d.end } }.count
        let blamedMachine = drifts.filter { d in machineSeen[d.device, default: []].contains { $0.sensor == d.sensor && $0.time >= d.onset && $0.time <= d.end } }.count
        let calledDrift = drifts.filter { d in driftCalled[d.device, default: []].contains { $0.sensor == d.sensor && $0.time >= d.onset && $0.time <= d.end } }.count
        // A drift called on a sensor that was faulty then (or still is at the end) is a sensor fault told right.
        for (device, open) in sensorFaultOpen { if let i = plant.index(of: device) { sensorFaults.append((i, open.kind, open.sensor, open.onset, .max)) } }
        func sensorFaulty(_ device: Int32, _ sensor: String, _ time: Nanos) -> Bool {
            sensorFaults.contains { $0.device == device && $0.sensor == sensor && time >= $0.onset && time <= $0.end }
        }
        let faultsCalledDrift = faults.filter { f in driftCalled[f.device, default: []].contains { $0.time >= f.onset && $0.time <= f.failure && !sensorFaulty(f.device, $0.sensor, $0.time) } }.count
        let falseDrifts = driftCalled.reduce(0) { n, entry in n + entry.value.filter { !sensorFaulty(entry.key, $0.sensor, $0.time) }.count }
        let allCalls = driftCalled.reduce(0) { $0 + $1.value.count }
        let stood = drifts.filter { d in idleSeen[d.device, default: []].contains { $0 >= d.onset && $0 <= d.end } }
        let stoodCalled = stood.filter { d in driftCalled[d.device, default: []].contains { $0.sensor == d.sensor && $0.time >= d.onset && $0.time <= d.end } }.count
        // The drifts on machines that never stood, by the sensor's unit and by whether the drift
        // moves it the way a machine fault would: where the verdicts are missing.
        var units: [String: String] = [:]
        for d in fleet { for sensor in d.sensors { units[sensor.name] = sensor.unit } }
        var breakdown: [String: (n: Int, called: Int, blamed: Int)] = [:]
        for d in drifts where !stood.contains(where: { $0.device == d.device && $0.onset == d.onset }) {
            let unit = units[d.sensor] ?? "?"
            let sign = driftSigns["\(d.device)-\(d.onset)"] ?? 0
            let way: String
            switch HealthEngine.FaultDirection.of(unit: unit) {
            case .rises: way = sign > 0 ? "with faults" : "against faults"
            case .falls: way = sign < 0 ? "with faults" : "against faults"
            case .unmoved: way = "against faults"
            case .either: way = "either way"
            }
            let key = "\(unit) \(sign > 0 ? "up" : "down"), \(way)"
            var row = breakdown[key] ?? (0, 0, 0)
            row.n += 1
            if driftCalled[d.device, default: []].contains(where: { $0.sensor == d.sensor && $0.time >= d.onset && $0.time <= d.end }) { row.called += 1 }
            if machineSeen[d.device, default: []].contains(where: { $0.sensor == d.sensor && $0.time >= d.onset && $0.time <= d.end }) { row.blamed += 1 }
            breakdown[key] = row
        }
        report("drifts on machines that never stood, by unit and way", breakdown.sorted { ($1.value.n, $0.key) < ($0.value.n, $1.key) }.map { key, row in
            (key, "\(row.n), called a drift \(row.called), blamed on the machine \(row.blamed)")
        })
        let faultsBlamed = faults.filter { f in machineSeen[f.device, default: []].contains { $0.time >= f.onset && $0.time <= f.failure } }.count
        let faultsAsDrift = faults.filter { f in driftSeen[f.device, default: []].contains { $0.time >= f.onset && $0.time <= f.failure } }.count
        report("sensor drifts and machine faults told apart (hourly verdicts)", [
            ("sensor drifts (after the warm-up)", "\(drifts.count)"),
            ("  called a fault of that sensor", String(format: "%d (%.0f %%)", toldDrift, 100 * Double(toldDrift) / Double(max(1, drifts.count)))),
            ("  called a drift of that sensor", String(format: "%d (%.0f %%)", calledDrift, 100 * Double(calledDrift) / Double(max(1, drifts.count)))),
            ("  of them with the machine standing at some hour", "\(stood.count), called a drift: \(stoodCalled) (\(String(format: "%.0f", 100 * Double(stoodCalled) / Double(max(1, stood.count)))) %)"),
            ("  on machines that never stood", "\(drifts.count - stood.count), called a drift: \(calledDrift - stoodCalled) (\(String(format: "%.0f", 100 * Double(calledDrift - stoodCalled) / Double(max(1, drifts.count - stood.count)))) %)"),
            ("  blamed on the machine at some hour (deviation or trend)", String(format: "%d (%.0f %%)", blamedMachine, 100 * Double(blamedMachine) / Double(max(1, drifts.count)))),
            ("hourly drift verdicts on a sensor with no fault", String(format: "%d of %d", falseDrifts, allCalls)),
            ("machine faults blamed on the machine at some hour (deviation or trend)", String(format: "%d of %d (%.0f %%)", faultsBlamed, faults.count, 100 * Double(faultsBlamed) / Double(max(1, faults.count)))),
            ("machine faults called a drift at some hour", String(format: "%d of %d (%.0f %%)", faultsCalledDrift, faults.count, 100 * Double(faultsCalledDrift) / Double(max(1, faults.count)))),
            ("machine faults called a sensor fault at some hour", String(format: "%d of %d (%.0f %%)", faultsAsDrift, faults.count, 100 * Double(faultsAsDrift) / Double(max(1, faults.count)))),
        ])
        report("machine faults found before the failure (\(devices) devices × \(days) d, seed \(seed))", [("faults (onset after the warm-up)", "\(faults.count)")]
            + found.sorted { $0.key < $1.key }.map { key, leads in
                (key, String(format: "%d found (%.0f %%), median %.0f h before the failure", leads.count, 100 * Double(leads.count) / Double(max(1, faults.count)), percentile(leads, 0.5)))
            })
    }
}

/// The default plant of `devices` machines registered in a live plant, and a health engine
/// bound to every one of them.
func benchPlant(devices: Int) throws -> (LivePlant, [Device], [(index: Int32, device: Device)], HealthEngine) {
    let plant = LivePlant()
    let fleet = MachineCatalog.defaultPlant(count: devices)
    let registered = try fleet.map { d throws(TwinError) in (index: try plant.upsert(d, now: Time.now()).index, device: d) }
    let engine = HealthEngine()
    for (index, d) in registered { engine.bind(device: index, sensors: d.sensors) }
    return (plant, fleet, registered, engine)
}
