import Foundation
import Proto
import SwiftProtobuf
import TwinCore

/// Printers shared by the commands: one per result type and format.
enum Format {
    static func time(_ ts: Google_Protobuf_Timestamp) -> String {
        let date = Date(timeIntervalSince1970: TimeInterval(ts.seconds) + TimeInterval(ts.nanos) / 1e9)
        return Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(date)
    }

    static func number(_ v: Double) -> String {
        if !v.isFinite { return "\(v)" }
        let a = abs(v)
        if a >= 1000 { return String(format: "%.0f", v) }
        if a >= 100 { return String(format: "%.1f", v) }
        if a >= 1 { return String(format: "%.2f", v) }
        return String(format: "%.3f", v)
    }

    /// A nominal range; an unbounded side (a gateway that gave none) shows as `-`.
    static func range(_ low: Double, _ high: Double) -> String {
        let unbounded = 1e300
        if low <= -unbounded && high >= unbounded { return "-" }
        return "\(low <= -unbounded ? "" : number(low))–\(high >= unbounded ? "" : number(high))"
    }

    static func state(_ s: Twin_V1_DeviceState) -> String {
        switch s {
        case .running: "running"
        case .idle: "idle"
        case .warning: "warning"
        case .alarm: "ALARM"
        case .failed: "FAILED"
        case .maintenance: "maintenance"
        case .offline: "offline"
        default: "unknown"
        }
    }

    static func role(_ r: Twin_V1_Role) -> String {
        switch r {
        case .viewer: "viewer"
        case .operator: "operator"
        case .admin: "admin"
        case .gateway: "gateway"
        default: "unknown"
        }
    }

    static func stateKey(_ s: Twin_V1_DeviceState) -> String { state(s).lowercased() }

    /// A JSON value as text (strings escaped).
    static func json(_ value: Any) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("null".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Proto JSON with the .proto field names, for output other programs read.
    static func protoJSON(_ message: some SwiftProtobuf.Message) -> String {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        return (try? message.jsonString(options: options)) ?? "{}"
    }

    /// A CSV field (RFC 4180 quoting when needed).
    static func csv(_ field: String) -> String {
        field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : field
    }

    /// A plain table: columns padded to the widest cell, the last column free.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}

extension Google_Protobuf_Duration {
    init(nanos: Nanos) { self.init(seconds: nanos / Time.second, nanos: Int32(nanos % Time.second)) }
}
