import Foundation
import Logging
import Synchronization
import TwinCore
import TwinEngines

/// Alerts with a lifecycle: rules are evaluated on every health pass; one alert per (device,
/// rule) is open at a time and updates instead of repeating; open → acknowledged (who, when,
/// comment) → resolved (by hand, or by itself once the condition has stayed clear for
/// `clearFor`). Kept sealed in health_data.db.
public final class AlertBook: Sendable {
    public struct Options: Sendable {
        /// A condition must hold this long before an alert opens.
        public var minimumDuration: Nanos = 30 * Time.second
        /// An alert resolves itself after its condition has been clear this long.
        public var clearFor: Nanos = 10 * Time.minute
        public init() {}
    }

    public struct Condition: Sendable, Equatable {
        public var rule: String
        public var sensor: String
        public var severity: Alert.Severity
        public var message: String
        public var value: Double?
    }

    /// One device as a health pass sees it.
    public struct Subject: Sendable {
        public var device: Device
        public var state: DeviceState
        public var verdict: HealthEngine.Verdict?
        public var outlook: DeviceOutlook?
        public init(device: Device, state: DeviceState, verdict: HealthEngine.Verdict?, outlook: DeviceOutlook?) {
            self.device = device
            self.state = state
            self.verdict = verdict
            self.outlook = outlook
        }
    }

    let store: any AlertStore
    let options: Options
    let logger: Logger
    let clock: any TwinClock
    /// Told the open alerts by severity ("info", "warning", "critical") after every pass.
    let counted: @Sendable ([String: Int]) -> Void
    private let state = Mutex<(alerts: [String: Alert], pendingSince: [String: Nanos], lastSaved: [String: Nanos])>(([:], [:], [:]))
    let sequence = Atomic<Int>(0)
    /// Told every alert that opened, changed or resolved (twind streams them in StreamUpdates).
    let changed: @Sendable ([Alert]) -> Void

