import Foundation
import TwinCore

/// Remaining useful life over a machine's whole service life, with a calibrated 80 % interval.
///
/// Two boosters learn log(1 + hours to the next failure) from the failure features: one from
/// every in-service hour whose next failure is recorded (the whole life), one from the last
/// 7 days before failures only (where the features change fastest and an hour's error
/// matters). The whole-life estimate is told unless it says the failure is within 7 days; then
/// the near model's is. Each regime's interval comes from split conformal calibration: models
/// fitted without a fifth of the training devices are measured on that fifth, and the 10 % and
/// 90 % quantiles of the log residuals in each regime bound the served estimate.
public struct RemainingLifeModel: Sendable {
    public var whole: Booster
    public var near: Booster
    /// Log-residual quantiles (10 %, 50 %, 90 %) in the whole-life and the near regime: the
    /// median corrects the estimate for the bias the calibration devices showed, the others
    /// bound it (so the interval always holds the estimate).
    public var wholeInterval: Quantiles
    public var nearInterval: Quantiles

    public struct Quantiles: Sendable, Equatable {
        public var low: Double
        public var middle: Double
        public var high: Double
        public init(low: Double, middle: Double, high: Double) {
            self.low = low
            self.middle = middle
            self.high = high
        }
        /// From a manifest's list: [low, middle, high] (or [low, high], middle 0).
        public init(_ list: [Double]) {
            self.init(low: list.first ?? 0, middle: list.count == 3 ? list[1] : 0, high: list.last ?? 0)
        }
        public var list: [Double] { [low, middle, high] }
        static let unknown = Quantiles(low: -0.7, middle: 0, high: 0.7)
    }

    /// Where the near model takes over, in hours.
    public static let nearHours = 168.0

    public struct Estimate: Sendable, Equatable {
        public var hours: Double
        public var low: Double
        public var high: Double
    }

    public static let parameters: Booster.Parameters = {
        var p = Booster.Parameters(objective: "reg:squarederror")
        p.rounds = 120
        return p
    }()

    static func logHours(_ hours: Double) -> Float { Float(log1p(max(0, hours))) }
    static func hours(fromLog value: Double) -> Double { max(0, expm1(value)) }

    public func predict(_ rows: [[Float]]) throws(TwinError) -> [Estimate] {
        guard !rows.isEmpty else { return [] }
        return Self.serve(whole: try whole.predict(rows), near: try near.predict(rows), wholeInterval: wholeInterval, nearInterval: nearInterval)
    }

    static func serve(whole: [Double], near: [Double], wholeInterval: Quantiles, nearInterval: Quantiles) -> [Estimate] {
        zip(whole, near).map { w, n in
            let (value, q) = isNear(wholeLog: w) ? (n, nearInterval) : (w, wholeInterval)
            return Estimate(hours: hours(fromLog: value + q.middle), low: hours(fromLog: value + q.low), high: hours(fromLog: value + q.high))
        }
    }

    /// Which regime an estimate was told in.
    static func isNear(wholeLog: Double) -> Bool { hours(fromLog: wholeLog) <= nearHours }

    /// Trains on `examples` (their `hoursToFailure` known), calibrating the intervals on the
    /// devices `calibrates` picks.
    public static func train(
        _ examples: [FailureExample], calibrates: (String) -> Bool, progress: (Double) -> Void = { _ in }
    ) throws(TwinError) -> RemainingLifeModel {
        let known = examples.filter { $0.hoursToFailure != nil }
        guard known.filter({ $0.hoursToFailure! <= nearHours }).count >= 10 else {
            throw .failedPrecondition("not enough examples within 7 days of a failure to learn remaining life (\(known.count))", reason: .notEnoughData)
        }
        let parameters = Self.parameters
        func fit(_ rows: [FailureExample], near: Bool, _ share: (Double, Double)) throws(TwinError) -> Booster {
            let chosen = near ? rows.filter { $0.hoursToFailure! <= nearHours } : rows
            return try Booster.train(rows: chosen.map(\.features), labels: chosen.map { logHours($0.hoursToFailure!) }, parameters: parameters) {
                progress(share.0 + share.1 * $0)
            }
        }
        // Calibration: fitted without the calibration devices, measured on them.
        let fitting = known.filter { !calibrates($0.deviceID) }, calibration = known.filter { calibrates($0.deviceID) }
        var wholeInterval = Quantiles.unknown, nearInterval = Quantiles.unknown
        if fitting.filter({ $0.hoursToFailure! <= nearHours }).count >= 10 && calibration.count >= 10 {
            let probeWhole = try fit(fitting, near: false, (0, 0.2)), probeNear = try fit(fitting, near: true, (0.2, 0.1))
            let rows = calibration.map(\.features)
            let w = try probeWhole.predict(rows), n = try probeNear.predict(rows)
            var wholeResiduals: [Double] = [], nearResiduals: [Double] = []
            for (i, e) in calibration.enumerated() {
                let truth = Double(logHours(e.hoursToFailure!))
                if isNear(wholeLog: w[i]) { nearResiduals.append(truth - n[i]) } else { wholeResiduals.append(truth - w[i]) }
            }
            if let q = quantiles(wholeResiduals) { wholeInterval = q }
            if let q = quantiles(nearResiduals) { nearInterval = q }
        }
        return RemainingLifeModel(
            whole: try fit(known, near: false, (0.3, 0.5)), near: try fit(known, near: true, (0.8, 0.2)),
            wholeInterval: wholeInterval, nearInterval: nearInterval)
    }

    /// The 10 %, 50 % and 90 % quantiles, when there are enough values to tell them.
    static func quantiles(_ values: [Double]) -> Quantiles? {
        guard values.count >= 20 else { return nil }
        let sorted = values.sorted()
        func at(_ p: Double) -> Double { sorted[Int(Double(sorted.count - 1) * p)] }
        return Quantiles(low: at(0.1), middle: at(0.5), high: at(0.9))
    }
}
