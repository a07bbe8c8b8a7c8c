import Foundation
import GRDB
import TwinCore

/// How hard a commit is pushed to disk. `.full` (the default) survives power loss; `.normal`
/// survives a crash of twind but may lose the last commits if the machine loses power.
public enum Durability: String, Sendable, CaseIterable {
    case full, normal
}

extension HealthDatabase {
    public typealias Durability = TwinStore.Durability
}

/// What `users.db` and `health_data.db` share: a GRDB pool in WAL mode, named append-only
/// migrations, a sealer for the database's purpose, and a key check that refuses a master key
/// that does not match the data.
enum SealedDatabase {
    static let keyCheckPlaintext = Array("twin key check v1".utf8)

    static func open(
        path: String, purpose: String, keys: KeyRing, durability: Durability, migrator: (Sealer) -> DatabaseMigrator
    ) throws(TwinError) -> (DatabasePool, Sealer) {
        let sealer = Sealer(purpose: purpose, keys: Array(keys.keys.dropLast()), current: keys.current)
        let pool: DatabasePool
        do {
            var configuration = Configuration()
            configuration.busyMode = .timeout(5)
            pool = try DatabasePool(path: path, configuration: configuration)
            // GRDB's WAL setup sets synchronous = NORMAL on the writer after any prepareDatabase
            // hook, so the setting is made here, on the writer (the connection that commits),
            // once the pool is open, and read back.
            let wanted = durability == .full ? 2 : 1
            let actual = try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = \(wanted == 2 ? "FULL" : "NORMAL")")
                return try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1
            }
            guard actual == wanted else {
                throw TwinError(.internal, "PRAGMA synchronous is \(actual) after setting it to \(wanted)")
            }
            // A new database frees its pages as it goes (compaction and retention delete chunks):
            // auto_vacuum can only be chosen before the first table is made. An older database
            // keeps its free pages for reuse.
            try pool.writeWithoutTransaction { db in
                if try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") == 0 {
                    // The WAL setup already wrote the header: on an empty file VACUUM applies it at once.
                    try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
                    try db.execute(sql: "VACUUM")
                }
            }
            try migrator(sealer).migrate(pool)
        } catch {
            throw .unavailable("cannot open \(path): \(error)")
        }
        try checkKeys(keys, pool: pool, sealer: sealer, path: path)
        return (pool, sealer)
    }

    /// Checkpoints the WAL into the database and closes every connection, so no `-wal` file is
    /// left behind; says why when it cannot.
    static func shutDown(_ pool: DatabasePool, path: String) throws(TwinError) {
        do {
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA incremental_vacuum")
                _ = try db.checkpoint(.truncate)
            }
            try pool.close()
            // GRDB closes the pool's writer before its read-only readers, and a read-only
            // connection cannot remove the WAL (GRDB issue 739): one last plain connection,
            // alone on the file, checkpoints and removes it as it closes.
            try DatabaseQueue(path: path).close()
        } catch {
            throw .unavailable("cannot close \(path) cleanly: \(error)")
        }
    }

    /// Gives the database's free pages back to the file system (a database made with
    /// auto_vacuum INCREMENTAL; a no-op for an older one).
    static func releaseFreePages(_ pool: DatabasePool) throws(TwinError) {
        do { try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA incremental_vacuum") } } catch {
            throw .unavailable("cannot release free pages: \(error)")
        }
    }

    /// The `PRAGMA synchronous` the committing connection runs with: 2 FULL, 1 NORMAL.
    static func synchronous(_ pool: DatabasePool) throws(TwinError) -> Int {
        do { return try pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA synchronous") ?? -1 } } catch {
            throw .unavailable("cannot read PRAGMA synchronous: \(error)")
        }
    }

    /// Refuses a key set that does not match the data; records a check for a new current key.
    static func checkKeys(_ keys: KeyRing, pool: DatabasePool, sealer: Sealer, path: String) throws(TwinError) {
        do {
            let checks = try pool.read { db in try Row.fetchAll(db, sql: "SELECT key, value FROM meta WHERE key LIKE 'keycheck:%'") }
            let known = Set(keys.keys.map(\.id))
            var matched = false
            for row in checks {
                let name: String = row["key"]
                let blob: [UInt8] = Array(row["value"] as Data)
                guard let id = UInt32(name.dropFirst("keycheck:".count)), known.contains(id) else { continue }
                guard (try? sealer.open(blob, context: Array(name.utf8))) == keyCheckPlaintext else {
                    throw TwinError(.failedPrecondition, "the master key does not match this data directory (key check \(name) of \(path) fails)")
                }
                matched = true
            }
            if !checks.isEmpty && !matched {
                let ids = checks.map { String(($0["key"] as String).dropFirst("keycheck:".count)) }.joined(separator: ", ")
                throw TwinError(
                    .failedPrecondition,
                    "the master key does not match this data directory: \(path) was sealed with key id \(ids), the key given has id \(keys.keys.map { String($0.id) }.joined(separator: ", "))")
            }
            let name = "keycheck:\(keys.current.id)"
            if !checks.contains(where: { ($0["key"] as String) == name }) {
                let blob = sealer.seal(keyCheckPlaintext, context: Array(name.utf8))
                try pool.write { db in try db.execute(sql: "INSERT INTO meta (key, value) VALUES (?, ?)", arguments: [name, Data(blob)]) }
            }
        } catch let error as TwinError {
            throw error
        } catch {
            throw .unavailable("cannot check the keys of \(path): \(error)")
        }
    }

    /// The key ids a database's key checks name (to tell which key a backup needs).
    static func keyIDs(_ db: Database) throws -> [UInt32] {
        try String.fetchAll(db, sql: "SELECT key FROM meta WHERE key LIKE 'keycheck:%'").compactMap { UInt32($0.dropFirst("keycheck:".count)) }
    }
}

