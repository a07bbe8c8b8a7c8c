import ArgumentParser
import Foundation
import Logging
import TwinApp
import TwinCore
import TwinEngines
import TwinNotify
import TwinStore

/// An alert store that keeps nothing: the evaluation's own cost, without SQLite.
final class DiscardingAlertStore: AlertStore {
    func saveAlerts(_ alerts: [Alert], audit: AuditEntry?, notices: [Notice]) throws(TwinError) -> [Notice] { notices }
    func alerts(resolvedSince: Nanos) throws(TwinError) -> [Alert] { [] }
}

// MARK: - Alert evaluation at scale (in process)

struct AlertsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alerts",
        abstract: "Alert evaluation per health pass at 10,000 devices: the built-in rules against a rules file with type rules and an override for every device.")
    @Option var devices = 10_000
    @Option var passes = 20
    @Option(help: "Share of devices with a sensor above its threshold.") var hot = 0.02

    func run() async throws {
        let fleet = MachineCatalog.defaultPlant(count: devices)
        var random = SplitMix64(seed: 7)
        let subjects = fleet.map { d -> AlertBook.Subject in
            let over = Double(random.next() % 10_000) / 10_000 < hot
            let levels = d.sensors.enumerated().map { k, s in
                HealthEngine.Level(sensor: s.name, value: k == 0 && over ? (s.alarmHigh ?? s.nominalMax) + 1 : (s.nominalMin + s.nominalMax) / 2, sensorFault: false)
            }
            let verdict = HealthEngine.Verdict(score: over ? 60 : 95, factors: [], summary: HealthSummary(score: over ? 60 : 95, headline: ""), levels: levels)
            return AlertBook.Subject(device: d, state: .running, verdict: verdict, outlook: nil)
        }
        // Per type: a threshold on its first sensor; per device: that threshold moved.
        var text = "defaults:\n  hold: 0s\nrules:\n  - name: high\n    condition: above_alarm\n    severity: critical\n  - name: offline\n    condition: no_data\n"
        text += "  - name: predicted\n    condition: predicted_failure\n    horizon: 24h\n    probability: 0.5\n"
        text += "types:\n"
        var firstSensor: [String: SensorSpec] = [:]
        for d in fleet where firstSensor[d.type] == nil { firstSensor[d.type] = d.sensors.first }
        for (type, s) in firstSensor.sorted(by: { $0.key < $1.key }) {
            text += "  \(type):\n    - name: warm\n      condition: above\n      sensor: \(s.name)\n      value: \(s.alarmHigh ?? s.nominalMax)\n      deadband: 1\n"
        }
        text += "devices:\n"
        for d in fleet {
            guard let s = firstSensor[d.type] else { continue }
            text += "  \(d.id):\n    - name: warm\n      value: \((s.alarmHigh ?? s.nominalMax) - 0.5)\n"
        }
        let parseStart = ContinuousClock.now
        let overrides = try AlertRules.parse(text, source: "bench", defaultHold: 0, defaultClear: 10 * Time.minute)
        let parse = (ContinuousClock.now - parseStart).milliseconds
        let logger = Logger(label: "bench")
        var rows: [(String, String)] = [("devices", "\(devices)"), ("devices over a threshold", "\(subjects.filter { $0.verdict!.score < 80 }.count)")]
        for (name, rules) in [("built-in rules", AlertRules.builtIn(defaultHold: 0, defaultClear: 10 * Time.minute)), ("rules file, \(devices) device overrides", overrides)] {
            let book = try AlertBook(store: DiscardingAlertStore(), rules: rules, logger: logger)
            _ = book.evaluate(subjects)  // the first pass opens the alerts
            var costs: [Double] = []
            for _ in 0..<passes {
                let a = ContinuousClock.now
                _ = book.evaluate(subjects)
                costs.append((ContinuousClock.now - a).milliseconds)
            }
            let open = book.list(devices: [], states: [.open], minimum: nil).count
            rows.append(("\(name): pass p50 / p90", "\(ms(percentile(costs, 0.5))) / \(ms(percentile(costs, 0.9))) (\(open) open alerts)"))
            rows.append(("\(name): per device", String(format: "%.1f µs", percentile(costs, 0.5) * 1000 / Double(devices))))
        }
        rows.append(("parsing the rules file (\(text.utf8.count / 1024) KiB)", ms(parse)))
        report("alerts", rows)
    }
}

// MARK: - Notification latency (in process, real outbox, real HTTP)

