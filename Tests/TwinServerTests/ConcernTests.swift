import GRPCCore
import Logging
import ServiceLifecycle
import Testing
import TwinCore
@testable import TwinServer

/// The daemon's concerns, each in a service group of its own.
@Suite(.timeLimit(.minutes(1))) struct ConcernTests {
    /// Stops only when cancelled: a concern whose stop outlasts the group's grace.
    struct Stalling: Service {
        func run() async throws {
            try? await gracefulShutdown()
            try? await Task.sleep(for: .seconds(3600))
        }
    }

    /// When a concern stopping before the gRPC server outlasts the shutdown grace, the group
    /// cancels the server while it still listens. That cut is how the grace ends, not a failure
    /// to listen: the group ends without an error (a loaded CI run had the daemon fail with
    /// "cannot listen on 127.0.0.1:0: CancellationError()").
    @Test func aServerCancelledAtTheEndOfTheGraceIsNotAFailureToListen() async throws {
        let address = NetworkAddress.tcp(host: "127.0.0.1", port: 0)
        let server = Daemon.makeServer(address, configuration: DaemonConfiguration(dataDirectory: "/nonexistent"), services: [], interceptors: [])
        let logger = Logger(label: "concern-test")
        var configuration = ServiceGroupConfiguration(services: [
            .init(service: GRPCServerConcern(address: address, server: server, logger: logger)),
            .init(service: Stalling()),
        ], logger: logger)
        configuration.maximumGracefulShutdownDuration = .milliseconds(200)
        let group = ServiceGroup(configuration: configuration)
        let running = Task { try await group.run() }
        #expect(try await server.listeningAddress?.ipv4 != nil)
        await group.triggerGracefulShutdown()
        try await running.value
    }
}
