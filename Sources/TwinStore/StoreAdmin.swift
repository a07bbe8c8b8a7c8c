#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GRDB
import TwinCore

/// The operator's store commands behind `twind verify`, `twind backup`, `twind restore` and
/// `twind keys rotate`.
public enum StoreAdmin {
    public static let databases = ["health_data.db", "users.db"]

    // MARK: Verify

    public struct VerifyReport: Sendable {
        public var lines: [String] = []
        public var problems: [String] = []
    }

    /// Opens every sealed block of both databases with the keys and reports what fails. Safe while
    /// twind runs (it reads consistent snapshots).
    public static func verify(dataDirectory: String, keys: KeyRing) throws(TwinError) -> VerifyReport {
        var report = VerifyReport()
        let healthPath = dataDirectory + "/health_data.db"
        guard access(healthPath, F_OK) == 0 else { throw .notFound("\(healthPath) does not exist: no store to verify") }
        let health = try HealthDatabase(path: healthPath, keys: keys, durability: .normal)
        defer { health.close() }
        let series = try health.series.verify()
        report.lines.append("health_data.db: \(series.chunks) chunks holding \(series.readings) raw readings, \(series.headBlocks) head blocks")
        report.problems += series.problems
        let events = try health.verifyEvents()
        report.lines.append("health_data.db: \(events.checked) events")
        report.problems += events.problems
        let plantAudit = try health.auditLog.verify(health.pool)
        report.lines.append("health_data.db: \(plantAudit.checked) audit entries")
        report.problems += plantAudit.problems
        let devices = try health.unboundDevices()
        report.lines.append("health_data.db: device definitions bound (row MACs), \(devices.count) altered")
        report.problems += devices
        let usersPath = dataDirectory + "/users.db"
        if access(usersPath, F_OK) == 0 {
            let users = try UsersDatabase(path: usersPath, keys: keys, durability: .normal)
            defer { users.close() }
            let audit = try users.verify()
            report.lines.append("users.db: \(audit.checked) audit entries; users and API keys bound (row MACs)")
            report.problems += audit.problems
        }
        return report
    }

    // MARK: Backup and restore

    /// Copies both databases into `destination` (a new or empty directory) with SQLite's online
    /// backup, so the copy is consistent while twind keeps writing. The copy stays sealed: it is
    /// useless without the master key, which is not copied.
    @discardableResult
    public static func backup(dataDirectory: String, to destination: String) throws(TwinError) -> [String] {
        try DataDirectory.makeDirectory(destination)
        var written: [String] = []
        for name in databases {
            let source = dataDirectory + "/" + name
            guard access(source, F_OK) == 0 else { continue }
            let target = destination + "/" + name
            if access(target, F_OK) == 0 { throw .failedPrecondition("\(target) exists; back up into a new or empty directory") }
            try copy(source, to: target)
            written.append(target)
        }
        if written.isEmpty { throw .notFound("\(dataDirectory) holds no databases to back up") }
        return written
    }