/// `users.db`: identity and the audit log. Audit entries (who, from where, what) are sealed
/// and bound to their row; only the id, time and kind stay clear for lookups.
public final class UsersDatabase: UsersStore {
    let pool: DatabasePool
    let sealer: Sealer
    public let path: String

    public init(path: String, keys: KeyRing, durability: Durability = .full) throws(TwinError) {
        self.path = path
        (pool, sealer) = try SealedDatabase.open(path: path, purpose: "users", keys: keys, durability: durability, migrator: Self.migrator)
    }

    static func migrator(_ sealer: Sealer) -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: users, audit, key checks") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
                CREATE TABLE users (
                    id INTEGER PRIMARY KEY,
                    username TEXT NOT NULL UNIQUE,
                    role TEXT NOT NULL,
                    disabled INTEGER NOT NULL DEFAULT 0,
                    created_at INTEGER NOT NULL,
                    last_login_at INTEGER,
                    password_hash TEXT NOT NULL,
                    details BLOB NOT NULL
                );
                CREATE TABLE audit (
                    id INTEGER PRIMARY KEY,
                    time INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    details BLOB NOT NULL
                );
                CREATE INDEX audit_by_time ON audit (time);
                """)
        }
        registerIdentityMigration(&migrator)
        registerAccessMigration(&migrator)
        registerScopeMigration(&migrator)
        migrator.registerMigration(rowBindingMigration) { db in
            try db.execute(sql: "ALTER TABLE users ADD COLUMN mac BLOB; ALTER TABLE api_keys ADD COLUMN mac BLOB")
            try RowBinding.users.bindAll(db, sealer: sealer)
            try RowBinding.apiKeys.bindAll(db, sealer: sealer)
        }
        return migrator
    }

    /// The migration that binds users and API keys with row MACs; a backup without it predates them.
    static let rowBindingMigration = "v5: row bindings"

    public typealias AuditEntry = TwinCore.AuditEntry

    var auditLog: AuditLog { AuditLog(database: "users.db", sealer: sealer) }

    @discardableResult
    public func audit(_ entry: AuditEntry) throws(TwinError) -> Int64 {
        do {
            return try pool.write { db in try insertAudit(db, entry) }
        } catch {
            throw .unavailable("cannot write the audit log: \(error)")
        }
    }

    /// Retention: audit entries older than `auditOlderThan`, refresh tokens expired for longer
    /// than `tokensExpiredFor` (a used token must outlive its expiry a little, so that its reuse
    /// is still recognised and revokes the session).
    public func prune(now: Nanos, auditOlderThan: Nanos, tokensExpiredFor: Nanos) throws(TwinError) -> (audit: Int, tokens: Int) {
        do {
            return try pool.write { db in
                try db.execute(sql: "DELETE FROM audit WHERE time < ?", arguments: [now - auditOlderThan])
                let audit = db.changesCount
                try db.execute(sql: "DELETE FROM refresh_tokens WHERE expires_at < ?", arguments: [now - tokensExpiredFor])
                return (audit, db.changesCount)
            }
        } catch {
            throw .unavailable("cannot apply retention to \(path): \(error)")
        }
    }

    /// Writes an audit entry inside the caller's transaction: a change and its entry commit
    /// together, or neither does.
    @discardableResult
    func insertAudit(_ db: Database, _ entry: AuditEntry?) throws -> Int64 { try auditLog.insert(db, entry) }

    /// Audit entries, newest first.
    public func auditEntries(limit: Int = 100, since: Nanos = .min) throws(TwinError) -> [AuditEntry] {
        try auditLog.entries(pool, limit: limit, since: since)
    }

    /// Opens every sealed value; returns the problems found.
    public func verify() throws(TwinError) -> (checked: Int, problems: [String]) {
        var (count, problems) = try auditLog.verify(pool)
        problems += try unboundRows()
        return (count, problems)
    }

    /// Users and API keys whose row MAC is missing or does not match (altered outside twind).
    func unboundRows() throws(TwinError) -> [String] {
        do {
            return try pool.read { db in
                try RowBinding.users.unbound(db, sealer: sealer).map { "user \($0): role, password hash, disabled flag or session cut-off altered outside twind (row MAC does not match)" }
                    + RowBinding.apiKeys.unbound(db, sealer: sealer).map { "API key \($0): role, secret, scope or revocation altered outside twind (row MAC does not match)" }
            }
        } catch {
            throw .unavailable("cannot read \(path): \(error)")
        }
    }

    public func close() {
        try? pool.close()
    }

    /// Close at shutdown: WAL checkpointed and removed, or an error saying why not.
    public func shutDown() throws(TwinError) { try SealedDatabase.shutDown(pool, path: path) }

    /// What the committing connection runs with (2 = FULL, 1 = NORMAL).
    public func synchronousSetting() throws(TwinError) -> Int { try SealedDatabase.synchronous(pool) }
}
