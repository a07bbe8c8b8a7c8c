import Foundation
import Logging
import Synchronization
import Testing
import TwinApp
import TwinCore
@testable import TwinEngines

/// The outbox in memory, shared by the "before" and "after" notifier of a restart.
final class MemoryNoticeStore: NoticeStore {
    let rows = Mutex<[String: Notice]>([:])
    func enqueueNotices(_ notices: [Notice]) throws(TwinError) -> [Notice] {
        rows.withLock { rows in
            notices.filter { n in
                guard rows[n.id] == nil else { return false }
                rows[n.id] = n
                return true
            }
        }
    }
    func updateNotices(_ notices: [Notice]) throws(TwinError) { rows.withLock { for n in notices { $0[n.id] = n } } }
    func pendingNotices() throws(TwinError) -> [Notice] {
        rows.withLock { $0.values.filter { $0.state == .pending }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) } }
    }
    func pruneNotices(before time: Nanos) throws(TwinError) -> Int { 0 }
}

/// A receiver at the unit tier: records what it is given and answers as told.
final class RecordingSender: NoticeSender {
    let received = Mutex<[OutgoingMessage]>([])
    let recipients = Mutex<[[String]]>([])
    let answers = Mutex<[DeliveryOutcome]>([])
    func deliver(_ message: OutgoingMessage, on channel: NotifyConfig.Channel) async -> DeliveryOutcome {
        received.withLock { $0.append(message) }
        recipients.withLock { $0.append(channel.to) }
        return answers.withLock { $0.isEmpty ? .delivered("HTTP 200") : $0.removeFirst() }
    }
    var keys: [String] { received.withLock { $0.map(\.idempotencyKey) } }
}

/// Routing, quiet hours, escalation, retries, rate limits and the outbox across a restart, as
/// policies: in-memory stores, a hand-moved clock, no daemon and no sleeps.
@Suite struct NotifierTests {
    let clock = ManualClock()
    let logger = Logger(label: "test")
    let alerts = MemoryAlertStore()
    let outbox = MemoryNoticeStore()
    let sender = RecordingSender()

    static let config = """
        channels:
          - name: ops
            type: webhook
            url: https://hooks.example.com/twin/secret-path
          - name: oncall
            type: slack
            url: https://hooks.slack.com/services/T/B/X
            rate_limit: 2/h
        routes:
          - name: pumps
            severity: warning
            types: [pump]
            channels: [ops]
            escalate_after: 15m
            escalate_to: [oncall]
          - name: north-critical
            severity: critical
            sites: [north]
            rules: [hot]
            events: [opened]
            channels: [oncall]
        """

    static let pump = Device(id: "pump-1", type: "pump", site: "north", sensors: [SensorSpec(name: "bearing_temp", unit: "°C", nominalMin: 40, nominalMax: 70, alarmHigh: 90)])
    static let fan = Device(id: "fan-1", type: "fan", site: "south", sensors: [SensorSpec(name: "bearing_temp", unit: "°C", nominalMin: 40, nominalMax: 70, alarmHigh: 90)])

    func notifier(_ text: String = Self.config) throws -> Notifier {
        let devices = [Self.pump.id: Self.pump, Self.fan.id: Self.fan]
        return try Notifier(
            config: try NotifyConfig.parse(text, source: "test.yaml"), store: outbox, sender: sender, clock: clock, logger: logger,
            placement: { id in devices[id].map { Notifier.Placement(site: $0.site, line: $0.line, type: $0.type) } })
    }

    func alert(_ device: String, rule: String = "bearing_temp.hot", severity: Alert.Severity = .warning) -> Alert {
        Alert(id: "alert-\(device)-\(rule)", deviceID: device, rule: rule, sensor: "bearing_temp", severity: severity, message: "hot", value: 95, at: clock.now())
    }

    /// What the alert book does: route, save with the alerts, queue.
    func save(_ n: Notifier, _ list: [Alert]) throws {
        let notices = n.route(list)
        _ = try alerts.saveAlerts(list, audit: nil, notices: notices)
        n.queued(try outbox.enqueueNotices(notices))
    }

