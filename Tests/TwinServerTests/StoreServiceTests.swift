import Foundation
import GRPCCore
import Proto
import SwiftProtobuf
import Testing
import TwinClient
import TwinCore
import TwinServer

/// health_data.db under the daemon: what is acknowledged survives a restart, stays sealed on disk,
/// and a wrong key is refused.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct StoreServiceTests {
    func event(_ device: String, _ kind: Twin_V1_EventKind, notes: String) -> Twin_V1_RecordEventRequest {
        var request = Twin_V1_RecordEventRequest()
        request.event.deviceID = device
        request.event.kind = kind
        request.event.time = Google_Protobuf_Timestamp(date: Date())
        request.event.component = "bearing"
        request.event.notes = notes
        return request
    }

    @Test func devicesAndEventsSurviveARestartAndStaySealed() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("twind-store-\(UUID().uuidString)").path
        let secretNote = "replaced drive-end bearing SKF-6205 \(UUID().uuidString)"
        let first = try await RunningDaemon.start {
            $0.dataDirectory = directory
            $0.simulator = false
        }
        try await first.withTwin { twin in
            var upsert = Twin_V1_UpsertDeviceRequest()
            upsert.device = gatewayDevice("press-1")
            _ = try await twin.upsertDevice(upsert)
            let recorded = try await twin.recordEvent(event("press-1", .partReplaced, notes: secretNote))
            #expect(!recorded.event.id.isEmpty)
            #expect(recorded.event.source == .operator)
            #expect(recorded.event.recordedBy == "admin", "who recorded it: the user, as the contract says")
        }
        try await first.stop(removing: false)

        // The note is sealed: it is nowhere in the database files in clear.
        for file in try FileManager.default.contentsOfDirectory(atPath: directory) where file.hasPrefix("health_data.db") {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))
            #expect(bytes.range(of: Data("SKF-6205".utf8)) == nil, "\(file) holds the note in clear")
        }

        let second = try await RunningDaemon.start {
            $0.dataDirectory = directory
            $0.simulator = false
        }
        try await second.withTwin { twin in
            #expect(try await twin.listDevices(Twin_V1_ListDevicesRequest()).devices.map(\.id) == ["press-1"])
            var list = Twin_V1_ListEventsRequest()
            list.deviceIds = ["press-1"]
            let events = try await twin.listEvents(list).events
            #expect(events.map(\.notes) == [secretNote])
            #expect(events.first?.kind == .partReplaced)
        }
        try await second.stop(removing: false)

        // Another key: refused, with a message that says so and shows no key material.
        let otherKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        do {
            _ = try await RunningDaemon.start {
                $0.dataDirectory = directory
                $0.simulator = false
                $0.environment = ["TWIND_KEY": otherKey]
            }
            Issue.record("a wrong key must stop startup")
        } catch let error as TwinError {
            #expect(error.message.contains("does not match this data directory"))
            #expect(!error.message.contains(otherKey))
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    @Test func recordEventValidatesAndListEventsFilters() async throws {
        let d = try await RunningDaemon.start { $0.simulator = false }
        try await d.withTwin { twin in
            var upsert = Twin_V1_UpsertDeviceRequest()
            upsert.device = gatewayDevice("press-2")
            _ = try await twin.upsertDevice(upsert)
            let unknown = await expectRPCError(.notFound) { _ = try await twin.recordEvent(event("ghost", .repair, notes: "")) }
            #expect(unknown?.contains("ghost") == true)
            let noKind = await expectRPCError(.invalidArgument) { _ = try await twin.recordEvent(event("press-2", .unspecified, notes: "")) }
            #expect(noKind?.contains("event.kind is required") == true)
            var future = event("press-2", .failure, notes: "")
            future.event.time = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(86_400))
            _ = await expectRPCError(.invalidArgument) { _ = try await twin.recordEvent(future) }

            for (kind, note) in [(Twin_V1_EventKind.inspection, "a"), (.failure, "b"), (.repair, "c")] {
                _ = try await twin.recordEvent(event("press-2", kind, notes: note))
            }
            var all = Twin_V1_ListEventsRequest()
            all.deviceIds = ["press-2"]
            #expect(try await twin.listEvents(all).events.map(\.notes) == ["c", "b", "a"])  // newest first
            var failures = all
            failures.kinds = [.failure]
            #expect(try await twin.listEvents(failures).events.map(\.notes) == ["b"])
            var paged = all
            paged.pageSize = 2
            let page1 = try await twin.listEvents(paged)
            paged.pageToken = page1.nextPageToken
            let page2 = try await twin.listEvents(paged)
            #expect(page1.events.map(\.notes) + page2.events.map(\.notes) == ["c", "b", "a"])
        }
        try await d.stop()
    }

    /// Simulator ground truth lands in the log (the simulator's own tests cover what a repair does).
    @Test func groundTruthIsStoredAndOperatorsCanRecordARepair() async throws {
        let d = try await RunningDaemon.start {
            $0.backfill = 3 * Time.day
            $0.interval = Time.minute
        }
        try await d.withTwin { twin in
            // Backfill is start-up work: done before twind serves, so its ground truth is there.
            var onsets = Twin_V1_ListEventsRequest()
            onsets.kinds = [.faultOnset]
            let events = try await twin.listEvents(onsets).events
            #expect(!events.isEmpty)
            #expect(events.allSatisfy { $0.source == .simulator && !$0.fault.isEmpty })
            // Machine faults carry the time they would fail at (sensor faults do not fail the machine).
            #expect(events.contains { $0.hasExpectedFailureAt })
            let repaired = try await twin.recordEvent(event(events[0].deviceID, .repair, notes: "fixed"))
            #expect(repaired.event.kind == .repair)
        }
        try await d.stop()
    }
}
