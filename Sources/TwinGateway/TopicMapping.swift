import Foundation
import Logging
import Synchronization
import TwinCore
import Yams

/// Plain MQTT topics with JSON payloads (Node-RED, Telegraf, vendor gateways), mapped to
/// devices and sensors by a YAML file (`--mqtt-mapping FILE`):
///
///     mappings:
///       - topic: factory/+/telemetry      # an MQTT filter; + and # as in MQTT
///         device: 1                       # the topic's segment 1 (from 0); or a JSON path: device: machine.id
///         time: ts                        # epoch s/ms/µs/ns (by size) or RFC 3339; absent: arrival time
///         sensors:                        # absent: every numeric field, named after it
///           temperature: temp             # sensor: JSON path
///           vibration: {path: vib.rms, unit: mm/s, scale: 0.001}
///         auto_register: pump             # devices not yet registered are, with this type
///         qos: 1                          # default 1
///
/// A payload that does not parse or fails validation is counted and logged once per topic a
/// minute; it never stops the consumer.
public struct TopicMapping: Sendable {
    public struct Sensor: Sendable, Equatable {
        public var name: String
        public var path: [String]
        public var unit: String
        public var scale: Double
    }

    public enum DeviceSource: Sendable, Equatable {
        case segment(Int)
        case field([String])
    }

    public struct Entry: Sendable {
        public var topic: String
        public var device: DeviceSource
        public var time: [String]?
        /// Empty: every numeric field of the payload (top level and nested, joined by '.').
        public var sensors: [Sensor]
        public var autoRegister: String?
        public var qos: Int32
    }

    public var entries: [Entry]

    // MARK: Loading