    /// An e-mail channel naming users and roles writes to their accounts' addresses as they
    /// are at each sending: enabled users with an address, each once; with nobody to write to
    /// the notice waits (an address may come) and says why.
    @Test func eMailToUsersAndRolesUsesTheirAddressesAtSending() async throws {
        let text = """
            channels:
              - name: people
                type: email
                server: localhost:2525
                tls: none
                from: twind@plant.example
                to: [desk@plant.example]
                to_users: [olga]
                to_roles: [admin]
            routes:
              - name: all
                channels: [people]
            """
        func user(_ name: String, _ role: User.Role, _ email: String, disabled: Bool = false) -> User {
            User(id: 0, username: name, role: role, disabled: disabled, createdAt: 0, lastLoginAt: nil, passwordHash: "", email: email)
        }
        let accounts = Mutex<[User]>([
            user("olga", .operator, "olga@plant.example"), user("ada", .admin, "ada@plant.example"), user("bob", .admin, "bob@plant.example", disabled: true),
            user("carl", .admin, ""), user("vic", .viewer, "vic@plant.example"), user("dup", .admin, "OLGA@plant.example"),
        ])
        let n = try Notifier(
            config: try NotifyConfig.parse(text, source: "test.yaml"), store: outbox, sender: sender, clock: clock, logger: logger,
            accounts: { accounts.withLock { $0 } })
        try save(n, [alert("pump-1")])
        await n.deliverDue(channel: "people")
        #expect(sender.recipients.withLock { $0 } == [["desk@plant.example", "olga@plant.example", "ada@plant.example"]])

        // Nobody left with an address (and no fixed one): not sent, retried, the reason shown.
        let alone = try NotifyConfig.parse(text.replacingOccurrences(of: "    to: [desk@plant.example]\n", with: ""), source: "test.yaml")
        n.replaceConfig(alone)
        accounts.withLock { $0 = [user("olga", .operator, "")] }
        try save(n, [alert("fan-1")])
        clock.advance(by: Time.minute)
        await n.deliverDue(channel: "people")
        #expect(sender.recipients.withLock { $0 }.count == 1)
        let status = n.status().first { $0.name == "people" }
        #expect(status?.lastError.contains("no recipient") == true && status?.pending == 1, "\(String(describing: status))")
    }

    @Test func routesBySeverityTypeSiteAndRule() throws {
        let n = try notifier()
        let routed = n.route([alert("pump-1", severity: .critical), alert("pump-1", rule: "flow.low", severity: .info), alert("fan-1", severity: .critical)])
        // The critical pump alert: both routes; the info one: neither; the fan (south): neither.
        #expect(Set(routed.map(\.id)) == ["alert-pump-1-bearing_temp.hot/opened/ops", "alert-pump-1-bearing_temp.hot/opened/oncall"])
        #expect(routed.allSatisfy { $0.site == "north" && $0.deviceType == "pump" })
        // A resolved alert goes to routes that list resolved (the default), not north-critical.
        var resolved = alert("pump-1", severity: .critical)
        resolved.state = .resolved
        resolved.updatedAt += Time.minute
        resolved.resolvedAt = resolved.updatedAt
        #expect(n.route([resolved]).map(\.id) == ["alert-pump-1-bearing_temp.hot/resolved/ops"])
        // An open alert updated later (its value) is not a new notice.
        var updated = alert("pump-1")
        updated.updatedAt += Time.minute
        #expect(n.route([updated]).isEmpty)
    }

    @Test func deliversOnceAndAcrossARestartDeliversWhatWasLeft() async throws {
        let first = try notifier()
        sender.answers.withLock { $0 = [.retry("connection refused", after: nil)] }
        try save(first, [alert("pump-1")])
        await first.deliverDue(channel: "ops")
        #expect(first.status().first { $0.name == "ops" }?.consecutiveFailures == 1)
        #expect(first.status().first { $0.name == "ops" }?.lastError == "connection refused")
        // Restart: a new notifier on the same outbox finds the notice and delivers it after the backoff it never knew.
        let second = try notifier()
        await second.deliverDue(channel: "ops")
        #expect(sender.keys == ["alert-pump-1-bearing_temp.hot/opened/ops", "alert-pump-1-bearing_temp.hot/opened/ops"])
        #expect(try outbox.pendingNotices().isEmpty)
        let delivered = outbox.rows.withLock { $0["alert-pump-1-bearing_temp.hot/opened/ops"] }
        #expect(delivered?.state == .delivered && delivered?.attempts == 2)
        // Nothing left: a further pass sends nothing.
        await second.deliverDue(channel: "ops")
        #expect(sender.keys.count == 2)
    }

