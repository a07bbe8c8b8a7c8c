import Foundation
import Proto
import TwinCore

public typealias SparkplugPayload = Org_Eclipse_Tahu_Protobuf_Payload

/// Sparkplug B 3.0 topics, names and payload values, as twind's host application reads them.
public enum Sparkplug {
    public static let namespace = "spBv1.0"
    static let topicPrefix = namespace + "/"

    public enum MessageType: String, Sendable, CaseIterable {
        case nbirth = "NBIRTH", ndeath = "NDEATH", dbirth = "DBIRTH", ddeath = "DDEATH"
        case ndata = "NDATA", ddata = "DDATA", ncmd = "NCMD", dcmd = "DCMD"
    }

    public enum Topic: Sendable, Equatable {
        /// `spBv1.0/<group>/<type>/<edge node>[/<device>]`
        case node(group: String, type: MessageType, node: String, device: String?)
        /// `spBv1.0/STATE/<host id>`
        case state(host: String)

        /// `nil` for anything outside the Sparkplug B namespace or malformed.
        public init?(_ topic: String) {
            let parts = topic.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count >= 3, parts[0] == Sparkplug.namespace else { return nil }
            if parts[1] == "STATE" {
                guard parts.count == 3, !parts[2].isEmpty else { return nil }
                self = .state(host: String(parts[2]))
                return
            }
            guard parts.count == 4 || parts.count == 5, let type = MessageType(rawValue: String(parts[2])),
                  parts.allSatisfy({ !$0.isEmpty }) else { return nil }
            let isDevice = type == .dbirth || type == .ddeath || type == .ddata || type == .dcmd
            guard isDevice == (parts.count == 5) else { return nil }
            self = .node(group: String(parts[1]), type: type, node: String(parts[3]), device: isDevice ? String(parts[4]) : nil)
        }
    }

    // MARK: Names

    /// A device id from Sparkplug ids: `<group>.<edge node>[.<device>]`, characters outside
    /// twind's id alphabet (letters, digits, `-`, `_`, `.`) as `_`; longer than 64 → shortened
    /// with a hash of the whole so distinct nodes stay distinct.
    public static func deviceID(group: String, node: String, device: String? = nil) -> String {
        let joined = ([group, node] + (device.map { [$0] } ?? [])).map { part in
            mapped(part) { v in (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) || v == 0x2D || v == 0x5F || v == 0x2E ? nil : "_" }
        }.joined(separator: ".")
        return shortened(joined, limit: 64)
    }

    /// A sensor name from a metric name: lower-cased, `/` → `.`, characters outside
    /// `[a-z0-9_.]` → `_`; longer than 64 → shortened with a hash.
    public static func sensorName(_ metric: String) -> String {
        let name = mapped(metric.lowercased()) { v in
            v == 0x2F ? "." : (v >= 0x61 && v <= 0x7A) || (v >= 0x30 && v <= 0x39) || v == 0x5F || v == 0x2E ? nil : "_"
        }
        return shortened(name.isEmpty ? "_" : name, limit: 64, separator: "_")
    }

