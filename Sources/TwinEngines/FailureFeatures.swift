import TwinCore

/// What the failure models learn from: generic features computed from hourly means of whatever
/// sensors a device has, relative to the device's own condition right after its last repair
/// (or the start of its history). Nothing here knows the simulator: any plant that sends
/// readings and records failures and repairs gets the same features.
public enum FailureFeatures {
    /// Hours of history the features look back over (the latest 24 h against the 24 h before).
    public static let lookback = 30
    /// Hours after a repair (or the start of history) that define "normal" for the device.
    public static let referenceHours = 48

    public static let names = [
        "max_rise_6h", "max_fall_6h", "max_abs_dev_24h", "max_abs_dev_last_hour", "max_abs_slope_24h", "max_rise_slope_24h",
        "sensors_over_3", "mean_abs_dev_6h", "max_roughness_24h", "max_beyond_nominal", "hours_since_repair", "missing_fraction",
        "max_rise_3h", "max_abs_change_3h", "max_rise_vs_yesterday",
    ]

    /// The normal of one sensor: its mean per hour of the day (daily load cycles) and the robust
    /// spread of its hourly means around that profile.
    public struct Reference: Sendable, Codable, Equatable {
        public var profile: [Double]
        public var scale: Double
    }

    /// The reference of each sensor from hourly means of the reference window (its first hour
    /// starting at hour of day `firstHourOfDay`); nil when the window holds too few hours.
    public static func reference(hourly: [[Double]], specs: [SensorSpec], firstHourOfDay: Int) -> [Reference]? {
        var result: [Reference] = []
        for (i, spec) in specs.enumerated() {
            let series = i < hourly.count ? hourly[i] : []
            let values = series.filter { !$0.isNaN }
            guard values.count >= referenceHours / 2 else { return nil }
            let overall = Stats.median(values)
            var sums = [Double](repeating: 0, count: 24), counts = [Double](repeating: 0, count: 24)
            for (k, v) in series.enumerated() where !v.isNaN {
                sums[(firstHourOfDay + k) % 24] += v
                counts[(firstHourOfDay + k) % 24] += 1
            }
            let profile = (0..<24).map { counts[$0] > 0 ? sums[$0] / counts[$0] : overall }
            var residuals: [Double] = []
            for (k, v) in series.enumerated() where !v.isNaN { residuals.append(v - profile[(firstHourOfDay + k) % 24]) }
            // Two days give two values per hour of day: the spread of all hourly means around
            // the overall median keeps the scale honest. Its floor: a hundredth of the nominal
            // range, or of the level where there is no range (a constant signal has no spread).
            let spread = max(Stats.mad(residuals, around: 0), 0.5 * Stats.mad(values, around: overall))
            let floor = 0.01 * (nominalSpan(spec) ?? max(abs(overall), 1e-3))
            result.append(Reference(profile: profile, scale: max(spread, floor)))
        }
        return result
    }