    @Test func retriesBackOffAndRejectionsFailAtOnce() async throws {
        let n = try notifier()
        sender.answers.withLock { $0 = [.retry("HTTP 503", after: nil), .retry("HTTP 503", after: nil), .delivered("HTTP 200")] }
        try save(n, [alert("pump-1")])
        await n.deliverDue(channel: "ops")
        await n.deliverDue(channel: "ops")  // within the 2 s backoff: not tried
        #expect(sender.keys.count == 1)
        clock.advance(by: 2 * Time.second)
        await n.deliverDue(channel: "ops")
        #expect(sender.keys.count == 2)
        clock.advance(by: 3 * Time.second)  // the second failure waits 4 s
        await n.deliverDue(channel: "ops")
        #expect(sender.keys.count == 2)
        clock.advance(by: Time.second)
        await n.deliverDue(channel: "ops")
        #expect(sender.keys.count == 3)
        #expect(n.status().first { $0.name == "ops" }.map { ($0.delivered, $0.consecutiveFailures, $0.pending) } ?? (0, 9, 9) == (1, 0, 0))

        // A 404 is not retried: failed, shown, and the next notice still goes.
        sender.answers.withLock { $0 = [.rejected("HTTP 404")] }
        var other = alert("pump-1", rule: "vibration.hot")
        other.id = "alert-2"
        try save(n, [other])
        await n.deliverDue(channel: "ops")
        #expect(outbox.rows.withLock { $0["alert-2/opened/ops"]?.state } == .failed)
        #expect(n.status().first { $0.name == "ops" }?.failed == 1)
    }

    @Test func aNoticeNotDeliveredWithinRetryForFails() async throws {
        let n = try notifier(Self.config + "\nretry_for: 1h\n")
        sender.answers.withLock { $0 = Array(repeating: .retry("timeout", after: nil), count: 100) }
        try save(n, [alert("pump-1")])
        await n.deliverDue(channel: "ops")
        clock.advance(by: Time.hour + Time.second)
        await n.deliverDue(channel: "ops")
        let row = outbox.rows.withLock { $0["alert-pump-1-bearing_temp.hot/opened/ops"] }
        #expect(row?.state == .failed && row?.lastError == "timeout")
        #expect(n.status().first { $0.name == "ops" }?.failed == 1)
    }

    @Test func eachChangeIsNotifiedOnceThoughLaterPassesSaveTheAlertAgain() async throws {
        let n = try notifier(Self.config.replacingOccurrences(of: "    channels: [ops]\n", with: "    channels: [ops]\n    events: [opened, acknowledged, resolved]\n"))
        let book = try AlertBook(store: alerts, clock: clock, logger: logger)
        book.attach(n)
        let hot = HealthEngine.Verdict(score: 40, factors: [], summary: HealthSummary(score: 40, headline: ""), levels: [HealthEngine.Level(sensor: "bearing_temp", value: 95, sensorFault: false)])
        let subject = AlertBook.Subject(device: Self.pump, state: .running, verdict: hot, outlook: nil)
        for _ in 0..<2 {
            _ = book.evaluate([subject])
            clock.advance(by: 30 * Time.second)
        }
        await n.deliverDue(channel: "ops")
        let id = try #require(book.list(devices: [], states: [.open], minimum: nil).first?.id)
        _ = try book.change(id, to: .acknowledged, by: "ops", comment: "")
        await n.deliverDue(channel: "ops")
        // The passes after save the acknowledged alert again (its value, once a minute).
        for _ in 0..<6 {
            clock.advance(by: 30 * Time.second)
            _ = book.evaluate([subject])
            await n.deliverDue(channel: "ops")
        }
        #expect(sender.keys == ["\(id)/opened/ops", "\(id)/acknowledged/ops"])
    }

