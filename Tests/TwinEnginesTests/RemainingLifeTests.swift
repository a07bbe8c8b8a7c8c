import Foundation
import Testing
import TwinCore
@testable import TwinEngines

@Suite struct RemainingLifeTests {
    /// Examples whose remaining life is exp(x + noise) hours, x being the first feature: a 0.3
    /// spread in log hours around what the features tell.
    static func examples(devices: ClosedRange<Int>, seed: UInt64) -> [FailureExample] {
        var rng = SplitMix64(seed: seed)
        var result: [FailureExample] = []
        for d in devices {
            for h in 0..<60 {
                let x = rng.uniform(1, 6.5)
                var features = [Float](repeating: 0, count: FailureFeatures.names.count)
                features[0] = Float(x)
                features[10] = .nan
                let hours = expm1(x + 0.3 * rng.normal())
                result.append(FailureExample(
                    deviceID: "d-\(d)", time: Nanos(h) * Time.hour, features: features, lead: nil, failsWithin24h: hours <= 24,
                    failsWithin7d: hours <= 168, hoursToFailure: hours, hoursSinceRepair: Double(h)))
            }
        }
        return result
    }

    /// The 80 % interval, calibrated on devices the fitted model never saw, holds about 80 % of
    /// the truths of devices no part of training saw, near a failure and far from it.
    @Test func theIntervalIsCalibratedOnUnseenDevices() throws {
        let model = try RemainingLifeModel.train(Self.examples(devices: 0...99, seed: 1), calibrates: FailureModel.calibrates)
        let unseen = Self.examples(devices: 1000...1099, seed: 2)
        let estimates = try model.predict(unseen.map(\.features))
        var inside = 0, nearInside = 0, near = 0
        for (e, estimate) in zip(unseen, estimates) {
            #expect(estimate.low <= estimate.hours && estimate.hours <= estimate.high)
            let hit = (estimate.low...estimate.high).contains(e.hoursToFailure!)
            if hit { inside += 1 }
            if e.hoursToFailure! <= 168 { near += 1; if hit { nearInside += 1 } }
        }
        let coverage = Double(inside) / Double(unseen.count), nearCoverage = Double(nearInside) / Double(near)
        #expect((0.72...0.88).contains(coverage), "coverage \(coverage)")
        #expect((0.70...0.90).contains(nearCoverage), "coverage within 7 days \(nearCoverage)")
        // The estimate follows what the features tell (the median truth at x is e^x − 1).
        let at = try model.predict([[Float(3)] + [Float](repeating: 0, count: FailureFeatures.names.count - 1)])[0]
        #expect(abs(log1p(at.hours) - 3) < 0.3, "\(at)")
    }

    /// The near model takes over when the whole-life model says the failure is within 7 days.
    @Test func theNearModelServesWithinSevenDays() {
        let far = log1p(500.0), close = log1p(100.0), nearSays = log1p(60.0)
        let served = RemainingLifeModel.serve(
            whole: [far, close], near: [nearSays, nearSays], wholeInterval: .init(low: -1, middle: 0, high: 1),
            nearInterval: .init(low: -0.3, middle: -0.1, high: 0.2))
        #expect(abs(served[0].hours - 500) < 1e-6 && abs(served[0].high - expm1(far + 1)) < 1e-6)
        // The calibration's median corrects the estimate; the interval holds it.
        #expect(abs(served[1].hours - expm1(nearSays - 0.1)) < 1e-6 && abs(served[1].low - expm1(nearSays - 0.3)) < 1e-6)
        #expect(served.allSatisfy { $0.low <= $0.hours && $0.hours <= $0.high })
    }

    /// The conditional fleet mean: how much longer the machines that reached an age lived.
    @Test func theConditionalFleetMean() {
        let baseline = LifetimeBaseline(lifetimes: [100, 200, 300], unknownAgeRemaining: [50, 70])
        #expect(baseline.remaining(age: 0) == 200)
        #expect(baseline.remaining(age: 150) == 250 - 150)
        #expect(baseline.remaining(age: 400) == 0)
        #expect(baseline.remaining(age: nil) == 60)
        #expect(baseline.remaining(age: .nan) == 60)
    }

    /// A sensor registered without a nominal range (an import, a gateway) gives no
    /// "beyond nominal" figure, and the rest of its features are what a ranged sensor's are;
    /// before, a zero-width range made that feature 4.8 × 10⁷ and the model's top reason.
    @Test func featuresDoNotDependOnAMissingRange() throws {
        let hours = 80
        let series: [Double] = (0..<hours).map { (h: Int) -> Double in
            let daily: Double = 5 * sin(Double(h) * Double.pi / 12)
            let rise: Double = h >= 70 ? Double(h - 69) * 4 : 0
            return 50 + daily + rise
        }
        func features(_ spec: SensorSpec) throws -> [Float] {
            let reference = try #require(FailureFeatures.reference(hourly: [Array(series[0..<48])], specs: [spec], firstHourOfDay: 0))
            return FailureFeatures.compute(
                recent: [Array(series.suffix(FailureFeatures.lookback))], reference: reference, specs: [spec],
                lastHourOfDay: (hours - 1) % 24, hoursSinceRepair: .nan).features
        }
        let ranged = try features(SensorSpec(name: "t", unit: "°C", nominalMin: 30, nominalMax: 70))
        let beyond = FailureFeatures.names.firstIndex(of: "max_beyond_nominal")!
        #expect(ranged[beyond] > 0)
        for (min, max) in [(0.0, 0.0), (70.0, 30.0), (0.0, Double.infinity), (Double.nan, 1)] {
            let unranged = try features(SensorSpec(name: "t", unit: "°C", nominalMin: min, nominalMax: max))
            #expect(unranged[beyond].isNaN, "range \(min)…\(max)")
            for i in unranged.indices where i != beyond {
                #expect(unranged[i] == ranged[i] || (unranged[i].isNaN && ranged[i].isNaN), "\(FailureFeatures.names[i]): \(unranged[i]) vs \(ranged[i]) for \(min)…\(max)")
            }
        }
        #expect(FailureFeatures.baselineScore(try features(SensorSpec(name: "t", unit: "", nominalMin: 0, nominalMax: 0))) == 0)
    }
}
