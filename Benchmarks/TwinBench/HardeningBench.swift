import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GRPCProtobuf
import Logging
import Proto
import ServiceLifecycle
import Synchronization
import TwinClient
import TwinCore
import TwinFuzz
import TwinServer

// MARK: - Health checks while passwords are hashed

struct FloodBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flood",
        abstract: "Health Check p99 at rest and while connections flood wrong-password ChangePassword calls.",
        discussion: """
            Runs twind in this process (the default plant) with the login throttle's waits set to \
            zero, so every flood request costs a full Argon2id verification: the worst case, an \
            attacker with many addresses. --throttle on keeps the throttle (one address: most \
            requests are refused before any hashing).
            """)
    @Option var flooders = 6
    @Option var checks = 2_000
    @Option(help: "on|off") var throttle = "off"

    func run() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("twind-flood-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = DaemonConfiguration(dataDirectory: directory)
        configuration.listen = [.tcp(host: "127.0.0.1", port: 0)]
        configuration.environment["TWIND_ADMIN_PASSWORD"] = "flood-admin-password"
        if throttle == "off" { configuration.firstLoginLockout = 0 }
        var logger = Logger(label: "flood")
        logger.logLevel = .error
        let daemon = try await buildDaemon(configuration: configuration, logger: logger)
        let group = ServiceGroup(services: [daemon], logger: logger)
        let task = Task { try await group.run() }
        let address = try await daemon.listeningAddresses()[0]

        var login = Twin_V1_LoginRequest()
        login.username = "admin"
        login.password = "flood-admin-password"
        let adminToken = try await TwinConnection.with(address) { try await Twin_V1_AuthService.Client(wrapping: $0).login(login).accessToken }
        var create = Twin_V1_CreateUserRequest()
        create.username = "flooder"
        create.password = "flooder-password-1"
        create.role = .viewer
        _ = try await TwinConnection.with(address, bearer: adminToken) { try await Twin_V1_AuthService.Client(wrapping: $0).createUser(create) }
        login.username = "flooder"
        login.password = create.password
        let token = try await TwinConnection.with(address) { try await Twin_V1_AuthService.Client(wrapping: $0).login(login).accessToken }

        func measure() async throws -> [Double] {
            try await TwinConnection.with(address) { client in
                let health = Grpc_Health_V1_Health.Client(wrapping: client)
                var samples: [Double] = []
                for _ in 0..<checks {
                    let began = ContinuousClock.now
                    _ = try await health.check(.init())
                    samples.append((ContinuousClock.now - began).milliseconds)
                }
                return samples
            }
        }
        let rest = try await measure()

        let stop = Shared(false)
        let outcomes = Shared<[String: Int]>([:])
        let flood = Task {
            await withTaskGroup(of: Void.self) { g in
                for _ in 0..<flooders {
                    g.addTask {
                        try? await TwinConnection.with(address, bearer: token) { client in
                            let auth = Twin_V1_AuthService.Client(wrapping: client)
                            var change = Twin_V1_ChangePasswordRequest()
                            change.oldPassword = "not-the-password"
                            change.newPassword = "whatever-new-password"
                            while !stop.withLock({ $0 }) {
                                do { _ = try await auth.changePassword(change); outcomes.withLock { $0["ok", default: 0] += 1 } }
                                catch let e as RPCError { outcomes.withLock { $0["\(e.code)", default: 0] += 1 } }
                            }
                        }
                    }
                }
            }
        }
        try await Task.sleep(for: .seconds(1))  // the flood is under way
        let loaded = try await measure()
        stop.withLock { $0 = true }
        await flood.value
        await group.triggerGracefulShutdown()
        try? await task.value

        let p99Rest = percentile(rest, 0.99), p99Loaded = percentile(loaded, 0.99)
        report("flood (\(flooders) connections of wrong-password ChangePassword, throttle \(throttle))", [
            ("health Check at rest", "p50 \(ms(percentile(rest, 0.5))), p99 \(ms(p99Rest)), max \(ms(rest.max() ?? 0)) (\(checks) calls)"),
            ("health Check under the flood", "p50 \(ms(percentile(loaded, 0.5))), p99 \(ms(p99Loaded)), max \(ms(loaded.max() ?? 0))"),
            ("p99 ratio", String(format: "%.2f× (target ≤ 20 ms and ≤ 2×)", p99Loaded / max(p99Rest, 0.001))),
            ("flood answers", outcomes.withLock { $0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")),
        ])
    }
}

// MARK: - Ingest while others read history

struct IngestUnderQueryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest-under-query",
        abstract: "Ingest throughput alone and while clients loop 24 h raw GetHistory.")
    @Option var readers = 4
    @Option var readings = 1_000_000
    @Option var batch = 10_000
    @Option var rounds = 5
    @Flag(help: "Run the readers as tasks in this process, beside the ingesting client (the earlier default), rather than in a process of their own.")
    var readersInProcess = false
    @Option(help: "Niceness of the readers' process (0: as the rest). 19 stands in for readers on another machine: on a 2-core box their own decoding otherwise takes CPU from twind that remote clients would not.")
    var readersNice: Int32 = 0

    func run() async throws {
        let devices = 1_000
        let daemon = try await DaemonProcess.startMeters(devices)
        defer { daemon.stop() }
        let token = try await daemon.token()
        // 24 h of one sensor at 5 s (17,280 readings) for the readers to read.
        let now = Time.now()
        var history = Twin_V1_IngestRequest()
        for i in 0..<17_280 {
            var r = Twin_V1_Reading()
            r.deviceID = "history"
            r.sensor = "a"
            let t = now - Time.day + Nanos(i) * 5 * Time.second
            r.time = .init(seconds: t / Time.second, nanos: 0)
            r.value = Double(i % 977) * 0.1
            history.readings.append(r)
        }
        var upsert = Twin_V1_UpsertDeviceRequest()
        upsert.device.id = "history"
        upsert.device.type = "meter"
        var spec = Twin_V1_SensorSpec()
        spec.name = "a"
        upsert.device.sensors = [spec]
        let full = history
        try await TwinConnection.with(daemon.address, bearer: token) { client in
            let twin = Twin_V1_TwinService.Client(wrapping: client)
            _ = try await twin.upsertDevice(upsert)
            _ = try await twin.ingest(request: StreamingClientRequest { try await $0.write(full) })
        }

        var offset: Nanos = 0
        func ingestOnce() async throws -> Double {
            var batches: [Twin_V1_IngestRequest] = []
            var n = 0
            let base = Time.now() - Time.hour + offset
            offset += Nanos(readings) * 1000
            while n < readings {
                var b = Twin_V1_IngestRequest()
                for _ in 0..<min(batch, readings - n) {
                    var r = Twin_V1_Reading()
                    r.deviceID = "gw-\(n % devices)"
                    r.sensor = ["a", "b", "c", "d"][(n / devices) % 4]
                    let t = base + Nanos(n) * 1000
                    r.time = .init(seconds: t / Time.second, nanos: Int32(t % Time.second))
                    r.value = Double(n % 1000) * 0.25
                    b.readings.append(r)
                    n += 1
                }
                batches.append(b)
            }
            let prepared = batches
            let began = ContinuousClock.now
            let response = try await TwinConnection.with(daemon.address, bearer: token) { client in
                try await Twin_V1_TwinService.Client(wrapping: client).ingest(request: StreamingClientRequest { try await $0.write(contentsOf: prepared) })
            }
            return Double(response.acceptedReadings) / (ContinuousClock.now - began).seconds
        }

        // One round unmeasured: the first batches create every series and grow the tables.
        _ = try await ingestOnce()
        var alone: [Double] = [], loaded: [Double] = [], queriesPerSecond: [Double] = []
        var query = Twin_V1_GetHistoryRequest()
        query.deviceID = "history"
        query.from = .init(seconds: (now - Time.day) / Time.second, nanos: 0)
        query.to = .init(seconds: now / Time.second + 1, nanos: 0)
        let historyQuery = query
        func withReaders() async throws {
            let load: HistoryReaders = readersInProcess
                ? try await .tasks(count: readers, address: daemon.address, token: token, query: historyQuery)
                : try await .process(count: readers, address: daemon.address, token: token, query: historyQuery, nice: readersNice)
            let before = load.served()
            let began = ContinuousClock.now
            let rate: Double
            do { rate = try await ingestOnce() } catch {
                await load.stop()
                throw error
            }
            queriesPerSecond.append(Double(load.served() - before) / (ContinuousClock.now - began).seconds)
            await load.stop()
            loaded.append(rate)
        }
        // The order alternates, so that a drift of the machine (another VM on the host) weighs on
        // both sides alike.
        for round in 0..<rounds {
            if round % 2 == 0 {
                alone.append(try await ingestOnce())
                try await withReaders()
            } else {
                try await withReaders()
                alone.append(try await ingestOnce())
            }
        }
        func range(_ v: [Double]) -> String { String(format: "%.0f–%.0f", v.min() ?? 0, v.max() ?? 0) }
        let ratios = zip(loaded, alone).map { $0 / $1 }
        report("ingest under query (\(readers) clients looping 24 h raw GetHistory, 17,280 points each; readers \(readersInProcess ? "in the ingesting process" : "in a process of their own\(readersNice != 0 ? " at nice \(readersNice)" : "")"))", [
            ("ingest alone", "\(range(alone)) points/s over \(rounds) rounds (batches of \(batch))"),
            ("ingest with readers", "\(range(loaded)) points/s"),
            ("ratio per round", ratios.map { String(format: "%.0f %%", $0 * 100) }.joined(separator: ", ")),
            ("median ratio", String(format: "%.0f %% (target ≥ 90 %%)", percentile(ratios, 0.5) * 100)),
            ("GetHistory served meanwhile", "\(range(queriesPerSecond)) calls/s"),
        ])
    }
}

