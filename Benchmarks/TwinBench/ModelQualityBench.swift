import ArgumentParser
import Foundation
import TwinCore
import TwinEngines

// MARK: - Held-out quality of the failure models over several simulator seeds (in process)

/// The failure models trained as twind trains them (the same features, split and boosters), on
/// histories the simulator makes in process for each seed: the held-out figures are reported per
/// seed, then as mean and worst, beside the baselines.
struct ModelQualityBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model-quality", abstract: "Held-out failure-model metrics over several seeds (mean and worst), against the baselines.")
    @Option var devices = 100
    @Option var days = 30
    @Option(help: "Simulator seeds, comma-separated.") var seeds = "77,91,123,5,21"
    @Option(help: "Seconds between simulated readings.") var interval = 60
    @Option(help: "Only machines of this type (e.g. heat_exchanger); default: the default plant's mix.") var type: String?

    func run() async throws {
        var rows: [(Int, ModelMetrics, Double)] = []
        for seed in seeds.split(separator: ",").compactMap({ Int($0) }) {
            let began = ContinuousClock.now
            let (histories, end) = try Self.histories(devices: devices, days: days, seed: UInt64(seed), interval: Nanos(interval) * Time.second, type: type)
            let model = try FailureModel.train(histories: histories, end: end)
            let m = model.metrics
            rows.append((seed, m, (ContinuousClock.now - began).milliseconds / 1000))
            print(String(format: "seed %d: AUC24 %.4f (rule %.3f), AUC7d %.3f, RUL MAE 7d %.1f h = %.1f %% (baseline %.1f h); whole life %.1f h (baseline %.1f h); coverage %.2f / 7d %.2f; %d test devices, %d failures; %.0f s",
                         seed, m.rocAUC, m.baselineRocAUC, m.rocAUC7d, m.rulMAEHours, 100 * m.rulMAEHours / m.meanLifetimeHours, m.baselineRulMAEHours,
                         m.rulWholeLifeMAEHours ?? .nan, m.baselineRulWholeLifeMAEHours ?? .nan, m.rulIntervalCoverage ?? .nan, m.rulIntervalCoverage7d ?? .nan,
                         m.testDevices, m.testFailures, rows.last!.2))
        }
        func summary(_ name: String, _ value: (ModelMetrics) -> Double?, worstIsHigh: Bool, format: String = "%.3f") -> (String, String) {
            let values = rows.compactMap { value($0.1) }.filter { !$0.isNaN }
            guard !values.isEmpty else { return (name, "—") }
            let worst = worstIsHigh ? values.max()! : values.min()!
            return (name, String(format: "mean \(format), worst \(format) (\(values.map { String(format: format, $0) }.joined(separator: ", ")))", Stats.mean(values), worst))
        }
        report("model quality (\(devices) \(type ?? "devices") × \(days) d, seeds \(seeds))", [
            summary("ROC AUC 24 h", { $0.rocAUC }, worstIsHigh: false),
            summary("  threshold rule", { $0.baselineRocAUC }, worstIsHigh: false),
            summary("ROC AUC 7 d", { $0.rocAUC7d }, worstIsHigh: false),
            summary("RUL MAE, last 7 d, % of mean lifetime", { 100 * $0.rulMAEHours / $0.meanLifetimeHours }, worstIsHigh: true, format: "%.1f"),
            summary("  conditional fleet mean", { 100 * $0.baselineRulMAEHours / $0.meanLifetimeHours }, worstIsHigh: true, format: "%.1f"),
            summary("  near model alone, the failure within 7 d known", { m in m.rulNearModelMAEHours.map { 100 * $0 / m.meanLifetimeHours } }, worstIsHigh: true, format: "%.1f"),
            summary("RUL MAE, whole life, h", { $0.rulWholeLifeMAEHours }, worstIsHigh: true, format: "%.1f"),
            summary("  conditional fleet mean", { $0.baselineRulWholeLifeMAEHours }, worstIsHigh: true, format: "%.1f"),
            summary("80 % interval coverage, whole life", { $0.rulIntervalCoverage }, worstIsHigh: false, format: "%.2f"),
            summary("80 % interval coverage, last 7 d", { $0.rulIntervalCoverage7d }, worstIsHigh: false, format: "%.2f"),
            summary("mean lifetime h", { $0.meanLifetimeHours }, worstIsHigh: false, format: "%.0f"),
        ])
    }

    /// Hourly means and recorded failures and repairs, as twind reads them from its store after a
    /// backfill of `days` with this seed.
    static func histories(devices count: Int, days: Int, seed: UInt64, interval: Nanos, type: String? = nil) throws -> ([DeviceHourlyHistory], Nanos) {
        var fleet = MachineCatalog.defaultPlant(count: count)
        if let type {
            guard let machine = MachineCatalog.type(named: type) else { throw ValidationError("no machine type '\(type)'") }
            fleet = (1...count).map { MachineCatalog.device(type: machine, id: String(format: "\(type)-%03d", $0), number: $0, site: "plant-a", line: "line-\($0 / 10 + 1)") }
        }
        // A fixed end (2026-12-01T00:00Z): the figures of a seed do not depend on when it runs
        // (the hour of day and the weekday shape the simulated load).
        let end: Nanos = 1_796_083_200 * Time.second
        let start = end - Nanos(days) * Time.day
        var options = Simulator.Options()
        options.seed = seed
        var simulator = Simulator(devices: fleet.enumerated().map { (Int32($0.offset), $0.element) }, start: start, options: options)
        let hours = days * 24
        var sums = fleet.map { d in [[Double]](repeating: [Double](repeating: 0, count: hours), count: d.sensors.count) }
        var counts = sums
        var failures = [[Nanos]](repeating: [], count: count), repairs = [[Nanos]](repeating: [], count: count)
        var onsets = [[Nanos]](repeating: [], count: count)
        var output = Simulator.Output()
        var t = start
        while t < end {
            simulator.tick(at: t, into: &output)
            let h = Int((t - start) / Time.hour)
            for s in output.samples where !s.value.isNaN {
                sums[Int(s.device)][Int(s.sensor)][h] += s.value
                counts[Int(s.device)][Int(s.sensor)][h] += 1
            }
            for e in output.events {
                guard let d = fleet.firstIndex(where: { $0.id == e.deviceID }) else { continue }
                if e.kind == .failure { failures[d].append(e.time) } else if e.kind == .repair || e.kind == .partReplaced { repairs[d].append(e.time) }
                // Machine faults only: a sensor fault's onset (also a faultOnset event) says nothing of the failure.
                if e.kind == .faultOnset, MachineFault(rawValue: e.fault) != nil { onsets[d].append(e.time) }
            }
            t += interval
        }
        let histories = fleet.indices.map { d in
            DeviceHourlyHistory(
                deviceID: fleet[d].id, specs: fleet[d].sensors, start: start,
                hourly: zip(sums[d], counts[d]).map { s, c in zip(s, c).map { $1 > 0 ? $0 / $1 : .nan } },
                failures: failures[d], repairs: repairs[d])
        }
        // The hours within 24 h of a failure that come before its fault began: no sensor can
        // show those (a bound on any model's 24 h AUC).
        var hidden = 0.0, within = 0.0
        for d in fleet.indices {
            for f in failures[d] {
                let onset = onsets[d].last { $0 < f } ?? start
                within += 24
                hidden += Double(max(0, min(24 * Time.hour, onset - (f - Time.day)))) / Double(Time.hour)
            }
        }
        print(String(format: "seed %d: %.1f %% of the hours within 24 h of a failure come before its fault's onset", seed, 100 * hidden / max(1, within)))
        return (histories, end)
    }
}