    /// Features at the end of the last hour of `recent` (`lookback` hourly means per sensor,
    /// oldest first, NaN where none; its last hour starts at hour of day `lastHourOfDay`), and
    /// the sensor behind the strongest deviation.
    public static func compute(
        recent: [[Double]], reference: [Reference], specs: [SensorSpec], lastHourOfDay: Int, hoursSinceRepair: Double
    ) -> (features: [Float], lead: String?) {
        var rise6: [(Double, Int)] = [], fall6: [Double] = [], dev24: [(Double, Int)] = [], lastHour: [Double] = []
        var slopes: [Double] = [], riseSlopes: [Double] = [], rough: [Double] = [], beyond: [Double] = [], abs6: [Double] = []
        var rise3: [Double] = [], change3: [Double] = [], vsYesterday: [Double] = []
        var missing = 0, total = 0
        let n = recent.first?.count ?? 0
        // Residuals from the normal for this hour of the day, in units of normal spread.
        var residuals: [[Double]] = []
        for (i, _) in specs.enumerated() where i < recent.count && i < reference.count {
            let ref = reference[i]
            residuals.append(recent[i].enumerated().map { k, v in
                v.isNaN ? .nan : (v - ref.profile[((lastHourOfDay - (n - 1 - k)) % 24 + 24) % 24]) / ref.scale
            })
        }
        // Hours when the machine was stopped (most of its sensors far below their normal: a
        // night or a weekend off shift) tell nothing about wear: they are left out.
        for k in 0..<n {
            let present = residuals.filter { !$0[k].isNaN }
            let low = present.filter { $0[k] < -4 }.count
            if present.count >= 2 && low * 2 >= present.count {
                for s in residuals.indices { residuals[s][k] = .nan }
            }
        }
        for (i, spec) in specs.enumerated() where i < residuals.count {
            let r = residuals[i]
            let last24 = Array(r.suffix(24)), last6 = Array(r.suffix(6)).filter { !$0.isNaN }
            total += last24.count
            let valid24 = last24.filter { !$0.isNaN }
            missing += last24.count - valid24.count
            guard valid24.count >= 6, !last6.isEmpty else { continue }
            let m6 = Stats.mean(last6)
            let last3 = r.suffix(3).filter { !$0.isNaN }, before3 = r.dropLast(3).suffix(3).filter { !$0.isNaN }
            if !last3.isEmpty {
                rise3.append(Stats.mean(Array(last3)))
                if !before3.isEmpty { change3.append(abs(Stats.mean(Array(last3)) - Stats.mean(Array(before3)))) }
            }
            let yesterday = r.dropLast(24).suffix(6).filter { !$0.isNaN }
            if !yesterday.isEmpty { vsYesterday.append(m6 - Stats.mean(Array(yesterday))) }
            rise6.append((m6, i))
            fall6.append(-m6)
            abs6.append(abs(m6))
            dev24.append((abs(Stats.mean(valid24)), i))
            if let l = r.last(where: { !$0.isNaN }) { lastHour.append(abs(l)) }
            var xs: [Double] = [], ys: [Double] = []
            for (k, v) in last24.enumerated() where !v.isNaN {
                xs.append(Double(k) / 24)
                ys.append(v)
            }
            let slope = Stats.slope(x: xs, y: ys)
            slopes.append(abs(slope))
            riseSlopes.append(slope)
            rough.append(Stats.standardDeviation(zip(ys.dropFirst(), ys).map { $0 - $1 }))
            // Levels of the operating hours only (a stopped machine is below its range by design).
            // Only sensors with a nominal range count: a device registered without one (an
            // import, a gateway) has none to be beyond, and its span would blow the ratio up.
            if let span = nominalSpan(spec) {
                let raw = zip(recent[i], r).suffix(6).filter { !$0.1.isNaN }.map(\.0)
                let level = Stats.mean(Array(raw))
                beyond.append(max(0, (level - spec.nominalMax) / span, (spec.nominalMin - level) / span))
            }
        }
        let features: [Double] = [
            rise6.map(\.0).max() ?? .nan,
            fall6.max() ?? .nan,
            dev24.map(\.0).max() ?? .nan,
            lastHour.max() ?? .nan,
            slopes.max() ?? .nan,
            riseSlopes.max() ?? .nan,
            Double(abs6.filter { $0 > 3 }.count),
            abs6.isEmpty ? .nan : Stats.mean(abs6),
            rough.max() ?? .nan,
            beyond.max() ?? .nan,
            // Unknown (NaN: missing to the model) when no repair is recorded: the time since the
            // history began says nothing about the machine's age.
            hoursSinceRepair.isNaN ? .nan : min(hoursSinceRepair, 24 * 365),
            total == 0 ? 1 : Double(missing) / Double(total),
            rise3.max() ?? .nan,
            change3.max() ?? .nan,
            vsYesterday.max() ?? .nan,
        ]
        let lead = rise6.map { (abs($0.0), $0.1) }.max { $0.0 < $1.0 }.map { specs[$0.1].name }
        return (features.map { Float($0) }, lead)
    }

    /// The width of a sensor's nominal range, or nil when it has none (absent, empty, inverted
    /// or not finite).
    static func nominalSpan(_ spec: SensorSpec) -> Double? {
        let span = spec.nominalMax - spec.nominalMin
        return span.isFinite && span > 0 ? span : nil
    }

    /// False when the machine ran too little in the look-back (stopped, off shift) for the
    /// features to say anything: no example is made and no prediction is told from such rows.
    public static func usable(_ features: [Float]) -> Bool {
        !features[names.firstIndex(of: "max_abs_dev_24h")!].isNaN
    }

    /// The "threshold rule" baseline score: how far beyond its nominal range any sensor is.
    public static func baselineScore(_ features: [Float]) -> Double {
        let v = features[names.firstIndex(of: "max_beyond_nominal")!]
        return v.isNaN ? 0 : Double(v)
    }

