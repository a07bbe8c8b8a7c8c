import CXGBoost
import Foundation
import Synchronization
import TwinCore

/// A gradient-boosted tree model through XGBoost's C API (Debian libxgboost). Models are saved
/// as XGBoost JSON, which Python's xgboost loads with identical predictions.
public final class Booster: @unchecked Sendable {
    /// XGBoost handles are not safe to use from two threads at once.
    private let lock = Mutex(())
    private let handle: BoosterHandle

    public struct Parameters: Sendable, Equatable, Codable {
        public var objective: String
        public var rounds = 120
        public var maxDepth = 5
        public var eta = 0.1
        public var subsample = 0.9
        public var minChildWeight = 2.0
        public var seed = 7

        public init(objective: String) { self.objective = objective }

        var pairs: [(String, String)] {
            [("objective", objective), ("max_depth", "\(maxDepth)"), ("eta", "\(eta)"), ("subsample", "\(subsample)"),
             ("min_child_weight", "\(minChildWeight)"), ("tree_method", "hist"), ("nthread", "1"), ("seed", "\(seed)"),
             ("verbosity", "0")]
        }

        public var description: [String: String] {
            Dictionary(uniqueKeysWithValues: pairs.filter { $0.0 != "verbosity" } + [("rounds", "\(rounds)")])
        }
    }

    static let quiet: Void = { _ = XGBSetGlobalConfig("{\"verbosity\": 0}") }()

    static func check(_ code: Int32, _ what: String) throws(TwinError) {
        if code != 0 { throw .internalError("XGBoost: \(what) failed: \(String(cString: XGBGetLastError()))") }
    }

    private init(handle: BoosterHandle) {
        self.handle = handle
    }

    deinit { XGBoosterFree(handle) }

    /// A dense matrix of rows × features (NaN = missing).
    final class Matrix {
        let handle: DMatrixHandle
        init(_ rows: [[Float]], labels: [Float]? = nil) throws(TwinError) {
            let columns = rows.first?.count ?? 0
            var flat: [Float] = []
            flat.reserveCapacity(rows.count * columns)
            for row in rows { flat.append(contentsOf: row) }
            var out: DMatrixHandle?
            try Booster.check(XGDMatrixCreateFromMat(flat, bst_ulong(rows.count), bst_ulong(columns), .nan, &out), "building a matrix")
            handle = out!
            if let labels {
                try Booster.check(XGDMatrixSetFloatInfo(handle, "label", labels, bst_ulong(labels.count)), "setting labels")
            }
        }
        deinit { XGDMatrixFree(handle) }
    }

    /// Trains a model; `progress` is called after each round with the fraction done.
    public static func train(rows: [[Float]], labels: [Float], parameters: Parameters, progress: (Double) -> Void = { _ in }) throws(TwinError) -> Booster {
        _ = quiet
        guard !rows.isEmpty else { throw .failedPrecondition("no training examples", reason: .notEnoughData) }
        let matrix = try Matrix(rows, labels: labels)
        var out: BoosterHandle?
        var matrices: [DMatrixHandle?] = [matrix.handle]
        try check(XGBoosterCreate(&matrices, 1, &out), "creating a booster")
        let booster = Booster(handle: out!)
        for (name, value) in parameters.pairs { try check(XGBoosterSetParam(out, name, value), "setting \(name)") }
        for round in 0..<parameters.rounds {
            try check(XGBoosterUpdateOneIter(out, Int32(round), matrix.handle), "training round \(round)")
            progress(Double(round + 1) / Double(parameters.rounds))
        }
        return booster
    }

    /// Loads a model saved with `save`.
    public static func load(_ path: String) throws(TwinError) -> Booster {
        _ = quiet
        var out: BoosterHandle?
        try check(XGBoosterCreate(nil, 0, &out), "creating a booster")
        let booster = Booster(handle: out!)
        try check(XGBoosterLoadModel(out, path), "loading \(path)")
        return booster
    }

    public func save(_ path: String) throws(TwinError) {
        try lock.withLock { _ throws(TwinError) in try Self.check(XGBoosterSaveModel(handle, path), "saving \(path)") }
    }

    /// One prediction per row (probability for binary:logistic).
    public func predict(_ rows: [[Float]]) throws(TwinError) -> [Double] {
        guard !rows.isEmpty else { return [] }
        return try run(rows, type: 0).map(Double.init)
    }

    /// Per row, each feature's contribution to the raw (margin) output, then the bias (SHAP values).
    public func contributions(_ rows: [[Float]]) throws(TwinError) -> [[Double]] {
        guard let width = rows.first?.count else { return [] }
        let flat = try run(rows, type: 2)
        return (0..<rows.count).map { r in flat[(r * (width + 1))..<((r + 1) * (width + 1))].map(Double.init) }
    }

    private func run(_ rows: [[Float]], type: Int) throws(TwinError) -> [Float] {
        let matrix = try Matrix(rows)
        return try lock.withLock { _ throws(TwinError) -> [Float] in
            var shape: UnsafePointer<bst_ulong>?
            var dims: bst_ulong = 0
            var result: UnsafePointer<Float>?
            let config = "{\"type\": \(type), \"training\": false, \"iteration_begin\": 0, \"iteration_end\": 0, \"strict_shape\": false}"
            try Self.check(XGBoosterPredictFromDMatrix(handle, matrix.handle, config, &shape, &dims, &result), "predicting")
            var count = 1
            for d in 0..<Int(dims) { count *= Int(shape![d]) }
            return Array(UnsafeBufferPointer(start: result, count: count))
        }
    }
}
