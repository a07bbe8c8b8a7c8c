import Foundation
import GRDB
import TwinCore

/// A keyed MAC over the clear columns of a row that grant access or set limits (a user's role,
/// password hash, disabled flag and session cut-off; an API key's role, secret hash, scope and
/// revocation; a device's definition with its alarm limits), so that a database altered outside
/// twind — a tampered backup restored by an admin, a hand edit — is refused instead of obeyed.
///
/// The MAC is a sealed block with no plaintext (AES-256-GCM over the row as associated data:
/// a GMAC under the database's data key), so it carries its key id and survives key rotation
/// like every other sealed value. The row's id is among the bound columns: a MAC copied to
/// another row fails.
struct RowBinding: Sendable {
    let table: String
    let idColumn: String
    /// The bound columns, the id column first.
    let columns: [String]

    static let users = RowBinding(
        table: "users", idColumn: "id",
        columns: ["id", "username", "role", "disabled", "created_at", "password_hash", "sessions_not_before"])
    static let apiKeys = RowBinding(
        table: "api_keys", idColumn: "id",
        columns: ["id", "name", "role", "secret_hash", "created_at", "created_by", "revoked_at", "scope"])
    static let devices = RowBinding(table: "devices", idColumn: "id", columns: ["id", "definition"])

    /// The SQL list of the bound columns and the MAC, for SELECTs that check rows.
    var selection: String { (columns + ["mac"]).joined(separator: ", ") }

    /// The row as associated data: table and, per column, its name and a typed, length-prefixed
    /// value, so no two different rows encode alike.
    func context(_ row: Row) -> [UInt8] {
        var bytes = Array("twin/v1/row/\(table)".utf8)
        for column in columns {
            bytes.append(0)
            bytes += Array(column.utf8)
            let value: DatabaseValue = row[column] ?? .null
            switch value.storage {
            case .null:
                bytes.append(0)
            case .int64(let n):
                bytes.append(1)
                withUnsafeBytes(of: n.bigEndian) { bytes += $0 }
            case .double(let d):
                bytes.append(2)
                withUnsafeBytes(of: d.bitPattern.bigEndian) { bytes += $0 }
            case .string(let s):
                bytes.append(3)
                append(Array(s.utf8), to: &bytes)
            case .blob(let data):
                bytes.append(4)
                append(Array(data), to: &bytes)
            }
        }
        return bytes
    }

    private func append(_ value: [UInt8], to bytes: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(value.count).bigEndian) { bytes += $0 }
        bytes += value
    }

    /// Whether a row (selected with `selection`) carries a valid MAC for its columns.
    func check(_ row: Row, sealer: Sealer) -> Bool {
        guard let mac = row["mac"] as Data? else { return false }
        return (try? sealer.open(Array(mac), context: context(row))) == []
    }

    /// Recomputes the MAC of one row from what it holds now: called inside the transaction
    /// that changed the row.
    func bind(_ db: Database, id: any DatabaseValueConvertible, sealer: Sealer) throws {
        guard let row = try Row.fetchOne(db, sql: "SELECT \(selection) FROM \(table) WHERE \(idColumn) = ?", arguments: [id]) else { return }
        let mac = sealer.seal([], context: context(row))
        try db.execute(sql: "UPDATE \(table) SET mac = ? WHERE \(idColumn) = ?", arguments: [Data(mac), id])
    }

    /// Binds every row (the migration that introduces MACs trusts the rows it finds once).
    func bindAll(_ db: Database, sealer: Sealer) throws {
        for id in try DatabaseValue.fetchAll(db, sql: "SELECT \(idColumn) FROM \(table)") {
            try bind(db, id: id, sealer: sealer)
        }
    }

    /// The ids of the rows whose MAC is missing or does not match.
    func unbound(_ db: Database, sealer: Sealer) throws -> [String] {
        try Row.fetchAll(db, sql: "SELECT \(selection) FROM \(table) ORDER BY \(idColumn)").compactMap { row in
            check(row, sealer: sealer) ? nil : (row[idColumn] as DatabaseValue).storage.text
        }
    }
}

extension DatabaseValue.Storage {
    /// The value for a message (ids are text or integers).
    var text: String {
        switch self {
        case .null: "NULL"
        case .int64(let n): String(n)
        case .double(let d): String(d)
        case .string(let s): s
        case .blob(let data): "\(data.count) bytes"
        }
    }
}
