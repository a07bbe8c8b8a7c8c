import GRPCNIOTransportHTTP2Posix
import Proto
import SwiftProtobuf
import Testing
import TwinCore
@testable import TwinEngines
@testable import TwinServer

/// The shared wire encoding must decode to exactly the message built the ordinary way.
@Suite struct EncodingTests {
    let snapshots = [
        DeviceSnapshot(index: 0, deviceID: "pump-1", type: "pump", state: .alarm, time: 1_790_000_000_123_456_789,
                       values: [.init(sensor: 0, value: 12.5, time: 1_790_000_000_123_456_789), .init(sensor: 1, value: -3, time: 5)],
                       version: 7, sensorNames: ["flow", "temp"]),
        DeviceSnapshot(index: 3, deviceID: "fan-9", type: "fan", state: .running, time: 0, values: [], version: 1, sensorNames: ["speed"]),
    ]

    @Test func encodedEqualsOrdinary() throws {
        let sensors = Set<String>()
        let live = LivePlant()
        try live.upsert(Device(id: "pump-1", type: "pump", sensors: [
            SensorSpec(name: "flow", unit: "", nominalMin: 0, nominalMax: 100), SensorSpec(name: "temp", unit: "", nominalMin: 0, nominalMax: 100),
        ]), now: 0)
        let encoder = SnapshotEncoder()
        encoder.refresh(snapshots)
        let encoded = encoder.devicesMessages([(0, 0), (3, 300)], sensors: [], live: live, sentAt: 42)
        #expect(encoded.count == 1)
        let decoded = try Twin_V1_StreamUpdatesResponse(serializedBytes: encoded[0].bytes)

        var expected = Twin_V1_StreamUpdatesResponse()
        var batch = Twin_V1_DeviceUpdates()
        for (s, skipped) in [(snapshots[0], UInt64(0)), (snapshots[1], 300)] {
            var u = Twin_V1_DeviceUpdate()
            u.snapshot = s.proto(only: sensors)
            u.skipped = skipped
            batch.updates.append(u)
        }
        expected.devices = batch
        expected.sentAt = .init(nanos: 42)
        #expect(decoded == expected)
    }

    @Test func largeBatchesSplitUnderTheSizeCap() throws {
        let part = [UInt8](repeating: 7, count: 300_000)
        let messages = SnapshotEncoder.messages(Array(repeating: part, count: 8), sentAt: 1)
        #expect(messages.count == 3)
        #expect(messages.allSatisfy { $0.bytes.count <= SnapshotEncoder.maxMessageBytes + 64 })
    }

    /// The NIO transport gets the shared buffer itself (no copy per subscriber); any other
    /// transport a copy with the same bytes. Fails if a grpc-swift upgrade changes the layout
    /// the sharing relies on, instead of silently copying again.
    @Test func serializerSharesTheBufferWithTheNIOTransport() throws {
        #expect(EncodedMessageSerializer.sharesBuffers)
        let message = EncodedMessage(bytes: Array(0..<200).map { UInt8($0) })
        let shared: GRPCNIOTransportBytes = try EncodedMessageSerializer().serialize(message)
        let copied: [UInt8] = try EncodedMessageSerializer().serialize(message)
        #expect(copied == message.bytes)
        #expect(shared.withUnsafeBytes { Array($0) } == message.bytes)
        let sameStorage = shared.withUnsafeBytes { a in message.buffer.withUnsafeReadableBytes { b in a.baseAddress == b.baseAddress } }
        #expect(sameStorage)
    }
}
