import Crypto
import Foundation
import GRDB
import TwinCore

extension UsersDatabase {
    static func registerAccessMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v3: api keys, session cut-offs") { db in
            try db.execute(sql: """
                CREATE TABLE api_keys (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    role TEXT NOT NULL,
                    secret_hash BLOB NOT NULL UNIQUE,
                    created_at INTEGER NOT NULL,
                    created_by TEXT NOT NULL,
                    last_used_at INTEGER,
                    revoked_at INTEGER
                );
                ALTER TABLE users ADD COLUMN sessions_not_before INTEGER;
                """)
        }
    }

    static func registerScopeMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4: api key scopes") { db in
            try db.execute(sql: "ALTER TABLE api_keys ADD COLUMN scope TEXT")
        }
    }

    /// The hash an API key secret is stored and looked up by.
    public static func apiKeyHash(_ secret: String) -> Data { tokenHash(secret) }

    public func createApiKey(
        id: String, name: String, role: User.Role, secret: String, createdBy: String, scope: ApiKeyScope = .init(), now: Nanos = Time.now(),
        audit: AuditEntry? = nil
    ) throws(TwinError) -> ApiKey {
        do {
            let scopeText = scope.isEverything ? nil : String(decoding: try JSONEncoder().encode(scope), as: UTF8.self)
            try pool.write { db in
                try db.execute(
                    sql: "INSERT INTO api_keys (id, name, role, secret_hash, created_at, created_by, scope) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    arguments: [id, name, role.rawValue, Self.apiKeyHash(secret), now, createdBy, scopeText])
                try RowBinding.apiKeys.bind(db, id: id, sealer: sealer)
                try insertAudit(db, audit)
            }
        } catch {
            throw .unavailable("cannot store the API key: \(error)")
        }
        return ApiKey(id: id, name: name, role: role, createdAt: now, createdBy: createdBy, scope: scope)
    }

    /// All keys, revoked ones included, with the hash of each secret.
    public func apiKeys() throws(TwinError) -> [(key: ApiKey, secretHash: Data)] {
        do {
            return try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM api_keys ORDER BY created_at, id").compactMap { row in
                    // A key whose row was altered outside twind (role raised, revocation undone,
                    // scope widened) is refused; twind verify names it.
                    guard RowBinding.apiKeys.check(row, sealer: sealer), let role = User.Role(rawValue: row["role"]) else { return nil }
                    // A scope that does not read back is no scope at all: the key is refused
                    // rather than widened to the whole plant.
                    let scopeText: String? = row["scope"]
                    var scope = ApiKeyScope()
                    if let scopeText {
                        guard let parsed = try? JSONDecoder().decode(ApiKeyScope.self, from: Data(scopeText.utf8)) else { return nil }
                        scope = parsed
                    }
                    let key = ApiKey(
                        id: row["id"], name: row["name"], role: role, createdAt: row["created_at"], createdBy: row["created_by"],
                        lastUsedAt: row["last_used_at"], revokedAt: row["revoked_at"], scope: scope)
                    return (key, row["secret_hash"] as Data)
                }
            }
        } catch {
            throw .unavailable("cannot read API keys: \(error)")
        }
    }

    /// Marks a key revoked; false if there is no such key. Revoking twice is not an error.
    public func revokeApiKey(id: String, now: Nanos = Time.now(), audit: AuditEntry? = nil) throws(TwinError) -> Bool {
        do {
            return try pool.write { db in
                try db.execute(sql: "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", arguments: [now, id])
                guard db.changesCount > 0 else { return false }
                try RowBinding.apiKeys.bind(db, id: id, sealer: sealer)
                try insertAudit(db, audit)
                return true
            }
        } catch {
            throw .unavailable("cannot revoke the API key: \(error)")
        }
    }

    public func touchApiKey(id: String, at time: Nanos) throws(TwinError) {
        do {
            try pool.write { db in try db.execute(sql: "UPDATE api_keys SET last_used_at = ? WHERE id = ?", arguments: [time, id]) }
        } catch {
            throw .unavailable("cannot record an API key's use: \(error)")
        }
    }

    // MARK: Session cut-offs (kept across restarts)

    /// Tokens of this user issued at or before `time` are refused from now on.
    public func endSessions(userID: Int64, before time: Nanos) throws(TwinError) {
        do {
            try pool.write { db in
                try db.execute(sql: "UPDATE users SET sessions_not_before = ? WHERE id = ?", arguments: [time, userID])
                try RowBinding.users.bind(db, id: userID, sealer: sealer)
            }
        } catch {
            throw .unavailable("cannot end the user's sessions: \(error)")
        }
    }

    /// Per username, the time before which its tokens are refused.
    public func sessionCutoffs() throws(TwinError) -> [String: Nanos] {
        do {
            return try pool.read { db in
                var result: [String: Nanos] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT \(RowBinding.users.selection) FROM users WHERE sessions_not_before IS NOT NULL") {
                    guard RowBinding.users.check(row, sealer: sealer) else {
                        throw TwinError.dataLoss("the session cut-off of user '\(row["username"] as String)' was altered outside twind (row MAC does not match); run twind verify")
                    }
                    result[row["username"]] = row["sessions_not_before"]
                }
                return result
            }
        } catch let error as TwinError {
            throw error
        } catch {
            throw .unavailable("cannot read session cut-offs: \(error)")
        }
    }
}
