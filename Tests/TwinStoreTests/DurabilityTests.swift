import Foundation
import Testing
import TwinCore
@testable import TwinStore

/// `--durability` is what the committing connection really runs with, and a clean close leaves
/// no WAL file behind.
@Suite struct DurabilityTests {
    func directory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twin-durability-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return dir
    }

    @Test(arguments: [(Durability.full, 2), (.normal, 1)])
    func theSynchronousPragmaIsInEffect(durability: Durability, expected: Int) throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keys = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: dir)
        let health = try HealthDatabase(path: dir + "/health_data.db", keys: keys, durability: durability)
        let users = try UsersDatabase(path: dir + "/users.db", keys: keys, durability: durability)
        #expect(try health.synchronousSetting() == expected)
        #expect(try users.synchronousSetting() == expected)
        try health.shutDown()
        try users.shutDown()
        for name in ["health_data.db", "users.db"] {
            #expect(FileManager.default.fileExists(atPath: "\(dir)/\(name)"))
            #expect(!FileManager.default.fileExists(atPath: "\(dir)/\(name)-wal"), "\(name)-wal left behind")
        }
    }
}
