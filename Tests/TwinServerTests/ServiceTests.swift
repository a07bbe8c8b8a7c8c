import Foundation
import GRPCCore
import Proto
import Testing
import TwinClient
import TwinCore
import TwinServer

@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct ServiceTests {
    @Test func listsTheDefaultPlantAndPages() async throws {
        let d = try await RunningDaemon.start()
        try await d.withTwin { twin in
            let all = try await twin.listDevices(Twin_V1_ListDevicesRequest())
            #expect(all.devices.count == 12)
            #expect(all.totalCount == 12)
            #expect(all.devices.map(\.id) == all.devices.map(\.id).sorted())
            #expect(all.devices.allSatisfy { $0.simulated && !$0.sensors.isEmpty })

            var request = Twin_V1_ListDevicesRequest()
            request.pageSize = 5
            var ids: [String] = []
            repeat {
                let page = try await twin.listDevices(request)
                ids += page.devices.map(\.id)
                request.pageToken = page.nextPageToken
            } while !request.pageToken.isEmpty
            #expect(ids == all.devices.map(\.id))

            var pumps = Twin_V1_ListDevicesRequest()
            pumps.types = ["pump"]
            #expect(try await twin.listDevices(pumps).devices.allSatisfy { $0.type == "pump" })

            var bad = Twin_V1_ListDevicesRequest()
            bad.pageSize = -1
            let message = await expectRPCError(.invalidArgument) { _ = try await twin.listDevices(bad) }
            #expect(message?.contains("page_size") == true)
        }
        try await d.stop()
    }

    @Test func getDeviceNotFoundAndInvalid() async throws {
        let d = try await RunningDaemon.start()
        try await d.withTwin { twin in
            var request = Twin_V1_GetDeviceRequest()
            request.deviceID = "no-such-device"
            let notFound = await expectRPCError(.notFound) { _ = try await twin.getDevice(request) }
            #expect(notFound?.contains("no-such-device") == true)
            let missing = await expectRPCError(.invalidArgument) { _ = try await twin.getDevice(Twin_V1_GetDeviceRequest()) }
            #expect(missing?.contains("device_id is required") == true)
        }
        try await d.stop()
    }

    /// The initial snapshot, the marker, then live changes from the simulator.
    @Test func streamSendsSnapshotThenSyncThenChanges() async throws {
        let d = try await RunningDaemon.start()
        try await d.withTwin { twin in
            // Wait until every device has reported once, via the stream itself.
            var request = Twin_V1_StreamUpdatesRequest()
            request.types = ["pump"]
            request.sensors = ["flow", "vibration"]
            try await twin.streamUpdates(request) { response in
                var snapshotDevices = Set<String>()
                var synced = false
                var liveUpdates = 0
                for try await message in response.messages {
                    switch message.update {
                    case .devices(let batch):
                        for u in batch.updates {
                            #expect(u.snapshot.type == "pump")
                            #expect(Set(u.snapshot.values.map(\.sensor)).isSubset(of: ["flow", "vibration"]))
                            if synced { liveUpdates += 1 } else { snapshotDevices.insert(u.snapshot.deviceID) }
                        }
                    case .syncComplete(let sync):
                        #expect(Int(sync.deviceCount) == snapshotDevices.count)
                        synced = true
                    default:
                        break
                    }
                    if liveUpdates >= 6 { break }
                }
                #expect(synced)
                #expect(liveUpdates >= 6)
            }
        }
        try await d.stop()
    }

    @Test func streamRejectsUnknownDeviceAndBadHeartbeat() async throws {
        let d = try await RunningDaemon.start()
        try await d.withTwin { twin in
            var request = Twin_V1_StreamUpdatesRequest()
            request.deviceIds = ["ghost"]
            let unknown = await expectRPCError(.notFound) {
                try await twin.streamUpdates(request) { response in for try await _ in response.messages {} }
            }
            #expect(unknown?.contains("ghost") == true)
            var beat = Twin_V1_StreamUpdatesRequest()
            beat.heartbeatInterval = .init(seconds: 0, nanos: 1000)
            let bad = await expectRPCError(.invalidArgument) {
                try await twin.streamUpdates(beat) { response in for try await _ in response.messages {} }
            }
            #expect(bad?.contains("heartbeat_interval") == true)
        }
        try await d.stop()
    }

    /// A quiet plant still sends heartbeats, so a client can tell it from a dead link.
    @Test func quietPlantSendsHeartbeats() async throws {
        let d = try await RunningDaemon.start { $0.simulator = false }
        try await d.withTwin { twin in
            var request = Twin_V1_StreamUpdatesRequest()
            request.heartbeatInterval = .init(seconds: 1, nanos: 0)
            try await twin.streamUpdates(request) { response in
                var beats = 0
                for try await message in response.messages {
                    if case .heartbeat = message.update { beats += 1 }
                    if beats == 2 { break }
                }
                #expect(beats == 2)
            }
        }
        try await d.stop()
    }

    /// Ingest: accepted batches reach the live state and the stream; a bad batch is rejected whole
    /// with INVALID_ARGUMENT naming the batch, the reading and why.
    @Test func ingestGoodAndBad() async throws {
        // The state asserted is the values' (warning), not the clock's: a loaded CI machine once
        // took more than the 15 s a device may be silent between the ingest and the GetDevice.
        let d = try await RunningDaemon.start {
            $0.simulator = false
            $0.plant.offlineAfter = 10 * Time.minute
        }
        try await d.withTwin { twin in
            var upsert = Twin_V1_UpsertDeviceRequest()
            upsert.device = gatewayDevice("press-1")
            let created = try await twin.upsertDevice(upsert)
            #expect(created.created)
            #expect(!created.device.simulated)

            let now = Time.now()
            let good = StreamingClientRequest<Twin_V1_IngestRequest> { writer in
                for i in 0..<3 {
                    var batch = Twin_V1_IngestRequest()
                    batch.readings = (0..<100).map { Twin_V1_Reading("press-1", $0 % 2 == 0 ? "force" : "oil_temp", now - Nanos(300 - i * 100 - $0) * Time.millisecond, Double(i * 100 + $0)) }
                    try await writer.write(batch)
                }
            }
            let response = try await twin.ingest(request: good)
            #expect(response.acceptedReadings == 300)
            #expect(response.acceptedBatches == 3)

            var get = Twin_V1_GetDeviceRequest()
            get.deviceID = "press-1"
            let device = try await twin.getDevice(get)
            #expect(device.snapshot.values.first { $0.sensor == "force" }?.value == 298)
            #expect(device.snapshot.state == .warning)  // oil_temp 299 °C is outside 10–70

            let bad = StreamingClientRequest<Twin_V1_IngestRequest> { writer in
                var first = Twin_V1_IngestRequest()
                first.readings = [Twin_V1_Reading("press-1", "force", now, 1)]
                try await writer.write(first)
                var second = Twin_V1_IngestRequest()
                second.readings = [Twin_V1_Reading("press-1", "force", now, 2), Twin_V1_Reading("press-1", "force", now, .nan)]
                try await writer.write(second)
            }
            let message = await expectRPCError(.invalidArgument) { _ = try await twin.ingest(request: bad) }
            #expect(message?.contains("batch 1, reading 1") == true)
            #expect(message?.contains("not a finite number") == true)
            // The first batch was accepted, the second not at all.
            let after = try await twin.getDevice(get)
            #expect(after.snapshot.values.first { $0.sensor == "force" }?.value == 1)

            let unknown = StreamingClientRequest<Twin_V1_IngestRequest> { writer in
                var batch = Twin_V1_IngestRequest()
                batch.readings = [Twin_V1_Reading("press-1", "rpm", now, 1)]
                try await writer.write(batch)
            }
            let unknownMessage = await expectRPCError(.invalidArgument) { _ = try await twin.ingest(request: unknown) }
            #expect(unknownMessage?.contains("has no sensor 'rpm'") == true)
        }
        try await d.stop()
    }

    @Test func simulatedDeviceSensorsAreFixed() async throws {
        let d = try await RunningDaemon.start()
        try await d.withTwin { twin in
            var upsert = Twin_V1_UpsertDeviceRequest()
            var device = gatewayDevice("pump-001")
            device.type = "pump"
            upsert.device = device
            let message = await expectRPCError(.failedPrecondition) { _ = try await twin.upsertDevice(upsert) }
            #expect(message?.contains("simulated") == true)
            upsert.device = Twin_V1_Device()
            let invalid = await expectRPCError(.invalidArgument) { _ = try await twin.upsertDevice(upsert) }
            #expect(invalid?.contains("device id is required") == true)
        }
        try await d.stop()
    }

    @Test func healthCheckKnowsTheServices() async throws {
        let d = try await RunningDaemon.start()
        try await d.connect { client in
            let health = Grpc_Health_V1_Health.Client(wrapping: client)
            let server = try await health.check(Grpc_Health_V1_HealthCheckRequest()).status
            #expect(server == .serving)
            var request = Grpc_Health_V1_HealthCheckRequest()
            request.service = "twin.v1.TwinService"
            let service = try await health.check(request).status
            #expect(service == .serving)
            request.service = "nope.Service"
            _ = await expectRPCError(.notFound) { _ = try await health.check(request) }
        }
        try await d.stop()
    }

    /// SIGTERM semantics: open streams end with UNAVAILABLE, health watchers see NOT_SERVING, and
    /// the daemon stops without waiting for its clients: both clients here keep their calls open
    /// for ever, so a shutdown that waited on them would never return (the time limit catches it;
    /// how fast shutdown is belongs to a benchmark, not to a test on a loaded machine).
    @Test(.timeLimit(.minutes(1))) func gracefulShutdownEndsStreamsWithUnavailable() async throws {
        let d = try await RunningDaemon.start()
        let (synced, syncedContinuation) = AsyncStream.makeStream(of: Void.self)
        let (watching, watchingContinuation) = AsyncStream.makeStream(of: Void.self)
        async let streamOutcome: RPCError.Code? = d.connect { client in
            do {
                try await Twin_V1_TwinService.Client(wrapping: client).streamUpdates(Twin_V1_StreamUpdatesRequest()) { response in
                    for try await message in response.messages {
                        if case .syncComplete = message.update { syncedContinuation.yield() }
                    }
                }
                return nil
            } catch let error as RPCError {
                return error.code
            }
        }
        async let watchStatuses: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = d.connect { client in
            try await Grpc_Health_V1_Health.Client(wrapping: client).watch(Grpc_Health_V1_HealthCheckRequest()) { response in
                var seen: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = []
                for try await message in response.messages {
                    seen.append(message.status)
                    watchingContinuation.yield()
                }
                return seen
            }
        }
        for await _ in synced { break }
        for await _ in watching { break }
        _ = try await d.stop()
        #expect(try await streamOutcome == .unavailable)
        #expect(try await watchStatuses == [.serving, .notServing])
    }
}

