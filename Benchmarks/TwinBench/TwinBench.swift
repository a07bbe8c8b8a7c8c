import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GRPCProtobuf
import Proto
import SwiftProtobuf
import Synchronization
import TwinClient
import TwinCore
import TwinEngines

/// `twin-bench`: the load tool that measures the spine's targets and prints figures.
/// Run it from a release build: `swift build -c release && .build/release/twin-bench all`.
@main
struct TwinBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "twin-bench",
        abstract: "Measure twin's performance targets (release builds only).",
        subcommands: [SimulatorBench.self, StoreBench.self, AuthBench.self, FanoutBench.self, IngestBench.self, PlantBench.self, EnginesBench.self, HealthyRunBench.self, DetectionBench.self, RetrainBench.self, ModelQualityBench.self, MetricsBench.self, FloodBench.self, IngestUnderQueryBench.self, HistoryReadersCommand.self, FuzzBench.self, SparkplugBench.self, ImportBench.self, AlertsBench.self, NotifyBench.self, CodecBench.self, WireBench.self, All.self])
}

struct All: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run every benchmark with the issue's parameters.")

    func run() async throws {
        try await SimulatorBench.parse(["--devices", "10000"]).run()
        try await PlantBench.parse(["--devices", "10000", "--seconds", "30"]).run()
        try await StoreBench.parse([]).run()
        try await AuthBench.parse([]).run()
        try await IngestBench.parse([]).run()
        try await FanoutBench.parse(["--subscribers", "1000", "--devices", "1000", "--seconds", "20"]).run()
    }
}

// MARK: - Simulator tick cost (in process)

struct SimulatorBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "simulator", abstract: "Simulator tick cost, in process.")
    @Option var devices = 10_000
    @Option var ticks = 60

    func run() async throws {
        let plant = LivePlant()
        let fleet = MachineCatalog.defaultPlant(count: devices)
        let registered = try fleet.map { d throws(TwinError) in (try plant.upsert(d, now: Time.now()).index, d) }
        var sim = Simulator(devices: registered, start: Time.now())
        var output = Simulator.Output()
        var tickCost: [Double] = []
        var applyCost: [Double] = []
        var t = Time.now()
        for _ in 0..<ticks {
            t += 5 * Time.second
            let a = ContinuousClock.now
            sim.tick(at: t, into: &output)
            let b = ContinuousClock.now
            _ = plant.apply(output.samples, hints: output.statuses, now: t)
            let c = ContinuousClock.now
            tickCost.append((b - a).milliseconds)
            applyCost.append((c - b).milliseconds)
        }
        let samples = output.samples.count
        report("simulator", [
            ("devices", "\(devices)"), ("readings/tick", "\(samples)"),
            ("tick p50", ms(percentile(tickCost, 0.5))), ("tick p99", ms(percentile(tickCost, 0.99))),
            ("live-state apply p50", ms(percentile(applyCost, 0.5))),
            ("per device", String(format: "%.2f µs", percentile(tickCost, 0.5) * 1000 / Double(devices))),
            ("share of one core at 5 s", String(format: "%.2f %%", (percentile(tickCost, 0.5) + percentile(applyCost, 0.5)) / 50)),
        ])
    }
}

// MARK: - Whole daemon at scale: CPU and RSS

struct PlantBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plant", abstract: "twind CPU and RSS with a large simulated plant.")
    @Option var devices = 10_000
    @Option var seconds = 30
    @Option var interval = "5s"

    func run() async throws {
        let daemon = try await DaemonProcess.start(["--devices", "\(devices)", "--interval", interval])
        defer { daemon.stop() }
        // Let the plant reach steady state (first ticks allocate), then measure a window.
        try await Task.sleep(for: .seconds(min(10, seconds / 3)))
        let before = daemon.cpuSeconds()
        let began = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let cpu = (daemon.cpuSeconds() - before) / (ContinuousClock.now - began).seconds
        report("plant", [
            ("devices", "\(devices)"), ("interval", interval),
            ("twind CPU", String(format: "%.1f %% of one core", cpu * 100)),
            ("twind RSS", "\(daemon.rssMB()) MB (peak \(daemon.peakRSSMB()) MB)"),
        ])
    }
}

// MARK: - Ingest throughput over one stream

