import Foundation
import TwinCore

/// Held-out quality of a trained model (devices never seen in training).
public struct ModelMetrics: Sendable, Codable, Equatable {
    public var rocAUC = Double.nan
    public var precision = Double.nan
    public var recall = Double.nan
    public var threshold = 0.5
    public var rocAUC7d = Double.nan
    /// RUL error on held-out examples within 7 days of a failure, in hours.
    public var rulMAEHours = Double.nan
    public var rulRMSEHours = Double.nan
    public var baselineRocAUC = Double.nan
    public var baselineRulMAEHours = Double.nan
    public var meanLifetimeHours = Double.nan
    public var trainExamples = 0
    public var testExamples = 0
    public var trainDevices = 0
    public var testDevices = 0
    public var trainFailures = 0
    public var testFailures = 0
    /// Remaining life over the whole service life: every held-out in-service hour with a known
    /// next failure (nil in models made before remaining life covered the whole life).
    public var rulWholeLifeMAEHours: Double? = nil
    /// The conditional fleet mean on the same hours: the training lifetimes longer than the
    /// machine's age, less its age.
    public var baselineRulWholeLifeMAEHours: Double? = nil
    /// Share of those held-out hours whose true remaining life fell inside the 80 % interval,
    /// over the whole life and over the last 7 days before a failure.
    public var rulIntervalCoverage: Double? = nil
    public var rulIntervalCoverage7d: Double? = nil
    /// The near model alone on the hours within 7 days of a failure: its error once a failure
    /// within 7 days is known (what remaining life meant before it covered the whole life).
    public var rulNearModelMAEHours: Double? = nil
    /// Standard error of the held-out devices' mean difference in whole-life absolute error
    /// (model − conditional fleet mean): a loss smaller than this is not a verdict.
    public var rulWholeLifeVersusBaselineSE: Double? = nil

    public init() {}
}

/// The "conditional fleet mean" remaining life: how much longer machines of the fleet lived
/// once they had reached a given age (time in service since the last recorded repair). With no
/// repair recorded the age is unknown (the model is not told the time since the history began
/// either): then it is the fleet's mean remaining life over the hours of unknown age.
public struct LifetimeBaseline: Sendable {
    let lifetimes: [Double]
    let unknownAge: Double

    /// `lifetimes`: repair to failure, in hours; `unknownAgeRemaining`: hours to the next failure
    /// of training hours whose age was unknown.
    public init(lifetimes: [Double], unknownAgeRemaining: [Double]) {
        self.lifetimes = lifetimes.sorted()
        unknownAge = unknownAgeRemaining.isEmpty ? Stats.mean(lifetimes) : Stats.mean(unknownAgeRemaining)
    }

    public func remaining(age: Double?) -> Double {
        guard let age, !age.isNaN else { return unknownAge.isNaN ? 0 : unknownAge }
        let longer = lifetimes.drop { $0 <= age }
        guard !longer.isEmpty else { return 0 }
        return Stats.mean(Array(longer)) - age
    }
}

/// What a training run produced: three boosters and how good they are.
public struct TrainedFailureModel: Sendable {
    public var failure24h: Booster
    public var failure7d: Booster
    public var remainingLife: RemainingLifeModel
    public var metrics: ModelMetrics
    public var parameters: [String: Booster.Parameters]
    /// The held-out examples, to compare another model on the same data.
    public var testRows: [[Float]]
    public var testLabels: [Bool]
}