    /// Reads and checks a mapping file; the first problem is an error naming the entry.
    public static func load(path: String) throws(TwinError) -> TopicMapping {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw .invalidArgument("mqtt mapping \(path): cannot read it")
        }
        return try parse(text, source: path)
    }

    static let entryKeys: Set<String> = ["topic", "device", "time", "sensors", "auto_register", "qos"]

    public static func parse(_ text: String, source: String = "mapping") throws(TwinError) -> TopicMapping {
        let root: Yams.Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw .invalidArgument("mqtt mapping \(source): not YAML (\(String("\(error)".prefix(200))))")
        }
        guard let list = root?["mappings"]?.sequence else {
            throw .invalidArgument("mqtt mapping \(source): expected 'mappings:' with a list of entries (topic, device, sensors, time, auto_register, qos)")
        }
        var entries: [Entry] = []
        for (n, node) in list.enumerated() {
            guard let e = node.mapping else { throw .invalidArgument("mqtt mapping \(source), entry \(n): not a mapping of topic, device, …") }
            for key in e.keys.compactMap(\.string) where !entryKeys.contains(key) {
                throw .invalidArgument("mqtt mapping \(source), entry \(n): unknown key '\(key.prefix(40))' (known: \(entryKeys.sorted().joined(separator: ", ")))")
            }
            guard let topic = e["topic"]?.string else { throw .invalidArgument("mqtt mapping \(source), entry \(n): topic is required") }
            let at = "mqtt mapping \(source), entry \(n) (\(topic.prefix(80)))"
            guard Self.isValidFilter(topic) else { throw .invalidArgument("\(at): topic is not a valid MQTT topic filter") }
            let device: DeviceSource
            guard let d = e["device"]?.scalar?.string else {
                throw .invalidArgument("\(at): device is required: a topic segment number (from 0) or a JSON path")
            }
            if let k = Int(d) {
                guard k >= 0, k < topic.split(separator: "/", omittingEmptySubsequences: false).count else {
                    throw .invalidArgument("\(at): the topic has no segment \(k) for the device id")
                }
                device = .segment(k)
            } else {
                device = .field(Self.path(d))
            }
            var sensors: [Sensor] = []
            if let node = e["sensors"] {
                guard let m = node.mapping else { throw .invalidArgument("\(at): sensors must map sensor names to JSON paths") }
                for (key, spec) in m {
                    guard let name = key.string else { continue }
                    do throws(TwinError) { try Identifier.validateSensorName(name, device: "mapping") } catch {
                        throw .invalidArgument("\(at): sensor '\(name.prefix(80))': use 1–64 lowercase letters, digits, '_' or '.'")
                    }
                    if let p = spec.scalar?.string {
                        sensors.append(Sensor(name: name, path: Self.path(p), unit: "", scale: 1))
                    } else if let sm = spec.mapping {
                        guard let p = sm["path"]?.string else { throw .invalidArgument("\(at): sensor '\(name)' needs a path") }
                        let scaleText = sm["scale"].map { $0.string ?? "" }
                        let scale = scaleText.map { Double($0) ?? .nan } ?? 1  // given but not a number: refused below
                        guard scale.isFinite, scale != 0 else { throw .invalidArgument("\(at): sensor '\(name)': scale must be a finite number other than 0") }
                        sensors.append(Sensor(name: name, path: Self.path(p), unit: String((sm["unit"]?.string ?? "").prefix(32)), scale: scale))
                    } else {
                        throw .invalidArgument("\(at): sensor '\(name)' must be a JSON path or {path, unit, scale}")
                    }
                }
            }
            let type = e["auto_register"]?.string
            if let type, type.isEmpty || type.utf8.count > 64 {
                throw .invalidArgument("\(at): auto_register must be a device type of 1–64 characters")
            }
            let qosText = e["qos"]?.string ?? "1"
            guard let qos = Int32(qosText), (0...2).contains(qos) else { throw .invalidArgument("\(at): qos must be 0, 1 or 2") }
            entries.append(Entry(topic: topic, device: device, time: e["time"]?.string.map(Self.path), sensors: sensors, autoRegister: type, qos: qos))
        }
        if entries.isEmpty { throw .invalidArgument("mqtt mapping \(source): no mappings") }
        return TopicMapping(entries: entries)
    }

    static func path(_ text: String) -> [String] { text.split(separator: ".").map(String.init) }

    // MARK: Topics

    static func isValidFilter(_ filter: String) -> Bool {
        if filter.isEmpty || filter.utf8.count > 65535 || filter.contains("\u{0}") { return false }
        let levels = filter.split(separator: "/", omittingEmptySubsequences: false)
        for (i, level) in levels.enumerated() {
            if level.contains("#") && (level != "#" || i != levels.count - 1) { return false }
            if level.contains("+") && level != "+" { return false }
        }
        return true
    }

    /// MQTT filter matching: `+` one level, `#` the rest (and the parent level itself).
    public static func matches(_ filter: String, _ topic: String) -> Bool {
        let f = filter.split(separator: "/", omittingEmptySubsequences: false)
        let t = topic.split(separator: "/", omittingEmptySubsequences: false)
        if topic.hasPrefix("$") && (f.first == "#" || f.first == "+") { return false }
        var i = 0
        while i < f.count {
            if f[i] == "#" { return true }
            guard i < t.count else { return false }
            if f[i] != "+" && f[i] != t[i] { return false }
            i += 1
        }
        return i == t.count
    }

    // MARK: Payloads

    public struct Extracted: Sendable, Equatable {
        public var device: String
        public var readings: [(sensor: String, value: Double)]
        public var time: Nanos
        public var units: [String: String]
        public static func == (a: Extracted, b: Extracted) -> Bool {
            a.device == b.device && a.time == b.time && a.units == b.units
                && a.readings.map(\.sensor) == b.readings.map(\.sensor) && a.readings.map(\.value) == b.readings.map(\.value)
        }
    }

    /// The readings one message carries under `entry`, or why it carries none.
    public static func extract(_ entry: Entry, topic: String, payload: UnsafeRawBufferPointer, now: Nanos) throws(TwinError) -> Extracted {
        guard payload.count <= 1 << 20 else { throw .invalidArgument("payload of \(payload.count) bytes; at most 1 MiB") }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(payload), options: [.fragmentsAllowed])
        } catch {
            throw .invalidArgument("payload is not JSON")
        }
        guard let object = json as? [String: Any] else { throw .invalidArgument("payload is not a JSON object") }
        let device: String
        switch entry.device {
        case .segment(let k):
            let parts = topic.split(separator: "/", omittingEmptySubsequences: false)
            guard k < parts.count, !parts[k].isEmpty else { throw .invalidArgument("topic has no segment \(k) for the device id") }
            device = String(parts[k])
        case .field(let path):
            guard let v = value(at: path, in: object) else { throw .invalidArgument("payload has no \(path.joined(separator: ".")) for the device id") }
            if let s = v as? String { device = s } else if let n = v as? NSNumber, !(v is Bool) { device = n.stringValue } else {
                throw .invalidArgument("\(path.joined(separator: ".")) is not a string or number")
            }
        }
        try Identifier.validateDeviceID(device)
        var time = now
        if let path = entry.time {
            guard let v = value(at: path, in: object) else { throw .invalidArgument("payload has no \(path.joined(separator: ".")) for the time") }
            guard let t = parseTime(v) else { throw .invalidArgument("\(path.joined(separator: ".")) is not an epoch number or an RFC 3339 time") }
            time = t
        }
        var readings: [(String, Double)] = []
        var units: [String: String] = [:]
        if entry.sensors.isEmpty {
            var found: [(String, Double)] = []
            collectNumbers(object, prefix: "", skip: Set([entry.time?.joined(separator: ".")].compactMap { $0 } + (caseField(entry.device).map { [$0] } ?? [])), into: &found)
            readings = found.map { (Sparkplug.sensorName($0.0), $0.1) }
        } else {
            for s in entry.sensors {
                guard let v = value(at: s.path, in: object) else { continue }  // a message may carry some of them
                guard let n = number(v) else { throw .invalidArgument("\(s.path.joined(separator: ".")) (sensor \(s.name)) is not a number") }
                readings.append((s.name, n * s.scale))
                if !s.unit.isEmpty { units[s.name] = s.unit }
            }
        }
        if readings.isEmpty { throw .invalidArgument("payload carries no reading of the mapped sensors") }
        return Extracted(device: device, readings: readings, time: time, units: units)
    }

    static func caseField(_ d: DeviceSource) -> String? {
        if case .field(let p) = d { return p.joined(separator: ".") }
        return nil
    }

    static func value(at path: [String], in object: [String: Any]) -> Any? {
        var current: Any = object
        for key in path {
            if let o = current as? [String: Any], let next = o[key] { current = next }
            else if let a = current as? [Any], let i = Int(key), i >= 0, i < a.count { current = a[i] }
            else { return nil }
        }
        return current
    }

    static func number(_ v: Any) -> Double? {
        if let n = v as? NSNumber { return n.doubleValue }
        if let s = v as? String, let d = Double(s) { return d }
        return nil
    }

    static func collectNumbers(_ object: [String: Any], prefix: String, skip: Set<String>, into found: inout [(String, Double)], depth: Int = 0) {
        guard depth < 8 else { return }
        for key in object.keys.sorted() {
            let name = prefix.isEmpty ? key : prefix + "." + key
            if skip.contains(name) { continue }
            let v = object[key]!
            if let o = v as? [String: Any] {
                collectNumbers(o, prefix: name, skip: skip, into: &found, depth: depth + 1)
            } else if !(v is String), let n = number(v), found.count < 256 {
                found.append((name, n))
            }
        }
    }

    /// Epoch seconds, milliseconds, microseconds or nanoseconds (told apart by size), or RFC 3339.
    static func parseTime(_ v: Any) -> Nanos? {
        if let s = v as? String {
            if let d = Double(s) { return parseTime(NSNumber(value: d)) }
            let withFraction = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
            let plain = Date.ISO8601FormatStyle()
            guard let date = (try? withFraction.parse(s)) ?? (try? plain.parse(s)) else { return nil }
            let micros = (date.timeIntervalSince1970 * 1e6).rounded()
            return micros.isFinite && abs(micros) < 9e15 ? Nanos(micros) * 1000 : nil
        }
        guard !(v is Bool), let n = v as? NSNumber else { return nil }
        let x = n.doubleValue
        guard x.isFinite, x > 0 else { return nil }
        let nanos: Double
        if x < 1e11 { nanos = x * 1e9 } else if x < 1e14 { nanos = x * 1e6 } else if x < 1e17 { nanos = x * 1e3 } else { nanos = x }
        guard nanos < 9e18 else { return nil }
        let t = Nanos(nanos)
        return TimeBounds.contains(t) ? t : nil
    }
}

