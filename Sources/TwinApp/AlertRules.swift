import Foundation
import TwinCore
import Yams

/// The alert rules as configuration (`--alert-rules FILE`, `GetAlertRules`/`SetAlertRules`):
/// rules for the whole fleet, per device type and per device, the later scopes overriding the
/// earlier rule of the same name field by field:
///
///     defaults:                 # for every rule that does not say
///       hold: 30s               #   how long a condition must hold before an alert opens
///       clear_after: 10m        #   how long it must stay clear before the alert resolves itself
///     rules:                    # every device
///       - name: high
///         condition: above_alarm
///         severity: critical
///     types:
///       pump:
///         - name: bearing_hot
///           condition: above
///           sensor: bearing_temp
///           value: 70
///           deadband: 2
///           hold: 1m
///           severity: warning
///     devices:
///       pump-001:
///         - name: bearing_hot
///           value: 75           # only what differs
///         - name: anomaly
///           enabled: false
///
/// Conditions: `above`/`below` a value, `above_alarm`/`below_alarm` (the sensor's alarm limits),
/// `rate` (trending toward a limit, as the health engine judges it; `value` sets a minimum rate
/// per day instead), `anomaly` (off its learned normal), `sensor_fault` (stuck, spikes,
/// dropout, drift; `kinds` narrows it), `no_data` (the device went offline), `predicted_failure`
/// (`horizon` 24h or 7d, `probability`). Sensor rules apply to `sensor`/`sensors` (default all
/// the device's sensors) and raise alerts named `<sensor>.<name>`; device rules raise `<name>`.
/// With no file the built-in set below is in force.
public struct AlertRules: Sendable {
    public enum Condition: String, Sendable, CaseIterable {
        case above, below
        case aboveAlarm = "above_alarm", belowAlarm = "below_alarm"
        case rate, anomaly
        case sensorFault = "sensor_fault"
        case noData = "no_data"
        case predictedFailure = "predicted_failure"

        /// True for conditions about one sensor (the alert is named `<sensor>.<rule>`).
        public var perSensor: Bool { self != .noData && self != .predictedFailure }
    }

    public enum FaultKind: String, Sendable, CaseIterable { case stuck, spikes, dropout, drift }

    /// One rule as it applies to a device, every field resolved.
    public struct Rule: Sendable, Equatable {
        public var name: String
        public var condition: Condition
        /// The sensors it watches; empty: every sensor of the device.
        public var sensors: [String]
        /// above/below: the threshold; rate: the minimum |rate| per day (nil: the engine's judgement).
        public var value: Double?
        /// predicted_failure: 24 h or 7 days.
        public var horizon: Nanos
        /// predicted_failure: the probability at or above which it holds.
        public var probability: Double
        /// sensor_fault: which faults (all of them by default).
        public var kinds: [FaultKind]
        public var hold: Nanos
        public var clearAfter: Nanos
        /// A value rule, once raised, clears only this far back inside its threshold.
        public var deadband: Double
        public var severity: Alert.Severity
        public var enabled: Bool
        /// Where the rule's last part was written ("line 12", "built-in").
        public var origin: String
        /// "fleet", "type pump" or "device pump-001": the narrowest scope that set a field.
        public var scope: String
    }

    /// A rule entry as written: only what it says.
    struct Entry: Sendable {
        var name: String
        var line: Int
        var condition: Condition?
        var sensors: [String]?
        var value: Double?
        var horizon: Nanos?
        var probability: Double?
        var kinds: [FaultKind]?
        var hold: Nanos?
        var clearAfter: Nanos?
        var deadband: Double?
        var severity: Alert.Severity?
        var enabled: Bool?
    }

    /// The text the rules were read from (what `GetAlertRules` exports).
    public let text: String
    /// Names this exact set: a hash of its text ("r" and 16 hex digits). Alerts carry it.
    public let version: String
    /// Where the text came from: a file path, "built-in" or "SetAlertRules by NAME".
    public var source: String
    let fleet: [Rule]
    let types: [String: [Entry]]
    let devices: [String: [Entry]]
    /// The fleet rules merged with each type's, computed once.
    let byType: [String: [Rule]]
    /// A rule with the file's defaults, before its entry is applied.
    let base: Rule