    @Test func aReloadThatDropsAChannelFailsWhatWaitedForItAndRoutesByTheNewFile() async throws {
        let n = try notifier()
        sender.answers.withLock { $0 = [.retry("connection refused", after: nil)] }
        try save(n, [alert("pump-1")])
        await n.deliverDue(channel: "ops")
        n.replaceConfig(try NotifyConfig.parse("channels:\n  - name: new\n    type: teams\n    url: https://t.example.com/x\nroutes:\n  - name: all\n    channels: [new]\n", source: "n.yaml"))
        await n.deliverDue(channel: "ops")
        let row = outbox.rows.withLock { $0["alert-pump-1-bearing_temp.hot/opened/ops"] }
        #expect(row?.state == .failed && row?.lastError == "channel 'ops' is no longer configured")
        #expect(n.route([alert("fan-1")]).map(\.channel) == ["new"])
        #expect(n.status().map(\.name) == ["new"])
    }

    @Test func escalatesAnAlertNobodyAcknowledgedOnce() async throws {
        let n = try notifier()
        let open = alert("pump-1")
        try save(n, [open])
        clock.advance(by: 14 * Time.minute)
        await n.escalate(open: [open])
        #expect(try outbox.pendingNotices().allSatisfy { $0.event != .escalated })
        clock.advance(by: Time.minute)
        await n.escalate(open: [open])
        await n.escalate(open: [open])
        let escalations = try outbox.pendingNotices().filter { $0.event == .escalated }
        #expect(escalations.map(\.id) == ["alert-pump-1-bearing_temp.hot/escalated/oncall"])
        // After a restart it is not made again.
        let again = try notifier()
        await again.escalate(open: [open])
        await again.deliverDue(channel: "oncall")
        #expect(sender.keys == ["alert-pump-1-bearing_temp.hot/escalated/oncall"])
        // Delivered, then another restart: still not made again.
        let third = try notifier()
        await third.escalate(open: [open])
        await third.deliverDue(channel: "oncall")
        #expect(sender.keys.count == 1)
        // An acknowledged alert is not escalated.
        var acked = alert("pump-1", rule: "vibration.hot")
        acked.state = .acknowledged
        acked.openedAt -= Time.hour
        await third.escalate(open: [acked])
        #expect(try outbox.pendingNotices().allSatisfy { $0.event != .escalated })
    }

    @Test func aRateLimitSendsOneSummaryInsteadOfAFlood() async throws {
        let n = try notifier()
        // oncall allows 2 an hour; five critical north pump alerts arrive.
        let five = (1...5).map { k -> Alert in
            var a = alert("pump-1", severity: .critical)
            a.id = "alert-\(k)"
            return a
        }
        try save(n, Array(five.prefix(1)))
        await n.deliverDue(channel: "oncall")
        try save(n, Array(five.dropFirst()))
        await n.deliverDue(channel: "oncall")
        let messages = sender.received.withLock { $0 }
        #expect(messages.map(\.notices.count) == [1, 4])
        #expect(messages.last?.idempotencyKey == "summary/alert-2/opened/oncall/4")
        #expect(n.status().first { $0.name == "oncall" }.map { ($0.delivered, $0.summaries) } ?? (0, 0) == (5, 1))
        // The hour's allowance is spent: the next waits, held, until the window moves on.
        var sixth = alert("pump-1", severity: .critical)
        sixth.id = "alert-6"
        try save(n, [sixth])
        await n.deliverDue(channel: "oncall")
        #expect(sender.received.withLock { $0.count } == 2)
        #expect(n.status().first { $0.name == "oncall" }?.rateLimited == true)
        clock.advance(by: Time.hour)
        await n.deliverDue(channel: "oncall")
        #expect(sender.keys.last == "alert-6/opened/oncall")
    }

