import Foundation
import GRDB
import Testing
import TwinCore
@testable import TwinStore

/// Rows that grant access or set limits are bound by a keyed MAC: altering one outside twind (a
/// backup edited with sqlite3, say) makes twind refuse it, `verify` name it and `restore` refuse
/// the backup.
@Suite struct RowBindingTests {
    struct Store {
        let root: String
        var data: String { root + "/data" }
        var backup: String { root + "/backup" }
        let keys: KeyRing

        init() throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("twin-rowmac-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: root + "/data", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            keys = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: root + "/data")
            let health = try HealthDatabase(path: root + "/data/health_data.db", keys: keys, durability: .normal)
            try health.saveDevice(Device(id: "pump-1", type: "pump", sensors: [
                SensorSpec(name: "temperature", unit: "°C", nominalMin: 40, nominalMax: 70, alarmLow: 20, alarmHigh: 90),
            ]))
            try health.shutDown()
            let users = try UsersDatabase(path: root + "/data/users.db", keys: keys, durability: .normal)
            let mallory = try users.createUser(username: "mallory", role: .viewer, passwordHash: "h1")
            try users.endSessions(userID: mallory.id, before: 5)
            _ = try users.createApiKey(id: "k1", name: "line 1", role: .gateway, secret: "s1", createdBy: "admin", scope: ApiKeyScope(devices: ["press-*"]))
            _ = try users.revokeApiKey(id: "k1")
            try users.shutDown()
        }

        func users() throws -> UsersDatabase { try UsersDatabase(path: data + "/users.db", keys: keys, durability: .normal) }
        func health() throws -> HealthDatabase { try HealthDatabase(path: data + "/health_data.db", keys: keys, durability: .normal) }

        /// Changes the file as sqlite3 would: no twind code, no keys.
        func tamper(_ path: String, _ sql: String) throws {
            let queue = try DatabaseQueue(path: path)
            try queue.write { try $0.execute(sql: sql) }
            try queue.close()
        }

        func remove() { try? FileManager.default.removeItem(atPath: root) }
    }

    @Test func rowsWrittenByTwindReadBackAfterEveryKindOfChange() throws {
        let store = try Store()
        defer { store.remove() }
        let users = try store.users()
        let mallory = try #require(try users.user(named: "mallory"))
        _ = try users.updateUser(mallory, role: .operator, disabled: true, email: "m@example.com")
        try users.setPasswordHash(userID: mallory.id, "h2")
        try users.recordLogin(userID: mallory.id, at: 10, newHash: "h3")
        #expect(try users.user(named: "mallory")?.role == .operator)
        #expect(try users.sessionCutoffs() == ["mallory": 5])
        #expect(try users.apiKeys().map(\.key.id) == ["k1"])
        #expect(try users.verify().problems.isEmpty)
        try users.shutDown()
        let health = try store.health()
        #expect(try health.savedDevices().map(\.id) == ["pump-1"])
        try health.shutDown()
        #expect(try StoreAdmin.verify(dataDirectory: store.data, keys: store.keys).problems.isEmpty)
    }

    @Test(arguments: [
        "UPDATE users SET role = 'admin'",
        "UPDATE users SET password_hash = 'attacker-hash'",
        "UPDATE users SET disabled = 0, role = 'viewer' WHERE 0",  // no change: control
        "UPDATE users SET sessions_not_before = NULL",
        "UPDATE users SET mac = NULL",
    ])
    func aUserAlteredOutsideTwindIsRefused(sql: String) throws {
        let store = try Store()
        defer { store.remove() }
        try store.tamper(store.data + "/users.db", sql)
        let users = try store.users()
        defer { users.close() }
        let changed = sql.hasSuffix("WHERE 0") == false
        if changed {
            let error = try #require(throws: TwinError.self) { try users.user(named: "mallory") }
            #expect(error.code == .dataLoss)
            #expect(error.message.contains("mallory") && error.message.contains("altered outside twind"))
            #expect(try users.verify().problems.contains { $0.contains("user 1") })
        } else {
            #expect(try users.user(named: "mallory")?.role == .viewer)
            #expect(try users.verify().problems.isEmpty)
        }
    }

