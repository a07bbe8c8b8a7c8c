import Crypto
import Foundation
import TwinApp
import TwinCore

/// What each kind of channel is sent: the webhook JSON (signed), Slack's and Teams' incoming
/// webhook payloads, and the e-mail's subject and text. Pure: no I/O.
public enum Payloads {
    /// One line for people: "[CRITICAL] pump-001 bearing_temp.high opened: …".
    public static func line(_ n: Notice) -> String {
        let a = n.alert
        var place = [n.site.isEmpty ? nil : "site \(n.site)", n.line.isEmpty ? nil : "line \(n.line)"].compactMap { $0 }.joined(separator: ", ")
        if !place.isEmpty { place = " (\(place))" }
        let what: String
        switch n.event {
        case .opened: what = "opened"
        case .acknowledged: what = "acknowledged by \(a.acknowledgedBy)"
        case .resolved: what = a.resolvedBy == "system" ? "cleared" : "resolved by \(a.resolvedBy)"
        case .escalated: what = "not acknowledged since \(Time.iso(a.openedAt))"
        case .test: what = "test"
        }
        return "[\(a.severity.name.uppercased())] \(a.deviceID) \(a.rule) \(what): \(a.message)\(place)"
    }

    public static func title(_ m: OutgoingMessage) -> String {
        if m.isSummary { return "twin: \(m.notices.count) alert notifications (rate limit reached)" }
        let n = m.notices[0]
        return n.event == .test ? "twin: test notification" : "twin: \(n.alert.severity.name) \(n.alert.deviceID) \(n.alert.rule) \(n.event.rawValue)"
    }

    public static func text(_ m: OutgoingMessage) -> String {
        m.isSummary ? ([title(m) + ":"] + m.notices.map { "• " + line($0) }).joined(separator: "\n") : line(m.notices[0])
    }

    static func alertJSON(_ n: Notice) -> [String: Any] {
        let a = n.alert
        var alert: [String: Any] = [
            "id": a.id, "device_id": a.deviceID, "rule": a.rule, "sensor": a.sensor, "severity": a.severity.name, "state": a.state.rawValue,
            "message": a.message, "opened_at": Time.iso(a.openedAt), "updated_at": Time.iso(a.updatedAt), "occurrences": Int(a.occurrences),
        ]
        if let v = a.value, v.isFinite { alert["value"] = v }
        if let v = a.ruleVersion { alert["rule_version"] = v }
        if !a.acknowledgedBy.isEmpty { alert["acknowledged_by"] = a.acknowledgedBy }
        if let t = a.acknowledgedAt { alert["acknowledged_at"] = Time.iso(t) }
        if !a.ackComment.isEmpty { alert["ack_comment"] = a.ackComment }
        if !a.resolvedBy.isEmpty { alert["resolved_by"] = a.resolvedBy }
        if let t = a.resolvedAt { alert["resolved_at"] = Time.iso(t) }
        if !a.resolveComment.isEmpty { alert["resolve_comment"] = a.resolveComment }
        return [
            "id": n.id, "event": n.event.rawValue, "route": n.route, "created_at": Time.iso(n.createdAt), "alert": alert,
            "device": ["id": a.deviceID, "site": n.site, "line": n.line, "type": n.deviceType],
        ]
    }

    static func encode(_ object: [String: Any]) -> [UInt8] {
        // Only strings, numbers, booleans, arrays and dictionaries of them: always encodable.
        Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8))
    }

    /// The webhook body: the idempotency key, when it was sent, whether it is a summary, a line
    /// for people, and every notice with its alert and device.
    public static func webhook(_ m: OutgoingMessage) -> [UInt8] {
        encode([
            "idempotency_key": m.idempotencyKey, "sent_at": Time.iso(m.sentAt), "summary": m.isSummary, "text": text(m),
            "notices": m.notices.map(alertJSON),
        ])
    }

    /// Slack's incoming webhook: `text` (mrkdwn).
    public static func slack(_ m: OutgoingMessage) -> [UInt8] {
        encode(["text": text(m)])
    }

    /// Teams' incoming webhook (a MessageCard, which Teams' connectors and Workflows take).
    public static func teams(_ m: OutgoingMessage) -> [UInt8] {
        let worst = m.notices.map(\.alert.severity).max() ?? .info
        return encode([
            "@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": title(m), "title": title(m),
            "themeColor": worst == .critical ? "D70000" : worst == .warning ? "FFA500" : "2E86C1",
            "text": m.notices.map { line($0) }.joined(separator: "\n\n"),
        ])
    }

    /// The signature header's value: `t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`.
    /// The receiver recomputes it with the shared key and refuses an old `t` (replays).
    public static func signature(body: [UInt8], key: [UInt8], timestamp: Int64) -> String {
        var signed = Array("\(timestamp).".utf8)
        signed += body
        let mac = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: key))
        return "t=\(timestamp),v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    /// The e-mail: subject and plain text (CRLF lines, dot-stuffed for SMTP DATA).
    public static func email(_ m: OutgoingMessage, from: String, to: [String], messageID: String) -> [UInt8] {
        let date = Date(timeIntervalSince1970: Double(m.sentAt) / 1e9)
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        var body = [text(m), ""]
        for n in m.notices {
            let a = n.alert
            body += [
                "Alert \(a.id) (\(n.event.rawValue))", "  device: \(a.deviceID)\(n.deviceType.isEmpty ? "" : " (\(n.deviceType))")",
                "  rule: \(a.rule)", "  severity: \(a.severity.name)", "  state: \(a.state.rawValue)", "  opened: \(Time.iso(a.openedAt))",
                "  message: \(a.message)", "",
            ]
        }
        body.append("Idempotency-Key: \(m.idempotencyKey)")
        let headers = [
            "From: \(from)", "To: \(to.joined(separator: ", "))", "Subject: \(headerSafe(title(m)))", "Date: \(f.string(from: date))",
            "Message-ID: <\(messageID)>", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
            "X-Twin-Idempotency-Key: \(headerSafe(m.idempotencyKey))",
        ]
        // Any CR, LF or CRLF in the text ends a line here (never a bare one on the wire), and a
        // line starting with a dot gets another (RFC 5321 4.5.2), so no text ends DATA early.
        let text = body.joined(separator: "\n").replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        let lines = headers + [""] + text.components(separatedBy: "\n")
        return Array(lines.map { $0.hasPrefix(".") ? "." + $0 : $0 }.joined(separator: "\r\n").utf8) + Array("\r\n".utf8)
    }

    /// A header value on one line, ASCII, RFC 2047-encoded when it is not.
    static func headerSafe(_ s: String) -> String {
        let one = s.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        if one.allSatisfy({ $0.isASCII }) { return String(one.prefix(900)) }
        return "=?utf-8?B?\(Data(String(one.prefix(300)).utf8).base64EncodedString())?="
    }
}
