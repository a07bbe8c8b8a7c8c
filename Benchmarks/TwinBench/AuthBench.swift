import ArgumentParser
import Foundation
import GRPCCore
import Proto
import TwinClient
import TwinCore
import TwinStore
@_spi(Benchmarks) import TwinServer

// MARK: - Login cost and per-call token verification

struct AuthBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "auth",
        abstract: "Login cost (Argon2id) and the per-call cost of verifying an access token.",
        discussion: """
            Starts twind, logs in --logins times, then makes --calls sequential health checks without \
            a token and as many with one; the difference per call is what verifying a token costs on \
            the RPC path.
            """)
    @Option var logins = 10
    @Option var calls = 3_000

    func run() async throws {
        // The hash itself, in process, with the parameters twind uses.
        let hash = try PasswordHasher.standard.hash("benchmark-password")
        var hashCosts: [Double] = []
        for _ in 0..<5 {
            let began = ContinuousClock.now
            _ = PasswordHasher.verify("benchmark-password", against: hash)
            hashCosts.append((ContinuousClock.now - began).milliseconds)
        }

        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("auth-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let inProcess = try await TokenVerificationBenchmark.run(directory: scratch, iterations: 2_000)
        try? FileManager.default.removeItem(atPath: scratch)

        let daemon = try await DaemonProcess.start(["--simulator", "off"])
        defer { daemon.stop() }
        let (loginCosts, plain, bearer) = try await TwinConnection.with(daemon.address) { client in
            let auth = Twin_V1_AuthService.Client(wrapping: client)
            let health = Grpc_Health_V1_Health.Client(wrapping: client)
            var request = Twin_V1_LoginRequest()
            request.username = "admin"
            request.password = daemon.adminPassword
            var loginCosts: [Double] = []
            var token = ""
            for _ in 0..<logins {
                let began = ContinuousClock.now
                token = try await auth.login(request).accessToken
                loginCosts.append((ContinuousClock.now - began).milliseconds)
            }
            func measure(_ metadata: Metadata) async throws -> Double {
                for _ in 0..<200 { _ = try await health.check(Grpc_Health_V1_HealthCheckRequest(), metadata: metadata) }  // warm up
                let began = ContinuousClock.now
                for _ in 0..<calls { _ = try await health.check(Grpc_Health_V1_HealthCheckRequest(), metadata: metadata) }
                return (ContinuousClock.now - began).seconds / Double(calls) * 1e6
            }
            // Health checks are open (no token needed): the difference is the verification alone.
            // Interleaved rounds, so drift in the machine's speed hits both alike.
            var plain: [Double] = []
            var bearer: [Double] = []
            for _ in 0..<3 {
                plain.append(try await measure([:]))
                bearer.append(try await measure(["authorization": "Bearer \(token)"]))
            }
            return (loginCosts, plain.min()!, bearer.min()!)
        }
        report("auth", [
            ("Argon2id verify (t=3, m=64 MiB)", ms(percentile(hashCosts, 0.5))),
            ("Login RPC p50 / max", "\(ms(percentile(loginCosts, 0.5))) / \(ms(loginCosts.max() ?? 0))"),
            ("in process: Login (hash + tokens)", ms(inProcess.login.milliseconds)),
            ("in process: token check, first use", String(format: "%.1f µs", inProcess.firstCheck.milliseconds * 1000)),
            ("in process: token check + role, cached", String(format: "%.2f µs", inProcess.cachedCheck.milliseconds * 1000)),
            ("unary call without token", String(format: "%.1f µs", plain)),
            ("unary call with token", String(format: "%.1f µs", bearer)),
            ("difference over gRPC (noisy)", String(format: "%.1f µs", bearer - plain)),
        ])
    }
}
