import Foundation
import Testing
import TwinCore
import TwinEngines

@Suite struct ModelRepositoryTests {
    /// A training job cut off while saving leaves only its staging directory; the next start
    /// removes it and lists no version from it.
    @Test func aCutOffSaveLeavesNothingBehind() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("models-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/.staging-20261202-050000-1", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/.staging-20261202-050000-1/failure_24h.json", contents: Data("{".utf8))
        let repository = try ModelRepository(directory: dir)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        #expect(repository.manifests().models.isEmpty && repository.activeVersion() == nil)
    }
}

@Suite struct ModelManifestTests {
    /// A manifest written before remaining life covered the whole life (no rul_scale, no
    /// whole-life metrics) still reads: such a model is served as before.
    @Test func aManifestFromBeforeWholeLifeRemainingLifeStillReads() throws {
        let json = """
        {"createdAt": 1, "features": ["a"], "format": 1, "horizonsHours": [24, 168], "hyperparameters": {},
         "metrics": {"baselineRocAUC": 0.7, "baselineRulMAEHours": 50, "meanLifetimeHours": 300, "precision": 0.5,
                     "recall": 0.5, "rocAUC": 0.9, "rocAUC7d": 0.7, "rulMAEHours": 30, "rulRMSEHours": 40, "testDevices": 3,
                     "testExamples": 10, "testFailures": 2, "threshold": 0.5, "trainDevices": 9, "trainExamples": 30, "trainFailures": 6},
         "promotionNote": "", "rulInterval": [-20, 30], "trainFrom": 0, "trainTo": 1, "trigger": "", "version": "v1"}
        """
        let manifest = try JSONDecoder().decode(ModelManifest.self, from: Data(json.utf8))
        #expect(manifest.rulScale == nil && manifest.rulIntervalNear == nil)
        #expect(manifest.metrics.rulWholeLifeMAEHours == nil && manifest.metrics.rulIntervalCoverage == nil)
        #expect(manifest.metrics.rocAUC == 0.9)
    }
}