/// Trains and evaluates the failure models. Devices are split (by a hash of their id, so the
/// split is stable) into training and held-out sets: the metrics describe machines the model
/// never saw.
public enum FailureModel {
    static func deviceHash(_ deviceID: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in deviceID.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    public static func isHeldOut(_ deviceID: String) -> Bool { deviceHash(deviceID) % 4 == 0 }

    /// A fifth of the training devices calibrate the remaining-life interval: a model fitted on
    /// the others is measured on them.
    static func calibrates(_ deviceID: String) -> Bool { (deviceHash(deviceID) / 4) % 5 == 0 }

    public static func train(
        histories: [DeviceHourlyHistory], end: Nanos, progress: @escaping (String, Double) -> Void = { _, _ in }
    ) throws(TwinError) -> TrainedFailureModel {
        var train: [FailureExample] = [], test: [FailureExample] = []
        var lifetimes: [Double] = [], repairedLifetimes: [Double] = []
        var trainDevices = Set<String>(), testDevices = Set<String>()
        for (n, history) in histories.enumerated() {
            let examples = history.examples(end: end)
            if isHeldOut(history.deviceID) {
                test += examples
                if !examples.isEmpty { testDevices.insert(history.deviceID) }
            } else {
                train += examples
                if !examples.isEmpty { trainDevices.insert(history.deviceID) }
                // Lifetimes: from the start of service (history start or repair) to the failure;
                // those from a repair also for the baseline, whose age is known then.
                let starts = ([history.start] + history.repairs).sorted()
                for f in history.failures {
                    if let s = starts.last(where: { $0 < f }) {
                        lifetimes.append(Double(f - s) / Double(Time.hour))
                        if s != history.start { repairedLifetimes.append(Double(f - s) / Double(Time.hour)) }
                    }
                }
            }
            progress("computing features (\(n + 1)/\(histories.count) devices)", 0.4 * Double(n + 1) / Double(histories.count))
        }
        let labelled24 = train.filter { $0.failsWithin24h != nil }
        let positives = labelled24.filter { $0.failsWithin24h == true }.count
        guard positives >= 5, labelled24.count - positives >= 5 else {
            throw .failedPrecondition(
                "not enough labelled history to train: \(positives) hours within 24 h before a recorded failure on training devices (need at least 5); record failures and repairs (RecordEvent) or let the plant run longer",
                reason: .notEnoughData)
        }
        var metrics = ModelMetrics()
        metrics.trainExamples = train.count
        metrics.testExamples = test.count
        metrics.trainDevices = trainDevices.count
        metrics.testDevices = testDevices.count
        metrics.trainFailures = histories.filter { !isHeldOut($0.deviceID) }.reduce(0) { $0 + $1.failures.count }
        metrics.testFailures = histories.filter { isHeldOut($0.deviceID) }.reduce(0) { $0 + $1.failures.count }
        metrics.meanLifetimeHours = lifetimes.isEmpty ? .nan : Stats.mean(lifetimes)

        var classifier = Booster.Parameters(objective: "binary:logistic")
        classifier.rounds = 150
        let m24 = try Booster.train(rows: labelled24.map(\.features), labels: labelled24.map { $0.failsWithin24h! ? 1 : 0 }, parameters: classifier) {
            progress("training failure-within-24h model", 0.4 + 0.2 * $0)
        }
        let labelled7d = train.filter { $0.failsWithin7d != nil }
        let m7d = try Booster.train(rows: labelled7d.map(\.features), labels: labelled7d.map { $0.failsWithin7d! ? 1 : 0 }, parameters: classifier) {
            progress("training failure-within-7d model", 0.6 + 0.15 * $0)
        }
        // Remaining life over the whole service life: every in-service hour whose next failure
        // is recorded (hours whose machine had not failed by the end are left out: their
        // remaining life is unknown).
        let rul = try RemainingLifeModel.train(train, calibrates: calibrates) { progress("training remaining-life models", 0.75 + 0.15 * $0) }

        // Operating threshold: the best F1 on the training data.
        let trainScores = try m24.predict(labelled24.map(\.features))
        metrics.threshold = bestThreshold(scores: trainScores, labels: labelled24.map { $0.failsWithin24h! })

        progress("evaluating on held-out devices", 0.92)
        let test24 = test.filter { $0.failsWithin24h != nil }
        let testLabels = test24.map { $0.failsWithin24h! }
        if !test24.isEmpty {
            let scores = try m24.predict(test24.map(\.features))
            metrics.rocAUC = Stats.rocAUC(scores: scores, labels: testLabels)
            metrics.baselineRocAUC = Stats.rocAUC(scores: test24.map { FailureFeatures.baselineScore($0.features) }, labels: testLabels)
            let tp = zip(scores, testLabels).filter { $0 >= metrics.threshold && $1 }.count
            let fp = zip(scores, testLabels).filter { $0 >= metrics.threshold && !$1 }.count
            let fn = zip(scores, testLabels).filter { $0 < metrics.threshold && $1 }.count
            metrics.precision = tp + fp == 0 ? .nan : Double(tp) / Double(tp + fp)
            metrics.recall = tp + fn == 0 ? .nan : Double(tp) / Double(tp + fn)
        }
        let test7d = test.filter { $0.failsWithin7d != nil }
        if !test7d.isEmpty {
            metrics.rocAUC7d = Stats.rocAUC(scores: try m7d.predict(test7d.map(\.features)), labels: test7d.map { $0.failsWithin7d! })
        }
        let testPrognostic = test.filter { $0.hoursToFailure != nil }
        if !testPrognostic.isEmpty {
            let baseline = LifetimeBaseline(
                lifetimes: repairedLifetimes.count >= 5 ? repairedLifetimes : lifetimes,
                unknownAgeRemaining: train.filter { !ageKnown($0) }.compactMap(\.hoursToFailure))
            let rows = testPrognostic.map(\.features)
            let nearRaw = try rul.near.predict(rows)
            let estimates = RemainingLifeModel.serve(whole: try rul.whole.predict(rows), near: nearRaw, wholeInterval: rul.wholeInterval, nearInterval: rul.nearInterval)
            let truth = testPrognostic.map { $0.hoursToFailure! }
            let predicted = estimates.map(\.hours)
            let inside = zip(truth, estimates).map { t, e in t >= e.low && t <= e.high }
            let expected = testPrognostic.map { baseline.remaining(age: ageKnown($0) ? $0.hoursSinceRepair : nil) }
            let near = truth.indices.filter { truth[$0] <= 168 }
            metrics.rulWholeLifeMAEHours = Stats.mean(zip(truth, predicted).map { abs($0 - $1) })
            metrics.baselineRulWholeLifeMAEHours = Stats.mean(zip(truth, expected).map { abs($0 - $1) })
            // How surely the held-out devices tell the two apart: the standard error of the
            // per-device mean difference in absolute error (model − baseline).
            var perDevice: [String: (sum: Double, n: Double)] = [:]
            for (i, e) in testPrognostic.enumerated() {
                perDevice[e.deviceID, default: (0, 0)].sum += abs(truth[i] - predicted[i]) - abs(truth[i] - expected[i])
                perDevice[e.deviceID, default: (0, 0)].n += 1
            }
            let differences = perDevice.values.map { $0.sum / $0.n }
            if differences.count >= 2 {
                metrics.rulWholeLifeVersusBaselineSE = Stats.standardDeviation(differences) / Double(differences.count).squareRoot()
            }
            metrics.rulIntervalCoverage = Double(inside.filter { $0 }.count) / Double(inside.count)
            if !near.isEmpty {
                let errors = near.map { truth[$0] - predicted[$0] }
                metrics.rulMAEHours = Stats.mean(errors.map(abs))
                metrics.rulRMSEHours = Stats.mean(errors.map { $0 * $0 }).squareRoot()
                metrics.baselineRulMAEHours = Stats.mean(near.map { abs(truth[$0] - expected[$0]) })
                metrics.rulIntervalCoverage7d = Double(near.filter { inside[$0] }.count) / Double(near.count)
                metrics.rulNearModelMAEHours = Stats.mean(near.map { abs(truth[$0] - RemainingLifeModel.hours(fromLog: nearRaw[$0])) })
            }
        }
        progress("done", 1)
        return TrainedFailureModel(
            failure24h: m24, failure7d: m7d, remainingLife: rul, metrics: metrics,
            parameters: ["failure_24h": classifier, "failure_7d": classifier, "remaining_life": RemainingLifeModel.parameters],
            testRows: test24.map(\.features), testLabels: testLabels)
    }

    /// Whether the example's machine had a recorded repair (its age in service is known).
    static func ageKnown(_ example: FailureExample) -> Bool {
        !example.features[FailureFeatures.names.firstIndex(of: "hours_since_repair")!].isNaN
    }

    static func bestThreshold(scores: [Double], labels: [Bool]) -> Double {
        var best = (f1: -1.0, threshold: 0.5)
        for threshold in stride(from: 0.05, through: 0.95, by: 0.05) {
            let tp = Double(zip(scores, labels).filter { $0 >= threshold && $1 }.count)
            let fp = Double(zip(scores, labels).filter { $0 >= threshold && !$1 }.count)
            let fn = Double(zip(scores, labels).filter { $0 < threshold && $1 }.count)
            let f1 = tp == 0 ? 0 : 2 * tp / (2 * tp + fp + fn)
            if f1 > best.f1 { best = (f1, threshold) }
        }
        return best.threshold
    }
}