struct IngestBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ingest", abstract: "Ingest points/s over one stream on loopback.")
    @Option var readings = 2_000_000
    @Option var batch = 10_000
    @Option var devices = 1_000
    @Option(help: "full|normal, as twind's --durability") var durability = "full"

    func run() async throws {
        let daemon = try await DaemonProcess.startMeters(devices, ["--durability", durability])
        defer { daemon.stop() }
        // Batches are built before the clock starts; serialization and sending are measured.
        let now = Time.now()
        let sensors = ["a", "b", "c", "d"]
        var batches: [Twin_V1_IngestRequest] = []
        var n = 0
        while n < readings {
            var b = Twin_V1_IngestRequest()
            b.readings.reserveCapacity(batch)
            for _ in 0..<min(batch, readings - n) {
                var r = Twin_V1_Reading()
                r.deviceID = "gw-\(n % devices)"
                r.sensor = sensors[(n / devices) % 4]
                r.time = .init(seconds: (now - Time.minute + Nanos(n) * 1000) / Time.second, nanos: Int32((now + Nanos(n) * 1000) % Time.second))
                r.value = Double(n % 1000) * 0.25
                b.readings.append(r)
                n += 1
            }
            batches.append(b)
        }
        let prepared = batches
        let selfBefore = DaemonProcess.cpuSeconds(pid: getpid())
        let cpuBefore = daemon.cpuSeconds()
        let began = ContinuousClock.now
        let token = try await daemon.token()
        let response = try await TwinConnection.with(daemon.address, bearer: token) { client in
            try await Twin_V1_TwinService.Client(wrapping: client).ingest(request: StreamingClientRequest { writer in
                try await writer.write(contentsOf: prepared)
            })
        }
        let elapsed = (ContinuousClock.now - began).seconds
        let cpu = (daemon.cpuSeconds() - cpuBefore) / elapsed
        let clientCPU = (DaemonProcess.cpuSeconds(pid: getpid()) - selfBefore) / elapsed
        report("ingest", [
            ("readings", "\(response.acceptedReadings) in \(response.acceptedBatches) batches of \(batch)"),
            ("throughput", String(format: "%.0f points/s", Double(response.acceptedReadings) / elapsed)),
            ("twind CPU during ingest", String(format: "%.0f %% of one core", cpu * 100)),
            ("load tool CPU", String(format: "%.0f %% of one core", clientCPU * 100)),
            ("durability", "each batch committed to the store before it is acknowledged, synchronous=\(durability.uppercased())"),
        ])
    }
}

// MARK: - StreamUpdates fan-out

