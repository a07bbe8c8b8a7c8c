import CHardening
import Dispatch
import Foundation
import GRPCCore
import Logging
import Proto
import TwinConsole
import TwinCore
import TwinFuzz
import TwinGateway
import TwinOPCUA
import TwinServer
import TwinStore

/// The decode-and-validate path of twind under a coverage-guided fuzzer (libFuzzer).
///
/// One in-process twind (the real services, interceptors and access table over grpc-swift's
/// in-process transport, a data directory of its own) takes every input. The first byte picks
/// the target: one of the contract's RPCs (the rest of the input is the request's wire bytes;
/// `F0 0D` separates several messages, for streams and for unary calls sent two), or a gateway
/// decoder (a Sparkplug B payload on a DDATA/NBIRTH/DBIRTH topic, a JSON payload on a mapped
/// topic) feeding the same plant. A crash is libFuzzer's finding; an answer of UNKNOWN or
/// INTERNAL, or a unary call that never ends, aborts with the method and the request.
///
/// `scripts/fuzz` builds it with `-sanitize=fuzzer` and runs it; built normally (as
/// `swift build` does) it replays files and directories of inputs, and writes a seed corpus.
final class FuzzTarget: @unchecked Sendable {
    static let shared = FuzzTarget()

    let contract = Contract.twin
    let methods: [Contract.Method]
    let fuzzer: ContractFuzzer
    let jobs: AsyncStream<Job>.Continuation
    let stream: AsyncStream<Job>
    let directory: String
    var sparkplug: SparkplugHost!
    var topics: TopicConsumer!

    final class Job: @unchecked Sendable {
        let method: Contract.Method
        let requests: [[UInt8]]
        /// Set: the requests are JSON for the console's Connect bridge, not protobuf.
        var viaBridge = false
        let done = DispatchSemaphore(value: 0)
        var finding: ContractFuzzer.Finding?
        init(method: Contract.Method, requests: [[UInt8]]) {
            self.method = method
            self.requests = requests
        }
    }

    static let mapping = """
        mappings:
          - topic: factory/+/telemetry
            device: 1
            time: ts
            sensors:
              temperature: temp
              vibration: {path: vib.rms, unit: mm/s, scale: 0.001}
            auto_register: press
          - topic: gateways/#
            device: machine.id
            qos: 0
        """

    init() {
        methods = contract.methods.filter { $0.fullName != "twin.v1.AuthService/Logout" }
        var options = ContractFuzzer.Options()
        options.callTimeout = .seconds(5)
        fuzzer = ContractFuzzer(contract: contract, options: options)
        (stream, jobs) = AsyncStream<Job>.makeStream()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("twin-fuzz-\(getpid())").path
        // The data directory goes when the process ends (libFuzzer exits through exit()).
        atexit { try? FileManager.default.removeItem(atPath: FuzzTarget.shared.directory) }
        let ready = DispatchSemaphore(value: 0)
        let stream = self.stream, fuzzer = self.fuzzer, directory = self.directory
        Task.detached { [self] in
            do {
                var configuration = DaemonConfiguration(dataDirectory: directory)
                configuration.listen = [.unix(path: directory + "/never-served.sock")]
                configuration.passwordHasher = .testing
                configuration.environment = ["TWIND_ADMIN_PASSWORD": "fuzz-admin-password"]
                var logger = Logger(label: "twin-fuzz")
                logger.logLevel = .critical
                let daemon = try await buildDaemon(configuration: configuration, logger: logger)
                var hostOptions = SparkplugHost.Options(hostID: "twin-fuzz")
                hostOptions.reorderTimeout = Time.second
                sparkplug = SparkplugHost(options: hostOptions, sink: daemon.gatewaySink, logger: logger)
                topics = TopicConsumer(mapping: try TopicMapping.parse(Self.mapping), sink: daemon.gatewaySink, logger: logger)
                try await daemon.withInProcessClient { client in
                    var login = Twin_V1_LoginRequest()
                    login.username = "admin"
                    login.password = "fuzz-admin-password"
                    let token = try await Twin_V1_AuthService.Client(wrapping: client).login(login).accessToken
                    ready.signal()
                    let bridge = ConnectBridge(client: client)
                    for await job in stream {
                        if job.viaBridge {
                            var metadata = Metadata()
                            metadata.addString("Bearer \(token)", forKey: "authorization")
                            do {
                                try await bridge.call(path: "/" + job.method.fullName, inputs: job.requests, metadata: metadata) { _ in }
                            } catch let error as ConnectError where error.code == "unknown" || error.code == "internal" {
                                job.finding = .init(method: job.method.fullName, caseIndex: 0, code: error.code, message: error.message, requestPrefix: "(JSON via the bridge)")
                            } catch {}
                        } else {
                            job.finding = await fuzzer.check(client: client, method: job.method, requests: job.requests, token: token)
                        }
                        job.done.signal()
                    }
                }
            } catch {
                FileHandle.standardError.write(Data("twin-fuzz: cannot start the in-process twind: \(error)\n".utf8))
                exit(2)
            }
        }
        ready.wait()
    }

