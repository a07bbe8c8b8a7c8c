import TwinCore

/// Patterns in a device's history over a window: trends with confidence and time to limit,
/// level shifts, correlations between sensors that broke, daily and weekly profiles, and
/// anomalous hours (robust z of each hourly mean against the hour-of-day profile).
public enum PatternAnalysis {
    public struct Trend: Sendable { public var sensor: String; public var slopePerDay, low, high: Double; public var timeToLimit: Nanos? }
    public struct ChangePoint: Sendable { public var sensor: String; public var time: Nanos; public var before, after, confidence: Double }
    public struct CorrelationBreak: Sendable { public var a, b: String; public var normal, recent: Double; public var since: Nanos }
    public struct Profile: Sendable { public var sensor: String; public var weekly: Bool; public var mean, stddev: [Double] }
    public struct AnomalousSpan: Sendable { public var sensor: String; public var start, end: Nanos; public var score: Double }

    public struct Result: Sendable {
        public var trends: [Trend] = []
        public var changePoints: [ChangePoint] = []
        public var correlationBreaks: [CorrelationBreak] = []
        public var profiles: [Profile] = []
        public var anomalies: [AnomalousSpan] = []
    }

    /// `hourly[s]` are hourly means of `specs[s]` from `start` (a whole hour), NaN where none.
    public static func analyse(specs: [SensorSpec], hourly: [[Double]], start: Nanos) -> Result {
        var result = Result()
        let hours = hourly.first?.count ?? 0
        func time(_ h: Int) -> Nanos { start + Nanos(h) * Time.hour }
        for (s, spec) in specs.enumerated() where s < hourly.count {
            let series = hourly[s]
            var x: [Double] = [], y: [Double] = [], at: [Int] = []
            for (h, v) in series.enumerated() where !v.isNaN {
                x.append(Double(h) / 24)
                y.append(v)
                at.append(h)
            }
            guard y.count >= 12 else { continue }
            // Trend (Theil–Sen on at most ~170 points: daily windows are thinned to keep it cheap).
            let stride = max(1, y.count / 170)
            let tx = Swift.stride(from: 0, to: x.count, by: stride).map { x[$0] }, ty = Swift.stride(from: 0, to: y.count, by: stride).map { y[$0] }
            if let t = Stats.theilSen(x: tx, y: ty) {
                var ttl: Nanos?
                let current = Stats.mean(Array(y.suffix(6)))
                if t.low > 0 || t.high < 0 {
                    let limit = t.slope > 0 ? (spec.alarmHigh ?? spec.nominalMax) : (spec.alarmLow ?? spec.nominalMin)
                    let distance = t.slope > 0 ? limit - current : current - limit
                    if distance > 0 { ttl = Nanos(distance / abs(t.slope) * Double(Time.day)) }
                }
                result.trends.append(Trend(sensor: spec.name, slopePerDay: t.slope, low: t.low, high: t.high, timeToLimit: ttl))
            }
            // Daily profile, and weekly when the window holds two weeks.
            var sums = [Double](repeating: 0, count: 24), squares = sums, counts = sums
            for (i, h) in at.enumerated() {
                let k = Int((time(h) / Time.hour) % 24)
                sums[k] += y[i]; squares[k] += y[i] * y[i]; counts[k] += 1
            }
            let mean = (0..<24).map { counts[$0] > 0 ? sums[$0] / counts[$0] : .nan }
            let sd = (0..<24).map { counts[$0] > 1 ? max(0, squares[$0] / counts[$0] - mean[$0] * mean[$0]).squareRoot() : .nan }
            result.profiles.append(Profile(sensor: spec.name, weekly: false, mean: mean, stddev: sd))
            if hours >= 14 * 24 {
                var ws = [Double](repeating: 0, count: 168), wq = ws, wc = ws
                for (i, h) in at.enumerated() {
                    // Hours since Monday 00:00 UTC (1970-01-01 was a Thursday).
                    let k = Int(((time(h) / Time.hour) + 72) % 168)
                    ws[k] += y[i]; wq[k] += y[i] * y[i]; wc[k] += 1
                }
                let wm = (0..<168).map { wc[$0] > 0 ? ws[$0] / wc[$0] : .nan }
                result.profiles.append(Profile(
                    sensor: spec.name, weekly: true, mean: wm, stddev: (0..<168).map { wc[$0] > 1 ? max(0, wq[$0] / wc[$0] - wm[$0] * wm[$0]).squareRoot() : .nan }))
            }
            // Level shifts, in what is left once the daily cycle is taken out.
            let residuals = at.indices.map { y[$0] - mean[Int((time(at[$0]) / Time.hour) % 24)] }
            let shifts = Stats.changePoints(residuals, minSegment: 12, threshold: 8)
            for (n, c) in shifts.enumerated() {
                let lo = n == 0 ? 0 : shifts[n - 1].index, hi = n + 1 < shifts.count ? shifts[n + 1].index : y.count
                result.changePoints.append(ChangePoint(
                    sensor: spec.name, time: time(at[c.index]), before: Stats.mean(Array(y[lo..<c.index])), after: Stats.mean(Array(y[c.index..<hi])),
                    confidence: c.statistic))
            }
            // Anomalous hours: far from the hour-of-day profile in robust units.
            let scale = max(Stats.mad(residuals, around: 0), 1e-6 * max(1, abs(Stats.mean(y))))
            var open: (start: Int, peak: Double)?
            for (i, r) in residuals.enumerated() {
                let z = abs(r) / scale
                if z >= 5 {
                    if open == nil { open = (at[i], z) } else { open!.peak = max(open!.peak, z) }
                } else if let o = open {
                    result.anomalies.append(AnomalousSpan(sensor: spec.name, start: time(o.start), end: time(at[i]), score: o.peak / 5))
                    open = nil
                }
            }
            if let o = open { result.anomalies.append(AnomalousSpan(sensor: spec.name, start: time(o.start), end: time(hours), score: o.peak / 5)) }
        }
        // Correlations that held over the window and not over its last 24 hours.
        if hours >= 72 {
            for a in 0..<specs.count where a < hourly.count {
                for b in (a + 1)..<specs.count where b < hourly.count {
                    let pairs = (0..<hours).filter { !hourly[a][$0].isNaN && !hourly[b][$0].isNaN }
                    let older = pairs.filter { $0 < hours - 24 }, recent = pairs.filter { $0 >= hours - 24 }
                    guard older.count >= 48, recent.count >= 12 else { continue }
                    let normal = Stats.pearson(older.map { hourly[a][$0] }, older.map { hourly[b][$0] })
                    let now = Stats.pearson(recent.map { hourly[a][$0] }, recent.map { hourly[b][$0] })
                    if abs(normal) >= 0.7, !now.isNaN, abs(now - normal) >= 0.6 {
                        result.correlationBreaks.append(CorrelationBreak(a: specs[a].name, b: specs[b].name, normal: normal, recent: now, since: time(hours - 24)))
                    }
                }
            }
        }
        return result
    }
}