    @Test func quietHoursHoldNoticesUntilTheyEndExceptTheSevereOnes() async throws {
        let text = Self.config.replacingOccurrences(
            of: "    channels: [ops]\n", with: "    channels: [ops]\n    quiet_hours: { from: \"22:00\", to: \"06:00\", timezone: UTC, except: critical }\n")
        // 23:30 UTC.
        clock.set(1_800_000_000 * Time.second / Time.day * Time.day + (23 * 60 + 30) * Time.minute)
        let n = try notifier(text)
        try save(n, [alert("pump-1")])
        var critical = alert("pump-1", rule: "vibration.hot", severity: .critical)
        critical.id = "alert-critical"
        try save(n, [critical])
        await n.deliverDue(channel: "ops")
        #expect(sender.keys == ["alert-critical/opened/ops"])
        let held = try #require(try outbox.pendingNotices().first { $0.channel == "ops" })
        #expect(held.notBefore - clock.now() == 6 * Time.hour + 30 * Time.minute)
        clock.advance(by: 6 * Time.hour + 30 * Time.minute)
        await n.deliverDue(channel: "ops")
        #expect(sender.keys.last == "alert-pump-1-bearing_temp.hot/opened/ops")
    }

    @Test func recipientsByUserAndRoleAreChecked() {
        func problem(_ to: String) -> String {
            let text = "channels:\n  - name: m\n    type: email\n    server: localhost:25\n    tls: none\n    from: a@b.c\n" + to
            do { _ = try NotifyConfig.parse(text, source: "n.yaml"); return "" } catch { return error.message }
        }
        #expect(problem("    to_roles: [boss]\n").contains("line 7") && problem("    to_roles: [boss]\n").contains("'boss' is not a role"))
        #expect(problem("    to_roles: [gateway]\n").contains("is not a role"))
        #expect(problem("").contains("to_users") && problem("").contains("to_roles"))
        #expect(problem("    to_users: [olga]\n").isEmpty && problem("    to_roles: [operator, admin]\n").isEmpty)
    }

    @Test func theConfigurationNamesTheLineOfEachProblemAndShowsNoSecrets() throws {
        func problem(_ text: String) -> String {
            do {
                _ = try NotifyConfig.parse(text, source: "n.yaml")
                return "accepted"
            } catch { return error.message }
        }
        #expect(problem("channels:\n  - name: a\n    type: pager\n").contains("line 3"))
        #expect(problem("routes:\n  - name: r\n    channels: [nowhere]\n").contains("no channel is named 'nowhere'"))
        #expect(problem("channels:\n  - name: a\n    type: webhook\n    url: ftp://x\n").contains("line 4"))
        #expect(problem("channels:\n  - name: m\n    type: email\n    server: mail.example.com\n    tls: none\n    from: a@b\n    to: [c@d]\n").contains("loopback"))
        #expect(problem("channels:\n  - name: a\n    type: webhook\n    url: https://x\n    secret_file: /nonexistent\n").contains("cannot read the secret file"))
        #expect(problem("channels:\n  - name: a\n    type: webhook\n    url: https://x\n    rate_limit: lots\n").contains("rate_limit"))
        #expect(problem("routes:\n  - name: r\n    channels: []\n    escalate_to: [a]\n").contains("escalate_to needs escalate_after"))
        let open = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UUID().uuidString)").path
        try "k".write(toFile: open, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: open) }
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: open)
        #expect(problem("channels:\n  - name: a\n    type: webhook\n    url: https://x\n    secret_file: \(open)\n").contains("can be read by other users"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: open)
        #expect(problem("channels:\n  - name: a\n    type: webhook\n    url: https://x\n    secret_file: \(open)\n") == "accepted")
        let c = try NotifyConfig.parse(Self.config, source: "n.yaml")
        #expect(c.channel("ops")?.target == "https://hooks.example.com/…")
        #expect(c.channel("oncall")?.rateLimit.map { [$0.count, Int($0.period / Time.second)] } == [2, 3600])
    }

    @Test func hostileConfigurationsNeverCrashTheParser() {
        var random = SplitMix64(seed: 17)
        let pieces = ["channels:", "routes:", "  - name: ", "    type: ", "webhook", "email", "    url: ", "https://x", "\n", "[", "]", "{", "}", ": ", "-",
                      "rate_limit: 0/h", "quiet_hours: {from: 25:00}", "escalate_after: -1s", "\u{0}", "é", "999999999999999999999", "~", "!!binary"]
        for _ in 0..<2_000 {
            var text = ""
            for _ in 0..<Int(random.next() % 30) { text += pieces[Int(random.next() % UInt64(pieces.count))] }
            _ = try? NotifyConfig.parse(text, source: "fuzz")
        }
    }
}
