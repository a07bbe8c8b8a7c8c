/// What the daemon needs from storage for the plant: device definitions and the maintenance log.
/// `TwinStore` implements it on SQLite; a server-grade backend can implement it too.
public protocol PlantStore: Sendable {
    /// Saves (inserts or replaces) a device definition; durable when it returns.
    func saveDevice(_ device: Device) throws(TwinError)
    /// Every saved device definition.
    func savedDevices() throws(TwinError) -> [Device]
    /// Appends events (ids are assigned); durable when it returns. Returns them with their ids.
    func appendEvents(_ events: [MaintenanceEvent]) throws(TwinError) -> [MaintenanceEvent]
    /// Events matching a query, newest first.
    func events(_ query: EventQuery) throws(TwinError) -> [MaintenanceEvent]
}

/// A filter over the maintenance log; empty sets match everything.
public struct EventQuery: Sendable {
    public var deviceIDs: Set<String> = []
    public var kinds: Set<MaintenanceEvent.Kind> = []
    public var from: Nanos?
    public var to: Nanos?
    public var limit = 500
    /// Continue after this (time, id) position (paging, newest first).
    public var before: (time: Nanos, id: Int64)?

    public init() {}
}

/// Where alerts are kept: `TwinStore` seals them in health_data.db; tests keep them in memory.
public protocol AlertStore: Sendable {
    /// Saves (inserts or replaces) alerts and, in the same transaction, the audit entry of the
    /// person's change that caused it (nil for twind's own) and the notices they make (added
    /// to the outbox unless one of the same id is there already); durable when it returns.
    /// Returns the notices the outbox took (those whose id it did not hold yet).
    @discardableResult
    func saveAlerts(_ alerts: [Alert], audit: AuditEntry?, notices: [Notice]) throws(TwinError) -> [Notice]
    /// Every alert not resolved, and those resolved since `resolvedSince`.
    func alerts(resolvedSince: Nanos) throws(TwinError) -> [Alert]
}

extension AlertStore {
    public func saveAlerts(_ alerts: [Alert], audit: AuditEntry?) throws(TwinError) {
        try saveAlerts(alerts, audit: audit, notices: [])
    }
}

/// The notifications outbox: notices wait here until delivered, so a restart or a dead
/// endpoint loses none.
public protocol NoticeStore: Sendable {
    /// Adds notices whose id is not there yet (a notice already there stays as it is); returns
    /// those it added.
    func enqueueNotices(_ notices: [Notice]) throws(TwinError) -> [Notice]
    /// Replaces notices (after a delivery attempt).
    func updateNotices(_ notices: [Notice]) throws(TwinError)
    /// Every notice still pending, oldest first.
    func pendingNotices() throws(TwinError) -> [Notice]
    /// Removes delivered and failed notices older than this; returns how many went.
    func pruneNotices(before time: Nanos) throws(TwinError) -> Int
}
