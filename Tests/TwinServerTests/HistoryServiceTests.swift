import Foundation
import GRPCCore
import Proto
import SwiftProtobuf
import Testing
import TwinClient
import TwinCore
import TwinServer

/// GetHistory over gRPC: raw and downsampled answers from ingested readings, and clear errors.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct HistoryServiceTests {
    @Test func rawAndDownsampledHistoryOfIngestedReadings() async throws {
        let d = try await RunningDaemon.start { $0.simulator = false }
        let base = (Time.now() / Time.hour - 2) * Time.hour  // two whole hours ago
        try await d.withTwin { twin in
            var upsert = Twin_V1_UpsertDeviceRequest()
            upsert.device = gatewayDevice("press-1")
            _ = try await twin.upsertDevice(upsert)
            // One reading a second for an hour: force = minute number, so buckets are easy to check.
            var request = Twin_V1_IngestRequest()
            request.readings = (0..<3_600).map { Twin_V1_Reading("press-1", "force", base + Nanos($0) * Time.second, Double($0 / 60)) }
            let message = request
            _ = try await twin.ingest(request: StreamingClientRequest { try await $0.write(message) })

            var raw = Twin_V1_GetHistoryRequest()
            raw.deviceID = "press-1"
            raw.sensors = ["force"]
            raw.from = ts(base + 10 * Time.second)
            raw.to = ts(base + 20 * Time.second)
            let points = try await twin.getHistory(raw).series[0].points
            #expect(points.map(\.value) == Array(repeating: 0, count: 10))
            #expect(points.first?.time.seconds == (base + 10 * Time.second) / Time.second)

            var buckets = Twin_V1_GetHistoryRequest()
            buckets.deviceID = "press-1"
            buckets.from = ts(base)
            buckets.to = ts(base + Time.hour)
            buckets.maxPoints = 6
            buckets.aggregate = .max
            let response = try await twin.getHistory(buckets)
            #expect(response.step.seconds == 600)
            #expect(response.series.map(\.sensor) == ["force", "oil_temp"])
            let force = response.series[0]
            #expect(force.unit == "kN")
            #expect(force.points.count == 6)
            #expect(force.points.map(\.value) == [9, 19, 29, 39, 49, 59])
            #expect(force.points.map(\.count) == Array(repeating: 600, count: 6))
            #expect(force.points[0].min == 0 && force.points[0].mean == 4.5 && force.points[0].last == 9)
            #expect(response.series[1].points.isEmpty)

            // The columnar form: the same numbers in packed columns, no points.
            raw.columnar = true
            let columns = try await twin.getHistory(raw).series[0]
            #expect(columns.points.isEmpty)
            #expect(columns.columns.timeDeltas == [base + 10 * Time.second] + Array(repeating: Time.second, count: 9))
            #expect(columns.columns.values == Array(repeating: 0, count: 10) && columns.columns.min.isEmpty)
            buckets.columnar = true
            let packed = try await twin.getHistory(buckets).series[0].columns
            #expect(packed.values == force.points.map(\.value) && packed.mean == force.points.map(\.mean) && packed.count == force.points.map(\.count))
            #expect(packed.timeDeltas == [base] + Array(repeating: 10 * Time.minute, count: 5))
            // An hour of raw readings: smaller on the wire than one message per point.
            var hour = Twin_V1_GetHistoryRequest()
            hour.deviceID = "press-1"
            hour.sensors = ["force"]
            hour.from = ts(base)
            hour.to = ts(base + Time.hour)
            let perPoint: [UInt8] = try await twin.getHistory(hour).serializedBytes()
            hour.columnar = true
            let packedHour = try await twin.getHistory(hour)
            let packedBytes: [UInt8] = try packedHour.serializedBytes()
            #expect(packedHour.series[0].columns.timeDeltas.count == 3_600)
            #expect(Double(packedBytes.count) < 0.75 * Double(perPoint.count), "\(packedBytes.count) vs \(perPoint.count)")
        }
        try await d.stop()
    }

    @Test func badRequestsGetClearErrors() async throws {
        let d = try await RunningDaemon.start()
        try await d.withTwin { twin in
            var request = Twin_V1_GetHistoryRequest()
            #expect(await expectRPCError(.invalidArgument) { _ = try await twin.getHistory(request) }?.contains("device_id is required") == true)
            request.deviceID = "pump-999"
            #expect(await expectRPCError(.notFound) { _ = try await twin.getHistory(request) }?.contains("pump-999") == true)
            request.deviceID = "pump-001"
            request.sensors = ["rpm"]
            let unknown = await expectRPCError(.invalidArgument) { _ = try await twin.getHistory(request) }
            #expect(unknown?.contains("no sensor 'rpm'") == true && unknown?.contains("bearing_temp") == true)
            request.sensors = []
            request.from = ts(Time.now())
            request.to = ts(Time.now() - Time.hour)
            #expect(await expectRPCError(.invalidArgument) { _ = try await twin.getHistory(request) }?.contains("must be before") == true)
            request.from = ts(Time.now() - 365 * Time.day)
            request.to = ts(Time.now())
            request.step = .init(seconds: 1)
            #expect(await expectRPCError(.invalidArgument) { _ = try await twin.getHistory(request) }?.contains("buckets") == true)
        }
        try await d.stop()
    }
}

func ts(_ nanos: Nanos) -> Google_Protobuf_Timestamp {
    Google_Protobuf_Timestamp(seconds: nanos / Time.second, nanos: Int32(nanos % Time.second))
}
