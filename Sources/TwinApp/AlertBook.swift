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
        /// A condition back within this long of its alert resolving opens that alert again
        /// (counted in `reopened`; twice or more is chattering) instead of a new one.
        public var chatterWindow: Nanos = 10 * Time.minute
        public init() {}
    }

    public struct Condition: Sendable, Equatable {
        public var rule: String
        public var sensor: String
        public var severity: Alert.Severity
        public var message: String
        public var value: Double?
        /// How long it must hold before an alert opens, and stay clear before it resolves.
        public var hold: Nanos = 0
        public var clearAfter: Nanos = 10 * Time.minute
    }

    /// One device as a health pass sees it.
    public struct Subject: Sendable {
        public var device: Device
        public var state: DeviceState
        public var verdict: HealthEngine.Verdict?
        public var outlook: DeviceOutlook?
        /// Whether the device has ever reported: one that never did has not gone offline (it
        /// may not be commissioned yet), so `no_data` does not hold for it.
        public var reported: Bool
        public init(device: Device, state: DeviceState, verdict: HealthEngine.Verdict?, outlook: DeviceOutlook?, reported: Bool = true) {
            self.device = device
            self.state = state
            self.verdict = verdict
            self.outlook = outlook
            self.reported = reported
        }
    }

    let store: any AlertStore
    let options: Options
    let logger: Logger
    let clock: any TwinClock
    /// Told the open alerts by severity ("info", "warning", "critical") after every pass.
    let counted: @Sendable ([String: Int]) -> Void
    private let state = Mutex<State>(State())
    private struct State {
        var alerts: [String: Alert] = [:]
        var pendingSince: [String: Nanos] = [:]
        var lastSaved: [String: Nanos] = [:]
        /// How long each raised condition must stay clear (from the rule that raised it).
        var clearAfter: [String: Nanos] = [:]
        /// Recorded maintenance per device: its alerts are suppressed within these windows.
        var maintenance: [String: [(from: Nanos, until: Nanos)]] = [:]
    }
    let current: Mutex<AlertRules>
    let sequence = Atomic<Int>(0)
    /// Told every alert that opened, changed or resolved (twind streams them in StreamUpdates).
    let changed: @Sendable ([Alert]) -> Void
    /// Routes alert changes to notification channels; its notices are saved with the alerts.
    let notifier = Mutex<Notifier?>(nil)

    /// Sends alert changes through `notifier` from now on.
    public func attach(_ notifier: Notifier) { self.notifier.withLock { $0 = notifier } }

    public init(
        store: any AlertStore, options: Options = Options(), rules: AlertRules? = nil, clock: any TwinClock = SystemClock(), logger: Logger,
        counted: @escaping @Sendable ([String: Int]) -> Void = { _ in }, changed: @escaping @Sendable ([Alert]) -> Void = { _ in }
    ) throws(TwinError) {
        self.store = store
        self.changed = changed
        self.counted = counted
        self.options = options
        self.clock = clock
        self.logger = logger
        current = Mutex(rules ?? AlertRules.builtIn(defaultHold: options.minimumDuration, defaultClear: options.clearFor))
        let loaded = try store.alerts(resolvedSince: clock.now() - 30 * Time.day)
        state.withLock { $0.alerts = Dictionary(loaded.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }) }
    }

    /// The rules in force.
    public var rules: AlertRules { current.withLock { $0 } }

    /// Puts another set of rules in force from the next pass on; alerts already open stay and
    /// resolve by the new rules (a rule that is gone or disabled holds no more: its alerts clear).
    public func replaceRules(_ rules: AlertRules) {
        current.withLock { $0 = rules }
    }

    /// The conditions that hold for a device now under `rules`. `raised` tells whether an alert
    /// (or a pending one) exists for a rule name: a raised value rule clears only past its deadband.
    public static func conditions(
        device: Device, state: DeviceState, verdict: HealthEngine.Verdict?, outlook: DeviceOutlook?, rules: [AlertRules.Rule],
        reported: Bool = true, raised: (String) -> Bool = { _ in false }
    ) -> [Condition] {
        var result: [Condition] = []
        var shortestPrediction: Nanos?
        func add(_ r: AlertRules.Rule, _ name: String, sensor: String, message: String, value: Double?) {
            result.append(Condition(rule: name, sensor: sensor, severity: r.severity, message: message, value: value, hold: r.hold, clearAfter: r.clearAfter))
        }
        for r in rules where r.enabled {
            switch r.condition {
            case .noData:
                if state == .offline && reported { add(r, r.name, sensor: "", message: "\(device.id) has sent no data for several intervals", value: nil) }
            case .predictedFailure:
                guard let outlook, state != .failed else { continue }
                let p = r.horizon <= 24 * Time.hour ? outlook.within24h : outlook.within7d
                guard p >= r.probability else { continue }
                add(r, r.name, sensor: outlook.lead ?? "", message: String(format: "failure predicted within %@ (p=%.2f)", r.horizon <= 24 * Time.hour ? "24 h" : "7 days", p), value: p)
                shortestPrediction = min(shortestPrediction ?? .max, r.horizon)
            default:
                let sensors = r.sensors.isEmpty ? device.sensors : r.sensors.compactMap { name in device.sensors.first { $0.name == name } }
                for spec in sensors {
                    let key = "\(spec.name).\(r.name)"
                    let unit = spec.unit.isEmpty ? "" : " \(spec.unit)"
                    switch r.condition {
                    case .above, .below, .aboveAlarm, .belowAlarm:
                        guard let level = verdict?.levels.first(where: { $0.sensor == spec.name }), !level.sensorFault else { continue }
                        let limit: Double?
                        switch r.condition {
                        case .above, .below: limit = r.value
                        case .aboveAlarm: limit = spec.alarmHigh
                        default: limit = spec.alarmLow
                        }
                        guard let limit else { continue }
                        let up = r.condition == .above || r.condition == .aboveAlarm
                        // Raised once, a value rule clears only `deadband` back inside its limit.
                        let band = raised(key) ? r.deadband : 0
                        let holds = up ? level.value >= limit - band : level.value <= limit + band
                        guard holds else { continue }
                        let what = r.condition == .above || r.condition == .below ? "" : "its alarm limit "
                        add(r, key, sensor: spec.name, message: "\(spec.name) \(Self.format(level.value))\(unit) is \(up ? "above" : "below") \(what)\(Self.format(limit))\(unit)", value: level.value)
                    case .rate:
                        guard let f = verdict?.factors.first(where: { $0.kind == .trend && $0.subject == spec.name }) else { continue }
                        if let minimum = r.value {
                            guard abs(f.trendPerDay ?? 0) >= minimum else { continue }
                        } else {
                            guard f.penalty >= 15 else { continue }
                        }
                        add(r, key, sensor: spec.name, message: f.description, value: f.trendPerDay)
                    case .anomaly:
                        guard let f = verdict?.factors.first(where: { $0.kind == .deviation && $0.subject == spec.name }), f.penalty >= 30 else { continue }
                        add(r, key, sensor: spec.name, message: f.description, value: f.value)
                    case .sensorFault:
                        for f in verdict?.factors ?? [] where f.subject == spec.name {
                            guard let kind = AlertRules.FaultKind(rawValue: f.kind.rawValue), r.kinds.contains(kind) else { continue }
                            add(r, "\(key)_\(kind.rawValue)", sensor: spec.name, message: f.description, value: f.value)
                        }
                    default:
                        break
                    }
                }
            }
        }
        // One prediction at a time: the nearest horizon that holds says it.
        if let shortest = shortestPrediction {
            let longer = Set(rules.filter { $0.condition == .predictedFailure && $0.horizon > shortest }.map(\.name))
            result.removeAll { longer.contains($0.rule) }
        }
        return result
    }

    static func format(_ v: Double) -> String { abs(v) >= 100 ? String(format: "%.0f", v) : String(format: "%.1f", v) }

    // MARK: Suppression during maintenance

    /// Suppresses a device's alerts from `from` until `until` (recorded maintenance): no alert
    /// of it opens, its open alerts neither update nor resolve by themselves, none is notified.
    public func suppress(device: String, from: Nanos, until: Nanos) {
        guard until > from else { return }
        let now = clock.now()
        state.withLock { s in
            var windows = (s.maintenance[device] ?? []).filter { $0.until > now }
            windows.append((from, until))
            s.maintenance[device] = windows
        }
    }

    /// Whether the device's alerts are suppressed at `time`.
    public func isSuppressed(_ device: String, at time: Nanos) -> Bool {
        state.withLock { s in (s.maintenance[device] ?? []).contains { $0.from <= time && time < $0.until } }
    }

    /// Applies the rules to every device; returns the open (not resolved) alert count per device.
    public func evaluate(_ devices: [Subject]) -> [String: UInt32] {
        let now = clock.now()
        let rules = self.rules
        let (raised, suppressed) = state.withLock { s in
            (Set(s.alerts.values.lazy.filter { $0.state != .resolved }.map { "\($0.deviceID)|\($0.rule)" }).union(s.pendingSince.keys),
             Set(s.maintenance.filter { $0.value.contains { $0.from <= now && now < $0.until } }.keys))
        }
        var holding: [String: Condition] = [:]  // by "device|rule"
        for d in devices where !suppressed.contains(d.device.id) {
            let prefix = d.device.id + "|"
            for c in Self.conditions(
                device: d.device, state: d.state, verdict: d.verdict, outlook: d.outlook, rules: rules.rules(for: d.device), reported: d.reported,
                raised: { raised.contains(prefix + $0) })
            {
                holding[prefix + c.rule] = c
            }
        }
        let (changed, counts, bySeverity) = state.withLock { s -> ([Alert], [String: UInt32], [String: Int]) in
            var changed: [Alert] = []
            var active: [String: String] = [:]  // key → alert id
            var recentlyResolved: [String: String] = [:]  // key → the alert that resolved within the chatter window
            for (id, a) in s.alerts {
                let key = "\(a.deviceID)|\(a.rule)"
                if a.state != .resolved {
                    // Under maintenance an alert stays as it is: neither updated nor resolved.
                    if !suppressed.contains(a.deviceID) { active[key] = id }
                } else if now - (a.resolvedAt ?? .min) <= options.chatterWindow,
                          (a.resolvedAt ?? .min) > (recentlyResolved[key].flatMap { s.alerts[$0]?.resolvedAt } ?? .min) {
                    recentlyResolved[key] = id
                }
            }
            // Shelved alerts whose time is up come back.
            for (id, a) in s.alerts where a.shelf?.until.map({ $0 <= now }) == true {
                var back = a
                back.shelf?.until = nil
                back.updatedAt = now
                s.alerts[id] = back
                changed.append(back)
            }
            for (key, c) in holding { s.clearAfter[key] = c.clearAfter }
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
                guard now - since >= c.hold else { continue }
                // Back soon after it resolved: the same alert opens again (chattering when it
                // keeps doing so), so it is shown and notified once, with a count.
                if let id = recentlyResolved[key], var a = s.alerts[id] {
                    a.state = .open
                    a.reopened = (a.reopened ?? 0) + 1
                    a.occurrences += 1
                    a.clearSince = nil
                    a.resolvedBy = ""
                    a.resolvedAt = nil
                    a.resolveComment = ""
                    a.acknowledgedBy = ""
                    a.acknowledgedAt = nil
                    a.ackComment = ""
                    a.severity = c.severity
                    a.message = c.message
                    a.value = c.value
                    a.updatedAt = now
                    s.alerts[id] = a
                    s.lastSaved[id] = now
                    s.pendingSince[key] = nil
                    changed.append(a)
                    continue
                }
                let device = String(key.split(separator: "|")[0])
                let id = "alert-\(now / Time.millisecond)-\(sequence.add(1, ordering: .relaxed).newValue)"
                var a = Alert(id: id, deviceID: device, rule: c.rule, sensor: c.sensor, severity: c.severity, message: c.message, value: c.value, at: now)
                a.ruleVersion = rules.version
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
                } else if now - a.clearSince! >= s.clearAfter[key] ?? options.clearFor {
                    a.state = .resolved
                    a.resolvedBy = "system"
                    a.resolvedAt = now
                    a.updatedAt = now
                    a.resolveComment = "condition cleared for \(DurationText.format(s.clearAfter[key] ?? options.clearFor))"
                    s.clearAfter[key] = nil
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
                bySeverity[a.severity.name, default: 0] += 1
            }
            return (changed, counts, bySeverity)
        }
        counted(bySeverity)
        let notifier = self.notifier.withLock { $0 }
        // Shelved alerts and devices under maintenance are not notified.
        let notices = notifier?.route(changed.filter { !$0.isShelved(at: now) && !suppressed.contains($0.deviceID) }) ?? []
        do {
            // Only what the outbox took is queued: a notice it held already is not sent again.
            let taken = try store.saveAlerts(changed, audit: nil, notices: notices)
            notifier?.queued(taken)
        } catch {
            logger.error("cannot save alerts", metadata: ["error": "\(error.message)"])
        }
        self.changed(changed)
        // Devices whose last alert resolved get a zero count.
        var result = counts
        for d in devices where result[d.device.id] == nil { result[d.device.id] = 0 }
        return result
    }

    /// The alerts kept (open ones, and resolved ones for 30 days), filtered; shelved ones only
    /// with `shelved`.
    public func list(devices: Set<String>, states: Set<Alert.State>, minimum: Alert.Severity?, shelved: Bool = true) -> [Alert] {
        let now = clock.now()
        return state.withLock { s in
            s.alerts.values.filter { a in
                (devices.isEmpty || devices.contains(a.deviceID)) && states.contains(a.state) && (minimum.map { a.severity >= $0 } ?? true)
                    && (shelved || !a.isShelved(at: now))
            }
        }.sorted { a, b in a.severity != b.severity ? a.severity > b.severity : a.updatedAt != b.updatedAt ? a.updatedAt > b.updatedAt : a.id < b.id }
    }

    /// Open alerts that may be escalated: not shelved, their device not under maintenance.
    public func escalatable() -> [Alert] {
        let now = clock.now()
        return list(devices: [], states: [.open], minimum: nil, shelved: false).filter { !isSuppressed($0.deviceID, at: now) }
    }

    /// Shelves an alert until `until` (or, with nil, takes it off the shelf), for `user` with
    /// `reason`; durable before it returns, with its audit entry in the same transaction.
    public func shelve(
        _ id: String, until: Nanos?, by user: String, reason: String, audit: (Alert) -> AuditEntry? = { _ in nil }
    ) throws(TwinError) -> Alert {
        let now = clock.now()
        guard reason.count <= 1_000 else { throw .invalidArgument("reason is limited to 1,000 characters").field("reason") }
        let updated = try state.withLock { s throws(TwinError) -> Alert in
            guard var a = s.alerts[id] else { throw .missing(.alertNotFound, type: "twin.v1.Alert", name: id, "alert '\(id.prefix(64))' not found (twin alerts lists them)") }
            guard a.state != .resolved else { throw .failedPrecondition("alert \(id) is resolved: there is nothing to shelve", reason: .alertStateConflict) }
            if let until {
                a.shelf = Alert.Shelf(until: until, by: user, reason: reason, at: now)
            } else {
                guard a.isShelved(at: now) else { throw .failedPrecondition("alert \(id) is not shelved", reason: .alertStateConflict) }
                a.shelf?.until = nil
            }
            a.updatedAt = now
            return a
        }
        try store.saveAlerts([updated], audit: audit(updated))
        state.withLock { $0.alerts[id] = updated }
        changed([updated])
        return updated
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
        let notifier = self.notifier.withLock { $0 }
        let notices = notifier?.route([updated]) ?? []
        let taken = try store.saveAlerts([updated], audit: audit(updated), notices: notices)
        notifier?.queued(taken)
        state.withLock { $0.alerts[id] = updated }
        changed([updated])
        return updated
    }
}
