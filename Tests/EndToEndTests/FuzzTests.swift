import Foundation
import GRPCCore
import Proto
import Testing
import TwinClient
import TwinCore
import TwinFuzz

/// The fuzz tier: every method of the contract (read from the embedded descriptors, so new
/// methods are covered without a line here) gets seeded hostile requests against a real twind
/// process. No answer may be UNKNOWN or INTERNAL, no unary call may hang, and twind must still
/// serve afterwards. `TWIN_FUZZ_SEED` and `TWIN_FUZZ_CASES` change the run; `twin-bench fuzz`
/// runs it for longer.
@Suite("fuzz tier", .serialized)
struct FuzzTests {
    static var seed: UInt64 { ProcessInfo.processInfo.environment["TWIN_FUZZ_SEED"].flatMap { UInt64($0) } ?? 20_261_201 }
    static var cases: Int { ProcessInfo.processInfo.environment["TWIN_FUZZ_CASES"].flatMap { Int($0) } ?? 30 }

    /// Refusals the HTTP/2 transport makes before any of twind's code runs (they cannot carry
    /// twind's details): a message over the transport's size limit, and a call that twind
    /// never saw because the client gave up first.
    static func transportMessage(_ message: String) -> Bool {
        ["Message has exceeded the configured maximum payload size", "Message is too large to decompress", "client:"].contains { message.hasPrefix($0) }
    }

    @Test("every RPC survives hostile requests; twind keeps serving")
    func everyRPC() async throws {
        let twind = try await TwindProcess.start(["--devices", "4"])
        defer { Task { _ = await twind.stop() } }
        let parts = twind.address.split(separator: ":")
        let address = NetworkAddress.tcp(host: String(parts[0]), port: Int(parts[1])!)
        // The fuzzer acts as an admin of its own, so that what it does to "admin" (new password,
        // disabled, demoted: all fair game) does not end its run.
        var create = Twin_V1_CreateUserRequest()
        create.username = "fuzzer"
        create.password = "fuzzer-password-1"
        create.role = .admin
        _ = try await TwinConnection.with(address, bearer: try await twind.token()) { client in
            try await Twin_V1_AuthService.Client(wrapping: client).createUser(create)
        }
        @Sendable func fuzzerToken() async throws -> String {
            var login = Twin_V1_LoginRequest()
            login.username = "fuzzer"
            login.password = "fuzzer-password-1"
            return try await TwinConnection.with(address) { try await Twin_V1_AuthService.Client(wrapping: $0).login(login).accessToken }
        }
        let token = try await fuzzerToken()

        // Real ids and names, so that part of the requests get past "not found".
        let devices = try await TwinConnection.with(address, bearer: token) { client in
            try await Twin_V1_TwinService.Client(wrapping: client).listDevices(.init()).devices
        }
        var options = ContractFuzzer.Options()
        options.seed = Self.seed
        options.cases = Self.cases
        options.hints = devices.map(\.id) + devices.flatMap { $0.sensors.map(\.name) } + ["admin", "viewer"]
        let fuzzer = ContractFuzzer(options: options)
        let report = try await TwinConnection.with(address) { client in await fuzzer.run(client: client, token: token) }

        #expect(report.calls == Contract.twin.methods.count * Self.cases)
        #expect(report.findings.isEmpty, "seed \(Self.seed): \(report.findings.prefix(20).map(\.description).joined(separator: "\n"))\n\(report.summary)")
        // Every refusal twind itself makes says why, as a twin.v1 reason; only the transport's
        // own (a message that does not decode, before any twind code runs) may come without.
        let unexplained = report.withoutReason.flatMap { method, messages in
            messages.keys.filter { !Self.transportMessage($0) }.map { "\(method): \($0)" }
        }
        #expect(unexplained.isEmpty, "errors without a reason:\n\(unexplained.sorted().prefix(30).joined(separator: "\n"))")
        #expect(twind.child.process.isRunning, "twind died: \(twind.child.stderr.text.suffix(4000))")

        // Still serving, for everyone.
        let status = try await TwinConnection.with(address) { client in
            try await Grpc_Health_V1_Health.Client(wrapping: client).check(.init()).status
        }
        #expect(status == .serving)
        let after = try await TwinConnection.with(address, bearer: try await fuzzerToken()) { client in
            try await Twin_V1_TwinService.Client(wrapping: client).listDevices(.init()).devices.count
        }
        #expect(after >= devices.count)
        // Accepted calls too, not only refusals: the fuzzer reached the handlers.
        let accepted = report.codes.values.reduce(0) { $0 + ($1["ok"] ?? 0) }
        #expect(accepted > 0, "\(report.summary)")
    }
}
