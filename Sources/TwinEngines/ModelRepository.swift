import Foundation
import Synchronization
import TwinCore

/// What is known about a model version, kept beside its files as `manifest.json`.
public struct ModelManifest: Sendable, Codable, Equatable {
    public var format = 1
    public var version: String
    public var createdAt: Nanos
    public var features: [String]
    public var trainFrom: Nanos
    public var trainTo: Nanos
    /// "model.parameter" → value.
    public var hyperparameters: [String: String]
    public var metrics: ModelMetrics
    public var horizonsHours: [Int] = [24, 168]
    /// Residual quantiles of the remaining-life model: (10 %, 50 %, 90 %) in log hours when
    /// `rulScale` is "log_hours" (whole-life models), (10 %, 90 %) in hours when it is absent
    /// (models made before: remaining life within 7 days of a failure only).
    public var rulInterval: [Double]
    public var rulScale: String? = nil
    /// The `rulScale` of whole-life models.
    public static let wholeLifeScale = "log_hours"
    /// Whole-life models: the near model's interval (the one above is the whole-life model's).
    public var rulIntervalNear: [Double]? = nil
    public var promotionNote: String = ""
    public var trigger: String = ""

    public init(
        version: String, createdAt: Nanos, features: [String], trainFrom: Nanos, trainTo: Nanos, hyperparameters: [String: String],
        metrics: ModelMetrics, rulInterval: [Double], trigger: String
    ) {
        self.version = version
        self.createdAt = createdAt
        self.features = features
        self.trainFrom = trainFrom
        self.trainTo = trainTo
        self.hyperparameters = hyperparameters
        self.metrics = metrics
        self.rulInterval = rulInterval
        self.trigger = trigger
    }
}

/// A model version ready to predict.
public final class LoadedModel: Sendable {
    public let manifest: ModelManifest
    let failure24h: Booster
    let failure7d: Booster
    let remainingLife: Booster
    /// Whole-life models' near model (remaining_life_near.json).
    let remainingLifeNear: Booster?

    init(manifest: ModelManifest, failure24h: Booster, failure7d: Booster, remainingLife: Booster, remainingLifeNear: Booster? = nil) {
        self.remainingLifeNear = remainingLifeNear
        self.manifest = manifest
        self.failure24h = failure24h
        self.failure7d = failure7d
        self.remainingLife = remainingLife
    }

    public struct Prediction: Sendable {
        public var within24h: Double
        public var within7d: Double
        /// Expected hours to failure and an 80 % interval; meaningful when a failure is likely
        /// within 7 days (the range the model learned it on).
        public var rulHours: Double
        public var rulLow: Double
        public var rulHigh: Double
        /// True when the model estimates remaining life over the whole service life; false for
        /// models that learned it only within 7 days of a failure (then it means something only
        /// when a failure within 7 days is likely).
        public var rulWholeLife: Bool = false
        /// Feature name, value, contribution to the 24 h log-odds; strongest first.
        public var contributions: [(feature: String, value: Double, contribution: Double)]

        public init(
            within24h: Double, within7d: Double, rulHours: Double, rulLow: Double, rulHigh: Double,
            contributions: [(feature: String, value: Double, contribution: Double)]
        ) {
            self.within24h = within24h
            self.within7d = within7d
            self.rulHours = rulHours
            self.rulLow = rulLow
            self.rulHigh = rulHigh
            self.contributions = contributions
        }
    }

    public func predict(_ rows: [[Float]]) throws(TwinError) -> [Prediction] {
        guard !rows.isEmpty else { return [] }
        let p24 = try failure24h.predict(rows), p7 = try failure7d.predict(rows), rul = try remainingLife.predict(rows)
        let contributions = try failure24h.contributions(rows)
        let estimates: [RemainingLifeModel.Estimate]
        if let near = remainingLifeNear {
            estimates = RemainingLifeModel.serve(
                whole: rul, near: try near.predict(rows), wholeInterval: .init(manifest.rulInterval),
                nearInterval: .init(manifest.rulIntervalNear ?? manifest.rulInterval))
        } else {
            let low = manifest.rulInterval.first ?? 0, high = manifest.rulInterval.last ?? 0
            estimates = rul.map { RemainingLifeModel.Estimate(hours: max(0, $0), low: max(0, $0 + low), high: max(0, $0 + high)) }
        }
        return rows.indices.map { r in
            let top = manifest.features.indices
                .map { (feature: manifest.features[$0], value: Double(rows[r][$0]), contribution: contributions[r][$0]) }
                .sorted { abs($0.contribution) > abs($1.contribution) }
            // The 7-day probability never falls below the 24-hour one.
            var prediction = Prediction(
                within24h: p24[r], within7d: max(p7[r], p24[r]), rulHours: estimates[r].hours, rulLow: estimates[r].low, rulHigh: estimates[r].high,
                contributions: Array(top.prefix(5)))
            prediction.rulWholeLife = remainingLifeNear != nil
            return prediction
        }
    }
}

