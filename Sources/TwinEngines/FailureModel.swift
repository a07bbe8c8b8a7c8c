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

    public init() {}
}

/// What a training run produced: three boosters and how good they are.
public struct TrainedFailureModel: Sendable {
    public var failure24h: Booster
    public var failure7d: Booster
    public var remainingLife: Booster
    public var metrics: ModelMetrics
    /// Residual quantiles of the RUL model (10 % and 90 %) for its interval.
    public var rulInterval: (low: Double, high: Double)
    public var parameters: [String: Booster.Parameters]
    /// The held-out examples, to compare another model on the same data.
    public var testRows: [[Float]]
    public var testLabels: [Bool]
}

/// Trains and evaluates the failure models. Devices are split (by a hash of their id, so the
/// split is stable) into training and held-out sets: the metrics describe machines the model
/// never saw.
public enum FailureModel {
    public static func isHeldOut(_ deviceID: String) -> Bool {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in deviceID.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h % 4 == 0
    }

    public static func train(
        histories: [DeviceHourlyHistory], end: Nanos, progress: @escaping (String, Double) -> Void = { _, _ in }
    ) throws(TwinError) -> TrainedFailureModel {
        var train: [FailureExample] = [], test: [FailureExample] = []
        var lifetimes: [Double] = []
        var trainDevices = Set<String>(), testDevices = Set<String>()
        for (n, history) in histories.enumerated() {
            let examples = history.examples(end: end)
            if isHeldOut(history.deviceID) {
                test += examples
                if !examples.isEmpty { testDevices.insert(history.deviceID) }
            } else {
                train += examples
                if !examples.isEmpty { trainDevices.insert(history.deviceID) }
                // Lifetimes: from the start of service (history start or repair) to the failure.
                let starts = ([history.start] + history.repairs).sorted()
                for f in history.failures {
                    if let s = starts.last(where: { $0 < f }) { lifetimes.append(Double(f - s) / Double(Time.hour)) }
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
        // Remaining life where it can be told: within 7 days of a recorded failure.
        let prognostic = train.filter { ($0.hoursToFailure ?? .infinity) <= 168 }
        var regression = Booster.Parameters(objective: "reg:squarederror")
        regression.rounds = 120
        guard prognostic.count >= 10 else { throw .failedPrecondition("not enough examples within 7 days of a failure to learn remaining life (\(prognostic.count))", reason: .notEnoughData) }
        let rul = try Booster.train(rows: prognostic.map(\.features), labels: prognostic.map { Float($0.hoursToFailure!) }, parameters: regression) {
            progress("training remaining-life model", 0.75 + 0.15 * $0)
        }
        let fitted = try rul.predict(prognostic.map(\.features))
        let residuals = zip(prognostic, fitted).map { $0.hoursToFailure! - $1 }.sorted()
        let interval = (residuals[Int(Double(residuals.count - 1) * 0.1)], residuals[Int(Double(residuals.count - 1) * 0.9)])

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
        let testPrognostic = test.filter { ($0.hoursToFailure ?? .infinity) <= 168 }
        if !testPrognostic.isEmpty {
            let predicted = try rul.predict(testPrognostic.map(\.features)).map { max(0, $0) }
            let errors = zip(testPrognostic, predicted).map { $0.hoursToFailure! - $1 }
            metrics.rulMAEHours = Stats.mean(errors.map(abs))
            metrics.rulRMSEHours = Stats.mean(errors.map { $0 * $0 }).squareRoot()
            let mean = metrics.meanLifetimeHours.isNaN ? 0 : metrics.meanLifetimeHours
            metrics.baselineRulMAEHours = Stats.mean(testPrognostic.map { abs($0.hoursToFailure! - max(0, mean - $0.hoursSinceRepair)) })
        }
        progress("done", 1)
        return TrainedFailureModel(
            failure24h: m24, failure7d: m7d, remainingLife: rul, metrics: metrics, rulInterval: interval,
            parameters: ["failure_24h": classifier, "failure_7d": classifier, "remaining_life": regression],
            testRows: test24.map(\.features), testLabels: testLabels)
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
