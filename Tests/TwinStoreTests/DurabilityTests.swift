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

/// users.db does not grow without bound: old audit entries and long-expired refresh tokens go.
@Suite struct UsersRetentionTests {
    @Test func oldAuditEntriesAndExpiredTokensArePruned() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twin-retention-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keys = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: dir)
        let users = try UsersDatabase(path: dir + "/users.db", keys: keys, durability: .normal)
        defer { users.close() }
        let now: Nanos = 1_900_000_000 * Time.second
        for age in [400, 366, 10, 0] {
            try users.audit(.init(time: now - Nanos(age) * Time.day, kind: "test", actor: "a", peer: "p", detail: "\(age)"))
        }
        let user = try users.createUser(username: "u", role: .viewer, passwordHash: "x")
        try users.storeRefreshToken("old", family: "f1", userID: user.id, expiresAt: now - 8 * Time.day)
        try users.storeRefreshToken("recent", family: "f2", userID: user.id, expiresAt: now - Time.day)
        try users.storeRefreshToken("live", family: "f3", userID: user.id, expiresAt: now + Time.day)
        let pruned = try users.prune(now: now, auditOlderThan: 365 * Time.day, tokensExpiredFor: 7 * Time.day)
        #expect(pruned.audit == 2 && pruned.tokens == 1)
        #expect(try users.auditEntries(limit: 10).map(\.detail) == ["0", "10"])
        // A recently expired token is still known (its reuse is still recognised).
        #expect(try users.useRefreshToken("recent", now: now) == .invalid)
        #expect(try users.useRefreshToken("live", now: now) == .valid(userID: user.id, family: "f3"))
        #expect(try users.useRefreshToken("live", now: now) == .reused(userID: user.id, family: "f3"))
    }
}

/// `twind restore` is all or nothing across a crash: a restore cut off after it began swapping
/// files is finished by the next start, and nothing is ever left without its databases.
@Suite struct RestoreTests {
    @Test func aRestoreCutOffHalfWayIsFinishedAtTheNextStart() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("twin-restore-\(UUID().uuidString)").path
        let data = root + "/data", backup = root + "/backup"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let keys = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: data)
        func devices() throws -> [String] {
            let db = try HealthDatabase(path: data + "/health_data.db", keys: keys, durability: .normal)
            defer { try? db.shutDown() }
            return try db.savedDevices().map(\.id).sorted()
        }
        func users() throws -> [String] {
            let db = try UsersDatabase(path: data + "/users.db", keys: keys, durability: .normal)
            defer { try? db.shutDown() }
            return try db.allUsers().map(\.username).sorted()
        }
        do {
            let health = try HealthDatabase(path: data + "/health_data.db", keys: keys, durability: .normal)
            try health.saveDevice(Device(id: "in-backup", type: "pump", sensors: []))
            try health.shutDown()
            let u = try UsersDatabase(path: data + "/users.db", keys: keys, durability: .normal)
            _ = try u.createUser(username: "in-backup", role: .viewer, passwordHash: "x")
            try u.shutDown()
        }
        try StoreAdmin.backup(dataDirectory: data, to: backup)
        do {
            let health = try HealthDatabase(path: data + "/health_data.db", keys: keys, durability: .normal)
            try health.saveDevice(Device(id: "after-backup", type: "pump", sensors: []))
            try health.shutDown()
            let u = try UsersDatabase(path: data + "/users.db", keys: keys, durability: .normal)
            _ = try u.createUser(username: "after-backup", role: .viewer, passwordHash: "x")
            try u.shutDown()
        }
        #expect(try devices() == ["after-backup", "in-backup"])

        // Cut off after the first database moved: the journal is there, one file swapped.
        #expect(throws: TwinError.self) { try StoreAdmin.restore(dataDirectory: data, from: backup, keys: keys, crashAfterMoves: 1) }
        #expect(FileManager.default.fileExists(atPath: data + "/restore.journal"))
        // The next start finishes it before opening anything.
        let finished = try StoreAdmin.completeInterruptedRestore(dataDirectory: data)
        #expect(finished.count == 1)
        #expect(!FileManager.default.fileExists(atPath: data + "/restore.journal"))
        #expect(try devices() == ["in-backup"])
        #expect(try users() == ["in-backup"])
        // The replaced files are kept beside.
        let kept = try FileManager.default.contentsOfDirectory(atPath: data).filter { $0.contains(".before-restore-") && !$0.contains("-wal") && !$0.contains("-shm") }
        #expect(kept.count == 2)

        // A restore that fails its checks (wrong key) changes nothing.
        let other = KeyRing(keys: [MasterKey.generate()], source: "test", generated: false)
        #expect(throws: TwinError.self) { try StoreAdmin.restore(dataDirectory: data, from: backup, keys: other) }
        #expect(try devices() == ["in-backup"])
        #expect(!FileManager.default.fileExists(atPath: data + "/health_data.db.restoring"))
    }
}
