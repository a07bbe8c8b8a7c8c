import Foundation
import GRDB
import TwinCore

/// `health_data.db`: device definitions and the maintenance log (the labels prediction learns
/// from), in SQLite through GRDB (WAL), with named append-only migrations.
///
/// Event details (component, fault, notes, who, source) are sealed with AES-256-GCM bound to the
/// row (id, device, time, kind), so a detail block moved to another row fails to open; only what
/// lookups need stays clear. The first start records a key check; a later start with a key that
/// does not match is refused.
public final class HealthDatabase: PlantStore {
    let pool: DatabasePool
    let sealer: Sealer
    public let path: String
    /// Sensor history (chunks and head) in the same database.
    public let series: SeriesStore

    /// Opens (creating if needed) the database and checks the keys against it.
    public init(
        path: String, keys: KeyRing, durability: Durability = .full, series options: SeriesStore.Options = .init()
    ) throws(TwinError) {
        self.path = path
        (pool, sealer) = try SealedDatabase.open(path: path, purpose: "health_data", keys: keys, durability: durability, migrator: Self.migrator)
        series = try SeriesStore(pool: pool, sealer: sealer, options: options)
    }

    /// The migration that binds device definitions (alarm limits) with row MACs.
    static let rowBindingMigration = "v4: device bindings"