struct FanoutBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout", abstract: "StreamUpdates fan-out: delivery latency, daemon CPU and RSS.",
        discussion: """
            Starts twind with a simulated plant ticking every --interval, opens --subscribers \
            streams over --connections HTTP/2 connections, and measures for every device batch \
            received: arrival time minus the tick time of the readings in it. The client reads \
            each message's framing and first timestamp rather than decoding every snapshot, so \
            the load tool does not starve the daemon of CPU on a 2-core box.
            """)
    @Option var subscribers = 1_000
    @Option var devices = 1_000
    @Option var seconds = 20
    @Option var interval = "1s"
    @Option var connections = 10

    func run() async throws {
        let daemon = try await DaemonProcess.start(["--devices", "\(devices)", "--interval", interval])
        defer { daemon.stop() }
        let stats = LatencyStats()
        let counts = UpdateCounts()
        let synced = Shared(0)
        let deadline = ContinuousClock.now + .seconds(seconds + 5)
        let measureFrom = Shared<Nanos>(Int64.max)
        let subscribers = subscribers, connections = connections, devices = devices
        let perConnection = (subscribers + connections - 1) / connections

        let token = try await daemon.token()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in 0..<connections {
                let count = min(perConnection, subscribers - c * perConnection)
                if count <= 0 { continue }
                group.addTask {
                    try await TwinConnection.with(daemon.address, bearer: token) { client in
                        try await withThrowingTaskGroup(of: Void.self) { streams in
                            for _ in 0..<count {
                                streams.addTask {
                                    try await client.serverStreaming(
                                        request: ClientRequest(message: Twin_V1_StreamUpdatesRequest()),
                                        descriptor: Twin_V1_TwinService.Method.StreamUpdates.descriptor,
                                        serializer: ProtobufSerializer<Twin_V1_StreamUpdatesRequest>(),
                                        deserializer: UpdateScanner(counts: counts), options: .defaults
                                    ) { response in
                                        // Only a tick's first delivery (its first `devices`
                                        // updates, in one message or several) is timed: the
                                        // health pass republishes snapshots with verdicts later.
                                        var tick: Nanos = 0
                                        var seen = 0
                                        for try await update in response.messages {
                                            let now = Time.now()
                                            if update.kind == 2 { synced.withLock { $0 += 1 } }
                                            stats.count(bytes: update.bytes)
                                            if update.kind == 1 && update.tickTime > tick {
                                                tick = update.tickTime
                                                seen = 0
                                            }
                                            if update.kind == 1 && update.tickTime >= measureFrom.withLock({ $0 }) {
                                                if update.tickTime == tick && seen < devices {
                                                    stats.add(latency: now - update.tickTime, devices: update.count, tick: update.tickTime)
                                                } else {
                                                    stats.countRepeat(devices: update.count)
                                                }
                                            }
                                            if update.kind == 1 && update.tickTime == tick { seen += update.count }
                                            if ContinuousClock.now > deadline { return }
                                        }
                                    }
                                }
                            }
                            try await streams.waitForAll()
                        }
                    }
                }
            }
            // Measure once every subscriber has its snapshot, from the next tick on.
            while synced.withLock({ $0 }) < subscribers && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            measureFrom.withLock { $0 = Time.now() + Time.second }
            try await Task.sleep(for: .seconds(1))
            let cpuBefore = daemon.cpuSeconds()
            let selfBefore = DaemonProcess.cpuSeconds(pid: getpid())
            let bytesBefore = stats.bytes
            let began = ContinuousClock.now
            try await Task.sleep(until: deadline - .seconds(1), clock: .continuous)
            let window = (ContinuousClock.now - began).seconds
            let cpu = (daemon.cpuSeconds() - cpuBefore) / window
            let clientCPU = (DaemonProcess.cpuSeconds(pid: getpid()) - selfBefore) / window
            let bytesPerSecond = Double(stats.bytes - bytesBefore) / window
            let rss = daemon.rssMB()
            let (min, p50, p99, max, updates, messages) = stats.summary()
            let tick = stats.tickSummary()
            report("fanout", [
                ("subscribers", "\(synced.withLock { $0 }) of \(subscribers) synced, over \(connections) connections"),
                ("devices", "\(devices) every \(interval)"),
                ("device updates delivered", "\(updates) in \(messages) messages (\(String(format: "%.0f", Double(updates) / (ContinuousClock.now - began).seconds))/s)"),
                ("republished (not timed)", "\(stats.repeats) device updates with health verdicts of a tick already delivered"),
                ("delivery latency min", ms(Double(min) / 1e6)), ("p50", ms(Double(p50) / 1e6)), ("p99", ms(Double(p99) / 1e6)),
                ("max", ms(Double(max) / 1e6)),
                ("per tick, first delivery", "median \(ms(Double(tick.firstP50) / 1e6)), worst \(ms(Double(tick.firstMax) / 1e6)) over \(tick.ticks) ticks"),
                ("per tick, last delivery", "median \(ms(Double(tick.lastP50) / 1e6)), worst \(ms(Double(tick.lastMax) / 1e6))"),
                ("bytes delivered", String(format: "%.1f MB/s", bytesPerSecond / 1e6)),
                ("twind CPU", String(format: "%.0f %% of one core", cpu * 100)),
                ("load tool CPU", String(format: "%.0f %% of one core", clientCPU * 100)),
                ("twind RSS", "\(rss) MB"),
            ])
            group.cancelAll()
        }
    }
}

/// Reads just enough of a StreamUpdatesResponse: which kind, how many device updates, and the
/// time of the first snapshot (every snapshot in a simulator tick has the tick's time).
struct ScannedUpdate: Sendable {
    var bytes = 0
    var kind = 0
    var count = 0
    var tickTime: Nanos = 0
}

/// twind sends every subscriber of a tick the same bytes, so the device count of a message is
/// walked once and remembered by (sent_at, size): walking every entry of every copy cost the
/// load tool a quarter of its CPU in cache misses, CPU taken from the daemon it measures.
final class UpdateCounts: Sendable {
    private let known = Mutex<[Int64: Int]>([:])

    func count(sentAt: Nanos, size: Int, walk: () -> Int) -> Int {
        let key = sentAt &* 31 &+ Int64(size)
        if let n = known.withLock({ $0[key] }) { return n }
        let n = walk()
        known.withLock { table in
            if table.count > 256 { table.removeAll(keepingCapacity: true) }
            table[key] = n
        }
        return n
    }
}