/// Clients looping a GetHistory query until stopped: as tasks of this process, or as a child
/// process (`twin-bench history-readers`), the way separate clients would come.
final class HistoryReaders: Sendable {
    private let count: Shared<Int>
    private let halt: @Sendable () async -> Void

    private init(count: Shared<Int>, halt: @escaping @Sendable () async -> Void) {
        self.count = count
        self.halt = halt
    }

    /// GetHistory answers received so far.
    func served() -> Int { count.withLock { $0 } }
    /// Stops the readers and waits until they are gone: their last answers must not load the next round.
    func stop() async { await halt() }

    /// Waits until every reader has had an answer, so the measured round starts loaded.
    private static func awaitAnswers(_ count: Shared<Int>, _ readers: Int, alive: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while count.withLock({ $0 }) < readers {
            guard alive(), ContinuousClock.now < deadline else { throw ValidationError("the history readers did not get an answer") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    static func tasks(count readers: Int, address: NetworkAddress, token: String, query: Twin_V1_GetHistoryRequest) async throws -> HistoryReaders {
        let stop = Shared(false)
        let served = Shared(0)
        let loop = Task {
            await withTaskGroup(of: Void.self) { g in
                for _ in 0..<readers {
                    g.addTask { await HistoryReaders.loop(address: address, token: token, query: query, served: served) { stop.withLock { $0 } } }
                }
            }
        }
        try await awaitAnswers(served, readers) { true }
        return HistoryReaders(count: served) {
            stop.withLock { $0 = true }
            await loop.value
        }
    }

    static func process(count readers: Int, address: NetworkAddress, token: String, query: Twin_V1_GetHistoryRequest, nice: Int32 = 0) async throws -> HistoryReaders {
        guard case .tcp(let host, let port) = address else { throw ValidationError("the readers' process needs a TCP address") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        p.arguments = ["history-readers", "--address", "\(host):\(port)", "--readers", "\(readers)",
                       "--from", "\(query.from.seconds)", "--to", "\(query.to.seconds)", "--device", query.deviceID]
        if nice != 0 {
            // Through nice(1): every thread of the child starts at that niceness.
            p.arguments = ["-n", "\(nice)", p.executableURL!.path] + p.arguments!
            p.executableURL = URL(fileURLWithPath: "/usr/bin/nice")
        }
        // The token goes by the environment, not the argument list, which other users can read.
        p.environment = ProcessInfo.processInfo.environment.merging(["TWIN_BENCH_TOKEN": token]) { _, new in new }
        let out = Pipe()
        p.standardOutput = out
        let served = Shared(0)
        let pending = Shared("")
        out.fileHandleForReading.readabilityHandler = { h in
            let text = String(decoding: h.availableData, as: UTF8.self)
            pending.withLock { buffer in
                buffer += text
                while let newline = buffer.firstIndex(of: "\n") {
                    if let n = Int(buffer[..<newline]) { served.withLock { $0 = n } }
                    buffer = String(buffer[buffer.index(after: newline)...])
                }
            }
        }
        try p.run()
        do { try await awaitAnswers(served, readers) { p.isRunning } } catch {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            throw error
        }
        return HistoryReaders(count: served) {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            out.fileHandleForReading.readabilityHandler = nil
        }
    }

    /// One reader: one connection, one query after the other, the answers' bytes taken, not decoded.
    static func loop(address: NetworkAddress, token: String, query: Twin_V1_GetHistoryRequest, served: Shared<Int>, stopped: @escaping @Sendable () -> Bool) async {
        try? await TwinConnection.with(address, bearer: token) { client in
            while !stopped() {
                _ = try? await client.unary(
                    request: ClientRequest(message: query), descriptor: Twin_V1_TwinService.Method.GetHistory.descriptor,
                    serializer: ProtobufSerializer<Twin_V1_GetHistoryRequest>(), deserializer: ByteCount(), options: .defaults
                ) { try $0.message }
                served.withLock { $0 += 1 }
            }
        }
    }
}

/// `twin-bench history-readers`: the readers of `ingest-under-query` in a process of their own.
/// Prints the number of answers received so far, a line every 100 ms, until killed.
struct HistoryReadersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history-readers",
        abstract: "Loop GetHistory on several connections (used by ingest-under-query); the token comes in TWIN_BENCH_TOKEN.",
        shouldDisplay: false)
    @Option var address: String
    @Option var readers = 4
    @Option var device = "history"
    @Option var from: Int64
    @Option var to: Int64

    func run() async throws {
        guard let token = ProcessInfo.processInfo.environment["TWIN_BENCH_TOKEN"] else { throw ValidationError("TWIN_BENCH_TOKEN is not set") }
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else { throw ValidationError("--address HOST:PORT") }
        let target = NetworkAddress.tcp(host: String(address[..<colon]), port: port)
        var query = Twin_V1_GetHistoryRequest()
        query.deviceID = device
        query.from = .init(seconds: from, nanos: 0)
        query.to = .init(seconds: to, nanos: 0)
        let q = query
        let served = Shared(0)
        let ticker = Task.detached {
            while !Task.isCancelled {
                FileHandle.standardOutput.write(Data("\(served.withLock { $0 })\n".utf8))
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        await withTaskGroup(of: Void.self) { g in
            for _ in 0..<readers { g.addTask { await HistoryReaders.loop(address: target, token: token, query: q, served: served) { false } } }
        }
        ticker.cancel()
    }
}

/// A response taken as its size only.
struct ByteCount: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Int { serializedMessageBytes.count }
}

// MARK: - The fuzz tier, for longer

struct FuzzBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Send seeded hostile requests to every RPC of a real twind for longer than CI does.",
        discussion: "Exits 1 with the findings (UNKNOWN/INTERNAL answers, hung unary calls, a dead twind). A finding is sent again alone with --seed S --only METHOD.")
    @Option var seed: UInt64 = UInt64(Date().timeIntervalSince1970)
    @Option(help: "Cases per method per round.") var cases = 200
    @Option var rounds = 5
    @Option(help: "Only methods whose name contains this (repeatable).") var only: [String] = []

    func run() async throws {
        let daemon = try await DaemonProcess.start(["--devices", "4", "--interval", "1s"])
        defer { daemon.stop() }
        let token = try await daemon.token()
        let devices = try await TwinConnection.with(daemon.address, bearer: token) { try await Twin_V1_TwinService.Client(wrapping: $0).listDevices(.init()).devices }
        var findings: [ContractFuzzer.Finding] = []
        var calls = 0
        let began = ContinuousClock.now
        for round in 0..<rounds {
            var options = ContractFuzzer.Options()
            options.seed = seed &+ UInt64(round)
            options.cases = cases
            options.only = only
            options.hints = devices.map(\.id) + devices.flatMap { $0.sensors.map(\.name) }
            // Token calls would end the admin's own account sooner or later: those go without.
            options.withoutToken.formUnion(["twin.v1.AuthService/DeleteUser", "twin.v1.AuthService/UpdateUser", "twin.v1.AuthService/ChangePassword"])
            let fuzzer = ContractFuzzer(options: options)
            let report = try await TwinConnection.with(daemon.address) { client in await fuzzer.run(client: client, token: token) }
            calls += report.calls
            findings += report.findings
            guard daemon.process.isRunning else {
                print("twind died in round \(round) (seed \(options.seed))")
                throw ExitCode(1)
            }
        }
        report("fuzz", [
            ("seeds", "\(seed)…\(seed &+ UInt64(rounds - 1))"),
            ("calls", "\(calls) in \(String(format: "%.0f", (ContinuousClock.now - began).seconds)) s"),
            ("findings", findings.isEmpty ? "none" : "\(findings.count)"),
        ])
        for f in findings.prefix(50) { print(f.description) }
        if !findings.isEmpty { throw ExitCode(1) }
    }
}
