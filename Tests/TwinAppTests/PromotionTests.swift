import Testing
import TwinCore
@testable import TwinApp
import TwinEngines

@Suite struct PromotionTests {
    static func metrics(auc: Double, rule: Double, mae: Double?, fleetMean: Double?, failures: Int = 12) -> ModelMetrics {
        var m = ModelMetrics()
        m.rocAUC = auc
        m.baselineRocAUC = rule
        m.rulWholeLifeMAEHours = mae
        m.baselineRulWholeLifeMAEHours = fleetMean
        m.testFailures = failures
        return m
    }

    /// A model that loses to either baseline on the held-out devices is not promoted, and the
    /// note says which and by how much; one that beats both may be.
    @Test func aModelThatLosesToABaselineIsNotPromoted() throws {
        #expect(Prognostics.lossToBaselines(Self.metrics(auc: 0.93, rule: 0.81, mae: 80, fleetMean: 100)) == nil)
        let rule = try #require(Prognostics.lossToBaselines(Self.metrics(auc: 0.70, rule: 0.81, mae: 80, fleetMean: 100)))
        #expect(rule.contains("threshold rule") && rule.contains("0.700") && rule.contains("0.810"))
        let mean = try #require(Prognostics.lossToBaselines(Self.metrics(auc: 0.93, rule: 0.81, mae: 139.1, fleetMean: 136.6)))
        #expect(mean.contains("conditional fleet mean") && mean.contains("139.1") && mean.contains("136.6"))
        #expect(Prognostics.lossToBaselines(Self.metrics(auc: .nan, rule: 0.81, mae: 80, fleetMean: 100)) != nil)
        // Within two standard errors of the per-device differences: a draw, not a loss.
        var draw = Self.metrics(auc: 0.93, rule: 0.81, mae: 139.1, fleetMean: 136.6)
        draw.rulWholeLifeVersusBaselineSE = 1.5
        #expect(Prognostics.lossToBaselines(draw) == nil)
        draw.rulWholeLifeVersusBaselineSE = 1
        #expect(Prognostics.lossToBaselines(draw)?.contains("2.0 h, two standard errors") == true)
    }

    /// With too few held-out failures to tell, the comparison is not made (a first plant of
    /// twelve machines holds out three).
    @Test func tooFewHeldOutFailuresAreNotAVerdict() {
        #expect(Prognostics.lossToBaselines(Self.metrics(auc: 0.26, rule: 0.96, mae: 66, fleetMean: 42, failures: 2)) == nil)
    }
}
