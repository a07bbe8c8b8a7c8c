import Crypto
import Foundation
import GRDB
import TwinCore

extension UsersDatabase {
    static func registerIdentityMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v2: refresh tokens, signing keys") { db in
            try db.execute(sql: """
                CREATE TABLE refresh_tokens (
                    id INTEGER PRIMARY KEY,
                    token_hash BLOB NOT NULL UNIQUE,
                    family TEXT NOT NULL,
                    user_id INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    used INTEGER NOT NULL DEFAULT 0,
                    revoked INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
                CREATE TABLE signing_keys (id INTEGER PRIMARY KEY, created_at INTEGER NOT NULL, key BLOB NOT NULL);
                """)
        }
    }

    struct SealedUser: Codable {
        var email: String
    }

    static func userContext(id: Int64, username: String) -> [UInt8] { Array("users.db/users/\(id)/\(username)".utf8) }

    public func userCount() throws(TwinError) -> Int {
        do { return try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM users") } ?? 0 } catch {
            throw .unavailable("cannot read users: \(error)")
        }
    }

    /// Creates a user; `alreadyExists` if the name is taken.
    @discardableResult
    public func createUser(
        username: String, role: User.Role, passwordHash: String, email: String = "", now: Nanos = Time.now(), audit: AuditEntry? = nil
    ) throws(TwinError) -> User {
        do {
            return try pool.write { db in
                if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM users WHERE username = ?)", arguments: [username]) == true {
                    throw TwinError(.alreadyExists, "user '\(username)' already exists", metadata: ["username": username])
                }
                let id = (try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM users") ?? 0) + 1
                let details = sealer.seal(Array(try JSONEncoder().encode(SealedUser(email: email))), context: Self.userContext(id: id, username: username))
                try db.execute(
                    sql: "INSERT INTO users (id, username, role, disabled, created_at, password_hash, details) VALUES (?, ?, ?, 0, ?, ?, ?)",
                    arguments: [id, username, role.rawValue, now, passwordHash, Data(details)])
                try RowBinding.users.bind(db, id: id, sealer: sealer)
                try insertAudit(db, audit)
                return User(id: id, username: username, role: role, disabled: false, createdAt: now, lastLoginAt: nil, passwordHash: passwordHash, email: email)
            }
        } catch let error as TwinError {
            throw error
        } catch {
            throw .unavailable("cannot create user '\(username)': \(error)")
        }
    }

    public func user(named username: String) throws(TwinError) -> User? {
        try users(where: "username = ?", [username]).first
    }

    public func user(id: Int64) throws(TwinError) -> User? {
        try users(where: "id = ?", [id]).first
    }

    public func allUsers() throws(TwinError) -> [User] {
        try users(where: "1", [])
    }

    func users(where clause: String, _ arguments: [any DatabaseValueConvertible]) throws(TwinError) -> [User] {
        let rows: [Row]
        do {
            rows = try pool.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT \(RowBinding.users.selection), last_login_at, details FROM users WHERE \(clause) ORDER BY username",
                    arguments: StatementArguments(arguments))
            }
        } catch {
            throw .unavailable("cannot read users: \(error)")
        }
        var result: [User] = []
        for row in rows {
            let id: Int64 = row["id"], username: String = row["username"]
            guard RowBinding.users.check(row, sealer: sealer) else {
                throw .dataLoss("the record of user '\(username)' was altered outside twind (its role, password hash, disabled flag or session cut-off do not match the row MAC); restore a good backup or run twind verify")
            }
            guard let role = User.Role(rawValue: row["role"]),
                  let plain = try? sealer.open(Array(row["details"] as Data), context: Self.userContext(id: id, username: username)),
                  let details = try? JSONDecoder().decode(SealedUser.self, from: Data(plain))
            else {
                throw .dataLoss("the record of user '\(username)' cannot be opened: it was altered or moved")
            }
            result.append(User(
                id: id, username: username, role: role, disabled: row["disabled"], createdAt: row["created_at"],
                lastLoginAt: row["last_login_at"], passwordHash: row["password_hash"], email: details.email))
        }
        return result
    }

    /// Records a successful login, replacing the hash when it was rehashed with stronger parameters.
    public func recordLogin(userID: Int64, at time: Nanos, newHash: String?, audit: AuditEntry? = nil) throws(TwinError) {
        do {
            try pool.write { db in
                try insertAudit(db, audit)
                if let newHash {
                    try db.execute(sql: "UPDATE users SET last_login_at = ?, password_hash = ? WHERE id = ?", arguments: [time, newHash, userID])
                    try RowBinding.users.bind(db, id: userID, sealer: sealer)
                } else {
                    try db.execute(sql: "UPDATE users SET last_login_at = ? WHERE id = ?", arguments: [time, userID])
                }
            }
        } catch {
            throw .unavailable("cannot record the login: \(error)")
        }
    }

    /// Changes a user's role, disabled flag or e-mail (nil: unchanged); returns the user after.
    public func updateUser(_ user: User, role: User.Role?, disabled: Bool?, email: String?, audit: AuditEntry? = nil) throws(TwinError) -> User {
        var updated = user
        if let role { updated.role = role }
        if let disabled { updated.disabled = disabled }
        if let email { updated.email = email }
        do {
            try pool.write { db in
                let details = sealer.seal(Array(try JSONEncoder().encode(SealedUser(email: updated.email))), context: Self.userContext(id: user.id, username: user.username))
                try db.execute(
                    sql: "UPDATE users SET role = ?, disabled = ?, details = ? WHERE id = ?",
                    arguments: [updated.role.rawValue, updated.disabled, Data(details), user.id])
                try RowBinding.users.bind(db, id: user.id, sealer: sealer)
                try insertAudit(db, audit)
            }
        } catch {
            throw .unavailable("cannot update user '\(user.username)': \(error)")
        }
        return updated
    }

    public func setPasswordHash(userID: Int64, _ hash: String, audit: AuditEntry? = nil) throws(TwinError) {
        do {
            try pool.write { db in
                try db.execute(sql: "UPDATE users SET password_hash = ? WHERE id = ?", arguments: [hash, userID])
                try RowBinding.users.bind(db, id: userID, sealer: sealer)
                try insertAudit(db, audit)
            }
        } catch {
            throw .unavailable("cannot change the password: \(error)")
        }
    }

    /// Deletes a user and their refresh tokens.
    public func deleteUser(id: Int64, audit: AuditEntry? = nil) throws(TwinError) {
        do {
            try pool.write { db in
                try db.execute(sql: "DELETE FROM refresh_tokens WHERE user_id = ?", arguments: [id])
                try db.execute(sql: "DELETE FROM users WHERE id = ?", arguments: [id])
                try insertAudit(db, audit)
            }
        } catch {
            throw .unavailable("cannot delete the user: \(error)")
        }
    }

    // MARK: Refresh tokens (stored as SHA-256 hashes; the token itself is shown once)

    static func tokenHash(_ token: String) -> Data { Data(SHA256.hash(data: Array(token.utf8))) }

    public func storeRefreshToken(_ token: String, family: String, userID: Int64, expiresAt: Nanos) throws(TwinError) {
        do {
            try pool.write { db in
                try db.execute(
                    sql: "INSERT INTO refresh_tokens (token_hash, family, user_id, expires_at) VALUES (?, ?, ?, ?)",
                    arguments: [Self.tokenHash(token), family, userID, expiresAt])
            }
        } catch {
            throw .unavailable("cannot store a refresh token: \(error)")
        }
    }

    /// Uses a refresh token once. A second use revokes its whole family (it was stolen, or the
    /// client misbehaves: either way nobody keeps a session from it).
    public func useRefreshToken(_ token: String, now: Nanos) throws(TwinError) -> RefreshOutcome {
        do {
            return try pool.write { db in
                guard let row = try Row.fetchOne(
                    db, sql: "SELECT id, family, user_id, expires_at, used, revoked FROM refresh_tokens WHERE token_hash = ?",
                    arguments: [Self.tokenHash(token)])
                else { return .invalid }
                let family: String = row["family"], userID: Int64 = row["user_id"]
                if row["used"] as Bool {
                    try db.execute(sql: "UPDATE refresh_tokens SET revoked = 1 WHERE family = ?", arguments: [family])
                    return .reused(userID: userID, family: family)
                }
                if row["revoked"] as Bool || (row["expires_at"] as Int64) <= now { return .invalid }
                try db.execute(sql: "UPDATE refresh_tokens SET used = 1 WHERE id = ?", arguments: [row["id"] as Int64])
                return .valid(userID: userID, family: family)
            }
        } catch {
            throw .unavailable("cannot check a refresh token: \(error)")
        }
    }

    /// Revokes the family of a refresh token (logout); returns the family, nil for an unknown token.
    @discardableResult
    public func revokeRefreshFamily(of token: String) throws(TwinError) -> String? {
        do {
            return try pool.write { db in
                guard let family = try String.fetchOne(db, sql: "SELECT family FROM refresh_tokens WHERE token_hash = ?", arguments: [Self.tokenHash(token)]) else {
                    return nil
                }
                try db.execute(sql: "UPDATE refresh_tokens SET revoked = 1 WHERE family = ?", arguments: [family])
                return family
            }
        } catch {
            throw .unavailable("cannot revoke a refresh token: \(error)")
        }
    }

    /// Revokes one session's refresh tokens (its family).
    public func revokeRefreshFamily(_ family: String) throws(TwinError) {
        do {
            try pool.write { db in try db.execute(sql: "UPDATE refresh_tokens SET revoked = 1 WHERE family = ?", arguments: [family]) }
        } catch {
            throw .unavailable("cannot revoke a session: \(error)")
        }
    }

    /// Whether a session (refresh-token family) was revoked: logged out, or its token reused.
    public func isSessionRevoked(family: String) throws(TwinError) -> Bool {
        do {
            return try pool.read { db in
                try Bool.fetchOne(db, sql: "SELECT 1 FROM refresh_tokens WHERE family = ? AND revoked = 1 LIMIT 1", arguments: [family]) ?? false
            }
        } catch {
            throw .unavailable("cannot check a session: \(error)")
        }
    }

    /// Revokes every refresh token of a user.
    public func revokeRefreshTokens(userID: Int64) throws(TwinError) {
        do {
            try pool.write { db in try db.execute(sql: "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ?", arguments: [userID]) }
        } catch {
            throw .unavailable("cannot revoke refresh tokens: \(error)")
        }
    }

    // MARK: Login throttle (sealed: it names accounts and addresses)

    static let throttleContext = Array("users.db/meta/login-throttle".utf8)

    /// Saves the login throttle's counts (replacing the last saved ones).
    public func saveThrottle(_ bytes: [UInt8]) throws(TwinError) {
        let sealed = sealer.seal(bytes, context: Self.throttleContext)
        do {
            try pool.write { db in
                try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('login-throttle', ?)", arguments: [Data(sealed)])
            }
        } catch {
            throw .unavailable("cannot save the login throttle: \(error)")
        }
    }

    /// The counts saved last, nil when none were; `dataLoss` when they do not open.
    public func savedThrottle() throws(TwinError) -> [UInt8]? {
        let blob: Data?
        do { blob = try pool.read { try Data.fetchOne($0, sql: "SELECT value FROM meta WHERE key = 'login-throttle'") } } catch {
            throw .unavailable("cannot read the login throttle: \(error)")
        }
        guard let blob else { return nil }
        guard let plain = try? sealer.open(Array(blob), context: Self.throttleContext) else {
            throw .dataLoss("the saved login throttle in \(path) cannot be opened: it was altered or moved")
        }
        return plain
    }

    // MARK: Signing keys (sealed; the newest signs)

    static func signingKeyContext(_ id: Int64) -> [UInt8] { Array("users.db/signing_keys/\(id)".utf8) }

    /// Adds a token signing key (the newest signs from twind's next start; the older ones still
    /// verify tokens already handed out). Keeps the newest three. Returns the new key's id.
    @discardableResult
    public func addSigningKey(now: Nanos = Time.now()) throws(TwinError) -> Int64 {
        do {
            return try pool.write { db in
                let id = (try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM signing_keys") ?? 0) + 1
                let key = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
                try db.execute(sql: "INSERT INTO signing_keys (id, created_at, key) VALUES (?, ?, ?)", arguments: [id, now, Data(sealer.seal(key, context: Self.signingKeyContext(id)))])
                try db.execute(sql: "DELETE FROM signing_keys WHERE id <= ?", arguments: [id - 3])
                return id
            }
        } catch {
            throw .unavailable("cannot add a token signing key: \(error)")
        }
    }

    /// The token signing keys, oldest first, creating the first one if there is none.
    public func signingKeys(now: Nanos = Time.now()) throws(TwinError) -> [(id: Int64, key: [UInt8])] {
        let context = Self.signingKeyContext
        do {
            return try pool.write { db in
                var rows = try Row.fetchAll(db, sql: "SELECT id, key FROM signing_keys ORDER BY id")
                if rows.isEmpty {
                    let key = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
                    try db.execute(sql: "INSERT INTO signing_keys (id, created_at, key) VALUES (1, ?, ?)", arguments: [now, Data(sealer.seal(key, context: context(1)))])
                    rows = try Row.fetchAll(db, sql: "SELECT id, key FROM signing_keys ORDER BY id")
                }
                return try rows.map { row in
                    let id: Int64 = row["id"]
                    guard let key = try? sealer.open(Array(row["key"] as Data), context: context(id)) else {
                        throw TwinError.dataLoss("token signing key \(id) in \(path) cannot be opened")
                    }
                    return (id, key)
                }
            }
        } catch let error as TwinError {
            throw error
        } catch {
            throw .unavailable("cannot read the token signing keys: \(error)")
        }
    }
}
