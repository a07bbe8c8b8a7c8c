import GRPCCore
import GRPCProtobuf
import Proto
import SwiftProtobuf
import TwinCore
import TwinEngines

/// One `IngestRequest` as the ingest path needs it: readings with their names, time and value.
struct IngestBatch: Sendable {
    var readings: [WireReading] = []
    var importHistory = false

    init(readings: [WireReading] = [], importHistory: Bool = false) {
        self.readings = readings
        self.importHistory = importHistory
    }

    init(_ proto: Twin_V1_IngestRequest) {
        readings = proto.readings.map { WireReading(readingDeviceID: $0.deviceID, readingSensor: $0.sensor, readingTime: $0.readingTime, readingValue: $0.value) }
        importHistory = proto.importHistory
    }
}

struct WireReading: ReadingConvertible, Sendable, Equatable {
    var readingDeviceID: String
    var readingSensor: String
    /// Out of `TimeBounds` reads as `Nanos.min`, which `LivePlant.resolve` refuses by index.
    var readingTime: Nanos?
    var readingValue: Double
}

/// Reads `IngestRequest`s straight from the wire into `IngestBatch`es.
///
/// SwiftProtobuf's generic decoding built a `Reading` and a `Timestamp` per reading and was about
/// a third of twind's CPU while ingesting. Requests in the shape every protobuf library writes
/// (each field once, known fields, ASCII names) are read here in one pass; anything else (unknown
/// or repeated fields, other wire types, non-ASCII names, a malformed message) goes to
/// SwiftProtobuf, so every request means exactly what the `.proto` says, and a message that does
/// not decode fails the same way as every other method's.
struct IngestBatchDeserializer: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> IngestBatch {
        if let batch = serializedMessageBytes.withUnsafeBytes({ IngestWire.decode($0) }) { return batch }
        do {
            return IngestBatch(try Twin_V1_IngestRequest(serializedBytes: serializedMessageBytes.withUnsafeBytes { Array($0) }))
        } catch {
            throw RPCError(code: .invalidArgument, message: "Can't deserialize to message of type \(Twin_V1_IngestRequest.self).", cause: error)
        }
    }
}

enum IngestWire {
    /// The batch, or nil when the message is not in the plain shape (see `IngestBatchDeserializer`).
    static func decode(_ raw: UnsafeRawBufferPointer) -> IngestBatch? {
        var batch = IngestBatch()
        var cursor = WireCursor(raw, 0, raw.count)
        var sawImport = false
        // About 24 bytes a reading, and never room for more than a batch may hold (a 16 MiB
        // request of garbage must not reserve for 700,000 readings before it is refused).
        batch.readings.reserveCapacity(min(raw.count / 24, LivePlant.Options().maxBatch))
        while cursor.more {
            guard let tag = cursor.varint() else { return nil }
            switch tag {
            case 1 << 3 | 2:
                guard let (start, end) = cursor.lengthDelimited(), let reading = self.reading(raw, start, end) else { return nil }
                batch.readings.append(reading)
            case 2 << 3 | 0:
                guard !sawImport, let flag = cursor.varint() else { return nil }
                sawImport = true
                batch.importHistory = flag != 0
            default:
                return nil
            }
        }
        return batch
    }

    static func reading(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> WireReading? {
        var cursor = WireCursor(raw, start, end)
        var device: String?
        var sensor: String?
        var time: Nanos?
        var value: Double?
        while cursor.more {
            guard let tag = cursor.varint() else { return nil }
            switch tag {
            case 1 << 3 | 2:
                guard device == nil, let (s, e) = cursor.lengthDelimited(), let text = ascii(raw, s, e) else { return nil }
                device = text
            case 2 << 3 | 2:
                guard sensor == nil, let (s, e) = cursor.lengthDelimited(), let text = ascii(raw, s, e) else { return nil }
                sensor = text
            case 3 << 3 | 2:
                guard time == nil, let (s, e) = cursor.lengthDelimited(), let t = timestamp(raw, s, e) else { return nil }
                time = t
            case 4 << 3 | 1:
                guard value == nil, let bits = cursor.fixed64() else { return nil }
                value = Double(bitPattern: bits)
            default:
                return nil
            }
        }
        return WireReading(readingDeviceID: device ?? "", readingSensor: sensor ?? "", readingTime: time, readingValue: value ?? 0)
    }

    /// A `Timestamp` (seconds 1, nanos 2, each at most once) as checked nanoseconds; out of
    /// `TimeBounds` it is `Nanos.min`, as `Twin_V1_Reading.readingTime` makes it.
    static func timestamp(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Nanos? {
        var cursor = WireCursor(raw, start, end)
        var seconds: Int64?
        var nanos: Int32?
        while cursor.more {
            guard let tag = cursor.varint() else { return nil }
            switch tag {
            case 1 << 3 | 0:
                guard seconds == nil, let v = cursor.varint() else { return nil }
                seconds = Int64(bitPattern: v)
            case 2 << 3 | 0:
                guard nanos == nil, let v = cursor.varint() else { return nil }
                nanos = Int32(truncatingIfNeeded: v)
            default:
                return nil
            }
        }
        return (try? TimeBounds.instant(seconds: seconds ?? 0, nanos: nanos ?? 0, field: "time")) ?? .min
    }

    /// The bytes as a String when they are all ASCII (always valid UTF-8); nil otherwise.
    @inline(__always)
    static func ascii(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> String? {
        let bytes = UnsafeRawBufferPointer(rebasing: raw[start..<end])
        for b in bytes where b >= 0x80 { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// `TwinService.Ingest`, registered over the generated handler so that requests are read by
/// `IngestBatchDeserializer`. Clients see the ordinary method.
struct IngestWireService: RegistrableRPCService {
    let service: TwinService

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: Twin_V1_TwinService.Method.Ingest.descriptor, deserializer: IngestBatchDeserializer(),
            serializer: ProtobufSerializer<Twin_V1_IngestResponse>()
        ) { request, context in
            StreamingServerResponse(single: ServerResponse(message: try await service.ingest(batches: request.messages), metadata: [:]))
        }
    }
}