/// Model versions under `<data>/models/<version>/` (three XGBoost JSON models and a manifest),
/// and which one is active (`models/ACTIVE`). Written atomically: a version directory is
/// complete or absent. A broken version is skipped and reported, never fatal.
public final class ModelRepository: Sendable {
    public let directory: String

    public init(directory: String) throws(TwinError) {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .unavailable("cannot create \(directory): \(error.localizedDescription)")
        }
        // A job cut off (twind stopped or killed while saving) leaves only a staging directory.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(".staging-") {
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }()
    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }()

    /// A sortable version name for a model made at `time`.
    public static func versionName(at time: Nanos, sequence: Int) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return f.string(from: Date(timeIntervalSince1970: Double(time) / 1e9)) + "-\(sequence)"
    }

    /// Saves a trained model as a new version (not active).
    public func save(_ model: TrainedFailureModel, manifest: ModelManifest) throws(TwinError) {
        let final = directory + "/" + manifest.version
        let staging = directory + "/.staging-" + manifest.version
        do {
            try? FileManager.default.removeItem(atPath: staging)
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            try model.failure24h.save(staging + "/failure_24h.json")
            try model.failure7d.save(staging + "/failure_7d.json")
            try model.remainingLife.whole.save(staging + "/remaining_life.json")
            try model.remainingLife.near.save(staging + "/remaining_life_near.json")
            try PrivateFile.replace(staging + "/manifest.json", with: Array(Self.encoder.encode(manifest)))
            if rename(staging, final) != 0 { throw TwinError.unavailable("cannot move the model into \(final): \(String(cString: strerror(errno)))") }
        } catch let error as TwinError {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw .unavailable("cannot save model \(manifest.version): \(error.localizedDescription)")
        }
    }

    /// Every readable version, newest first, and the ones that could not be read (with why).
    public func manifests() -> (models: [ModelManifest], broken: [String]) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { !$0.hasPrefix(".") && $0 != "ACTIVE" && $0 != "activations" }
        var models: [ModelManifest] = [], broken: [String] = []
        for name in names {
            do {
                let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name + "/manifest.json"))
                models.append(try Self.decoder.decode(ModelManifest.self, from: data))
            } catch {
                broken.append("\(name): \(error.localizedDescription)")
            }
        }
        return (models.sorted { $0.version > $1.version }, broken)
    }

    public func manifest(_ version: String) -> ModelManifest? {
        manifests().models.first { $0.version == version }
    }

    public func activeVersion() -> String? {
        (try? String(contentsOfFile: directory + "/ACTIVE", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines).nonEmpty
    }

    /// Versions that were active at some time, oldest first.
    public func everActive() -> [String] {
        ((try? String(contentsOfFile: directory + "/activations", encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            $0.split(separator: " ").last.map(String.init)
        }
    }

    public func activate(_ version: String, now: Nanos = Time.now()) throws(TwinError) {
        guard manifest(version) != nil else { throw .missing(.modelNotFound, type: "twin.v1.Model", name: version, "model version '\(version.prefix(64))' not found (twin models lists them)") }
        try PrivateFile.replace(directory + "/ACTIVE", with: Array((version + "\n").utf8))
        let line = "\(Time.iso(now)) \(version)\n"
        if let handle = FileHandle(forWritingAtPath: directory + "/activations") {
            handle.seekToEndOfFile()
            handle.write(Data(line.utf8))
            try? handle.close()
        } else {
            try PrivateFile.replace(directory + "/activations", with: Array(line.utf8))
        }
    }

    /// Loads a version's three models.
    public func load(_ version: String) throws(TwinError) -> LoadedModel {
        guard let manifest = manifest(version) else { throw .missing(.modelNotFound, type: "twin.v1.Model", name: version, "model version '\(version.prefix(64))' has no readable manifest") }
        let dir = directory + "/" + version
        return LoadedModel(
            manifest: manifest, failure24h: try Booster.load(dir + "/failure_24h.json"), failure7d: try Booster.load(dir + "/failure_7d.json"),
            remainingLife: try Booster.load(dir + "/remaining_life.json"),
            remainingLifeNear: manifest.rulScale == ModelManifest.wholeLifeScale ? try Booster.load(dir + "/remaining_life_near.json") : nil)
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