/// Reads mapped topics into the plant: readings gathered per read round and delivered at the
/// commit, devices registered (or given new sensors) where the entry says `auto_register`.
public final class TopicConsumer: Sendable {
    public struct Status: Sendable, Equatable {
        public var messages: UInt64 = 0
        public var readings: UInt64 = 0
        public var errors: UInt64 = 0
    }

    struct State {
        var pending = PendingReadings()
        var status = Status()
        /// Devices this consumer registered or checked, with their sensors.
        var known: [String: Device] = [:]
    }

    public let mapping: TopicMapping
    let sink: any GatewaySink
    let logger: Logger
    private let state = Mutex(State())

    public init(mapping: TopicMapping, sink: any GatewaySink, logger: Logger) {
        self.mapping = mapping
        self.sink = sink
        self.logger = logger
    }

    public var status: Status { state.withLock { $0.status } }

    public var subscriptions: [(filter: String, qos: Int32)] { mapping.entries.map { ($0.topic, $0.qos) } }

    /// True if a mapping took the message (even if it was refused).
    @discardableResult
    public func handle(topic: String, payload: UnsafeRawBufferPointer, now: Nanos) -> Bool {
        guard let entry = mapping.entries.first(where: { TopicMapping.matches($0.topic, topic) }) else { return false }
        state.withLock { s in
            s.status.messages &+= 1
            do throws(TwinError) {
                let x = try TopicMapping.extract(entry, topic: topic, payload: payload, now: now)
                if let type = entry.autoRegister { try register(&s, x, type: type, now: now) }
                for r in x.readings { s.pending.readings.append(GatewayReading(device: x.device, sensor: r.sensor, time: x.time, value: r.value)) }
            } catch {
                s.status.errors &+= 1
                refuse(&s, topic: topic, now: now, error.message)
            }
        }
        return true
    }