    static let topKeys: Set<String> = ["defaults", "rules", "types", "devices"]
    static let defaultKeys: Set<String> = ["hold", "clear_after", "deadband"]
    static let ruleKeys: Set<String> = [
        "name", "condition", "sensor", "sensors", "value", "horizon", "probability", "kinds", "hold", "clear_after", "deadband", "severity", "enabled",
    ]
    /// Bounds on what a file may hold (the RPC takes the same text).
    public static let maxText = 1 << 20
    static let maxRules = 100_000

    // MARK: Reading

    /// Reads and checks a rules file. Every problem names the line.
    public static func load(path: String, defaultHold: Nanos, defaultClear: Nanos) throws(TwinError) -> AlertRules {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .invalidArgument("alert rules \(path): cannot read it")
        }
        guard data.count <= maxText, let text = String(data: data, encoding: .utf8) else {
            throw .invalidArgument("alert rules \(path): not UTF-8 text of at most 1 MiB")
        }
        return try parse(text, source: path, defaultHold: defaultHold, defaultClear: defaultClear)
    }

    public static func builtIn(defaultHold: Nanos, defaultClear: Nanos) -> AlertRules {
        // The built-in text is checked by a unit test; it always parses.
        (try? parse(builtInText, source: "built-in", defaultHold: defaultHold, defaultClear: defaultClear))!
    }

    /// Today's rules, written as a rules file (what twind uses without `--alert-rules`).
    public static let builtInText = """
        # twind's built-in alert rules. Export them (twin rules export), edit, import
        # (twin rules import FILE) or point --alert-rules at a file; SIGHUP reloads it.
        rules:
          - name: high                  # <sensor>.high: above the sensor's alarm-high limit
            condition: above_alarm
            severity: critical
          - name: low                   # <sensor>.low: below its alarm-low limit
            condition: below_alarm
            severity: critical
          - name: rate                  # trending toward a limit, reached within about 3 days
            condition: rate
            severity: warning
          - name: anomaly               # well off the normal learned for this load
            condition: anomaly
            severity: warning
          - name: sensor                # <sensor>.sensor_stuck, _spikes, _dropout, _drift
            condition: sensor_fault
            severity: info
          - name: no_data
            condition: no_data
            severity: warning
          - name: predicted_failure_24h
            condition: predicted_failure
            horizon: 24h
            probability: 0.5
            hold: 0s
            severity: critical
          - name: predicted_failure_7d
            condition: predicted_failure
            horizon: 7d
            probability: 0.7
            hold: 0s
            severity: warning

        """

    public static func parse(_ text: String, source: String, defaultHold: Nanos, defaultClear: Nanos) throws(TwinError) -> AlertRules {
        guard text.utf8.count <= maxText else { throw invalid("alert rules: at most 1 MiB of text", line: nil) }
        let root: Yams.Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            let said = "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
            throw invalid("alert rules \(source): not YAML (\(String(said.prefix(200))))", line: nil)
        }
        func fail(_ node: Yams.Node?, _ problem: String) -> TwinError {
            invalid("alert rules \(source)\(node?.mark.map { ", line \($0.line)" } ?? ""): \(problem)", line: node?.mark?.line)
        }
        guard let root else {
            return try AlertRules(text: text, source: source, fleet: [], types: [:], devices: [:], hold: defaultHold, clear: defaultClear, deadband: 0, fail: fail)
        }
        guard let top = root.mapping else { throw fail(root, "expected a mapping of defaults, rules, types, devices") }
        for key in top.keys where !topKeys.contains(key.string ?? "") {
            throw fail(key, "unknown key '\(Self.clip(key.string ?? "?"))' (known: \(topKeys.sorted().joined(separator: ", ")))")
        }
        var hold = defaultHold, clear = defaultClear, deadband = 0.0
        if let d = top["defaults"] {
            guard let m = d.mapping else { throw fail(d, "defaults: expected a mapping of hold, clear_after, deadband") }
            for key in m.keys where !defaultKeys.contains(key.string ?? "") {
                throw fail(key, "defaults: unknown key '\(Self.clip(key.string ?? "?"))' (known: \(defaultKeys.sorted().joined(separator: ", ")))")
            }
            if let n = m["hold"] { hold = try duration(n, "defaults.hold", fail) }
            if let n = m["clear_after"] { clear = try duration(n, "defaults.clear_after", fail) }
            if let n = m["deadband"] { deadband = try number(n, "defaults.deadband", fail, minimum: 0) }
        }
        var count = 0
        func entries(_ node: Yams.Node?, _ scope: String) throws(TwinError) -> [Entry] {
            guard let node else { return [] }
            guard let list = node.sequence else { throw fail(node, "\(scope): expected a list of rules (- name: …)") }
            var result: [Entry] = []
            var names: Set<String> = []
            for item in list {
                count += 1
                guard count <= maxRules else { throw fail(item, "more than \(maxRules) rules") }
                let e = try entry(item, scope, fail)
                guard names.insert(e.name).inserted else { throw fail(item, "\(scope): rule '\(e.name)' is defined twice") }
                result.append(e)
            }
            return result
        }
        func scoped(_ node: Yams.Node?, _ what: String) throws(TwinError) -> [String: [Entry]] {
            guard let node else { return [:] }
            guard let m = node.mapping else { throw fail(node, "\(what)s: expected a mapping of \(what) → list of rules") }
            var result: [String: [Entry]] = [:]
            for (key, value) in m {
                guard let name = key.string, !name.isEmpty, name.utf8.count <= 128 else { throw fail(key, "\(what)s: a \(what) name of 1–128 characters") }
                result[name] = try entries(value, "\(what) \(name)")
            }
            return result
        }
        let fleetEntries = try entries(top["rules"], "rules")
        let types = try scoped(top["types"], "type")
        let devices = try scoped(top["devices"], "device")
        return try AlertRules(
            text: text, source: source, fleet: fleetEntries, types: types, devices: devices, hold: hold, clear: clear, deadband: deadband, fail: fail)
    }

    init(
        text: String, source: String, fleet fleetEntries: [Entry], types: [String: [Entry]], devices: [String: [Entry]],
        hold: Nanos, clear: Nanos, deadband: Double, fail: (Yams.Node?, String) -> TwinError
    ) throws(TwinError) {
        self.text = text
        self.source = source
        self.version = "r" + String(format: "%016llx", stableHash(text))
        self.types = types
        self.devices = devices
        let base = Rule(
            name: "", condition: .anomaly, sensors: [], value: nil, horizon: 24 * Time.hour, probability: 0.5, kinds: FaultKind.allCases,
            hold: hold, clearAfter: clear, deadband: deadband, severity: .warning, enabled: true, origin: "", scope: "")
        self.base = base
        func complete(_ e: Entry, scope: String) throws(TwinError) -> Rule {
            guard e.condition != nil else {
                throw Self.invalid(
                    "alert rules \(source), line \(e.line): \(scope): rule '\(e.name)' has no condition and overrides no rule of a wider scope", line: e.line)
            }
            var r = base
            r.name = e.name
            try Self.apply(e, to: &r, scope: scope, source: source)
            return r
        }
        var fleet: [Rule] = []
        for e in fleetEntries { fleet.append(try complete(e, scope: "fleet")) }
        self.fleet = fleet
        var byType: [String: [Rule]] = [:]
        for (type, list) in types {
            var rules = fleet
            for e in list {
                if let k = rules.firstIndex(where: { $0.name == e.name }) {
                    try Self.apply(e, to: &rules[k], scope: "type \(type)", source: source)
                } else {
                    rules.append(try complete(e, scope: "type \(type)"))
                }
            }
            byType[type] = rules
        }
        self.byType = byType
        // A device entry without a condition must override something defined somewhere.
        let known = Set(fleet.map(\.name)).union(byType.values.flatMap { $0.map(\.name) })
        for (device, list) in devices {
            for e in list where e.condition == nil && !known.contains(e.name) {
                throw Self.invalid(
                    "alert rules \(source), line \(e.line): device \(device): rule '\(e.name)' has no condition and overrides no rule of the fleet or a type",
                    line: e.line)
            }
            for e in list where e.condition != nil { _ = try complete(e, scope: "device \(device)") }
            // An override must leave a whole rule wherever it applies (the fleet's or a type's).
            for e in list where e.condition == nil {
                for var r in ([fleet] + Array(byType.values)).compactMap({ $0.first { $0.name == e.name } }) {
                    try Self.apply(e, to: &r, scope: "device \(device)", source: source)
                }
            }
        }
    }

    /// The rules in force for one device, in file order.
    public func rules(for device: Device) -> [Rule] {
        var rules = byType[device.type] ?? fleet
        guard let list = devices[device.id] else { return rules }
        // Every device entry was applied to each rule set it can meet when the file was read,
        // so applying it here cannot fail.
        for e in list {
            if let k = rules.firstIndex(where: { $0.name == e.name }) {
                try? Self.apply(e, to: &rules[k], scope: "device \(device.id)", source: source)
            } else if e.condition != nil {
                var r = base
                r.name = e.name
                try? Self.apply(e, to: &r, scope: "device \(device.id)", source: source)
                rules.append(r)
            }
        }
        return rules
    }

    /// Every rule as written, resolved: the fleet's, then what each type and each device
    /// changes or adds (a device's rules resolved against its type, given by `typeOf`).
    public func listed(typeOf: (String) -> String?) -> [Rule] {
        var result = fleet
        for type in types.keys.sorted() {
            let names = Set(types[type]!.map(\.name))
            result += byType[type]!.filter { names.contains($0.name) }
        }
        for device in devices.keys.sorted() {
            let names = Set(devices[device]!.map(\.name))
            let probe = Device(id: device, name: device, type: typeOf(device) ?? "", sensors: [])
            result += rules(for: probe).filter { names.contains($0.name) && $0.scope == "device \(device)" }
        }
        return result
    }

    static func apply(_ e: Entry, to r: inout Rule, scope: String, source: String) throws(TwinError) {
        if let c = e.condition { r.condition = c }
        if let s = e.sensors { r.sensors = s }
        if let v = e.value { r.value = v }
        if let h = e.horizon { r.horizon = h }
        if let p = e.probability { r.probability = p }
        if let k = e.kinds { r.kinds = k }
        if let h = e.hold { r.hold = h }
        if let c = e.clearAfter { r.clearAfter = c }
        if let d = e.deadband { r.deadband = d }
        if let s = e.severity { r.severity = s }
        if let en = e.enabled { r.enabled = en }
        r.origin = source == "built-in" ? "built-in" : "line \(e.line)"
        r.scope = scope
        let at = "alert rules \(source), line \(e.line): \(scope): rule '\(e.name)'"
        switch r.condition {
        case .above, .below:
            guard r.value != nil else { throw invalid("\(at): condition \(r.condition.rawValue) needs a value", line: e.line) }
            guard !r.sensors.isEmpty else {
                throw invalid("\(at): condition \(r.condition.rawValue) needs a sensor (or sensors)", line: e.line)
            }
        case .predictedFailure:
            guard r.horizon == 24 * Time.hour || r.horizon == 7 * Time.day else {
                throw invalid("\(at): horizon is 24h or 7d (the horizons twind's models predict)", line: e.line)
            }
        default:
            break
        }
    }

    static func entry(_ node: Yams.Node, _ scope: String, _ fail: (Yams.Node?, String) -> TwinError) throws(TwinError) -> Entry {
        guard let m = node.mapping else { throw fail(node, "\(scope): a rule is a mapping (name, condition, …)") }
        for key in m.keys where !ruleKeys.contains(key.string ?? "") {
            throw fail(key, "\(scope): unknown key '\(clip(key.string ?? "?"))' (known: \(ruleKeys.sorted().joined(separator: ", ")))")
        }
        let name = try Self.name(m, node, "rule", in: "\(scope): ", fail)
        let at = "\(scope): rule '\(name)'"
        var e = Entry(name: name, line: node.mark?.line ?? 0)
        if let n = m["condition"] {
            guard let s = n.scalar?.string, let c = Condition(rawValue: s) else {
                throw fail(n, "\(at): condition is one of \(Condition.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            e.condition = c
        }
        if m["sensor"] != nil && m["sensors"] != nil { throw fail(node, "\(at): sensor or sensors, not both") }
        if let n = m["sensor"] {
            guard let s = n.scalar?.string, Self.validSensor(s) else { throw fail(n, "\(at): sensor is a sensor name of 1–128 characters") }
            e.sensors = s == "*" ? [] : [s]
        }
        if let n = m["sensors"] {
            if n.scalar?.string == "*" {
                e.sensors = []
            } else {
                guard let list = n.sequence, list.count <= 1_000 else { throw fail(n, "\(at): sensors is a list of sensor names, or \"*\"") }
                var names: [String] = []
                for item in list {
                    guard let s = item.scalar?.string, Self.validSensor(s), s != "*" else { throw fail(item, "\(at): a sensor name of 1–128 characters") }
                    names.append(s)
                }
                e.sensors = names
            }
        }
        if let n = m["value"] { e.value = try number(n, "\(at): value", fail) }
        if let n = m["probability"] {
            let p = try number(n, "\(at): probability", fail, minimum: 0)
            guard p <= 1 else { throw fail(n, "\(at): probability is between 0 and 1") }
            e.probability = p
        }
        if let n = m["horizon"] { e.horizon = try duration(n, "\(at): horizon", fail) }
        if let n = m["kinds"] {
            guard let list = n.sequence else { throw fail(n, "\(at): kinds is a list of \(FaultKind.allCases.map(\.rawValue).joined(separator: ", "))") }
            var kinds: [FaultKind] = []
            for item in list {
                guard let k = item.scalar.flatMap({ FaultKind(rawValue: $0.string) }) else {
                    throw fail(item, "\(at): a fault kind is one of \(FaultKind.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                kinds.append(k)
            }
            e.kinds = kinds
        }
        if let n = m["hold"] { e.hold = try duration(n, "\(at): hold", fail) }
        if let n = m["clear_after"] { e.clearAfter = try duration(n, "\(at): clear_after", fail) }
        if let n = m["deadband"] { e.deadband = try number(n, "\(at): deadband", fail, minimum: 0) }
        if let n = m["severity"] { e.severity = try severity(n, "\(at): severity", fail) }
        if let n = m["enabled"] {
            guard let b = n.bool else { throw fail(n, "\(at): enabled is true or false") }
            e.enabled = b
        }
        return e
    }

    /// The `name` of a mapping (a rule, a channel, a route): 1–64 letters, digits, '_' or '-'.
    static func name(
        _ m: Yams.Node.Mapping, _ node: Yams.Node, _ what: String, in scope: String = "", _ fail: (Yams.Node?, String) -> TwinError
    ) throws(TwinError) -> String {
        guard let n = m["name"], let name = n.scalar?.string else { throw fail(node, "\(scope)every \(what) needs a name") }
        guard !name.isEmpty, name.utf8.count <= 64, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else {
            throw fail(n, "\(scope)\(what) name '\(clip(name))': 1–64 letters, digits, '_' or '-'")
        }
        return name
    }

    static func severity(_ n: Yams.Node, _ what: String, _ fail: (Yams.Node?, String) -> TwinError) throws(TwinError) -> Alert.Severity {
        guard let s = n.scalar.flatMap({ Alert.Severity(name: $0.string) }) else { throw fail(n, "\(what) is info, warning or critical") }
        return s
    }

    static func invalid(_ message: String, line: Int?) -> TwinError {
        TwinError(.invalidArgument, message, reason: .alertRulesInvalid, metadata: line.map { ["line": "\($0)"] } ?? [:])
    }

    static func validSensor(_ s: String) -> Bool { !s.isEmpty && s.utf8.count <= 128 }

    static func number(_ n: Yams.Node, _ what: String, _ fail: (Yams.Node?, String) -> TwinError, minimum: Double = -.greatestFiniteMagnitude) throws(TwinError) -> Double {
        guard let s = n.scalar?.string, let v = Double(s), v.isFinite else { throw fail(n, "\(what) is a finite number") }
        guard v >= minimum else { throw fail(n, "\(what) is at least \(minimum)") }
        return v
    }

    /// A duration as people write it (`30s`, `10m`, `1h30m`), at most a year.
    static func duration(_ n: Yams.Node, _ what: String, _ fail: (Yams.Node?, String) -> TwinError) throws(TwinError) -> Nanos {
        guard let s = n.scalar?.string, let d = DurationText.parse(s), d <= 365 * Time.day else {
            throw fail(n, "\(what) is a duration such as 30s, 10m or 24h (at most 365d)")
        }
        return d
    }

    static func clip(_ s: String) -> String { String(s.prefix(40)) }
}

extension Yams.Node {
    var bool: Bool? {
        switch scalar?.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: return nil
        }
    }
}
