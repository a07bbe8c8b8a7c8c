import TwinCore

/// The covariance of a device's sensor residuals (their z-scores from the learned normals) in
/// normal running, and the Mahalanobis distance of a residual vector from it: sensors that
/// move together (flow, pressure and current with the load) count once, and a sensor that
/// leaves the others it usually moves with stands out even when no single z is large. Each
/// sensor's share of the distance says which ones drove it.
struct ResidualCovariance {
    let k: Int
    /// Row-major k × k second moments of the residuals (their mean is 0 by construction).
    var moments: [Double]
    var n = 0
    var since: Nanos = 0
    /// (C + λI)⁻¹, recomputed every `refreshEvery` updates.
    var precision: [Double] = []
    var updatesSinceInverse = 0

    static let ridge = 0.05
    static let refreshEvery = 256

    init(sensors: Int) {
        k = sensors
        moments = [Double](repeating: 0, count: sensors * sensors)
    }

    /// Ready once it has learned from `warmup` vectors spanning `span`.
    func ready(warmup: Int, span: Nanos, now: Nanos) -> Bool { n >= warmup && now - since >= span && !precision.isEmpty }

    /// Learns from one residual vector: a plain average at first, then with weight `alpha`.
    mutating func learn(_ z: [Double], time: Nanos, alpha: Double, warm: Bool) {
        if n == 0 { since = time }
        let a = warm ? alpha : 1 / Double(n + 1)
        for i in 0..<k {
            for j in i..<k {
                let v = moments[i * k + j] + a * (z[i] * z[j] - moments[i * k + j])
                moments[i * k + j] = v
                moments[j * k + i] = v
            }
        }
        n += 1
        updatesSinceInverse += 1
        if precision.isEmpty || updatesSinceInverse >= Self.refreshEvery {
            precision = Self.invert(moments, k: k, ridge: Self.ridge) ?? precision
            updatesSinceInverse = 0
        }
    }

    /// P z: with z, the distance and each sensor's conditional residual.
    func product(_ z: [Double]) -> [Double] {
        (0..<k).map { i in
            var pz = 0.0
            for j in 0..<k { pz += precision[i * k + j] * z[j] }
            return pz
        }
    }

    /// D² = zᵀ P z and each sensor's share z_j (P z)_j (they add up to D²; a share can be
    /// negative when a sensor's residual pulls the vector back towards normal).
    func distance(_ z: [Double], pz: [Double]? = nil) -> (d2: Double, shares: [Double]) {
        let pz = pz ?? product(z)
        let shares = (0..<k).map { z[$0] * pz[$0] }
        return (shares.reduce(0, +), shares)
    }

    /// Sensor j's residual given the others, standardized: (Pz)ⱼ/√Pⱼⱼ. Its square is how much
    /// of D² goes away when z_j is replaced by what the others predict for it.
    func conditional(pz: [Double], _ j: Int) -> Double {
        let pjj = precision[j * k + j]
        return pjj > 0 ? pz[j] / pjj.squareRoot() : 0
    }

    /// (M + ridge·I)⁻¹ by Gauss-Jordan with partial pivoting; nil when singular.
    static func invert(_ m: [Double], k: Int, ridge: Double) -> [Double]? {
        var a = m
        for i in 0..<k { a[i * k + i] += ridge }
        var inv = [Double](repeating: 0, count: k * k)
        for i in 0..<k { inv[i * k + i] = 1 }
        for col in 0..<k {
            var pivot = col
            for r in col + 1..<k where abs(a[r * k + col]) > abs(a[pivot * k + col]) { pivot = r }
            guard abs(a[pivot * k + col]) > 1e-12 else { return nil }
            if pivot != col {
                for c in 0..<k {
                    a.swapAt(pivot * k + c, col * k + c)
                    inv.swapAt(pivot * k + c, col * k + c)
                }
            }
            let p = a[col * k + col]
            for c in 0..<k {
                a[col * k + c] /= p
                inv[col * k + c] /= p
            }
            for r in 0..<k where r != col {
                let f = a[r * k + col]
                guard f != 0 else { continue }
                for c in 0..<k {
                    a[r * k + c] -= f * a[col * k + c]
                    inv[r * k + c] -= f * inv[col * k + c]
                }
            }
        }
        return inv.allSatisfy(\.isFinite) ? inv : nil
    }
}
