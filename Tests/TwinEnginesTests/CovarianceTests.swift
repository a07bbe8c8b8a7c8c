import Foundation
import Testing
import TwinCore
@testable import TwinEngines

@Suite struct CovarianceTests {
    @Test func theInverseAndTheSharesAddUp() throws {
        let m: [Double] = [2, 0.9, 0.1, 0.9, 1, 0.2, 0.1, 0.2, 1.5]
        let inv = try #require(ResidualCovariance.invert(m, k: 3, ridge: 0))
        for i in 0..<3 {
            for j in 0..<3 {
                let product = (0..<3).reduce(0.0) { $0 + m[i * 3 + $1] * inv[$1 * 3 + j] }
                #expect(abs(product - (i == j ? 1 : 0)) < 1e-9)
            }
        }
        var c = ResidualCovariance(sensors: 3)
        c.moments = m
        c.precision = inv
        let (d2, shares) = c.distance([1, -2, 0.5])
        #expect(abs(shares.reduce(0, +) - d2) < 1e-9 && d2 > 0)
        #expect(ResidualCovariance.invert([1, 1, 1, 1], k: 2, ridge: 0) == nil)
    }

    /// Two sensors that follow the load and one that does not. After two and a half days of
    /// normal running: a load higher than any seen moves the two together, which the old
    /// RMS-of-z detector took for an anomaly and the covariance-aware one does not; one of the
    /// pair leaving the other (a sensor drifting, a part failing) is an anomaly even though no
    /// single z is large, and it names that sensor.
    @Test func sensorsMovingTogetherAreNormalAndOneLeavingItsPartnerIsNot() {
        let specs = [
            SensorSpec(name: "flow", unit: "", nominalMin: 0, nominalMax: 200),
            SensorSpec(name: "current", unit: "", nominalMin: 0, nominalMax: 100),
            SensorSpec(name: "bearing_temp", unit: "", nominalMin: 0, nominalMax: 100),
        ]
        let engine = HealthEngine()
        engine.bind(device: 0, sensors: specs)
        var rng = SplitMix64(seed: 9)
        let start: Nanos = 1_790_000_000 * Time.second
        var t = start
        func tick(load: Double, drift: Double = 0) {
            t += Time.minute
            let samples = [
                Sample(device: 0, sensor: 0, time: t, value: 100 + 80 * load + 0.5 * rng.normal() + drift),
                Sample(device: 0, sensor: 1, time: t, value: 20 + 60 * load + 0.4 * rng.normal()),
                Sample(device: 0, sensor: 2, time: t, value: 50 + 2 * rng.normal()),
            ]
            engine.observe(samples, modes: [0: .running])
        }
        func daily(_ t: Nanos) -> Double { 0.5 + 0.2 * sin(2 * Double.pi * Double(t % Time.day) / Double(Time.day)) }
        while t < start + 60 * Time.hour { tick(load: daily(t)) }
        func anomalies(since: Nanos) -> [HealthEngine.Anomaly] {
            engine.anomalies(device: 0, from: since, to: .max).filter { $0.detector.hasPrefix("multivariate") }
        }
        // A load beyond any seen: flow and current far up together.
        let highLoad = t
        for _ in 0..<120 { tick(load: 0.95) }
        #expect(anomalies(since: highLoad).isEmpty, "\(anomalies(since: highLoad).map(\.description))")
        for _ in 0..<120 { tick(load: daily(t)) }
        // Flow leaves current (which follows the load as before) by about two of its spreads.
        let apart = t
        for _ in 0..<120 { tick(load: daily(t), drift: 2 * 0.2 * 80 * 0.64 * 1.25) }
        let found = anomalies(since: apart)
        #expect(found.count == 1 && found.first?.detector == "multivariate_mahalanobis", "\(found)")
        #expect(found.first?.sensors.first == "flow", "\(found.map(\.sensors))")
        #expect(found.first?.description.contains("driven by flow") == true, "\(found.map(\.description))")
    }
}
