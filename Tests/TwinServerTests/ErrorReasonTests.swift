import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Proto
import SwiftProtobuf
import Testing
import TwinClient
import TwinCore
@testable import TwinServer

/// Errors carry their meaning as google.rpc.Status details (ErrorInfo reason and metadata,
/// BadRequest, RetryInfo, ResourceInfo), documented by twin.v1.ErrorReason in types.proto.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct ErrorReasonTests {
    @Test func theReasonsAreTheOnesTypesProtoDocuments() throws {
        let data = try #require(Data(base64Encoded: ContractDescriptors.fileDescriptorSetBase64))
        let set = try Google_Protobuf_FileDescriptorSet(serializedBytes: data)
        let file = try #require(set.file.first { $0.name == "twin/v1/types.proto" })
        let documented = try #require(file.enumType.first { $0.name == "ErrorReason" }).value.map(\.name).filter { $0 != "ERROR_REASON_UNSPECIFIED" }
        #expect(Set(documented) == Set(TwinError.Reason.allCases.map(\.rawValue)))
        #expect(documented.count == TwinError.Reason.allCases.count)
    }

    @Test func aTwinErrorBecomesAGoogleStatusAndBack() throws {
        var error = TwinError.deviceNotFound("pump-9", field: "device_ids[2]")
        error.retryAfter = 1_500 * Time.millisecond
        let rpc = RPCError(error)
        #expect(rpc.code == .notFound && rpc.message == "device 'pump-9' not found")
        #expect(rpc.twinReason == .deviceNotFound)
        #expect(rpc.twinMetadata == ["device": "pump-9"])
        #expect(rpc.fieldViolations.map(\.field) == ["device_ids[2]"])
        #expect(rpc.retryDelay == .milliseconds(1_500))
        let resource = try #require(rpc.googleStatus?.details.compactMap(\.resourceInfo).first)
        #expect(resource.type == "twin.v1.Device" && resource.name == "pump-9")
        // An error without details (another server, the transport) has no reason.
        #expect(RPCError(code: .unavailable, message: "x").twinReason == nil)
    }

    @Test func readingsDevicesPagesAndRolesSayWhatWentWrong() async throws {
        let d = try await RunningDaemon.start { $0.simulator = false }
        defer { Task { try? await d.stop() } }
        var upsert = Twin_V1_UpsertDeviceRequest()
        upsert.device = gatewayDevice("press-1")
        _ = try await d.withTwin { try await $0.upsertDevice(upsert) }
        let now = Time.now()

        // A bad reading in the third batch: which batch, which reading, which field, what problem.
        var good = Twin_V1_IngestRequest()
        good.readings = [Twin_V1_Reading("press-1", "force", now, 1)]
        var bad = Twin_V1_IngestRequest()
        bad.readings = [Twin_V1_Reading("press-1", "force", now, 2), Twin_V1_Reading("press-1", "force", now - 30 * Time.day, 3)]
        let batches = [good, good, bad]
        let request = StreamingClientRequest<Twin_V1_IngestRequest> { w in for b in batches { try await w.write(b) } }
        let ingest = await expectReason(.invalidArgument, .readingInvalid) { _ = try await d.withTwin { try await $0.ingest(request: request) } }
        #expect(ingest?.twinMetadata["batch"] == "2")
        #expect(ingest?.twinMetadata["reading"] == "1")
        #expect(ingest?.twinMetadata["problem"] == "time_too_old")
        #expect(ingest?.twinMetadata["accepted_batches"] == "2")
        #expect(ingest?.fieldViolations.map(\.field) == ["readings[1].time"])
        var unknown = Twin_V1_IngestRequest()
        unknown.readings = [Twin_V1_Reading("press-404", "force", now, 1)]
        let unknownBatch = unknown
        let unknownDevice = await expectReason(.invalidArgument, .readingInvalid) {
            _ = try await d.withTwin { try await $0.ingest(request: StreamingClientRequest { try await $0.write(unknownBatch) }) }
        }
        #expect(unknownDevice?.twinMetadata["problem"] == "unknown_device")

        // One "device not found" for every method that names devices.
        var get = Twin_V1_GetDeviceRequest()
        get.deviceID = "press-404"
        await expectReason(.notFound, .deviceNotFound) { _ = try await d.withTwin { try await $0.getDevice(get) } }
        var history = Twin_V1_GetHistoryRequest()
        history.deviceID = "press-404"
        await expectReason(.notFound, .deviceNotFound) { _ = try await d.withTwin { try await $0.getHistory(history) } }
        var alerts = Twin_V1_ListAlertsRequest()
        alerts.deviceIds = ["press-1", "press-404"]
        let listed = await expectReason(.notFound, .deviceNotFound) { _ = try await d.withTwin { try await $0.listAlerts(alerts) } }
        #expect(listed?.fieldViolations.map(\.field) == ["device_ids[1]"])
        history.deviceID = "press-1"
        history.sensors = ["torque"]
        let sensor = await expectReason(.invalidArgument, .sensorNotFound) { _ = try await d.withTwin { try await $0.getHistory(history) } }
        #expect(sensor?.twinMetadata == ["device": "press-1", "sensor": "torque"])
        history.sensors = []
        history.from = Google_Protobuf_Timestamp(seconds: -9_000_000_000)
        let time = await expectReason(.invalidArgument, .timeOutOfRange) { _ = try await d.withTwin { try await $0.getHistory(history) } }
        #expect(time?.fieldViolations.map(\.field) == ["from"])

        // Page tokens are opaque and belong to their list.
        for n in 2...4 {
            upsert.device = gatewayDevice("press-\(n)")
            _ = try await d.withTwin { try await $0.upsertDevice(upsert) }
        }
        var page = Twin_V1_ListDevicesRequest()
        page.pageSize = 2
        let first = try await d.withTwin { try await $0.listDevices(page) }
        #expect(first.devices.map(\.id) == ["press-1", "press-2"] && !first.nextPageToken.isEmpty)
        page.pageToken = first.nextPageToken
        let second = try await d.withTwin { try await $0.listDevices(page) }
        #expect(second.devices.map(\.id) == ["press-3", "press-4"] && second.nextPageToken.isEmpty)
        page.pageToken = "press-2"
        await expectReason(.invalidArgument, .pageTokenInvalid) { _ = try await d.withTwin { try await $0.listDevices(page) } }
        var events = Twin_V1_ListEventsRequest()
        events.pageToken = first.nextPageToken
        await expectReason(.invalidArgument, .pageTokenInvalid) { _ = try await d.withTwin { try await $0.listEvents(events) } }

        // Who may not: no token, too little role.
        await expectReason(.unauthenticated, .tokenMissing) {
            _ = try await TwinConnection.with(d.address) { try await Twin_V1_TwinService.Client(wrapping: $0).listDevices(Twin_V1_ListDevicesRequest()) }
        }
        var create = Twin_V1_CreateUserRequest()
        create.username = "viewer1"
        create.password = "viewer-password-1"
        create.role = .viewer
        _ = try await d.connect { try await Twin_V1_AuthService.Client(wrapping: $0).createUser(create) }
        await expectReason(.alreadyExists, .alreadyExists) { _ = try await d.connect { try await Twin_V1_AuthService.Client(wrapping: $0).createUser(create) } }
        var login = Twin_V1_LoginRequest()
        login.username = "viewer1"
        login.password = create.password
        let viewer = try await TwinConnection.with(d.address) { try await Twin_V1_AuthService.Client(wrapping: $0).login(login) }
        let denied = await expectReason(.permissionDenied, .roleInsufficient) {
            _ = try await TwinConnection.with(d.address, bearer: viewer.accessToken) { try await Twin_V1_TwinService.Client(wrapping: $0).upsertDevice(upsert) }
        }
        #expect(denied?.twinMetadata["required_role"] == "admin" && denied?.twinMetadata["role"] == "viewer")
        login.password = "wrong password"
        await expectReason(.unauthenticated, .credentialsInvalid) {
            _ = try await TwinConnection.with(d.address) { try await Twin_V1_AuthService.Client(wrapping: $0).login(login) }
        }
        try await d.stop()
    }
}