struct UpdateScanner: MessageDeserializer {
    var counts = UpdateCounts()

    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> ScannedUpdate {
        bytes.withUnsafeBytes { raw in
            var result = ScannedUpdate()
            result.bytes = raw.count
            var devicesRange: (Int, Int)?
            var sentAt: Nanos = 0
            var p = WireCursor(raw, 0, raw.count)
            while let (field, wire) = p.tag() {
                if wire == 2 {
                    guard let (start, end) = p.lengthDelimited() else { break }
                    if field == 1 {
                        result.kind = 1
                        devicesRange = (start, end)
                    } else if field == 2 {
                        result.kind = 2
                    } else if field == 3 {
                        result.kind = 3
                    } else if field == 10 {
                        sentAt = Self.timestamp(raw, start, end)
                    }
                } else {
                    guard p.skip(wire) else { break }
                }
            }
            guard let (start, end) = devicesRange else { return result }
            var first = WireCursor(raw, start, end)
            while let (f, w) = first.tag() {
                guard w == 2 else { guard first.skip(w) else { break }; continue }
                guard let (s, e) = first.lengthDelimited() else { break }
                if f == 1 {
                    result.tickTime = Self.snapshotTime(raw, s, e)
                    break
                }
            }
            result.count = counts.count(sentAt: sentAt, size: raw.count) {
                var n = 0
                var devices = WireCursor(raw, start, end)
                while let (f, w) = devices.tag() {
                    guard w == 2 else { guard devices.skip(w) else { break }; continue }
                    guard devices.lengthDelimited() != nil else { break }
                    if f == 1 { n += 1 }
                }
                return n
            }
            return result
        }
    }

    /// Timestamp{seconds(1), nanos(2)} in nanoseconds.
    static func timestamp(_ raw: UnsafeRawBufferPointer, _ c: Int, _ d: Int) -> Nanos {
        var ts = WireCursor(raw, c, d)
        var seconds: Int64 = 0, nanos: Int64 = 0
        while let (tf, tw) = ts.tag() {
            guard tw == 0 else { guard ts.skip(tw) else { break }; continue }
            let v = Int64(bitPattern: ts.varint() ?? 0)
            if tf == 1 { seconds = v } else if tf == 2 { nanos = v }
        }
        return seconds * Time.second + nanos
    }

    /// DeviceUpdate.snapshot(1).time(4) -> Timestamp{seconds(1), nanos(2)}.
    static func snapshotTime(_ raw: UnsafeRawBufferPointer, _ s: Int, _ e: Int) -> Nanos {
        var update = WireCursor(raw, s, e)
        while let (f, w) = update.tag() {
            guard w == 2 else { guard update.skip(w) else { break }; continue }
            guard let (a, b) = update.lengthDelimited() else { break }
            guard f == 1 else { continue }
            var snapshot = WireCursor(raw, a, b)
            while let (sf, sw) = snapshot.tag() {
                guard sw == 2 else { guard snapshot.skip(sw) else { break }; continue }
                guard let (c, d) = snapshot.lengthDelimited() else { break }
                guard sf == 4 else { continue }
                return timestamp(raw, c, d)
            }
        }
        return 0
    }
}

/// A value shared between tasks.
final class Shared<Value: Sendable>: Sendable {
    private let m: Mutex<Value>
    init(_ value: Value) { m = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { m.withLock { body(&$0) } }
}

final class LatencyStats: Sendable {
    private let state = Mutex((samples: [Int64](), updates: 0, messages: 0))
    private let received = Mutex(0)
    private let repeated = Mutex(0)
    /// Per tick: the first and the last timed delivery (to tell a late tick from a long burst).
    private let ticks = Mutex([Nanos: (first: Nanos, last: Nanos)]())

    func count(bytes: Int) { received.withLock { $0 += bytes } }
    var bytes: Int { received.withLock { $0 } }
    /// Device updates that carried a tick already delivered (republished with health verdicts).
    func countRepeat(devices: Int) { repeated.withLock { $0 += devices } }
    var repeats: Int { repeated.withLock { $0 } }

    func add(latency: Nanos, devices: Int, tick: Nanos) {
        ticks.withLock { t in
            let known = t[tick] ?? (latency, latency)
            t[tick] = (min(known.first, latency), max(known.last, latency))
        }
        state.withLock {
            $0.samples.append(latency)
            $0.updates += devices
            $0.messages += 1
        }
    }

