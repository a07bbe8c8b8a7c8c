import Foundation
import Testing
import TwinApp
import TwinCore
@testable import TwinNotify

/// What each kind of channel is sent, as its receiver reads it.
@Suite struct PayloadTests {
    static func message(_ text: String = "bearing_temp 95.0 °C is above its alarm limit 90.0 °C", count: Int = 1) -> OutgoingMessage {
        let notices = (0..<count).map { k -> Notice in
            var a = Alert(id: "alert-\(k)", deviceID: "pump-1", rule: "bearing_temp.high", sensor: "bearing_temp", severity: .critical, message: text, value: 95, at: 1_800_000_000 * Time.second)
            a.ruleVersion = "r0123"
            var n = Notice(channel: "ops", route: "pumps", event: .opened, alert: a, at: a.openedAt)
            n.site = "north"
            n.line = "2"
            n.deviceType = "pump"
            return n
        }
        return OutgoingMessage(notices: notices, sentAt: 1_800_000_005 * Time.second)
    }

    func json(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test func theWebhookBodyCarriesTheKeyTheAlertAndTheDevice() throws {
        let body = try json(Payloads.webhook(Self.message()))
        #expect(body["idempotency_key"] as? String == "alert-0/opened/ops")
        #expect(body["summary"] as? Bool == false)
        #expect(body["sent_at"] as? String == "2027-01-15T08:00:05Z")
        let notice = try #require((body["notices"] as? [[String: Any]])?.first)
        let alert = try #require(notice["alert"] as? [String: Any])
        #expect(alert["severity"] as? String == "critical" && alert["rule_version"] as? String == "r0123" && alert["value"] as? Double == 95)
        #expect((notice["device"] as? [String: String]) == ["id": "pump-1", "site": "north", "line": "2", "type": "pump"])
        #expect(body["text"] as? String == "[CRITICAL] pump-1 bearing_temp.high opened: bearing_temp 95.0 °C is above its alarm limit 90.0 °C (site north, line 2)")
    }

    @Test func aSummaryListsEveryNotice() throws {
        let m = Self.message(count: 4)
        #expect(m.idempotencyKey == "summary/alert-0/opened/ops/4")
        let slack = try json(Payloads.slack(m))
        let text = try #require(slack["text"] as? String)
        #expect(text.hasPrefix("twin: 4 alert notifications (rate limit reached):") && text.components(separatedBy: "\n• ").count == 5)
        let teams = try json(Payloads.teams(m))
        #expect(teams["@type"] as? String == "MessageCard" && teams["themeColor"] as? String == "D70000")
    }

    @Test func theSignatureIsHMACSHA256OfTimeAndBody() {
        // The expected value computed apart (Python's hmac) over "0.what do ya want for nothing?".
        let sig = Payloads.signature(body: Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8), timestamp: 0)
        #expect(sig == "t=0,v1=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc")
    }

    @Test func anAlertMessageCannotAddMailHeadersOrEndTheMessage() {
        let mail = String(decoding: Payloads.email(Self.message("hot\r\nBcc: someone@evil.example\n.\nQUIT"), from: "twind@plant", to: ["a@plant"], messageID: "1@twind"), as: UTF8.self)
        let lines = mail.components(separatedBy: "\r\n")
        let headers = lines.prefix { !$0.isEmpty }
        #expect(!headers.contains { $0.hasPrefix("Bcc:") })
        #expect(headers.contains("Subject: twin: critical pump-1 bearing_temp.high opened"))
        // A line of one dot would end DATA: it is stuffed.
        #expect(!lines.contains(".") && lines.contains(".."))
        // Lines end CRLF only: no bare CR or LF for a mail server to read as a line end.
        #expect(!mail.replacingOccurrences(of: "\r\n", with: "").contains(where: { $0 == "\r" || $0 == "\n" }))
    }
}

/// The SMTP client's reply reader: the lines RFC 5321 allows, and anything else refused, never
/// a crash (truncated, binary, huge).
@Suite struct SMTPReplyTests {
    @Test func readsReplyLines() {
        #expect(SMTPClient.replyLine("250-STARTTLS\r\n").map { [String($0.code), $0.text, "\($0.more)"] } == ["250", "STARTTLS", "true"])
        #expect(SMTPClient.replyLine("535 5.7.8 bad credentials\r\n").map { [String($0.code), $0.text, "\($0.more)"] } == ["535", "5.7.8 bad credentials", "false"])
        #expect(SMTPClient.replyLine("220").map(\.code) == 220)
        for bad in ["", "25", "abc def", "250x", "+12 ok", "-50 no", "650 nine", "\u{0}\u{0}\u{0}"] { #expect(SMTPClient.replyLine(bad) == nil, "\(bad)") }
    }

    @Test func hostileLinesNeverCrashIt() {
        var random = SplitMix64(seed: 25)
        for _ in 0..<5_000 {
            let n = Int(random.next() % 300)
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            _ = SMTPClient.replyLine(String(decoding: bytes, as: UTF8.self))
            _ = SMTPClient.replyLine("2" + String(decoding: bytes.prefix(5), as: UTF8.self))
        }
        _ = SMTPClient.replyLine("250-" + String(repeating: "x", count: 70_000))
    }
}