    /// Replaces the databases of a stopped twind's data directory with a backup, after checking
    /// that the backup opens with `keys`. The replaced files are kept beside, renamed
    /// `*.before-restore-<time>`.
    ///
    /// Atomic across a crash: every database is staged and checked first (`*.restoring`), then a
    /// journal naming them is written and synced, then the files are swapped. A restore cut off
    /// after the journal is finished by the next start of twind (or the next restore), before
    /// anything opens the databases (`completeInterruptedRestore`); one cut off before it left
    /// the data directory as it was.
    @discardableResult
    ///
    /// Users, API keys and device definitions must carry valid row MACs: a backup altered outside
    /// twind (a role raised, a hash replaced, a revocation undone, an alarm limit moved) is
    /// refused naming the rows. A backup made before row MACs existed cannot be checked; it is
    /// refused unless `acceptUnbound` (`--accept-unbound-rows`), when its rows are bound as found.
    public static func restore(
        dataDirectory: String, from source: String, keys: KeyRing, acceptUnbound: Bool = false, crashAfterMoves: Int? = nil
    ) throws(TwinError) -> [String] {
        let directory = try DataDirectory(path: dataDirectory)  // refuses while twind runs
        defer { directory.unlock() }
        try completeInterruptedRestore(dataDirectory: dataDirectory)
        let names = databases.filter { access(source + "/" + $0, F_OK) == 0 }
        guard names.contains("health_data.db") else { throw .notFound("\(source) holds no health_data.db: not a twind backup") }
        let stamp = String(Time.now() / Time.second)
        // 1. Stage and check every database: the right key, a schema this twind can migrate.
        for name in names {
            let scratch = dataDirectory + "/" + name + ".restoring"
            for suffix in ["", "-wal", "-shm"] { unlink(scratch + suffix) }
            try copy(source + "/" + name, to: scratch)
            do throws(TwinError) {
                let health = name == "health_data.db"
                let binding = health ? HealthDatabase.rowBindingMigration : UsersDatabase.rowBindingMigration
                if !acceptUnbound, try !applied(binding, in: scratch) {
                    throw TwinError(
                        .failedPrecondition,
                        "it was made by a twind older than row MACs, so its roles, password hashes, API keys and alarm limits cannot be checked; if you trust it, run twind restore again with --accept-unbound-rows")
                }
                var problems: [String]
                if health {
                    let database = try HealthDatabase(path: scratch, keys: keys, durability: .full)
                    problems = try database.unboundDevices()
                    try database.shutDown()
                } else {
                    let database = try UsersDatabase(path: scratch, keys: keys, durability: .full)
                    problems = try database.unboundRows()
                    try database.shutDown()
                }
                if !problems.isEmpty {
                    throw TwinError(.dataLoss, "it was altered outside twind: " + problems.joined(separator: "; "))
                }
            } catch {
                for n in names { for suffix in ["", "-wal", "-shm"] { unlink(dataDirectory + "/" + n + ".restoring" + suffix) } }
                throw TwinError(error.code, "the backup's \(name) cannot be restored: \(error.message)")
            }
            for suffix in ["-wal", "-shm"] { unlink(scratch + suffix) }
        }
        // 2. The journal: from here on the restore is finished, by this call or the next start.
        try PrivateFile.replace(journalPath(dataDirectory), with: Array(([stamp] + names).joined(separator: "\n").utf8))
        // 3. Swap.
        try swapIn(dataDirectory: dataDirectory, names: names, stamp: stamp, crashAfterMoves: crashAfterMoves)
        unlink(journalPath(dataDirectory))
        try PrivateFile.syncDirectory(of: dataDirectory + "/x")
        return names.map { dataDirectory + "/" + $0 }
    }

    static func journalPath(_ dataDirectory: String) -> String { dataDirectory + "/restore.journal" }