    /// Over ticks: the median and worst first delivery, and the median and worst last one.
    func tickSummary() -> (firstP50: Nanos, firstMax: Nanos, lastP50: Nanos, lastMax: Nanos, ticks: Int) {
        ticks.withLock { t in
            let first = t.values.map(\.first).sorted(), last = t.values.map(\.last).sorted()
            guard !first.isEmpty else { return (0, 0, 0, 0, 0) }
            return (first[first.count / 2], first.last!, last[last.count / 2], last.last!, t.count)
        }
    }

    /// min, p50, p99, max latency; device updates; messages.
    func summary() -> (Int64, Int64, Int64, Int64, Int, Int) {
        state.withLock { s in
            let sorted = s.samples.sorted()
            guard !sorted.isEmpty else { return (0, 0, 0, 0, 0, 0) }
            return (sorted[0], sorted[sorted.count / 2], sorted[min(sorted.count - 1, sorted.count * 99 / 100)], sorted.last!, s.updates, s.messages)
        }
    }
}

// MARK: - A twind process

final class DaemonProcess: Sendable {
    let process: Process
    let address: NetworkAddress
    let directory: String

    init(process: Process, address: NetworkAddress, directory: String) {
        self.process = process
        self.address = address
        self.directory = directory
    }

    static func start(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> DaemonProcess {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("twind")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twind-bench-\(UUID().uuidString)").path
        let p = Process()
        p.executableURL = exe
        p.arguments = ["--data-dir", dir, "--listen", "127.0.0.1:0", "--log-level", "notice"] + (arguments.contains("--http-listen") ? [] : ["--http-listen", "off"]) + arguments
        p.environment = ProcessInfo.processInfo.environment.merging(["TWIND_ADMIN_PASSWORD": adminPassword]) { _, new in new }
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        // Read stderr until the listening line; keep draining it afterwards.
        let found = Mutex<String?>(nil)
        err.fileHandleForReading.readabilityHandler = { h in
            let text = String(decoding: h.availableData, as: UTF8.self)
            if let r = text.range(of: "address=127.0.0.1:") {
                let port = text[r.upperBound...].prefix { $0.isNumber }
                found.withLock { if $0 == nil { $0 = String(port) } }
            }
        }
        let deadline = ContinuousClock.now + timeout
        while found.withLock({ $0 }) == nil {
            guard p.isRunning, ContinuousClock.now < deadline else { throw ValidationError("twind at \(exe.path) did not start") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return DaemonProcess(process: p, address: .tcp(host: "127.0.0.1", port: Int(found.withLock { $0 }!)!), directory: dir)
    }

    /// twind without the simulator, fed by `Ingest`: `devices` meters gw-0… with sensors a–d.
    static func startMeters(_ devices: Int, _ extra: [String] = []) async throws -> DaemonProcess {
        let fleet = FileManager.default.temporaryDirectory.appendingPathComponent("bench-fleet-\(getpid()).json").path
        let entries = (0..<devices).map { "{\"id\":\"gw-\($0)\",\"type\":\"meter\",\"sensors\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"},{\"name\":\"d\"}]}" }
        try "{\"devices\":[\(entries.joined(separator: ","))]}".write(toFile: fleet, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: fleet) }  // read once, at start
        return try await start(["--simulator", "off", "--fleet", fleet] + extra)
    }

    /// The admin password the benchmark's daemons start with.
    static let adminPassword = "bench-admin-password"
    var adminPassword: String { Self.adminPassword }

    /// An admin access token.
    func token() async throws -> String {
        var login = Twin_V1_LoginRequest()
        login.username = "admin"
        login.password = adminPassword
        return try await TwinConnection.with(address) { try await Twin_V1_AuthService.Client(wrapping: $0).login(login).accessToken }
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// utime + stime of the process, in seconds.
    func cpuSeconds() -> Double { Self.cpuSeconds(pid: process.processIdentifier) }

    static func cpuSeconds(pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    private func status(_ key: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) })
        else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }

    func rssMB() -> Int { status("VmRSS:") }
    func peakRSSMB() -> Int { status("VmHWM:") }
}

// MARK: - Printing

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func ms(_ v: Double) -> String { String(format: "%.2f ms", v) }

func report(_ name: String, _ rows: [(String, String)]) {
    let width = rows.map(\.0.count).max() ?? 0
    var text = "== \(name)\n"
    for (k, v) in rows { text += "  \(k.padding(toLength: width, withPad: " ", startingAt: 0))  \(v)\n" }
    FileHandle.standardOutput.write(Data(text.utf8))
}

extension Duration {
    var milliseconds: Double { seconds * 1000 }
}
