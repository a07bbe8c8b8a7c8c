import TwinCore

/// Robust and plain statistics the engines share.
public enum Stats {
    public static func median(_ values: [Double]) -> Double {
        let v = values.filter { !$0.isNaN }.sorted()
        guard !v.isEmpty else { return .nan }
        return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
    }

    /// Median absolute deviation, scaled to estimate a standard deviation (× 1.4826).
    public static func mad(_ values: [Double], around center: Double? = nil) -> Double {
        let m = center ?? median(values)
        return 1.4826 * median(values.map { abs($0 - m) })
    }

    public static func mean(_ values: [Double]) -> Double {
        values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
    }

    public static func standardDeviation(_ values: [Double]) -> Double {
        guard values.count > 1 else { return 0 }
        let m = mean(values)
        return (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)).squareRoot()
    }

    /// Theil–Sen slope (median of pairwise slopes) with its 95 % confidence interval (Sen 1968).
    public static func theilSen(x: [Double], y: [Double]) -> (slope: Double, low: Double, high: Double)? {
        let n = x.count
        guard n >= 3, y.count == n else { return nil }
        var slopes: [Double] = []
        slopes.reserveCapacity(n * (n - 1) / 2)
        for i in 0..<n {
            for j in (i + 1)..<n where x[j] != x[i] {
                slopes.append((y[j] - y[i]) / (x[j] - x[i]))
            }
        }
        guard !slopes.isEmpty else { return nil }
        slopes.sort()
        let count = Double(slopes.count)
        let mid = slopes.count % 2 == 1 ? slopes[slopes.count / 2] : (slopes[slopes.count / 2 - 1] + slopes[slopes.count / 2]) / 2
        let nd = Double(n)
        let c = 1.96 * (nd * (nd - 1) * (2 * nd + 5) / 18).squareRoot()
        let lo = Int(((count - c) / 2).rounded(.down)).clamped(0, slopes.count - 1)
        let hi = Int(((count + c) / 2).rounded(.up)).clamped(0, slopes.count - 1)
        return (mid, slopes[lo], slopes[hi])
    }

    /// Least-squares slope of y over x.
    public static func slope(x: [Double], y: [Double]) -> Double {
        guard x.count >= 2 else { return 0 }
        let mx = mean(x), my = mean(y)
        var num = 0.0, den = 0.0
        for i in x.indices {
            num += (x[i] - mx) * (y[i] - my)
            den += (x[i] - mx) * (x[i] - mx)
        }
        return den == 0 ? 0 : num / den
    }

    public static func pearson(_ a: [Double], _ b: [Double]) -> Double {
        guard a.count == b.count, a.count >= 3 else { return .nan }
        let ma = mean(a), mb = mean(b)
        var sab = 0.0, saa = 0.0, sbb = 0.0
        for i in a.indices {
            sab += (a[i] - ma) * (b[i] - mb)
            saa += (a[i] - ma) * (a[i] - ma)
            sbb += (b[i] - mb) * (b[i] - mb)
        }
        return saa == 0 || sbb == 0 ? .nan : sab / (saa * sbb).squareRoot()
    }

    /// Area under the ROC curve (probability a positive outranks a negative; ties count half).
    public static func rocAUC(scores: [Double], labels: [Bool]) -> Double {
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0, positives = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let rank = Double(i + j) / 2 + 1
            for k in i...j where labels[order[k]] {
                rankSum += rank
                positives += 1
            }
            i = j + 1
        }
        let negatives = Double(labels.count) - positives
        guard positives > 0, negatives > 0 else { return .nan }
        return (rankSum - positives * (positives + 1) / 2) / (positives * negatives)
    }

    /// Level shifts by binary segmentation: each split maximises the two-sample t statistic and
    /// must exceed `threshold`; segments shorter than `minSegment` are not split.
    public static func changePoints(_ y: [Double], minSegment: Int = 6, threshold: Double = 6, maxPoints: Int = 5) -> [(index: Int, before: Double, after: Double, statistic: Double)] {
        var found: [(index: Int, before: Double, after: Double, statistic: Double)] = []
        var segments = [(0, y.count)]
        let noise = max(mad(zip(y.dropFirst(), y).map { $0 - $1 }) / 2.0.squareRoot(), 1e-9)
        while let (lo, hi) = segments.popLast(), found.count < maxPoints {
            guard hi - lo >= 2 * minSegment else { continue }
            var prefix = [0.0]
            for v in y[lo..<hi] { prefix.append(prefix.last! + v) }
            var best: (Int, Double, Double, Double)?
            for k in (lo + minSegment)...(hi - minSegment) {
                let n1 = Double(k - lo), n2 = Double(hi - k)
                let m1 = prefix[k - lo] / n1, m2 = (prefix[hi - lo] - prefix[k - lo]) / n2
                let t = abs(m2 - m1) / (noise * (1 / n1 + 1 / n2).squareRoot())
                if t > (best?.3 ?? threshold) { best = (k, m1, m2, t) }
            }
            if let (k, m1, m2, t) = best {
                found.append((k, m1, m2, t))
                segments.append((lo, k))
                segments.append((k, hi))
            }
        }
        return found.sorted { $0.index < $1.index }
    }
}

extension Comparable {
    func clamped(_ lo: Self, _ hi: Self) -> Self { min(max(self, lo), hi) }
}