    /// Whether a database file has had the named migration (read before anything migrates it).
    static func applied(_ migration: String, in path: String) throws(TwinError) -> Bool {
        do {
            var configuration = Configuration()
            configuration.readonly = true
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read { db in
                guard try db.tableExists("grdb_migrations") else { return false }
                return try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM grdb_migrations WHERE identifier = ?)", arguments: [migration]) ?? false
            }
        } catch {
            throw .invalidArgument("\(path) is not a twind database: \(error)")
        }
    }

    /// Finishes a restore that was cut off after its journal was written (see `restore`).
    /// Returns the databases it moved into place; none when there was nothing to finish.
    @discardableResult
    public static func completeInterruptedRestore(dataDirectory: String) throws(TwinError) -> [String] {
        let path = journalPath(dataDirectory)
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        guard let stamp = lines.first, lines.count > 1, lines.dropFirst().allSatisfy(databases.contains) else {
            throw .dataLoss("\(path) is damaged; move the *.restoring and *.before-restore-* files into place by hand, then delete it")
        }
        let names = Array(lines.dropFirst())
        let moved = names.filter { access(dataDirectory + "/" + $0 + ".restoring", F_OK) == 0 }
        try swapIn(dataDirectory: dataDirectory, names: names, stamp: stamp, crashAfterMoves: nil)
        unlink(path)
        try PrivateFile.syncDirectory(of: path)
        return moved
    }

    /// Moves each staged database into place (the one it replaces aside first); each step can be
    /// done again, so it serves both the restore and its completion after a crash.
    static func swapIn(dataDirectory: String, names: [String], stamp: String, crashAfterMoves: Int?) throws(TwinError) {
        var moves = 0
        for name in names {
            let target = dataDirectory + "/" + name
            let scratch = target + ".restoring"
            guard access(scratch, F_OK) == 0 else { continue }  // already in place
            let aside = ".before-restore-" + stamp
            for suffix in ["", "-wal", "-shm"] where access(target + suffix, F_OK) == 0 && access(target + suffix + aside, F_OK) != 0 {
                guard rename(target + suffix, target + suffix + aside) == 0 else {
                    throw .unavailable("cannot move \(target + suffix) aside: \(String(cString: strerror(errno)))")
                }
            }
            for suffix in ["-wal", "-shm"] { unlink(target + suffix) }
            guard rename(scratch, target) == 0 else {
                throw .unavailable("cannot move the restored \(name) into place: \(String(cString: strerror(errno)))")
            }
            try PrivateFile.syncDirectory(of: target)
            moves += 1
            if let crashAfterMoves, moves >= crashAfterMoves { throw .unavailable("simulated crash after \(moves) move(s)") }
        }
    }

    /// A consistent copy of a database with SQLite's online backup (safe while twind writes it).
    static func copy(_ source: String, to target: String) throws(TwinError) {
        do {
            let from = try DatabaseQueue(path: source)
            let to = try DatabaseQueue(path: target)
            try from.backup(to: to)
            try to.close()
            try from.close()
        } catch {
            throw .unavailable("cannot copy \(source) to \(target): \(error)")
        }
    }

    // MARK: Keys

    /// Appends a new master key to the key file twind reads (the newest seals new data once twind
    /// restarts; older ones keep opening old data). With the key in `TWIND_KEY` or a systemd
    /// credential, which twind cannot change, `output` names a new key file to write (old keys
    /// and the new one) for the operator to install. Returns the file written, the new key id and
    /// the keys as they now are.
    /// Adds a new master key. `ring` is the new set; `current` is the set twind must keep
    /// working with until the new one is in place: with `output`, FILE still has to be installed,
    /// so anything sealed now (the new token signing key) is sealed under the key in use, which
    /// the new set keeps too.
    public static func rotate(keyFile: String?, environment: [String: String], dataDirectory: String, output: String?) throws(TwinError) -> (path: String, keyID: UInt32, ring: KeyRing, current: KeyRing) {
        let ring = try KeyRing.load(keyFile: keyFile, environment: environment, dataDirectory: dataDirectory)
        let new = MasterKey.generate()
        let text = "# twin master keys, oldest first; the last one seals new data\n" + (ring.keys + [new]).map(\.base64).joined(separator: "\n") + "\n"
        if let output {
            try KeyRing.create(output, contents: text)
            return (output, new.id, KeyRing(keys: ring.keys + [new], source: "key file \(output)", generated: false, path: output), ring)
        }
        guard let path = ring.path else {
            throw .failedPrecondition(
                "the master key comes from \(ring.source), which twind cannot change; run twind keys rotate --output FILE and install FILE there (e.g. as the twind.key credential)")
        }
        try PrivateFile.replace(path, with: Array(text.utf8))
        let rotated = KeyRing(keys: ring.keys + [new], source: ring.source, generated: false, path: path)
        return (path, new.id, rotated, rotated)
    }
}

extension HealthDatabase {
    /// Opens every event's sealed details.
    func verifyEvents() throws(TwinError) -> (checked: Int, problems: [String]) {
        var query = EventQuery()
        query.limit = Int.max / 2
        do {
            return (try events(query).count, [])
        } catch {
            if error.code == .dataLoss { return (0, [error.message]) }
            throw error
        }
    }
}