/// A YAML fleet file describes a mixed plant: simulated machines by type, ingest-fed ones by sensors.
@Suite(.tearsDownDaemons) struct FleetFileTests {
    @Test func yamlFleetMixesSimulatedAndIngestFedDevices() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-\(UUID().uuidString).yaml").path
        try """
            devices:
              - id: pump-101
                type: pump
                line: line-1
              - id: press-1
                type: press
                simulate: false
                sensors:
                  - {name: force, unit: kN, nominal_min: 0, nominal_max: 800, alarm_high: 950}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let d = try await RunningDaemon.start { $0.fleetFile = path }
        try await d.withTwin { twin in
            let devices = try await twin.listDevices(Twin_V1_ListDevicesRequest()).devices
            #expect(devices.map(\.id) == ["press-1", "pump-101"])
            #expect(devices[0].simulated == false)
            #expect(devices[0].sensors.first?.alarmHigh == 950)
            #expect(devices[1].simulated && devices[1].sensors.count == 7)
        }
        try await d.stop()
    }

    @Test func badFleetFileStopsStartupNamingTheDevice() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-\(UUID().uuidString).yaml").path
        try "devices:\n  - id: x-1\n    type: press\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try await RunningDaemon.start { $0.fleetFile = path }
            Issue.record("a press with no sensors cannot be simulated; startup should fail")
        } catch let error as TwinError {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("x-1"))
            #expect(error.message.contains("no type 'press'"))
        }
    }

    /// A client that holds a call open (past the shutdown grace, unless something ends it
    /// sooner) has it cut, and the shutdown ends, successfully, in bounded time.
    @Test func aCallHeldOpenPastTheGraceIsCutAndShutdownSucceeds() async throws {
        let d = try await RunningDaemon.start { $0.simulator = false }
        let (opened, open) = AsyncStream.makeStream(of: Void.self)
        let held = Task {
            try await d.withTwin { twin in
                let request = StreamingClientRequest<Twin_V1_IngestRequest> { writer in
                    try await writer.write(Twin_V1_IngestRequest())
                    open.yield()
                    // Never finishes sending: only the daemon's end stops this call.
                    try await Task.sleep(for: .seconds(3600))
                }
                _ = try await twin.ingest(request: request)
            }
        }
        for await _ in opened { break }
        let took = try await d.stop()
        // Bounded; not asserted to last the whole grace: a loaded run may end the call sooner.
        #expect(took < .seconds(30))
        await #expect(throws: (any Error).self) { try await held.value }
        held.cancel()
    }
}