    /// `text` with each scalar `replacement` gives a replacement for swapped (nil: kept).
    static func mapped(_ text: String, _ replacement: (UInt32) -> Unicode.Scalar?) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { replacement($0.value) ?? $0 }))
    }

    static func shortened(_ text: String, limit: Int, separator: String = "-") -> String {
        if text.utf8.count <= limit { return text }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a
        for b in text.utf8 {
            hash ^= UInt64(b)
            hash &*= 0x100_0000_01b3
        }
        let suffix = separator + String(String(hash, radix: 16).suffix(8))
        return String(text.utf8.prefix(limit - suffix.utf8.count))! + suffix
    }

    /// Metrics that are the protocol's own, not measurements.
    static func isControl(_ name: String) -> Bool {
        // Also under a prefix some edge nodes put on every metric (mqtt-spb-wrapper: CMD/…).
        name == "bdSeq" || name.hasPrefix("Node Control/") || name.hasPrefix("Device Control/")
            || name.contains("/Node Control/") || name.contains("/Device Control/")
    }

    // MARK: Values

    /// Sparkplug datatypes twind reads as numbers: the integers, Float, Double, Boolean (0/1).
    static func isNumeric(_ datatype: UInt32) -> Bool {
        (1...11).contains(datatype)
    }

    /// The metric's value as a number, `nil` when it is null or not a number. `datatype` (from
    /// the birth) says how to read the unsigned wire value of signed integers.
    static func number(_ metric: SparkplugPayload.Metric, datatype: UInt32) -> Double? {
        if metric.hasIsNull && metric.isNull { return nil }
        switch metric.value {
        case .intValue(let v)?:
            switch datatype {
            case 1: return Double(Int8(truncatingIfNeeded: v))
            case 2: return Double(Int16(truncatingIfNeeded: v))
            case 3: return Double(Int32(bitPattern: v))
            default: return Double(v)
            }
        case .longValue(let v)?:
            return datatype == 4 ? Double(Int64(bitPattern: v)) : Double(v)
        case .floatValue(let v)?: return Double(v)
        case .doubleValue(let v)?: return v
        case .booleanValue(let v)?: return v ? 1 : 0
        default: return nil
        }
    }

    /// The `bdSeq` metric of a birth or death.
    static func bdSeq(_ payload: SparkplugPayload) -> UInt64? {
        payload.metrics.first { $0.name == "bdSeq" }.flatMap { number($0, datatype: $0.datatype) }.map { UInt64(max(0, $0)) }
    }

    static func property(_ set: SparkplugPayload.PropertySet, _ key: String) -> SparkplugPayload.PropertyValue? {
        guard let i = set.keys.firstIndex(of: key), i < set.values.count else { return nil }
        return set.values[i]
    }

    static func number(_ p: SparkplugPayload.PropertyValue) -> Double? {
        if p.hasIsNull && p.isNull { return nil }
        switch p.value {
        case .intValue(let v)?: return p.type == 3 ? Double(Int32(bitPattern: v)) : Double(v)
        case .longValue(let v)?: return p.type == 4 ? Double(Int64(bitPattern: v)) : Double(v)
        case .floatValue(let v)?: return Double(v)
        case .doubleValue(let v)?: return v
        case .booleanValue(let v)?: return v ? 1 : 0
        default: return nil
        }
    }

    static func text(_ p: SparkplugPayload.PropertyValue) -> String? {
        if case .stringValue(let s)? = p.value { return s }
        return nil
    }

    /// Milliseconds since the epoch as twind's nanoseconds; `nil` outside the accepted range.
    static func time(milliseconds: UInt64) -> Nanos? {
        guard milliseconds <= UInt64(Int64.max / 1_000_000) else { return nil }
        let t = Int64(milliseconds) * 1_000_000
        return TimeBounds.contains(t) ? t : nil
    }

    // MARK: Host STATE

    /// `{"online":B,"timestamp":T}` (Sparkplug 3.0 host application STATE).
    public static func statePayload(online: Bool, timestamp: UInt64) -> [UInt8] {
        Array("{\"online\":\(online),\"timestamp\":\(timestamp)}".utf8)
    }

    /// The `online` member of a STATE payload; `nil` when it does not parse.
    static func stateOnline(_ payload: UnsafeRawBufferPointer) -> Bool? {
        guard payload.count < 4096,
              let object = try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any],
              let online = object["online"] as? Bool else { return nil }
        return online
    }

    /// The NCMD that asks an edge node to publish its births again.
    public static func rebirthCommand(now: Nanos) -> [UInt8] {
        var metric = SparkplugPayload.Metric()
        metric.name = "Node Control/Rebirth"
        metric.timestamp = UInt64(max(0, now / 1_000_000))
        metric.datatype = 11
        metric.booleanValue = true
        var payload = SparkplugPayload()
        payload.timestamp = UInt64(max(0, now / 1_000_000))
        payload.metrics = [metric]
        return (try? payload.serializedBytes()) ?? []
    }
}
