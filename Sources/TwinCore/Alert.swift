/// An alert: one per (device, rule) while it is not resolved; it updates instead of repeating.
public struct Alert: Sendable, Codable, Equatable {
    public enum Severity: Int, Sendable, Codable, Comparable {
        case info = 1, warning, critical
        public static func < (a: Severity, b: Severity) -> Bool { a.rawValue < b.rawValue }
        /// "info", "warning", "critical": as rules files, notifications and metrics name it.
        public var name: String { self == .critical ? "critical" : self == .warning ? "warning" : "info" }
        public init?(name: String) {
            switch name {
            case "info": self = .info
            case "warning": self = .warning
            case "critical": self = .critical
            default: return nil
            }
        }
    }
    public enum State: String, Sendable, Codable { case open, acknowledged, resolved }

    public var id: String
    public var deviceID: String
    /// e.g. "bearing_temp.high", "no_data", "predicted_failure_24h".
    public var rule: String
    public var sensor: String
    public var severity: Severity
    public var state: State
    public var message: String
    public var value: Double?
    public var openedAt: Nanos
    public var updatedAt: Nanos
    public var occurrences: UInt32
    public var acknowledgedBy = ""
    public var acknowledgedAt: Nanos?
    public var ackComment = ""
    public var resolvedBy = ""
    public var resolvedAt: Nanos?
    public var resolveComment = ""
    /// Since when the condition has been clear (auto-resolve after a while).
    public var clearSince: Nanos?
    /// The version of the rule set in force when it opened (`AlertRules.version`); nil for
    /// alerts raised before rules were configurable.
    public var ruleVersion: String?
    /// Shelving (ISA-18.2): who, why, and until when (nil once it came back).
    public struct Shelf: Sendable, Codable, Equatable {
        public var until: Nanos?
        public var by: String
        public var reason: String
        public var at: Nanos
        public init(until: Nanos?, by: String, reason: String, at: Nanos) {
            self.until = until
            self.by = by
            self.reason = reason
            self.at = at
        }
    }
    public var shelf: Shelf?
    /// Times it resolved and came back within the chatter window (opened again, not anew); nil: none.
    public var reopened: UInt32?

    public func isShelved(at now: Nanos) -> Bool { (shelf?.until ?? .min) > now }
    /// Came back at least twice within the chatter window.
    public var chattering: Bool { (reopened ?? 0) >= 2 }

    public init(id: String, deviceID: String, rule: String, sensor: String, severity: Severity, message: String, value: Double?, at time: Nanos) {
        self.id = id
        self.deviceID = deviceID
        self.rule = rule
        self.sensor = sensor
        self.severity = severity
        self.state = .open
        self.message = message
        self.value = value
        self.openedAt = time
        self.updatedAt = time
        self.occurrences = 1
    }
}