struct NotifyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notify",
        abstract: "Notification latency from an alert opening to a webhook receiver (Python http.server) having it: through the sealed outbox (fsync) and AsyncHTTPClient, against a bare POST.")
    @Option var alerts = 200

    static let receiver = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Tests/Python/webhook_receiver.py").path

    final class Arrivals: @unchecked Sendable {
        let lock = NSLock()
        var byKey: [String: Double] = [:]
        var buffer = ""
        func take(_ text: String) {
            lock.lock()
            defer { lock.unlock() }
            buffer += text
            while let nl = buffer.firstIndex(of: "\n") {
                let line = String(buffer[..<nl])
                buffer = String(buffer[buffer.index(after: nl)...])
                if let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let key = o["key"] as? String, let at = o["received_at"] as? Double {
                    byKey[key] = at
                }
                if line.hasPrefix("listening ") { byKey["port"] = Double(line.dropFirst(10)) ?? 0 }
            }
        }
        func get(_ key: String) -> Double? {
            lock.lock()
            defer { lock.unlock() }
            return byKey[key]
        }
    }

    func wait(_ arrivals: Arrivals, _ key: String) async throws -> Double {
        for _ in 0..<10_000 {
            if let t = arrivals.get(key) { return t }
            try await Task.sleep(for: .milliseconds(1))
        }
        throw ValidationError("\(key) never arrived")
    }

    func run() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("notify-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "bench-signing-key".write(toFile: dir + "/key", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir + "/key")
        let arrivals = Arrivals()
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", Self.receiver, dir + "/key", "0"]
        let out = Pipe()
        python.standardOutput = out
        out.fileHandleForReading.readabilityHandler = { h in arrivals.take(String(decoding: h.availableData, as: UTF8.self)) }
        try python.run()
        // SIGKILL: receivers started from here outlived SIGTERM (seen: terminate() and pkill left them running).
        defer {
            kill(python.processIdentifier, SIGKILL)
            python.waitUntilExit()
        }
        let port = Int(try await wait(arrivals, "port"))

        let keys = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: dir)
        let db = try HealthDatabase(path: dir + "/health_data.db", keys: keys, durability: .full)
        let config = try NotifyConfig.parse("""
            channels:
              - name: hook
                type: webhook
                url: http://127.0.0.1:\(port)/hook
                secret_file: \(dir)/key
            routes:
              - name: all
                channels: [hook]
            """, source: "bench")
        let logger = Logger(label: "bench")
        let sender = ChannelSender()
        let writes = BlockingPool(name: "notifications", workers: 1, queueLimit: 256)
        let notifier = try Notifier(config: config, store: db, writes: writes, sender: sender, logger: logger)
        let rules = try AlertRules.parse("rules:\n  - name: hot\n    condition: above\n    sensor: t\n    value: 1\n    hold: 0s\n", source: "bench", defaultHold: 0, defaultClear: Time.minute)
        let book = try AlertBook(store: db, rules: rules, logger: logger)
        book.attach(notifier)
        let running = Task { await notifier.run { [] } }

        // Baseline: the same receiver, a bare signed POST (no outbox, no fsync).
        var bare: [Double] = []
        for k in 0..<alerts {
            let a = Alert(id: "bare-\(k)", deviceID: "bench", rule: "t.hot", sensor: "t", severity: .warning, message: "bench", value: 2, at: Time.now())
            let began = Date().timeIntervalSince1970
            _ = await sender.deliver(OutgoingMessage(notices: [Notice(channel: "hook", route: "all", event: .opened, alert: a, at: a.openedAt)], sentAt: a.openedAt), on: config.channels[0])
            bare.append((try await wait(arrivals, "bare-\(k)/opened/hook") - began) * 1000)
        }
        // Through the product's path: the pass that opens the alert commits it with its notice;
        // the channel's worker is woken and posts it.
        var full: [Double] = []
        for k in 0..<alerts {
            let d = Device(id: "bench-\(k)", type: "bench", sensors: [SensorSpec(name: "t", unit: "°C", nominalMin: 0, nominalMax: 10)])
            let verdict = HealthEngine.Verdict(score: 60, factors: [], summary: HealthSummary(score: 60, headline: ""), levels: [HealthEngine.Level(sensor: "t", value: 5, sensorFault: false)])
            let began = Date().timeIntervalSince1970
            _ = book.evaluate([AlertBook.Subject(device: d, state: .running, verdict: verdict, outlook: nil)])
            guard let id = book.list(devices: [d.id], states: [.open], minimum: nil).first?.id else { throw ValidationError("no alert opened") }
            full.append((try await wait(arrivals, "\(id)/opened/hook") - began) * 1000)
        }
        running.cancel()
        await running.value
        await sender.shutdown()
        writes.shutdown()
        try db.shutDown()
        func row(_ v: [Double]) -> String { "p50 \(ms(percentile(v, 0.5)))  p90 \(ms(percentile(v, 0.9)))  p99 \(ms(percentile(v, 0.99)))  max \(ms(v.max() ?? 0))" }
        report("notify", [
            ("alerts", "\(alerts), one at a time"),
            ("bare signed POST to the receiver", row(bare)),
            ("alert opened → receiver has it (outbox, fsync)", row(full)),
            ("in twind add", "the wait for the next health pass (every 5 s) and the rule's hold"),
        ])
    }
}