    @Test(arguments: ["UPDATE api_keys SET revoked_at = NULL", "UPDATE api_keys SET role = 'admin'", "UPDATE api_keys SET scope = NULL"])
    func anAPIKeyAlteredOutsideTwindIsRefused(sql: String) throws {
        let store = try Store()
        defer { store.remove() }
        try store.tamper(store.data + "/users.db", sql)
        let users = try store.users()
        defer { users.close() }
        #expect(try users.apiKeys().isEmpty, "the altered key is not usable")
        #expect(try users.verify().problems.contains { $0.contains("API key k1") })
    }

    @Test func aDeviceWhoseAlarmLimitsWereMovedIsRefused() throws {
        let store = try Store()
        defer { store.remove() }
        try store.tamper(store.data + "/health_data.db", "UPDATE devices SET definition = replace(definition, '90', '900')")
        let health = try store.health()
        defer { health.close() }
        let error = try #require(throws: TwinError.self) { try health.savedDevices() }
        #expect(error.code == .dataLoss && error.message.contains("pump-1"))
        let report = try StoreAdmin.verify(dataDirectory: store.data, keys: store.keys)
        #expect(report.problems.contains { $0.contains("device pump-1") })
    }

    @Test func aMACCopiedFromAnotherRowDoesNotFit() throws {
        let store = try Store()
        defer { store.remove() }
        let users = try store.users()
        _ = try users.createUser(username: "root2", role: .admin, passwordHash: "admin-hash")
        try users.shutDown()
        // Give mallory admin's role and hash, and admin's MAC.
        try store.tamper(
            store.data + "/users.db",
            "UPDATE users SET role = 'admin', password_hash = 'admin-hash', mac = (SELECT mac FROM users WHERE username = 'root2') WHERE username = 'mallory'")
        let reopened = try store.users()
        defer { reopened.close() }
        #expect(throws: TwinError.self) { try reopened.user(named: "mallory") }
        #expect(try reopened.user(named: "root2")?.role == .admin)
    }

    @Test func restoreRefusesATamperedBackupAndChangesNothing() throws {
        let store = try Store()
        defer { store.remove() }
        try StoreAdmin.backup(dataDirectory: store.data, to: store.backup)
        try store.tamper(store.backup + "/users.db", "UPDATE users SET role = 'admin' WHERE username = 'mallory'")
        let error = try #require(throws: TwinError.self) { try StoreAdmin.restore(dataDirectory: store.data, from: store.backup, keys: store.keys) }
        #expect(error.code == .dataLoss)
        #expect(error.message.contains("users.db") && error.message.contains("user 1"))
        #expect(!FileManager.default.fileExists(atPath: store.data + "/users.db.restoring"))
        let users = try store.users()
        defer { users.close() }
        #expect(try users.user(named: "mallory")?.role == .viewer)
    }

    @Test func aBackupFromBeforeRowMACsNeedsConsentAndIsThenBound() throws {
        let store = try Store()
        defer { store.remove() }
        try StoreAdmin.backup(dataDirectory: store.data, to: store.backup)
        // What an older twind's backup looks like: no MAC migration recorded, no MACs.
        try store.tamper(store.backup + "/users.db", """
            DELETE FROM grdb_migrations WHERE identifier = '\(UsersDatabase.rowBindingMigration)';
            ALTER TABLE users DROP COLUMN mac; ALTER TABLE api_keys DROP COLUMN mac;
            """)
        let error = try #require(throws: TwinError.self) { try StoreAdmin.restore(dataDirectory: store.data, from: store.backup, keys: store.keys) }
        #expect(error.code == .failedPrecondition && error.message.contains("--accept-unbound-rows"))
        try StoreAdmin.restore(dataDirectory: store.data, from: store.backup, keys: store.keys, acceptUnbound: true)
        #expect(try StoreAdmin.verify(dataDirectory: store.data, keys: store.keys).problems.isEmpty)
    }
}