    static func migrator(_ sealer: Sealer) -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: devices, events, key checks") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
                CREATE TABLE devices (id TEXT PRIMARY KEY, definition BLOB NOT NULL);
                CREATE TABLE events (
                    id INTEGER PRIMARY KEY,
                    device_id TEXT NOT NULL,
                    time INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    details BLOB NOT NULL
                );
                CREATE INDEX events_by_device_time ON events (device_id, time);
                CREATE INDEX events_by_time ON events (time);
                """)
        }
        migrator.registerMigration("v2: time series") { db in
            try db.execute(sql: """
                CREATE TABLE series (
                    id INTEGER PRIMARY KEY,
                    device_id TEXT NOT NULL,
                    sensor TEXT NOT NULL,
                    flushed_head INTEGER NOT NULL DEFAULT 0,
                    UNIQUE (device_id, sensor)
                );
                CREATE TABLE chunks (
                    id INTEGER PRIMARY KEY,
                    series_id INTEGER NOT NULL,
                    start INTEGER NOT NULL,
                    end INTEGER NOT NULL,
                    count INTEGER NOT NULL,
                    raw INTEGER NOT NULL,
                    data BLOB NOT NULL
                );
                CREATE INDEX chunks_by_series_end ON chunks (series_id, end);
                CREATE INDEX chunks_by_end ON chunks (end);
                CREATE TABLE head (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
                """)
        }
        migrator.registerMigration("v3: alerts") { db in
            try db.execute(sql: """
                CREATE TABLE alerts (
                    id TEXT PRIMARY KEY,
                    device_id TEXT NOT NULL,
                    state TEXT NOT NULL,
                    updated_at INTEGER NOT NULL,
                    details BLOB NOT NULL
                );
                CREATE INDEX alerts_by_state ON alerts (state, updated_at);
                """)
        }
        migrator.registerMigration(rowBindingMigration) { db in
            try db.execute(sql: "ALTER TABLE devices ADD COLUMN mac BLOB")
            try RowBinding.devices.bindAll(db, sealer: sealer)
        }
        migrator.registerMigration("v5: audit") { db in try db.execute(sql: AuditLog.schema) }
        migrator.registerMigration("v6: notifications outbox") { db in
            try db.execute(sql: """
                CREATE TABLE outbox (
                    id TEXT PRIMARY KEY,
                    channel TEXT NOT NULL,
                    state TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    details BLOB NOT NULL
                );
                CREATE INDEX outbox_by_state ON outbox (state, created_at);
                """)
        }
        return migrator
    }

    /// Moves the WAL into the database file (for measuring its size, or before a copy).
    public func checkpoint() throws(TwinError) {
        do { _ = try pool.writeWithoutTransaction { try $0.checkpoint(.truncate) } } catch {
            throw .unavailable("cannot checkpoint \(path): \(error)")
        }
    }

    /// Closes the database (checkpointing the WAL) when the daemon stops.
    public func close() {
        try? pool.close()
    }

    /// Close at shutdown: WAL checkpointed and removed, or an error saying why not.
    public func shutDown() throws(TwinError) { try SealedDatabase.shutDown(pool, path: path) }

    /// What the committing connection runs with (2 = FULL, 1 = NORMAL).
    public func synchronousSetting() throws(TwinError) -> Int { try SealedDatabase.synchronous(pool) }

    // MARK: Devices

    public func saveDevice(_ device: Device) throws(TwinError) {
        do {
            let definition = try JSONEncoder().encode(device)
            try pool.write { db in
                try db.execute(sql: "INSERT OR REPLACE INTO devices (id, definition) VALUES (?, ?)", arguments: [device.id, definition])
                try RowBinding.devices.bind(db, id: device.id, sealer: sealer)
            }
        } catch {
            throw .unavailable("cannot save device '\(device.id)': \(error)")
        }
    }

    /// The saved devices. A definition altered outside twind (its row MAC does not match: alarm
    /// limits changed in a backup, say) is refused with `dataLoss` naming the device.
    public func savedDevices() throws(TwinError) -> [Device] {
        do {
            return try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT \(RowBinding.devices.selection) FROM devices ORDER BY id").map { row in
                    guard RowBinding.devices.check(row, sealer: sealer) else {
                        throw TwinError.dataLoss(
                            "the definition of device '\(row["id"] as String)' in \(path) was altered outside twind (row MAC does not match); restore a good backup or run twind verify")
                    }
                    return try JSONDecoder().decode(Device.self, from: row["definition"] as Data)
                }
            }
        } catch let error as TwinError {
            throw error
        } catch {
            throw .dataLoss("cannot read saved devices from \(path): \(error)")
        }
    }

    /// Devices whose row MAC is missing or does not match.
    func unboundDevices() throws(TwinError) -> [String] {
        do {
            return try pool.read { db in
                try RowBinding.devices.unbound(db, sealer: sealer).map { "device \($0): definition (alarm limits) altered outside twind (row MAC does not match)" }
            }
        } catch {
            throw .unavailable("cannot read \(path): \(error)")
        }
    }

    // MARK: Events

    struct SealedDetails: Codable {
        var component: String
        var fault: String
        var notes: String
        var recordedBy: String
        var source: MaintenanceEvent.Source
        var expectedFailureAt: Nanos?
        var duration: Nanos?
    }

    static func context(id: Int64, device: String, time: Nanos, kind: String) -> [UInt8] {
        Array("health_data.db/events/\(id)/\(device)/\(time)/\(kind)".utf8)
    }

    public func appendEvents(_ events: [MaintenanceEvent]) throws(TwinError) -> [MaintenanceEvent] {
        if events.isEmpty { return [] }
        do {
            return try pool.write { db in
                var next = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(id), 0) + 1 FROM events") ?? 1
                let statement = try db.cachedStatement(sql: "INSERT INTO events (id, device_id, time, kind, details) VALUES (?, ?, ?, ?, ?)")
                var stored: [MaintenanceEvent] = []
                for var event in events {
                    let details = SealedDetails(
                        component: event.component, fault: event.fault, notes: event.notes, recordedBy: event.recordedBy,
                        source: event.source, expectedFailureAt: event.expectedFailureAt, duration: event.duration)
                    let plain = Array(try JSONEncoder().encode(details))
                    let sealed = sealer.seal(plain, context: Self.context(id: next, device: event.deviceID, time: event.time, kind: event.kind.rawValue))
                    try statement.execute(arguments: [next, event.deviceID, event.time, event.kind.rawValue, Data(sealed)])
                    event.id = String(next)
                    stored.append(event)
                    next += 1
                }
                return stored
            }
        } catch {
            throw .unavailable("cannot record events: \(error)")
        }
    }

    public func events(_ query: EventQuery) throws(TwinError) -> [MaintenanceEvent] {
        var clauses: [String] = []
        var arguments: [any DatabaseValueConvertible] = []
        if !query.deviceIDs.isEmpty {
            clauses.append("device_id IN (\(query.deviceIDs.map { _ in "?" }.joined(separator: ",")))")
            arguments += query.deviceIDs.sorted()
        }
        if !query.kinds.isEmpty {
            clauses.append("kind IN (\(query.kinds.map { _ in "?" }.joined(separator: ",")))")
            arguments += query.kinds.map(\.rawValue).sorted()
        }
        if let from = query.from { clauses.append("time >= ?"); arguments.append(from) }
        if let to = query.to { clauses.append("time < ?"); arguments.append(to) }
        if let before = query.before {
            clauses.append("(time < ? OR (time = ? AND id < ?))")
            arguments += [before.time, before.time, before.id]
        }
        let sql = "SELECT id, device_id, time, kind, details FROM events"
            + (clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND "))
            + " ORDER BY time DESC, id DESC LIMIT \(max(1, query.limit))"
        let rows: [Row]
        do {
            rows = try pool.read { db in try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)) }
        } catch {
            throw .unavailable("cannot read events: \(error)")
        }
        var result: [MaintenanceEvent] = []
        result.reserveCapacity(rows.count)
        for row in rows {
            let id: Int64 = row["id"]
            let device: String = row["device_id"]
            let time: Int64 = row["time"]
            let kindText: String = row["kind"]
            let blob = Array(row["details"] as Data)
            guard let kind = MaintenanceEvent.Kind(rawValue: kindText),
                  let plain = try? sealer.open(blob, context: Self.context(id: id, device: device, time: time, kind: kindText)),
                  let details = try? JSONDecoder().decode(SealedDetails.self, from: Data(plain))
            else {
                throw .dataLoss("event \(id) of device '\(device)' at \(time) cannot be opened: it was altered or moved, or needs another key")
            }
            result.append(MaintenanceEvent(
                id: String(id), deviceID: device, kind: kind, time: time, component: details.component, fault: details.fault,
                notes: details.notes, recordedBy: details.recordedBy, source: details.source,
                expectedFailureAt: details.expectedFailureAt, duration: details.duration))
        }
        return result
    }
}

extension TwinError {
    public static func dataLoss(_ message: String) -> TwinError { .init(.dataLoss, message) }
}

// MARK: Alerts (sealed; id, device, state and time in clear for queries)

extension HealthDatabase: AlertStore {
    static func alertContext(_ id: String, device: String) -> [UInt8] { Array("health_data.db/alerts/\(id)/\(device)".utf8) }

    /// Inserts or replaces alerts, with the audit entry of the change in the same transaction;
    /// durable when it returns.
    @discardableResult
    public func saveAlerts(_ alerts: [Alert], audit: AuditEntry?, notices: [Notice]) throws(TwinError) -> [Notice] {
        if alerts.isEmpty && notices.isEmpty { return [] }
        do {
            return try pool.write { db in
                try auditLog.insert(db, audit)
                let taken = try insertNotices(db, notices, replacing: false)
                for alert in alerts {
                    let sealed = sealer.seal(Array(try JSONEncoder().encode(alert)), context: Self.alertContext(alert.id, device: alert.deviceID))
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO alerts (id, device_id, state, updated_at, details) VALUES (?, ?, ?, ?, ?)",
                        arguments: [alert.id, alert.deviceID, alert.state.rawValue, alert.updatedAt, Data(sealed)])
                }
                return taken
            }
        } catch {
            throw .unavailable("cannot save alerts: \(error)")
        }
    }

    var auditLog: AuditLog { AuditLog(database: "health_data.db", sealer: sealer) }

    static func noticeContext(_ id: String, _ channel: String) -> [UInt8] { Array("health_data.db/outbox/\(id)/\(channel)".utf8) }

    /// Returns the notices it wrote (with `replacing` false, those not there before).
    @discardableResult
    func insertNotices(_ db: Database, _ notices: [Notice], replacing: Bool) throws -> [Notice] {
        var written: [Notice] = []
        for n in notices {
            let sealed = sealer.seal(Array(try JSONEncoder().encode(n)), context: Self.noticeContext(n.id, n.channel))
            try db.execute(
                sql: "INSERT OR \(replacing ? "REPLACE" : "IGNORE") INTO outbox (id, channel, state, created_at, details) VALUES (?, ?, ?, ?, ?)",
                arguments: [n.id, n.channel, n.state.rawValue, n.createdAt, Data(sealed)])
            if db.changesCount > 0 { written.append(n) }
        }
        return written
    }

    /// Audit entries of plant changes (alerts acknowledged and resolved), newest first.
    public func auditEntries(limit: Int = 100, since: Nanos = .min) throws(TwinError) -> [AuditEntry] {
        try auditLog.entries(pool, limit: limit, since: since)
    }

    /// Retention for the plant's audit entries; returns how many went.
    public func pruneAudit(olderThan time: Nanos) throws(TwinError) -> Int {
        try delete("DELETE FROM audit WHERE time < ?", time, what: path)
    }

    /// Runs a retention DELETE; returns how many rows went.
    func delete(_ sql: String, _ time: Nanos, what: String) throws(TwinError) -> Int {
        do {
            return try pool.write { db in
                try db.execute(sql: sql, arguments: [time])
                return db.changesCount
            }
        } catch {
            throw .unavailable("cannot apply retention to \(what): \(error)")
        }
    }

    /// Alerts not resolved, and those resolved since `resolvedSince`.
    public func alerts(resolvedSince: Nanos) throws(TwinError) -> [Alert] {
        try openSealed(
            "SELECT id, device_id AS scope, details FROM alerts WHERE state != 'resolved' OR updated_at >= ?", [resolvedSince], what: "alert",
            context: Self.alertContext)
    }

    /// Rows of (id, scope, details) whose details are sealed JSON bound to (id, scope): alerts
    /// (scope: the device) and the outbox (scope: the channel). A row that does not open was
    /// altered or moved.
    func openSealed<T: Decodable>(
        _ sql: String, _ arguments: StatementArguments = [], what: String, context: (String, String) -> [UInt8]
    ) throws(TwinError) -> [T] {
        let rows: [Row]
        do {
            rows = try pool.read { db in try Row.fetchAll(db, sql: sql, arguments: arguments) }
        } catch {
            throw .unavailable("cannot read \(what)s: \(error)")
        }
        return try rows.map { row throws(TwinError) -> T in
            let id: String = row["id"], scope: String = row["scope"]
            guard let plain = try? sealer.open(Array(row["details"] as Data), context: context(id, scope)),
                  let value = try? JSONDecoder().decode(T.self, from: Data(plain))
            else { throw .dataLoss("\(what) \(id) of \(scope) cannot be opened: it was altered or moved") }
            return value
        }
    }
}

extension HealthDatabase {
    /// Chunks of sensor history stored (for the store-size metrics).
    public func chunkCount() throws(TwinError) -> Int {
        do { return try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM chunks") } ?? 0 } catch {
            throw .unavailable("cannot count chunks: \(error)")
        }
    }
}

// MARK: Notifications outbox (sealed; id, channel, state and time in clear for queries)

extension HealthDatabase: NoticeStore {
    public func enqueueNotices(_ notices: [Notice]) throws(TwinError) -> [Notice] {
        if notices.isEmpty { return [] }
        do { return try pool.write { db in try insertNotices(db, notices, replacing: false) } } catch {
            throw .unavailable("cannot queue notifications: \(error)")
        }
    }

    public func updateNotices(_ notices: [Notice]) throws(TwinError) {
        if notices.isEmpty { return }
        do { _ = try pool.write { db in try insertNotices(db, notices, replacing: true) } } catch {
            throw .unavailable("cannot save notifications: \(error)")
        }
    }

    public func pendingNotices() throws(TwinError) -> [Notice] {
        try openSealed(
            "SELECT id, channel AS scope, details FROM outbox WHERE state = 'pending' ORDER BY created_at, id", what: "notification",
            context: Self.noticeContext)
    }

    public func pruneNotices(before time: Nanos) throws(TwinError) -> Int {
        try delete("DELETE FROM outbox WHERE state != 'pending' AND created_at < ?", time, what: "the notifications outbox")
    }
}
