import Foundation
import GRDB
import TwinCore

/// The sealed audit table both databases carry (`users.db` for identity changes,
/// `health_data.db` for plant changes), so that every change and its entry commit in one
/// transaction. Who, from where and what are sealed, bound to the row (id, time, kind); only
/// the id, time and kind stay clear for lookups.
struct AuditLog: Sendable {
    let database: String
    let sealer: Sealer

    static let schema = """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            time INTEGER NOT NULL,
            kind TEXT NOT NULL,
            details BLOB NOT NULL
        );
        CREATE INDEX audit_by_time ON audit (time);
        """

    func context(id: Int64, time: Nanos, kind: String) -> [UInt8] { Array("\(database)/audit/\(id)/\(time)/\(kind)".utf8) }

    struct Sealed: Codable {
        var actor: String
        var peer: String
        var detail: String
    }

    /// Writes an entry inside the caller's transaction.
    @discardableResult
    func insert(_ db: Database, _ entry: AuditEntry?) throws -> Int64 {
        guard let entry else { return 0 }
        let id = (try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM audit") ?? 0) + 1
        let plain = Array(try JSONEncoder().encode(Sealed(actor: entry.actor, peer: entry.peer, detail: entry.detail)))
        let sealed = sealer.seal(plain, context: context(id: id, time: entry.time, kind: entry.kind))
        try db.execute(sql: "INSERT INTO audit (id, time, kind, details) VALUES (?, ?, ?, ?)", arguments: [id, entry.time, entry.kind, Data(sealed)])
        return id
    }

    /// Entries newest first; `dataLoss` naming the first one that does not open.
    func entries(_ pool: DatabasePool, limit: Int, since: Nanos) throws(TwinError) -> [AuditEntry] {
        let rows: [Row]
        do {
            rows = try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT id, time, kind, details FROM audit WHERE time >= ? ORDER BY time DESC, id DESC LIMIT ?", arguments: [since, limit])
            }
        } catch {
            throw .unavailable("cannot read the audit log of \(database): \(error)")
        }
        var result: [AuditEntry] = []
        for row in rows {
            let id: Int64 = row["id"], time: Int64 = row["time"], kind: String = row["kind"]
            guard let plain = try? sealer.open(Array(row["details"] as Data), context: context(id: id, time: time, kind: kind)),
                  let details = try? JSONDecoder().decode(Sealed.self, from: Data(plain))
            else {
                throw .dataLoss("audit entry \(id) of \(database) (\(kind) at \(Time.iso(time))) cannot be opened: it was altered or moved")
            }
            var entry = AuditEntry(time: time, kind: kind, actor: details.actor, peer: details.peer, detail: details.detail)
            entry.id = id
            result.append(entry)
        }
        return result
    }

    /// Opens every entry; returns how many and the problem found.
    func verify(_ pool: DatabasePool) throws(TwinError) -> (checked: Int, problems: [String]) {
        let count: Int
        do { count = try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM audit") } ?? 0 } catch {
            throw .unavailable("cannot read the audit log of \(database): \(error)")
        }
        do { _ = try entries(pool, limit: max(1, count), since: .min) } catch { return (count, [error.message]) }
        return (count, [])
    }
}
