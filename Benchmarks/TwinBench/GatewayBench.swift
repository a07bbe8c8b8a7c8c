import ArgumentParser
import CMosquitto
import Foundation
import GRPCCore
import Proto
import SwiftProtobuf
import Synchronization
import TwinClient
import TwinCore
import TwinGateway

// MARK: - Sparkplug B through mosquitto into the store

/// Sparkplug DDATA (10 metrics a message) from edge nodes through a real mosquitto on loopback
/// into a real twind: readings stored per second, and publish → StreamUpdates delivery latency
/// at a steady rate.
struct SparkplugBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sparkplug", abstract: "Sparkplug B DDATA through mosquitto into twind: readings/s stored, publish→stream latency.")
    @Option var nodes = 10
    @Option(help: "DDATA messages for the throughput run (10 readings each).") var messages = 60_000
    @Option(help: "Readings/s for the latency run.") var rate = 10_000
    @Option var seconds = 10
    @Option(help: "full|normal, as twind's --durability") var durability = "full"
    @Option var runs = 3

    func run() async throws {
        let broker = try BenchBroker.start()
        defer { broker.stop() }
        let daemon = try await DaemonProcess.start([
            "--simulator", "off", "--durability", durability, "--mqtt-broker", "mqtt://127.0.0.1:\(broker.port)",
            "--mqtt-client-id", "twind-bench", "--sparkplug-host-id", "bench",
        ])
        defer { daemon.stop() }
        let token = try await daemon.token()
        let publisher = try SparkplugPublisher(port: broker.port, nodes: nodes)
        defer { publisher.close() }
        try await Self.waitForHost(publisher)
        publisher.births()

        func stored() async throws -> UInt64 {
            try await TwinConnection.with(daemon.address, bearer: token) { client in
                try await Twin_V1_TwinService.Client(wrapping: client).listGateways(.init()).edgeNodes.reduce(0) { $0 + $1.readings }
            }
        }
        // The births are in: 10 per device, one device per node.
        var deadline = ContinuousClock.now + .seconds(30)
        while try await stored() < UInt64(nodes * 10), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }

        // Throughput: as fast as the broker takes them.
        var rates: [Double] = []
        var losses: [UInt64] = []
        let cpuBefore = daemon.cpuSeconds()
        var busy = 0.0
        for _ in 0..<runs {
            let before = try await stored()
            let began = ContinuousClock.now
            publisher.data(count: messages, rate: nil)
            let target = before + UInt64(messages * 10)
            deadline = ContinuousClock.now + .seconds(120)
            var last = before, lastChange = ContinuousClock.now
            while ContinuousClock.now < deadline {
                let n = try await stored()
                if n >= target { last = n; break }
                if n != last { last = n; lastChange = ContinuousClock.now }
                if ContinuousClock.now - lastChange > .seconds(3) { break }  // nothing more is coming
                try await Task.sleep(for: .milliseconds(20))
            }
            let elapsed = ((last >= target ? ContinuousClock.now : lastChange) - began).seconds
            busy += elapsed
            rates.append(Double(last - before) / elapsed)
            losses.append(target > last ? target - last : 0)
        }
        let cpu = (daemon.cpuSeconds() - cpuBefore) / busy

        // Latency: a steady rate, each metric stamped at publish; the stream's snapshot time is it.
        let latencies = Shared<[Double]>([])
        let subscribed = Shared(false)
        let stream = Task {
            try await TwinConnection.with(daemon.address, bearer: token) { client in
                try await Twin_V1_TwinService.Client(wrapping: client).streamUpdates(.init()) { response in
                    for try await message in response.messages {
                        if case .syncComplete = message.update { subscribed.withLock { $0 = true } }
                        guard case .devices(let batch) = message.update, subscribed.withLock({ $0 }) else { continue }
                        let now = Double(Time.now()) / 1e6
                        for u in batch.updates where u.snapshot.hasTime {
                            let t = Double(u.snapshot.time.seconds) * 1e3 + Double(u.snapshot.time.nanos) / 1e6
                            latencies.withLock { $0.append(now - t) }
                        }
                    }
                }
            }
        }
        while !subscribed.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        publisher.data(count: rate / 10 * seconds, rate: Double(rate) / 10)
        try await Task.sleep(for: .milliseconds(500))
        stream.cancel()
        _ = try? await stream.value
        let l = latencies.withLock { $0 }

        func range(_ v: [Double]) -> String { String(format: "%.0f–%.0f", v.min() ?? 0, v.max() ?? 0) }
        report("sparkplug (\(nodes) edge nodes, DDATA of 10 metrics, QoS 0, mosquitto on loopback, durability \(durability))", [
            ("stored, \(runs) runs of \(messages) messages", "\(range(rates)) readings/s (target ≥ 300,000)"),
            ("readings not stored", losses.map(String.init).joined(separator: ", ")),
            ("twind CPU while storing", String(format: "%.0f %% of one core", cpu * 100)),
            ("publish → StreamUpdates at \(rate) readings/s", "p50 \(ms(percentile(l, 0.5))), p99 \(ms(percentile(l, 0.99))), max \(ms(l.max() ?? 0)) over \(l.count) updates (target p99 ≤ 50 ms)"),
        ])
    }

    static func waitForHost(_ publisher: SparkplugPublisher) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !publisher.hostOnline.withLock({ $0 }) {
            guard ContinuousClock.now < deadline else { throw ValidationError("twind's Sparkplug host never came online") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// mosquitto on a free loopback port, as the tests start it.
struct BenchBroker {
    let process: Process
    let port: Int
    let directory: String

    static func start() throws -> BenchBroker {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bench-mosquitto-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 } }
        let port = Int(UInt16(bigEndian: address.sin_port))
        close(fd)
        // QoS 0 to a connected client is queued, not dropped, however fast it comes.
        try "\(getuid() == 0 ? "user root\n" : "")listener \(port) 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_queued_bytes 0\n".write(toFile: dir + "/m.conf", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/mosquitto")
        p.arguments = ["-c", dir + "/m.conf"]
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        // Ready when it accepts a connection.
        for _ in 0..<200 {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            a.sin_port = UInt16(port).bigEndian
            let ok = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 } }
            close(s)
            if ok { return BenchBroker(process: p, port: port, directory: dir) }
            usleep(20_000)
        }
        p.terminate()
        throw ValidationError("mosquitto did not start on port \(port)")
    }

    func stop() {
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Edge nodes publishing Sparkplug B over libmosquitto (its own network thread).
final class SparkplugPublisher: @unchecked Sendable {
    let mosq: OpaquePointer
    let nodes: Int
    var seq: [UInt64]
    let hostOnline = Mutex(false)

    init(port: Int, nodes: Int) throws {
        mosquitto_lib_init()
        guard let m = mosquitto_new("bench-edge", true, nil) else { throw ValidationError("mosquitto_new failed") }
        mosq = m
        self.nodes = nodes
        seq = Array(repeating: 0, count: nodes)
        mosquitto_user_data_set(m, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_message_callback_set(m) { _, context, message in
            guard let context, let message, let payload = message.pointee.payload else { return }
            let text = String(decoding: UnsafeRawBufferPointer(start: payload, count: Int(message.pointee.payloadlen)), as: UTF8.self)
            if text.contains("\"online\":true") { Unmanaged<SparkplugPublisher>.fromOpaque(context).takeUnretainedValue().hostOnline.withLock { $0 = true } }
        }
        guard mosquitto_connect(m, "127.0.0.1", Int32(port), 30) == MOSQ_ERR_SUCCESS.rawValue else { throw ValidationError("cannot connect to mosquitto") }
        mosquitto_subscribe(m, nil, "spBv1.0/STATE/bench", 1)
        mosquitto_loop_start(m)
    }

    func close() {
        mosquitto_disconnect(mosq)
        mosquitto_loop_stop(mosq, false)
        mosquitto_destroy(mosq)
    }

    private func publish(_ topic: String, _ payload: SparkplugPayload) {
        let bytes: [UInt8] = (try? payload.serializedBytes()) ?? []
        while true {
            let rc = bytes.withUnsafeBytes { mosquitto_publish(mosq, nil, topic, Int32($0.count), $0.baseAddress, 0, false) }
            if rc == MOSQ_ERR_SUCCESS.rawValue { return }
            usleep(1000)
        }
    }

    private func nextSeq(_ n: Int) -> UInt64 {
        defer { seq[n] = (seq[n] + 1) % 256 }
        return seq[n]
    }

    func births() {
        for n in 0..<nodes {
            seq[n] = 0
            var nb = SparkplugPayload()
            nb.timestamp = UInt64(Time.now() / 1_000_000)
            nb.seq = nextSeq(n)
            var bd = SparkplugPayload.Metric()
            bd.name = "bdSeq"
            bd.datatype = 8
            bd.longValue = 0
            nb.metrics = [bd]
            publish("spBv1.0/Bench/NBIRTH/node-\(n)", nb)
            var db = SparkplugPayload()
            db.timestamp = nb.timestamp
            db.seq = nextSeq(n)
            db.metrics = (0..<10).map { k in
                var m = SparkplugPayload.Metric()
                m.name = "Sensor/\(k)"
                m.alias = UInt64(k + 1)
                m.datatype = 10
                m.doubleValue = 0
                return m
            }
            publish("spBv1.0/Bench/DBIRTH/node-\(n)/dev", db)
        }
    }

    /// `count` DDATA messages spread over the nodes; `rate` messages/s, or as fast as possible.
    func data(count: Int, rate: Double?) {
        let began = ContinuousClock.now
        for i in 0..<count {
            if let rate {
                let due = began + .nanoseconds(Int64(Double(i) / rate * 1e9))
                let now = ContinuousClock.now
                if due > now { Thread.sleep(forTimeInterval: (due - now).seconds) }
            }
            let n = i % nodes
            var p = SparkplugPayload()
            let stamp = UInt64(Time.now() / 1_000_000)
            p.timestamp = stamp
            p.seq = nextSeq(n)
            p.metrics = (0..<10).map { k in
                var m = SparkplugPayload.Metric()
                m.alias = UInt64(k + 1)
                m.timestamp = stamp
                m.doubleValue = Double(i % 1000) * 0.5 + Double(k)
                return m
            }
            publish("spBv1.0/Bench/DDATA/node-\(n)/dev", p)
        }
    }
}

// MARK: - History import end to end

/// `twin import FILE.csv` end to end (the real twin and twind beside this binary): a CSV of
/// `rows` readings spread over the last `days` days, read, sent and stored; beside it the same
/// rows as recent readings through `twin ingest`, the baseline.
struct ImportBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "twin import rows/s end to end, beside twin ingest of the same rows.")
    @Option var rows = 10_000_000
    @Option var devices = 1_000
    @Option var days = 60
    @Option(help: "full|normal, as twind's --durability") var durability = "full"
    @Option(help: "Also time twin ingest of as many recent rows (on|off).") var baseline = "on"

    func run() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bench-import-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func csv(span: Nanos, name: String) throws -> String {
            let path = directory + "/" + name
            FileManager.default.createFile(atPath: path, contents: nil)
            let out = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            let now = Time.now() - Time.minute
            let step = span / Nanos(rows / (devices * 4) + 1)
            var text = "device,sensor,time,value\n"
            let sensors = ["a", "b", "c", "d"]
            for i in 0..<rows {
                let device = i % devices, sensor = (i / devices) % 4, k = i / (devices * 4)
                let t = now - span + Nanos(k) * step
                text += "gw-\(device),\(sensors[sensor]),\(t / Time.second).\(String(format: "%03d", (t % Time.second) / Time.millisecond)),\(Double(i % 1000) * 0.25)\n"
                if text.utf8.count > 1 << 22 { out.write(Data(text.utf8)); text = "" }
            }
            out.write(Data(text.utf8))
            try out.close()
            return path
        }
        let old = try csv(span: Nanos(days) * Time.day, name: "history.csv")
        let size = (try? FileManager.default.attributesOfItem(atPath: old)[.size] as? Int) ?? 0

        func time(_ command: String, _ file: String) async throws -> (rate: Double, cpu: Double) {
            let daemon = try await DaemonProcess.startMeters(devices, ["--durability", durability])
            defer { daemon.stop() }
            let twin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("twin")
            let environment = ProcessInfo.processInfo.environment.merging(["XDG_CONFIG_HOME": directory + "/config"]) { $1 }
            let login = Process()
            login.executableURL = twin
            login.arguments = ["login", "--user", "admin", "--password-stdin", "--server", "\(daemon.address)"]
            login.environment = environment
            let input = Pipe()
            login.standardInput = input
            login.standardOutput = FileHandle.nullDevice
            try login.run()
            input.fileHandleForWriting.write(Data((daemon.adminPassword + "\n").utf8))
            try input.fileHandleForWriting.close()
            login.waitUntilExit()
            let p = Process()
            p.executableURL = twin
            p.arguments = [command, file, "--server", "\(daemon.address)"]
            p.environment = environment
            p.standardOutput = FileHandle.nullDevice
            let err = Pipe()
            p.standardError = err
            let cpuBefore = daemon.cpuSeconds()
            let began = ContinuousClock.now
            try p.run()
            p.waitUntilExit()
            let elapsed = (ContinuousClock.now - began).seconds
            guard p.terminationStatus == 0 else {
                throw ValidationError("twin \(command) failed: \(String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
            }
            return (Double(rows) / elapsed, (daemon.cpuSeconds() - cpuBefore) / elapsed)
        }
        let imported = try await time("import", old)
        var lines = [
            ("twin import", String(format: "%.0f rows/s (target ≥ 500,000), twind at %.0f %% of one core", imported.rate, imported.cpu * 100)),
            ("file", "\(rows) rows over \(days) days, \(size / 1_000_000) MB"),
        ]
        if baseline == "on" {
            try FileManager.default.removeItem(atPath: old)
            let recent = try csv(span: Time.hour, name: "recent.csv")
            let ingested = try await time("ingest", recent)
            lines.append(("baseline: twin ingest, same rows in the last hour", String(format: "%.0f rows/s, twind at %.0f %%", ingested.rate, ingested.cpu * 100)))
        }
        report("import (\(devices) devices × 4 sensors, durability \(durability))", lines)
    }
}