    public static func hourOfDay(_ time: Nanos) -> Int { Int((time / Time.hour) % 24) }
}

/// One device's hourly history for training: means per sensor on an hourly grid, and its
/// recorded failures and repairs.
public struct DeviceHourlyHistory: Sendable {
    public var deviceID: String
    public var specs: [SensorSpec]
    /// Start of the first hour (a multiple of one hour).
    public var start: Nanos
    /// `[sensor][hour]`, NaN where the hour has no readings.
    public var hourly: [[Double]]
    public var failures: [Nanos]
    public var repairs: [Nanos]

    public init(deviceID: String, specs: [SensorSpec], start: Nanos, hourly: [[Double]], failures: [Nanos], repairs: [Nanos]) {
        self.deviceID = deviceID
        self.specs = specs
        self.start = start
        self.hourly = hourly
        self.failures = failures.sorted()
        self.repairs = repairs.sorted()
    }

    public var hours: Int { hourly.first?.count ?? 0 }
    public func time(ofHour h: Int) -> Nanos { start + Nanos(h) * Time.hour }
    public func hour(of time: Nanos) -> Int { Int((time - start) / Time.hour) }
}

/// One training example: features at a time point of a device and what happened after.
public struct FailureExample: Sendable {
    public var deviceID: String
    public var time: Nanos
    public var features: [Float]
    public var lead: String?
    /// Failure within 24 h / 7 d; nil when the history ends before the horizon does (censored).
    public var failsWithin24h: Bool?
    public var failsWithin7d: Bool?
    /// Hours to the next recorded failure; nil if none is recorded.
    public var hoursToFailure: Double?
    public var hoursSinceRepair: Double
}

extension DeviceHourlyHistory {
    /// Examples at the end of every `every`-th hour, while the machine is in service (not
    /// between a failure and its repair) and has a reference and a full look-back.
    public func examples(every: Int = 1, end: Nanos) -> [FailureExample] {
        var result: [FailureExample] = []
        guard hours > FailureFeatures.lookback else { return result }
        // Service periods: from the start or a repair to the next failure.
        var starts = [start] + repairs
        starts.sort()
        var referenceCache: [Nanos: [FailureFeatures.Reference]] = [:]
        for h in stride(from: FailureFeatures.lookback - 1, to: hours, by: every) {
            let t = time(ofHour: h + 1)  // end of hour h
            guard let serviceStart = starts.last(where: { $0 < t }) else { continue }
            // Down: a failure since the service period began.
            if failures.contains(where: { $0 > serviceStart && $0 <= t }) { continue }
            let refStart = max(hour(of: serviceStart) + 1, 0)
            let refEnd = refStart + FailureFeatures.referenceHours
            guard h >= refEnd + FailureFeatures.lookback - 24, refEnd <= hours else { continue }
            let reference: [FailureFeatures.Reference]
            if let cached = referenceCache[serviceStart] {
                reference = cached
            } else {
                guard let made = FailureFeatures.reference(
                    hourly: hourly.map { Array($0[refStart..<refEnd]) }, specs: specs, firstHourOfDay: FailureFeatures.hourOfDay(time(ofHour: refStart)))
                else { continue }
                referenceCache[serviceStart] = made
                reference = made
            }
            let recent = hourly.map { Array($0[(h + 1 - FailureFeatures.lookback)...h]) }
            let age = Double(t - serviceStart) / Double(Time.hour)
            let (features, lead) = FailureFeatures.compute(
                recent: recent, reference: reference, specs: specs, lastHourOfDay: FailureFeatures.hourOfDay(time(ofHour: h)),
                hoursSinceRepair: serviceStart == start ? .nan : age)
            guard FailureFeatures.usable(features) else { continue }
            let next = failures.first { $0 > t }
            func label(_ horizon: Nanos) -> Bool? {
                if let next, next <= t + horizon { return true }
                return t + horizon <= end ? false : nil
            }
            result.append(FailureExample(
                deviceID: deviceID, time: t, features: features, lead: lead, failsWithin24h: label(Time.day),
                failsWithin7d: label(7 * Time.day), hoursToFailure: next.map { Double($0 - t) / Double(Time.hour) }, hoursSinceRepair: age))
        }
        return result
    }
}