    static let separator: [UInt8] = [0xF0, 0x0D]

    /// Runs one input; returns a finding's description, nil when all was well.
    func run(_ input: [UInt8]) -> String? {
        guard let selector = input.first else { return nil }
        let body = Array(input.dropFirst())
        let targets = methods.count + 4
        let target = Int(selector) % targets
        if target == methods.count { return sparkplugCase(body) }
        if target == methods.count + 1 { return topicCase(body) }
        if target == methods.count + 2 { return bridgeCase(body) }
        if target == methods.count + 3 { return opcuaCase(body) }
        let job = Job(method: methods[target], requests: Self.split(body))
        jobs.yield(job)
        if job.done.wait(timeout: .now() + 30) == .timedOut {
            return "\(methods[target].fullName): no answer within 30 s"
        }
        return job.finding?.description
    }

    /// JSON for a method (the next byte picks it) through the console's Connect bridge.
    func bridgeCase(_ body: [UInt8]) -> String? {
        guard let first = body.first else { return nil }
        let method = methods[Int(first) % methods.count]
        guard !method.serverStreaming else { return nil }  // a stream would stay open
        let job = Job(method: method, requests: Self.split(Array(body.dropFirst())))
        job.viaBridge = true
        jobs.yield(job)
        if job.done.wait(timeout: .now() + 30) == .timedOut { return "\(method.fullName) via the bridge: no answer within 30 s" }
        return job.finding?.description
    }

    static func split(_ bytes: [UInt8]) -> [[UInt8]] {
        var parts: [[UInt8]] = [[]]
        var i = 0
        while i < bytes.count {
            if i + 1 < bytes.count, bytes[i] == separator[0], bytes[i + 1] == separator[1] {
                parts.append([])
                i += 2
            } else {
                parts[parts.count - 1].append(bytes[i])
                i += 1
            }
        }
        return Array(parts.prefix(8))
    }

    static let sparkplugTopics = [
        "spBv1.0/Plant 1/NBIRTH/edge-a", "spBv1.0/Plant 1/DBIRTH/edge-a/Pump#1", "spBv1.0/Plant 1/DDATA/edge-a/Pump#1",
        "spBv1.0/Plant 1/NDATA/edge-a", "spBv1.0/Plant 1/DDEATH/edge-a/Pump#1", "spBv1.0/Plant 1/NDEATH/edge-a",
    ]
    var clock: Nanos = 1_800_000_000 * Time.second

    func sparkplugCase(_ body: [UInt8]) -> String? {
        guard let first = body.first else { return nil }
        clock += Time.millisecond
        let topic = Self.sparkplugTopics[Int(first) % Self.sparkplugTopics.count]
        _ = body.dropFirst().withUnsafeBytes { sparkplug.handle(topic: topic, payload: $0, now: clock) }
        _ = sparkplug.tick(now: clock)
        _ = try? sparkplug.flush(now: clock)
        return nil
    }

    func topicCase(_ body: [UInt8]) -> String? {
        clock += Time.millisecond
        _ = body.withUnsafeBytes { topics.handle(topic: "factory/press-\(body.first ?? 0 % 4)/telemetry", payload: $0, now: clock) }
        _ = try? topics.flush(now: clock)
        return nil
    }

    /// What an OPC UA server sends, through the client's decoders (a response body after its
    /// type id: the next byte picks the decoder); and the mapping file's parser on the same bytes.
    func opcuaCase(_ body: [UInt8]) -> String? {
        guard let first = body.first else { return nil }
        var r = UAReader(Array(body.dropFirst()))
        switch first % 7 {
        case 0: _ = try? r.variant()
        case 1: _ = try? r.dataValue()
        case 2: _ = try? r.publishResult()
        case 3: _ = try? r.responseHeader(); _ = try? r.endpointDescription()
        case 4: _ = try? r.referenceDescription()
        case 5: _ = EngineeringInfo.range(try? r.variant()); _ = EngineeringInfo.unit(try? r.variant())
        default: _ = try? OPCUAConfig.parse(String(decoding: body.dropFirst(), as: UTF8.self), readFile: { _ throws(TwinError) in "pw" })
        }
        return nil
    }

