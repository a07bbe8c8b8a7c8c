import Foundation
import Synchronization
import Testing
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import Proto
import ServiceLifecycle
import TwinClient
import TwinCore
import TwinServer

/// A real twind (the same builder twind uses) on an ephemeral loopback port with a temporary
/// data directory.
struct RunningDaemon {
    let daemon: Daemon
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let address: NetworkAddress
    let directory: String
    /// An admin's access token (logged in at start), for tests that are not about access.
    var token: String? = nil

    static let adminPassword = "test-admin-password"

    static func start(_ configure: (inout DaemonConfiguration) -> Void = { _ in }) async throws -> RunningDaemon {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("twind-test-\(UUID().uuidString)").path
        var configuration = DaemonConfiguration(dataDirectory: directory)
        configuration.listen = [.tcp(host: "127.0.0.1", port: 0)]
        configuration.interval = 100 * Time.millisecond
        configuration.passwordHasher = .testing
        configuration.environment["TWIND_ADMIN_PASSWORD"] = adminPassword
        configure(&configuration)
        var logger = Logger(label: "twind-test")
        logger.logLevel = .error
        let daemon = try await buildDaemon(configuration: configuration, logger: logger)
        let group = ServiceGroup(services: [daemon], logger: logger)
        let task = Task { try await group.run() }
        let address = try await daemon.listeningAddresses()[0]
        var running = RunningDaemon(daemon: daemon, group: group, task: task, address: address, directory: configuration.dataDirectory)
        DaemonRegistry.current?.add(running)
        // Log in as admin with the password this start set (or the one the first start wrote).
        let file = configuration.dataDirectory + "/initial-admin-password"
        let password = configuration.environment["TWIND_ADMIN_PASSWORD"]
            ?? (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let password {
            var login = Twin_V1_LoginRequest()
            login.username = "admin"
            login.password = password
            running.token = try? await TwinConnection.with(address) { try await Twin_V1_AuthService.Client(wrapping: $0).login(login).accessToken }
        }
        return running
    }

    /// A client that sends the admin's token.
    func connect<R: Sendable>(_ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await TwinConnection.with(address, bearer: token, body)
    }

    /// Graceful shutdown, as SIGTERM does it; returns how long it took.
    @discardableResult
    func stop(removing: Bool = true) async throws -> Duration {
        let began = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await task.value
        if removing { try? FileManager.default.removeItem(atPath: directory) }
        return ContinuousClock.now - began
    }

    func withTwin<R: Sendable>(_ body: (Twin_V1_TwinService.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await connect { client in try await body(Twin_V1_TwinService.Client(wrapping: client)) }
    }
}

extension Twin_V1_Reading {
    init(_ device: String, _ sensor: String, _ time: Nanos, _ value: Double) {
        self.init()
        deviceID = device
        self.sensor = sensor
        self.time = .init(seconds: time / Time.second, nanos: Int32(time % Time.second))
        self.value = value
    }
}

func gatewayDevice(_ id: String) -> Twin_V1_Device {
    var d = Twin_V1_Device()
    d.id = id
    d.type = "press"
    var force = Twin_V1_SensorSpec()
    force.name = "force"
    force.unit = "kN"
    force.nominalMin = 0
    force.nominalMax = 800
    force.alarmHigh = 950
    var temp = Twin_V1_SensorSpec()
    temp.name = "oil_temp"
    temp.unit = "°C"
    temp.nominalMin = 10
    temp.nominalMax = 70
    d.sensors = [force, temp]
    return d
}

/// Expects `body` to fail with `code`; returns the message, or nil (and records the issue) when
/// it succeeded or failed otherwise.
func expectRPCError(_ code: RPCError.Code, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async -> String? {
    do {
        try await body()
        Issue.record("expected \(code), but the call succeeded", sourceLocation: sourceLocation)
    } catch let error as RPCError {
        if error.code == code { return error.message }
        Issue.record("expected \(code), got \(error.code): \(error.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Expects `body` to fail with `code` and twin.v1 reason `reason`; returns the error.
@discardableResult
func expectReason(_ code: RPCError.Code, _ reason: TwinError.Reason, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async -> RPCError? {
    do {
        try await body()
        Issue.record("expected \(code) \(reason.rawValue), but the call succeeded", sourceLocation: sourceLocation)
    } catch let error as RPCError {
        if error.code == code && error.twinReason == reason { return error }
        Issue.record("expected \(code) \(reason.rawValue), got \(error.code) \(error.twinReason?.rawValue ?? "no reason"): \(error.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code) \(reason.rawValue), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Every daemon a test starts is stopped when the test ends, also when it fails or throws
/// half way (`@Suite(.tearsDownDaemons)`): RunningDaemon.start registers with the test's scope.
final class DaemonRegistry: Sendable {
    @TaskLocal static var current: DaemonRegistry?
    private let started = Mutex<[RunningDaemon]>([])
    func add(_ d: RunningDaemon) { started.withLock { $0.append(d) } }
    func stopAll() async {
        for d in started.withLock({ $0 }).reversed() {
            await d.group.triggerGracefulShutdown()
            _ = try? await d.task.value
            try? FileManager.default.removeItem(atPath: d.directory)
        }
    }
}

struct DaemonTeardown: TestTrait, SuiteTrait, TestScoping {
    var isRecursive: Bool { true }
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        guard testCase != nil || !test.isSuite else { return try await function() }
        let registry = DaemonRegistry()
        do {
            try await DaemonRegistry.$current.withValue(registry) { try await function() }
        } catch {
            await registry.stopAll()
            throw error
        }
        await registry.stopAll()
    }
}

extension Trait where Self == DaemonTeardown {
    static var tearsDownDaemons: Self { DaemonTeardown() }
}
