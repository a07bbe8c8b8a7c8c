import Crypto
import Foundation
import GRDB
import TwinCore

/// A key a program (a gateway) sends instead of logging in. Only a SHA-256 hash of its secret is
/// kept: the secret is 256 random bits, so a slow hash would add nothing but cost per call.
public struct ApiKey: Sendable, Equatable {
    public var id: String
    public var name: String
    public var role: User.Role
    public var createdAt: Nanos
    public var createdBy: String
    public var lastUsedAt: Nanos?
    public var revokedAt: Nanos?
}

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

    /// The hash an API key secret is stored and looked up by.
    public static func apiKeyHash(_ secret: String) -> Data { tokenHash(secret) }

    public func createApiKey(id: String, name: String, role: User.Role, secret: String, createdBy: String, now: Nanos = Time.now()) throws(TwinError) -> ApiKey {
        do {
            try pool.write { db in
                try db.execute(
                    sql: "INSERT INTO api_keys (id, name, role, secret_hash, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [id, name, role.rawValue, Self.apiKeyHash(secret), now, createdBy])
            }
        } catch {
            throw .unavailable("cannot store the API key: \(error)")
        }
        return ApiKey(id: id, name: name, role: role, createdAt: now, createdBy: createdBy)
    }

    /// All keys, revoked ones included, with the hash of each secret.
    public func apiKeys() throws(TwinError) -> [(key: ApiKey, secretHash: Data)] {
        do {
            return try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM api_keys ORDER BY created_at, id").compactMap { row in
                    guard let role = User.Role(rawValue: row["role"]) else { return nil }
                    let key = ApiKey(
                        id: row["id"], name: row["name"], role: role, createdAt: row["created_at"], createdBy: row["created_by"],
                        lastUsedAt: row["last_used_at"], revokedAt: row["revoked_at"])
                    return (key, row["secret_hash"] as Data)
                }
            }
        } catch {
            throw .unavailable("cannot read API keys: \(error)")
        }
    }

    /// Marks a key revoked; false if there is no such key. Revoking twice is not an error.
    public func revokeApiKey(id: String, now: Nanos = Time.now()) throws(TwinError) -> Bool {
        do {
            return try pool.write { db in
                try db.execute(sql: "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", arguments: [now, id])
                return db.changesCount > 0
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
            try pool.write { db in try db.execute(sql: "UPDATE users SET sessions_not_before = ? WHERE id = ?", arguments: [time, userID]) }
        } catch {
            throw .unavailable("cannot end the user's sessions: \(error)")
        }
    }

    /// Per username, the time before which its tokens are refused.
    public func sessionCutoffs() throws(TwinError) -> [String: Nanos] {
        do {
            return try pool.read { db in
                var result: [String: Nanos] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT username, sessions_not_before FROM users WHERE sessions_not_before IS NOT NULL") {
                    result[row["username"]] = row["sessions_not_before"]
                }
                return result
            }
        } catch {
            throw .unavailable("cannot read session cut-offs: \(error)")
        }
    }
}