    /// A seed corpus: for each RPC a few generated hostile requests, and well-formed gateway
    /// payloads.
    func writeSeeds(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var n = 0
        func write(_ bytes: [UInt8]) throws {
            n += 1
            try Data(bytes).write(to: URL(fileURLWithPath: directory + "/seed-\(n)"))
        }
        for (index, method) in methods.enumerated() {
            for c in 0..<4 {
                var generator = HostileMessages(contract: contract, seed: ContractFuzzer.caseSeed(1, method.fullName, c))
                try write([UInt8(index)] + generator.message(method.input))
            }
        }
        var birth = SparkplugPayload()
        birth.seq = 0
        birth.timestamp = 1_800_000_000_000
        var metric = SparkplugPayload.Metric()
        metric.name = "Motor/Temperature"
        metric.alias = 10
        metric.datatype = 10
        metric.doubleValue = 40
        birth.metrics = [metric]
        let payload: [UInt8] = try birth.serializedBytes()
        for topic in 0..<Self.sparkplugTopics.count {
            try write([UInt8(methods.count), UInt8(topic)] + payload)
        }
        try write([UInt8(methods.count + 1)] + Array(#"{"temp": 70, "vib": {"rms": 1000}, "ts": 1767225600}"#.utf8))
        for (index, json) in [#"{"pageSize": 5}"#, #"{"deviceId": "pump-001", "from": "1970-01-01T00:00:00Z", "step": "1s"}"#,
                              #"{"readings": [{"deviceId": "pump-001", "sensor": "flow", "time": "2026-12-01T00:00:00Z", "value": 1.5}]}"#].enumerated() {
            try write([UInt8(methods.count + 2), UInt8(index * 7)] + Array(json.utf8))
        }
        // OPC UA: a Variant, a DataValue with every field, and a mapping file.
        var w = UAWriter()
        w.variant(.array(type: 11, elements: [.double(1), .double(2)], dimensions: [2]))
        try write([UInt8(methods.count + 3), 0] + w.bytes)
        var v = UAWriter()
        v.dataValue(DataValue(value: .float(1.5), status: StatusCode(0x808C_0000), sourceTimestamp: 133_000_000_000_000_000, serverTimestamp: 133_000_000_000_000_001))
        try write([UInt8(methods.count + 3), 1] + v.bytes)
        try write([UInt8(methods.count + 3), 6] + Array("endpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{path: '2:A/2:B', device: d, sensor: s}]\n".utf8))
    }
}

#if FUZZING
/// One input, as libFuzzer hands it over.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if let finding = FuzzTarget.shared.run(input) {
        FileHandle.standardError.write(Data("twin-fuzz: finding: \(finding)\n".utf8))
        abort()
    }
    return 0
}

/// Under `-sanitize=fuzzer`: libFuzzer's driver, with its options from the command line. (The
/// package manager links an executable's entry point as `main`, which replaces libFuzzer's own.)
@main struct Fuzz {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        _ = FuzzTarget.shared
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) })
    }
}
#else
/// `twin-fuzz FILE|DIR...` replays inputs (a corpus, a crash file); `twin-fuzz --write-seeds DIR`
/// writes a seed corpus. Exit 1 on a finding.
@main struct Replay {
    static func main() throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--write-seeds", arguments.count == 2 {
            try FuzzTarget.shared.writeSeeds(to: arguments[1])
            return
        }
        guard !arguments.isEmpty else {
            FileHandle.standardError.write(Data("usage: twin-fuzz FILE|DIR... | --write-seeds DIR (scripts/fuzz runs it under libFuzzer)\n".utf8))
            exit(64)
        }
        var files: [String] = []
        for path in arguments {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            if isDirectory.boolValue {
                files += (try FileManager.default.contentsOfDirectory(atPath: path)).sorted().map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        var findings = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            if let finding = FuzzTarget.shared.run(Array(data)) {
                findings += 1
                print("\(file): \(finding)")
            }
        }
        print("\(files.count) inputs, \(findings) findings")
        exit(findings == 0 ? 0 : 1)
    }
}
#endif
