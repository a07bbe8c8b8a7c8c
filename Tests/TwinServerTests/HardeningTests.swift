import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Proto
import SwiftProtobuf
import Testing
import TwinClient
import TwinCore
import TwinServer

/// The requests that used to kill twind (integer overflow traps on times and durations) are
/// refused with INVALID_ARGUMENT naming the field, and twind keeps serving.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct TimeInputTests {
    static func timestamp(_ seconds: Int64, _ nanos: Int32 = 0) -> Google_Protobuf_Timestamp {
        var t = Google_Protobuf_Timestamp()
        t.seconds = seconds
        t.nanos = nanos
        return t
    }

    static func duration(_ seconds: Int64, _ nanos: Int32 = 0) -> Google_Protobuf_Duration {
        var d = Google_Protobuf_Duration()
        d.seconds = seconds
        d.nanos = nanos
        return d
    }

    @Test func theFiveReportedCrashesAreRefused() async throws {
        let d = try await RunningDaemon.start { $0.simulatedDevices = 2 }
        defer { Task { try? await d.stop() } }
        let device = try await d.withTwin { try await $0.listDevices(.init()).devices[0] }

        var history = Twin_V1_GetHistoryRequest()
        history.deviceID = device.id
        history.from = Self.timestamp(-9_000_000_000)
        history.maxPoints = 100
        var message = await expectRPCError(.invalidArgument) { _ = try await d.withTwin { try await $0.getHistory(history) } }
        #expect(message?.contains("from") == true && message?.contains("1970") == true)

        history = Twin_V1_GetHistoryRequest()
        history.deviceID = device.id
        history.step = Self.duration(9_223_372_036, 854_775_807)
        message = await expectRPCError(.invalidArgument) { _ = try await d.withTwin { try await $0.getHistory(history) } }
        #expect(message?.contains("step") == true)

        var patterns = Twin_V1_GetPatternsRequest()
        patterns.deviceID = device.id
        patterns.from = Self.timestamp(-9_000_000_000)
        message = await expectRPCError(.invalidArgument) { _ = try await d.withTwin { try await $0.getPatterns(patterns) } }
        #expect(message?.hasPrefix("from") == true)

        var stream = Twin_V1_StreamUpdatesRequest()
        stream.heartbeatInterval = Self.duration(-9_223_372_036, -854_775_808)
        message = await expectRPCError(.invalidArgument) {
            try await d.withTwin { client in
                try await client.streamUpdates(stream) { response in for try await _ in response.messages {} }
            }
        }
        #expect(message?.contains("heartbeat_interval") == true)

        var batch = Twin_V1_IngestRequest()
        var reading = Twin_V1_Reading()
        reading.deviceID = device.id
        reading.sensor = device.sensors[0].name
        reading.time = Self.timestamp(-9_000_000_000)
        reading.value = 1
        batch.readings = [reading]
        let only = batch
        let request = StreamingClientRequest<Twin_V1_IngestRequest> { writer in try await writer.write(only) }
        message = await expectRPCError(.invalidArgument) { _ = try await d.withTwin { try await $0.ingest(request: request) } }
        #expect(message?.contains("reading 0") == true && message?.contains("outside the accepted range") == true)

        // Still serving.
        #expect(try await d.withTwin { try await $0.listDevices(.init()).devices.count } == 2)
    }

    @Test func timeBoundsAreChecked() throws {
        #expect(try TimeBounds.instant(seconds: 0, nanos: 0, field: "t") == 0)
        #expect(try TimeBounds.instant(seconds: TimeBounds.latestSeconds, nanos: 0, field: "t") == TimeBounds.latest)
        for (s, n) in [(Int64(-1), Int32(0)), (TimeBounds.latestSeconds, 1), (.max, 0), (.min, 0), (0, 1_000_000_000), (0, .min)] {
            #expect(throws: TwinError.self) { try TimeBounds.instant(seconds: s, nanos: n, field: "t") }
        }
        #expect(try TimeBounds.duration(seconds: -TimeBounds.longestSeconds, nanos: 0, field: "d") == -TimeBounds.longest)
        for (s, n) in [(Int64.max, Int32(0)), (.min, 0), (1, -1), (-1, 1), (0, Int32.max), (TimeBounds.longestSeconds + 1, 0)] {
            #expect(throws: TwinError.self) { try TimeBounds.duration(seconds: s, nanos: n, field: "d") }
        }
        // Formatting and parsing never trap either.
        #expect(DurationText.format(.min).hasPrefix("-"))
        #expect(DurationText.parse("1e300") == nil && DurationText.parse("99999999999999999999d") == nil)
        #expect(Nanos.clamping(seconds: .nan) == 0 && Nanos.clamping(seconds: .infinity) == .max && Nanos.clamping(seconds: -1e300) == .min)
    }
}

@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct CleanShutdownTests {
    @Test func aStoppedDaemonLeavesNoWALBehind() async throws {
        let d = try await RunningDaemon.start { $0.simulatedDevices = 3 }
        // Some writes first: readings, a login, an event.
        _ = try await d.withTwin { try await $0.listDevices(.init()) }
        try await d.stop(removing: false)
        defer { try? FileManager.default.removeItem(atPath: d.directory) }
        for name in ["health_data.db", "users.db"] {
            #expect(FileManager.default.fileExists(atPath: "\(d.directory)/\(name)"))
            #expect(!FileManager.default.fileExists(atPath: "\(d.directory)/\(name)-wal"), "\(name)-wal left behind")
        }
    }
}

/// Limits reachable from outside answer with the right status and a message naming the limit.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct LimitTests {
    @Test func oversizedRequestsAndHealthNamesAreRefused() async throws {
        let d = try await RunningDaemon.start { $0.simulatedDevices = 1 }
        defer { Task { try? await d.stop() } }
        var get = Twin_V1_GetDeviceRequest()
        get.deviceID = String(repeating: "x", count: 2 << 20)
        let message = await expectRPCError(.resourceExhausted) { _ = try await d.withTwin { try await $0.getDevice(get) } }
        #expect(message?.contains("at most 1048576") == true)

        var check = Grpc_Health_V1_HealthCheckRequest()
        check.service = String(repeating: "s", count: 300)
        let health = await expectRPCError(.invalidArgument) {
            _ = try await d.connect { try await Grpc_Health_V1_Health.Client(wrapping: $0).check(check) }
        }
        #expect(health?.contains("at most 200") == true)

        // Unknown and hostile login names never reach the throttle table or the audit log.
        var login = Twin_V1_LoginRequest()
        login.username = "Robert'); DROP TABLE users;--"
        login.password = "x"
        #expect(await expectRPCError(.invalidArgument) {
            _ = try await d.connect { try await Twin_V1_AuthService.Client(wrapping: $0).login(login) }
        }?.contains("username") == true)
        let audit = try await d.connect { try await Twin_V1_AuthService.Client(wrapping: $0).listAuditEvents(.init()) }
        #expect(!audit.events.contains { $0.actor.contains("DROP") })
    }
}
