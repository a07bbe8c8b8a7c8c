import Foundation
import GRPCCore
import GRPCInProcessTransport
import GRPCNIOTransportHTTP2Posix
import Proto
import Testing
import TwinClient
import TwinCore
@testable import TwinServer

/// The service tier over grpc-swift's in-process transport: the daemon's own services and
/// interceptors (authentication, access table, request shape), no sockets.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct InProcessServiceTests {
    @Test func theSameServicesAndInterceptorsAnswerInProcess() async throws {
        let d = try await RunningDaemon.start { $0.simulator = false }
        defer { Task { try? await d.stop() } }
        let admin: Metadata = ["authorization": "Bearer \(try #require(d.token))"]
        try await d.daemon.withInProcessClient { client in
            let twin = Twin_V1_TwinService.Client(wrapping: client)
            // The auth interceptor and access table run here too.
            await expectReason(.unauthenticated, .tokenMissing) { _ = try await twin.listDevices(Twin_V1_ListDevicesRequest()) }
            await expectReason(.unauthenticated, .tokenInvalid) {
                _ = try await twin.listDevices(Twin_V1_ListDevicesRequest(), metadata: ["authorization": "Bearer not.a.token"])
            }
            var upsert = Twin_V1_UpsertDeviceRequest()
            upsert.device = gatewayDevice("press-1")
            _ = try await twin.upsertDevice(upsert, metadata: admin)
            var batch = Twin_V1_IngestRequest()
            batch.readings = [Twin_V1_Reading("press-1", "force", Time.now(), 500), Twin_V1_Reading("press-1", "force", Time.now(), .infinity)]
            let readings = batch
            let refused = await expectReason(.invalidArgument, .readingInvalid) {
                _ = try await twin.ingest(request: StreamingClientRequest(metadata: admin) { try await $0.write(readings) })
            }
            #expect(refused?.twinMetadata["reading"] == "1" && refused?.twinMetadata["problem"] == "not_finite")
            batch.readings.removeLast()
            let good = batch
            let accepted = try await twin.ingest(request: StreamingClientRequest(metadata: admin) { try await $0.write(good) })
            #expect(accepted.acceptedReadings == 1)
            var get = Twin_V1_GetDeviceRequest()
            get.deviceID = "press-1"
            let snapshot = try await twin.getDevice(get, metadata: admin).snapshot
            #expect(snapshot.values.first { $0.sensor == "force" }?.value == 500)
            get.deviceID = "press-2"
            await expectReason(.notFound, .deviceNotFound) { _ = try await twin.getDevice(get, metadata: admin) }
        }
        try await d.stop()
    }
}

/// Health Watch streams are bounded: beyond the limit RESOURCE_EXHAUSTED (LIMIT_EXCEEDED), and
/// a closed stream frees its place.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct HealthWatchLimitTests {
    @Test func watchersBeyondTheLimitAreRefusedAndAClosedOneFreesItsPlace() async throws {
        let status = HealthStatus(services: ["twin.v1.TwinService"], maxWatchers: 3)
        // Over loopback HTTP/2: a client going away is an RST_STREAM the server sees.
        let transport = HTTP2ServerTransport.Posix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext)
        let server = GRPCServer(transport: transport, services: [HealthService(status: status)])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await server.serve() }
            defer { server.beginGracefulShutdown() }
            let port = try #require(try await transport.listeningAddress.ipv4?.port)
            try await TwinConnection.with(.tcp(host: "127.0.0.1", port: port)) { client in
                let health = Grpc_Health_V1_Health.Client(wrapping: client)
                let (opened, openedTap) = AsyncStream.makeStream(of: Void.self)
                // Three watchers, each held open once it has its first status.
                let watchers = (0..<3).map { _ in
                    Task {
                        try await health.watch(Grpc_Health_V1_HealthCheckRequest()) { response in
                            for try await message in response.messages where message.status == .serving {
                                openedTap.yield()
                                try await Task.sleep(for: .seconds(600))
                            }
                        }
                    }
                }
                var count = 0
                for await _ in opened { count += 1; if count == 3 { break } }
                #expect(status.watcherCount == 3)
                let refused = await expectReason(.resourceExhausted, .limitExceeded) {
                    try await health.watch(Grpc_Health_V1_HealthCheckRequest()) { response in for try await _ in response.messages {} }
                }
                #expect(refused?.twinMetadata["limit"] == "3")
                // Check still answers while Watch is full.
                #expect(try await health.check(Grpc_Health_V1_HealthCheckRequest()).status == .serving)
                // One watcher leaves: its place is free again.
                watchers[0].cancel()
                _ = await watchers[0].result
                let deadline = ContinuousClock.now + .seconds(10)
                while status.watcherCount > 2 && ContinuousClock.now < deadline { await Task.yield() }
                #expect(status.watcherCount == 2)
                let again = try await health.watch(Grpc_Health_V1_HealthCheckRequest()) { response in
                    for try await message in response.messages { return message.status }
                    return .unknown
                }
                #expect(again == .serving)
                for w in watchers { w.cancel() }
                for w in watchers { _ = await w.result }
            }
        }
    }
}

/// The harness's promise: a daemon a test leaves running (it failed or threw half way) is
/// stopped and its data directory removed when the test's scope ends.
@Suite struct DaemonTeardownTests {
    @Test func aDaemonLeftRunningIsStoppedWithItsScope() async throws {
        let registry = DaemonRegistry()
        let d = try await DaemonRegistry.$current.withValue(registry) { try await RunningDaemon.start { $0.simulator = false } }
        #expect(try await d.withTwin { try await $0.listDevices(Twin_V1_ListDevicesRequest()) }.devices.isEmpty)
        await registry.stopAll()
        #expect(!FileManager.default.fileExists(atPath: d.directory))
        await #expect(throws: (any Error).self) { _ = try await d.withTwin { try await $0.listDevices(Twin_V1_ListDevicesRequest()) } }
    }
}