    private func register(_ s: inout State, _ x: TopicMapping.Extracted, type: String, now: Nanos) throws(TwinError) {
        var device = s.known[x.device] ?? Device(id: x.device, name: x.device, type: type, sensors: [], labels: ["source": "mqtt"])
        let names = Set(device.sensors.map(\.name))
        let new = x.readings.map(\.sensor).filter { !names.contains($0) }
        if new.isEmpty && s.known[x.device] != nil { return }
        for name in Set(new).sorted() {
            device.sensors.append(SensorSpec(name: name, unit: x.units[name] ?? "", nominalMin: -Double.greatestFiniteMagnitude, nominalMax: Double.greatestFiniteMagnitude))
        }
        // What is pending was read against the old definition: deliver it first.
        flushPending(&s, now: now)
        s.known[x.device] = try sink.extend(device, now: now)
    }

    public func flush(now: Nanos) throws(TwinError) -> Int {
        try state.withLock { s throws(TwinError) -> Int in
            flushPending(&s, now: now)
            return try s.pending.commit()
        }
    }

    private func flushPending(_ s: inout State, now: Nanos) {
        guard let (_, result) = s.pending.deliver(to: sink, now: now) else { return }
        s.status.readings &+= UInt64(result.accepted)
        if let first = result.refused.first {
            s.status.errors &+= UInt64(result.refused.count)
            refuse(&s, topic: "readings", now: now, "\(result.refused.count) reading(s) refused, first: \(first.error.message)")
        }
    }

    private func refuse(_ s: inout State, topic: String, now: Nanos, _ text: String) {
        guard s.pending.shouldLog(topic, now: now) else { return }
        logger.warning("MQTT message refused (logged once a minute per topic; all are counted)", metadata: ["topic": "\(topic.prefix(200))", "problem": "\(text)"])
    }
}