    public init(
        store: any AlertStore, options: Options = Options(), clock: any TwinClock = SystemClock(), logger: Logger,
        counted: @escaping @Sendable ([String: Int]) -> Void = { _ in }, changed: @escaping @Sendable ([Alert]) -> Void = { _ in }
    ) throws(TwinError) {
        self.store = store
        self.changed = changed
        self.counted = counted
        self.options = options
        self.clock = clock
        self.logger = logger
        let loaded = try store.alerts(resolvedSince: clock.now() - 30 * Time.day)
        state.withLock { $0.alerts = Dictionary(loaded.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }) }
    }

    /// The conditions that hold for a device now, from its verdict, outlook and state.
    public static func conditions(device: Device, state: DeviceState, verdict: HealthEngine.Verdict?, outlook: DeviceOutlook?) -> [Condition] {
        var result: [Condition] = []
        if state == .offline {
            result.append(Condition(rule: "no_data", sensor: "", severity: .warning, message: "\(device.id) has sent no data for several intervals", value: nil))
        }
        for f in verdict?.factors ?? [] {
            switch f.kind {
            case .limit where f.penalty >= 60:
                let spec = device.sensors.first { $0.name == f.subject }
                let high = spec?.alarmHigh.map { (f.value ?? 0) >= $0 } ?? true
                result.append(Condition(rule: "\(f.subject).\(high ? "high" : "low")", sensor: f.subject, severity: .critical, message: f.description, value: f.value))
            case .trend where f.penalty >= 15:
                result.append(Condition(rule: "\(f.subject).rate", sensor: f.subject, severity: .warning, message: f.description, value: f.trendPerDay))
            case .deviation where f.penalty >= 30:
                result.append(Condition(rule: "\(f.subject).anomaly", sensor: f.subject, severity: .warning, message: f.description, value: f.value))
            case .stuck, .spikes, .dropout:
                result.append(Condition(rule: "\(f.subject).sensor_\(f.kind.rawValue)", sensor: f.subject, severity: .info, message: f.description, value: f.value))
            default:
                break
            }
        }
        if let outlook, state != .failed {
            if outlook.within24h >= 0.5 {
                result.append(Condition(rule: "predicted_failure_24h", sensor: outlook.lead ?? "", severity: .critical, message: String(format: "failure predicted within 24 h (p=%.2f)", outlook.within24h), value: outlook.within24h))
            } else if outlook.within7d >= 0.7 {
                result.append(Condition(rule: "predicted_failure_7d", sensor: outlook.lead ?? "", severity: .warning, message: String(format: "failure predicted within 7 days (p=%.2f)", outlook.within7d), value: outlook.within7d))
            }
        }
        return result
    }

    /// Applies the rules to every device; returns the open (not resolved) alert count per device.
    public func evaluate(_ devices: [Subject]) -> [String: UInt32] {
        let now = clock.now()
        var holding: [String: Condition] = [:]  // by "device|rule"
        for d in devices {
            for c in Self.conditions(device: d.device, state: d.state, verdict: d.verdict, outlook: d.outlook) { holding["\(d.device.id)|\(c.rule)"] = c }
        }
        let (changed, counts, bySeverity) = state.withLock { s -> ([Alert], [String: UInt32], [String: Int]) in
            var changed: [Alert] = []
            var active: [String: String] = [:]  // key → alert id
            for (id, a) in s.alerts where a.state != .resolved { active["\(a.deviceID)|\(a.rule)"] = id }
            for (key, c) in holding {
                if let id = active[key], var a = s.alerts[id] {
                    a.occurrences += a.clearSince == nil ? 0 : 1
                    a.clearSince = nil
                    a.updatedAt = now
                    a.value = c.value
                    a.message = c.message
                    if c.severity > a.severity { a.severity = c.severity }
                    s.alerts[id] = a
                    if now - (s.lastSaved[id] ?? 0) >= Time.minute { changed.append(a); s.lastSaved[id] = now }
                    continue
                }
                let since = s.pendingSince[key] ?? now
                s.pendingSince[key] = since
                // Predictions need no waiting; readings and missing data must persist a while.
                guard now - since >= options.minimumDuration || c.rule.hasPrefix("predicted") else { continue }
                let device = String(key.split(separator: "|")[0])
                let id = "alert-\(now / Time.millisecond)-\(sequence.add(1, ordering: .relaxed).newValue)"
                let a = Alert(id: id, deviceID: device, rule: c.rule, sensor: c.sensor, severity: c.severity, message: c.message, value: c.value, at: now)
                s.alerts[id] = a
                s.lastSaved[id] = now
                changed.append(a)
            }
            for key in s.pendingSince.keys where holding[key] == nil { s.pendingSince[key] = nil }
            // Cleared conditions: resolve after they stay clear.
            for (key, id) in active where holding[key] == nil {
                guard var a = s.alerts[id] else { continue }
                if a.clearSince == nil {
                    a.clearSince = now
                    s.alerts[id] = a
                } else if now - a.clearSince! >= options.clearFor {
                    a.state = .resolved
                    a.resolvedBy = "system"
                    a.resolvedAt = now
                    a.updatedAt = now
                    a.resolveComment = "condition cleared for \(DurationText.format(options.clearFor))"
                    s.alerts[id] = a
                    changed.append(a)
                }
            }
            // Forget resolved alerts after 30 days (they stay in the database); only alerts still
            // open are saved again.
            s.alerts = s.alerts.filter { $0.value.state != .resolved || now - $0.value.updatedAt < 30 * Time.day }
            s.lastSaved = s.lastSaved.filter { s.alerts[$0.key].map { $0.state != .resolved } ?? false }
            var counts: [String: UInt32] = [:]
            var bySeverity: [String: Int] = [:]
            for a in s.alerts.values where a.state != .resolved {
                counts[a.deviceID, default: 0] += 1
                bySeverity[a.severity == .critical ? "critical" : a.severity == .warning ? "warning" : "info", default: 0] += 1
            }
            return (changed, counts, bySeverity)
        }
        counted(bySeverity)
        do { try store.saveAlerts(changed, audit: nil) } catch { logger.error("cannot save alerts", metadata: ["error": "\(error.message)"]) }
        self.changed(changed)
        // Devices whose last alert resolved get a zero count.
        var result = counts
        for d in devices where result[d.device.id] == nil { result[d.device.id] = 0 }
        return result
    }

    public func list(devices: Set<String>, states: Set<Alert.State>, minimum: Alert.Severity?) -> [Alert] {
        state.withLock { s in
            s.alerts.values.filter { a in
                (devices.isEmpty || devices.contains(a.deviceID)) && states.contains(a.state) && (minimum.map { a.severity >= $0 } ?? true)
            }
        }.sorted { a, b in a.severity != b.severity ? a.severity > b.severity : a.updatedAt != b.updatedAt ? a.updatedAt > b.updatedAt : a.id < b.id }
    }

    /// Acknowledges or resolves by hand; durable before it returns, with the audit entry
    /// `audit` makes of the changed alert committed in the same transaction (both or neither).
    public func change(
        _ id: String, to target: Alert.State, by user: String, comment: String, audit: (Alert) -> AuditEntry? = { _ in nil }
    ) throws(TwinError) -> Alert {
        let now = clock.now()
        guard comment.count <= 1_000 else { throw .invalidArgument("comment is limited to 1,000 characters") }
        let updated = try state.withLock { s throws(TwinError) -> Alert in
            guard var a = s.alerts[id] else { throw .missing(.alertNotFound, type: "twin.v1.Alert", name: id, "alert '\(id.prefix(64))' not found (twin alerts lists them)") }
            switch (a.state, target) {
            case (.resolved, _):
                throw .failedPrecondition("alert \(id) is already resolved", reason: .alertStateConflict)
            case (.acknowledged, .acknowledged):
                throw .failedPrecondition("alert \(id) was already acknowledged by \(a.acknowledgedBy)", reason: .alertStateConflict)
            case (_, .acknowledged):
                a.state = .acknowledged
                a.acknowledgedBy = user
                a.acknowledgedAt = now
                a.ackComment = comment
            default:
                a.state = .resolved
                a.resolvedBy = user
                a.resolvedAt = now
                a.resolveComment = comment
            }
            a.updatedAt = now
            return a
        }
        try store.saveAlerts([updated], audit: audit(updated))
        state.withLock { $0.alerts[id] = updated }
        changed([updated])
        return updated
    }
}
