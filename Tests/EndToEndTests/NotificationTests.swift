import Foundation
import Testing

/// Notifications through real twind and twin processes to receivers written by others: a
/// webhook receiver (Python's http.server, checking the HMAC signature) that fails at first,
/// dies and comes back across a twind restart; a mail server (aiosmtpd) requiring STARTTLS and
/// a login.
@Suite(.timeLimit(.minutes(3))) struct NotificationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let rules = AlertRulesCLITests.rules

    /// A private temporary directory with a signing key only its owner reads.
    static func scratch() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twin-notify-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return dir
    }

    struct Delivery {
        var status: Int
        var key: String
        var event: String
        var signed: Bool
        var text: String
    }

    static func deliveries(_ receiver: Child) -> [Delivery] {
        receiver.stdout.lines.compactMap { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let status = o["status"] as? Int else { return nil }
            return Delivery(status: status, key: o["key"] as? String ?? "", event: o["event"] as? String ?? "", signed: o["signed"] as? Bool ?? false, text: o["text"] as? String ?? "")
        }
    }

    static func receiver(key: String, failFirst: Int, port: Int? = nil) async throws -> (Child, Int) {
        let script = root.appendingPathComponent("Tests/Python/webhook_receiver.py").path
        let child = try Child("/usr/bin/env", ["python3", script, key, "\(failFirst)"] + (port.map { ["\($0)"] } ?? []))
        guard let line = await child.stdout.waitForLine({ $0.hasPrefix("listening ") }), let p = Int(line.dropFirst(10)) else {
            throw TestFailure("the webhook receiver did not start: \(child.stderr.text)")
        }
        return (child, p)
    }

    func alertIDs(_ d: TwindProcess) async throws -> [String] {
        let alerts = try d.twin(["alerts", "-o", "json"])
        _ = await alerts.wait()
        return alerts.stdout.lines.compactMap { line in
            guard line.contains("\"rule\":\"bearing_temp.hot\""), let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return o["id"] as? String
        }
    }

    @Test func aWebhookGetsEachNoticeOnceAcrossFailuresAndARestart() async throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = dir + "/hook.key"
        let secret = "signing-\(UUID().uuidString)"
        try secret.write(toFile: key, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
        try Self.rules.write(toFile: dir + "/rules.yaml", atomically: true, encoding: .utf8)
        // The first request is answered 503: the notice is retried after its backoff.
        var (receiver, port) = try await Self.receiver(key: key, failFirst: 1)
        defer { receiver.signal(SIGKILL) }
        let config = """
            channels:
              - name: hook
                type: webhook
                url: http://127.0.0.1:\(port)/hooks/secret-path-\(secret.prefix(4))
                secret_file: \(key)
                # Long: a receiver slow to answer (a loaded CI machine) would be retried, and
                # a retry after the receiver took it is the duplicate this test looks for.
                timeout: 60s
            routes:
              - name: pumps
                types: [pump]
                rules: [hot]
                events: [opened, acknowledged]
                channels: [hook]

            """
        try config.write(toFile: dir + "/notify.yaml", atomically: true, encoding: .utf8)
        let data = dir + "/data"
        var d = try await TwindProcess.start(["--alert-rules", dir + "/rules.yaml", "--notify-config", dir + "/notify.yaml"], directory: data)

        // Every pump opens an alert at the first health passes; each reaches the receiver, signed.
        var opened: [String] = []
        for _ in 0..<150 where opened.isEmpty {
            opened = try await alertIDs(d)
            if opened.isEmpty { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(!opened.isEmpty)
        let all = Set(opened.map { "\($0)/opened/hook" })
        for _ in 0..<300 {
            if all.isSubset(of: Set(Self.deliveries(receiver).filter { $0.status == 200 }.map(\.key))) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let first = Self.deliveries(receiver)
        #expect(first.first?.status == 503)
        #expect(all.isSubset(of: Set(first.filter { $0.status == 200 }.map(\.key))), "\(first.map(\.key))")
        #expect(first.allSatisfy { $0.signed })
        #expect(first.contains { $0.text.contains("[WARNING]") && $0.text.contains("bearing_temp.hot opened") })

        // `twin notify status`: delivered, nothing pending, and no secret on the screen.
        let status = try d.twin(["notify", "status"])
        #expect(await status.wait() == 0)
        #expect(status.stdout.text.contains("hook") && status.stdout.text.contains("http://127.0.0.1:\(port)/…"), "\(status.stdout.text)")
        #expect(!status.stdout.text.contains("secret-path") && !status.stdout.text.contains(secret))

        // The receiver dies; an acknowledgement waits in the outbox; twind restarts; the
        // receiver comes back on its port and gets it, and nothing twice.
        receiver.signal(SIGKILL)
        _ = await receiver.wait()
        let acked = opened[0]
        let ack = try d.twin(["ack", acked, "--comment", "on it"])
        #expect(await ack.wait() == 0)
        // The dead endpoint shows: the channel is failing, the acknowledgement pending.
        var failing = ""
        for _ in 0..<100 {
            let s = try d.twin(["notify", "status", "-o", "json"])
            _ = await s.wait()
            failing = s.stdout.text
            if failing.contains("\"consecutive_failures\"") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(failing.contains("\"consecutive_failures\"") && failing.contains("\"pending\""), "\(failing)")
        #expect(await d.stop(removing: false) == 0)
        (receiver, _) = try await Self.receiver(key: key, failFirst: 0, port: port)
        d = try await TwindProcess.start(["--alert-rules", dir + "/rules.yaml", "--notify-config", dir + "/notify.yaml"], directory: data, login: false)
        let ackKey = "\(acked)/acknowledged/hook"
        let got = await receiver.stdout.waitForLine(timeout: .seconds(30)) { $0.contains(ackKey) }
        #expect(got?.contains("\"status\": 200") == true, "\(receiver.stdout.text)")
        let delivered = (first + Self.deliveries(receiver)).filter { $0.status == 200 }.map(\.key)
        #expect(Set(delivered).count == delivered.count, "a notice was delivered twice: \(delivered)\n\(receiver.stdout.text)\n\(d.child.stderr.text)")
        #expect(await d.stop() == 0)
    }

    /// Channels and routes changed through twind (SetNotifyConfig via `twin notify import`):
    /// checked first (a bad line, a secret file others can read, a stale version: refused,
    /// nothing changes), written to the data directory's notify.yaml (0600), in force at once
    /// (a test message reaches the new webhook, signed) and after a restart; exported without
    /// the secret.
    @Test func channelsAndRoutesAreImportedThroughTwind() async throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = dir + "/hook.key"
        let secret = "signing-\(UUID().uuidString)"
        try secret.write(toFile: key, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
        let (receiver, port) = try await Self.receiver(key: key, failFirst: 0)
        defer { receiver.signal(SIGKILL) }
        let data = dir + "/data"
        var d = try await TwindProcess.start([], directory: data)
        func run(_ arguments: [String]) async throws -> (Int32?, String, String) {
            let c = try d.twin(arguments)
            let code = await c.wait()
            return (code, c.stdout.text, c.stderr.text)
        }
        let (code0, _, none) = try await run(["notify", "export"])
        #expect(code0 == 0 && none.contains("notifications none"), "\(none)")

        let good = """
            channels:
              - name: hook
                type: webhook
                url: http://127.0.0.1:\(port)/hooks
                secret_file: \(key)
            routes:
              - name: all
                channels: [hook]

            """
        try good.write(toFile: dir + "/good.yaml", atomically: true, encoding: .utf8)
        try (good + "    colour: red\n").write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let open = dir + "/open.key"
        try secret.write(toFile: open, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: open)
        try good.replacingOccurrences(of: key, with: open).write(toFile: dir + "/open.yaml", atomically: true, encoding: .utf8)

        let (badCode, _, bad) = try await run(["notify", "import", dir + "/bad.yaml"])
        #expect(badCode == 4 && bad.contains("line 9") && bad.contains("colour"), "\(bad)")
        let (openCode, _, readable) = try await run(["notify", "import", dir + "/open.yaml"])
        #expect(openCode == 4 && readable.contains("chmod 600"), "\(readable)")
        let (checkCode, _, checked) = try await run(["notify", "import", dir + "/good.yaml", "--check"])
        #expect(checkCode == 0 && checked.contains("checks out: 1 channels, 1 routes"), "\(checked)")
        #expect(!FileManager.default.fileExists(atPath: data + "/notify.yaml"))
        let (staleCode, _, stale) = try await run(["notify", "import", dir + "/good.yaml", "--if-version", "n0000000000000000"])
        #expect(staleCode == 9 && stale.contains("changed meanwhile"), "\(stale)")

        let (importCode, _, imported) = try await run(["notify", "import", dir + "/good.yaml"])
        #expect(importCode == 0 && imported.contains("written to \(data)/notify.yaml"), "\(imported)")
        let attributes = try FileManager.default.attributesOfItem(atPath: data + "/notify.yaml")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(try String(contentsOfFile: data + "/notify.yaml", encoding: .utf8) == good)
        let (testCode, tested, _) = try await run(["notify", "test", "hook"])
        #expect(testCode == 0, "\(tested)")
        let got = await receiver.stdout.waitForLine(timeout: .seconds(30)) { $0.contains("\"status\": 200") }
        #expect(got != nil && Self.deliveries(receiver).allSatisfy { $0.signed }, "\(receiver.stdout.text)")
        let (exportCode, exported, _) = try await run(["notify", "export"])
        #expect(exportCode == 0 && exported == good && !exported.contains(secret))
        let audit = try d.twin(["audit", "-o", "json"])
        _ = await audit.wait()
        #expect(audit.stdout.text.contains("notify_config.changed"), "\(audit.stdout.text)")

        // In force after a restart too: twind reads the file it wrote.
        #expect(await d.stop(removing: false) == 0)
        d = try await TwindProcess.start([], directory: data)
        let (statusCode, status, _) = try await run(["notify", "status"])
        #expect(statusCode == 0 && status.contains("hook"), "\(status)")
        #expect(await d.stop() == 0)
    }

    @Test func eMailGoesOverSTARTTLSWithALoginAndAWrongPasswordIsSaidSo() async throws {
        let certs = try await TLSTests.makeCertificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = Self.root.appendingPathComponent("Tests/Python/smtp_server.py").path
        let server = try Child("/usr/bin/env", ["python3", script, certs + "/server.pem", certs + "/server.key", "twin", "mail-password"])
        defer { server.signal(SIGKILL) }
        guard let line = await server.stdout.waitForLine({ $0.hasPrefix("listening ") }), let port = Int(line.dropFirst(10)) else {
            throw TestFailure("the mail server did not start: \(server.stderr.text)")
        }
        try "mail-password\n".write(toFile: dir + "/good.pass", atomically: true, encoding: .utf8)
        try "wrong\n".write(toFile: dir + "/bad.pass", atomically: true, encoding: .utf8)
        for f in ["good.pass", "bad.pass"] { try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir + "/" + f) }
        try Self.rules.write(toFile: dir + "/rules.yaml", atomically: true, encoding: .utf8)
        func channel(_ name: String, _ password: String, to: String = "to: [maintenance@plant.example]") -> String {
            """
              - name: \(name)
                type: email
                server: localhost:\(port)
                tls: starttls
                ca_file: \(certs)/ca.pem
                username: twin
                password_file: \(dir)/\(password)
                from: twind@plant.example
                \(to)

            """
        }
        // Per user: a channel writing to twind users and to a role, by their accounts' addresses.
        let people = channel("people", "good.pass", to: "to_users: [olga]\n    to_roles: [admin]")
        let config = "channels:\n" + channel("mail", "good.pass") + channel("badmail", "bad.pass") + people + """
            routes:
              - name: pumps
                types: [pump]
                channels: [mail]

            """
        try config.write(toFile: dir + "/notify.yaml", atomically: true, encoding: .utf8)
        let d = try await TwindProcess.start(["--alert-rules", dir + "/rules.yaml", "--notify-config", dir + "/notify.yaml"])

        let test = try d.twin(["notify", "test", "mail"])
        #expect(await test.wait() == 0, "\(test.stderr.text)")
        #expect(test.stdout.text.contains("mail: delivered — 250"), "\(test.stdout.text)")
        let wrong = try d.twin(["notify", "test", "badmail"])
        #expect(await wrong.wait() == 1)
        #expect(wrong.stdout.text.contains("not delivered") && wrong.stdout.text.contains("login of twin"), "\(wrong.stdout.text)")
        #expect(!wrong.stdout.text.contains("wrong"))
        let unknown = try d.twin(["notify", "test", "pager"])
        #expect(await unknown.wait() == 5)  // NOT_FOUND

        // Nobody named has an address yet: said, not sent. Then olga (operator) and the admin
        // get one; a disabled admin with an address gets nothing.
        let nobody = try d.twin(["notify", "test", "people"])
        #expect(await nobody.wait() == 1)
        #expect(nobody.stdout.text.contains("no recipient") && nobody.stdout.text.contains("olga"), "\(nobody.stdout.text)")
        for arguments in [
            ["users", "add", "olga", "--role", "operator", "--password-stdin"], ["users", "add", "ivan", "--role", "admin", "--password-stdin"],
            ["users", "set-email", "olga", "olga@plant.example"], ["users", "set-email", "admin", "admin@plant.example"],
            ["users", "set-email", "ivan", "ivan@plant.example"], ["users", "disable", "ivan"],
        ] {
            let c = try d.twin(arguments, stdin: Data("a-long-enough-password-1\n".utf8))
            #expect(await c.wait() == 0, "\(arguments): \(c.stderr.text)")
        }
        let addressed = try d.twin(["notify", "test", "people"])
        #expect(await addressed.wait() == 0, "\(addressed.stdout.text)\(addressed.stderr.text)")
        let toPeople = await server.stdout.waitForLine(timeout: .seconds(30)) { $0.contains("olga@plant.example") }
        #expect(toPeople?.contains("admin@plant.example") == true && toPeople?.contains("ivan@") == false, "\(server.stdout.text)")

        // An alert opened on a pump arrives by mail, over TLS, carrying its idempotency key.
        let mail = await server.stdout.waitForLine(timeout: .seconds(60)) { $0.contains("bearing_temp.hot opened") }
        #expect(mail?.contains("\"tls\": true") == true && mail?.contains("/opened/mail") == true, "\(server.stdout.text)")
        #expect(server.stdout.lines.contains { $0.contains("twin: test notification") })
        #expect(await d.stop() == 0)
    }
}
