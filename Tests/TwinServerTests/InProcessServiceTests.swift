import Foundation
import GRPCCore
import GRPCInProcessTransport
import Proto
import Testing
import TwinClient
import TwinCore
import TwinServer

/// The service tier over grpc-swift's in-process transport: the daemon's own services and
/// interceptors (authentication, access table, request shape), no sockets.
@Suite(.timeLimit(.minutes(1))) struct InProcessServiceTests {
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
