import Foundation
import TwinCore
import GRPCCore
import GRPCProtobuf

/// Sends generated hostile requests to every method of a `Contract` over a real gRPC client and
/// records what came back. A run is a function of its seed: case `c` of method `m` is generated
/// from `seed`, `m`'s name and `c`, so any finding can be sent again alone.
public struct ContractFuzzer: Sendable {
    public struct Options: Sendable {
        public var seed: UInt64 = 1
        /// Cases per method.
        public var cases = 40
        /// Only methods whose full name contains one of these (empty: all).
        public var only: [String] = []
        /// Methods called without the token (e.g. Logout, which would end the fuzzer's session).
        public var withoutToken: Set<String> = ["twin.v1.AuthService/Logout"]
        /// Strings that reach deeper checks (device ids, sensor names).
        public var hints: [String] = []
        /// A call that has not ended in this long is counted as timed out (streams are left
        /// after their first message; a stream that sends nothing in time is abandoned).
        public var callTimeout: Duration = .seconds(10)
        public init() {}
    }

    /// An answer the contract forbids: UNKNOWN or INTERNAL (or a call that never ended).
    public struct Finding: Sendable, CustomStringConvertible {
        public var method: String
        public var caseIndex: Int
        public var code: String
        public var message: String
        public var requestPrefix: String

        public init(method: String, caseIndex: Int, code: String, message: String, requestPrefix: String) {
            self.method = method
            self.caseIndex = caseIndex
            self.code = code
            self.message = message
            self.requestPrefix = requestPrefix
        }

        public var description: String {
            "\(method) case \(caseIndex): \(code) \"\(message.prefix(300))\" (request begins \(requestPrefix))"
        }
    }

    public struct Report: Sendable {
        /// Per method, how often each status came back.
        public var codes: [String: [String: Int]] = [:]
        public var findings: [Finding] = []
        public var calls = 0
        public var streamsLeftOpen = 0
        /// Errors that came without a twin.v1 ErrorInfo reason, per method and message (the
        /// transport's own refusals, e.g. a frame that does not decode, carry none).
        public var withoutReason: [String: [String: Int]] = [:]

        public var summary: String {
            codes.keys.sorted().map { m in
                "\(m): " + codes[m]!.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            }.joined(separator: "\n")
        }
    }

    public let contract: Contract
    public let options: Options
    public init(contract: Contract = .twin, options: Options) {
        self.contract = contract
        self.options = options
    }

    static let forbidden: Set<RPCError.Code> = [.unknown, .internalError]

    public func run<T: ClientTransport>(client: GRPCClient<T>, token: String?) async -> Report {
        var report = Report()
        let methods = contract.methods.filter { m in options.only.isEmpty || options.only.contains { m.fullName.contains($0) } }
        for method in methods {
            for c in 0..<options.cases {
                var generator = HostileMessages(
                    contract: contract, seed: Self.caseSeed(options.seed, method.fullName, c), hints: options.hints)
                // A unary method now and then gets no message or two (a misbehaving client).
                var requests: [[UInt8]]
                let shape = generator.rng.next() % 12
                if method.clientStreaming {
                    requests = (0..<Int(generator.rng.next() % 4)).map { _ in generator.message(method.input) }
                } else if shape == 0 {
                    requests = []
                } else if shape == 1 {
                    requests = [generator.message(method.input), generator.message(method.input)]
                } else {
                    requests = [generator.message(method.input)]
                }
                var metadata: Metadata = [:]
                if let token, !options.withoutToken.contains(method.fullName) { metadata.addString("Bearer \(token)", forKey: "authorization") }
                let outcome = await call(client: client, method: method, requests: requests, metadata: metadata)
                report.calls += 1
                let codeName = outcome.code.map { "\($0)" } ?? (outcome.timedOut ? "timeout" : "ok")
                report.codes[method.fullName, default: [:]][codeName, default: 0] += 1
                if outcome.leftOpen { report.streamsLeftOpen += 1 }
                if outcome.code != nil, outcome.reason == nil {
                    report.withoutReason[method.fullName, default: [:]][String(outcome.message.prefix(80)), default: 0] += 1
                }
                let bad = outcome.code.map(Self.forbidden.contains) ?? false
                if bad || (outcome.timedOut && !method.serverStreaming) {
                    report.findings.append(Finding(
                        method: method.fullName, caseIndex: c, code: codeName, message: outcome.message,
                        requestPrefix: requests.first.map { $0.prefix(48).map { String(format: "%02x", $0) }.joined() } ?? "(no message)"))
                }
            }
        }
        return report
    }

    /// Sends one case as given (the libFuzzer harness): nil when the answer is allowed, the
    /// finding when it is UNKNOWN or INTERNAL or a unary call never ends.
    public func check<T: ClientTransport>(client: GRPCClient<T>, method: Contract.Method, requests: [[UInt8]], token: String?) async -> Finding? {
        var metadata: Metadata = [:]
        if let token, !options.withoutToken.contains(method.fullName) { metadata.addString("Bearer \(token)", forKey: "authorization") }
        let outcome = await call(client: client, method: method, requests: requests, metadata: metadata)
        let bad = outcome.code.map(Self.forbidden.contains) ?? false
        guard bad || (outcome.timedOut && !method.serverStreaming) else { return nil }
        return Finding(
            method: method.fullName, caseIndex: 0, code: outcome.code.map { "\($0)" } ?? "timeout", message: outcome.message,
            requestPrefix: requests.first.map { $0.prefix(48).map { String(format: "%02x", $0) }.joined() } ?? "(no message)")
    }

    struct Outcome: Sendable {
        var code: RPCError.Code?
        var message = ""
        var reason: String?
        var timedOut = false
        var leftOpen = false
    }

    func call<T: ClientTransport>(client: GRPCClient<T>, method: Contract.Method, requests: [[UInt8]], metadata: Metadata) async -> Outcome {
        let descriptor = MethodDescriptor(fullyQualifiedService: method.service, method: method.name)
        let request = StreamingClientRequest<[UInt8]>(metadata: metadata) { writer in
            for r in requests { try await writer.write(r) }
        }
        let timeout = options.callTimeout
        return await withTaskGroup(of: Outcome?.self) { group in
            group.addTask {
                do {
                    return try await client.bidirectionalStreaming(
                        request: request, descriptor: descriptor, serializer: RawBytes(), deserializer: RawBytes(), options: .defaults
                    ) { response in
                        // A stream's first message (or its end) is enough: leave it there.
                        var outcome = Outcome()
                        for try await _ in response.messages {
                            outcome.leftOpen = method.serverStreaming
                            break
                        }
                        return outcome
                    }
                } catch let error as RPCError {
                    let info = ((try? error.unpackGoogleRPCStatus()) ?? nil)?.details.compactMap(\.errorInfo).first { $0.domain == "twin.v1" }
                    return Outcome(code: error.code, message: error.message, reason: info?.reason)
                } catch {
                    return Outcome(code: .unknown, message: "client: \(error)")
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            if let first {
                return first
            }
            return Outcome(timedOut: true)
        }
    }

    /// The seed of one case: the method name's stable hash, mixed with the run's seed and the case.
    public static func caseSeed(_ seed: UInt64, _ method: String, _ c: Int) -> UInt64 {
        stableHash(method) ^ (seed &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(c)
    }
}

/// Messages as the bytes they are on the wire.
struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}
