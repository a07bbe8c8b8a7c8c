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
