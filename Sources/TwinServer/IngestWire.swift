import GRPCCore
import GRPCProtobuf
import Proto
import SwiftProtobuf
import TwinCore
import TwinEngines

/// One `IngestRequest` as the ingest path needs it: readings with their names interned, time
/// and value.
struct IngestBatch: Sendable, Equatable {
    var readings = NamedReadings()
    var importHistory = false

    init(readings: NamedReadings = NamedReadings(), importHistory: Bool = false) {
        self.readings = readings
        self.importHistory = importHistory
    }

    init(_ proto: Twin_V1_IngestRequest) {
        readings = NamedReadings(proto.readings)
        importHistory = proto.importHistory
    }
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
        var entries: [NamedReadings.Entry] = []
        var devices = NameTable(), sensors = NameTable()
        var cursor = WireCursor(raw, 0, raw.count)
        var sawImport = false, importHistory = false
        // About 24 bytes a reading, and never room for more than a batch may hold (a 16 MiB
        // request of garbage must not reserve for 700,000 readings before it is refused).
        entries.reserveCapacity(min(raw.count / 24, LivePlant.Options().maxBatch))
        while cursor.more {
            guard let tag = cursor.varint() else { return nil }
            switch tag {
            case 1 << 3 | 2:
                guard let (start, end) = cursor.lengthDelimited(), let entry = reading(raw, start, end, &devices, &sensors) else { return nil }
                entries.append(entry)
            case 2 << 3 | 0:
                guard !sawImport, let flag = cursor.varint() else { return nil }
                sawImport = true
                importHistory = flag != 0
            default:
                return nil
            }
        }
        return IngestBatch(readings: NamedReadings(devices: devices.names, sensors: sensors.names, entries: entries), importHistory: importHistory)
    }

    static func reading(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int, _ devices: inout NameTable, _ sensors: inout NameTable) -> NamedReadings.Entry? {
        var cursor = WireCursor(raw, start, end)
        var device: Int32?
        var sensor: Int32?
        var time: Nanos?
        var value: Double?
        while cursor.more {
            guard let tag = cursor.varint() else { return nil }
            switch tag {
            case 1 << 3 | 2:
                guard device == nil, let (s, e) = cursor.lengthDelimited(), let slot = devices.slot(raw, s, e) else { return nil }
                device = slot
            case 2 << 3 | 2:
                guard sensor == nil, let (s, e) = cursor.lengthDelimited(), let slot = sensors.slot(raw, s, e) else { return nil }
                sensor = slot
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
        // A missing name is the empty one, as protobuf reads it.
        guard let device = device ?? devices.slot(raw, 0, 0), let sensor = sensor ?? sensors.slot(raw, 0, 0) else { return nil }
        return NamedReadings.Entry(device: device, sensor: sensor, time: time, value: value ?? 0)
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

    /// The distinct names of one request, found by their bytes: a name seen before costs a hash
    /// of its bytes and a comparison, not a String. Open addressing over a table at most half
    /// full. The hash is seeded per process, and a request whose names collide far more than
    /// chance allows (crafted to) is handed to SwiftProtobuf instead, whose dictionaries are
    /// built for that: the work here stays linear in the request.
    struct NameTable {
        private(set) var names: [String] = []
        private var spans: [(start: Int, end: Int)] = []
        private var hashes: [UInt64] = []
        private var table = [Int32](repeating: -1, count: 64)
        private var lookups = 0, probes = 0
        /// The last name found (its span and slot): a request that sends a device's readings
        /// together, or one sensor name throughout, finds it by one comparison.
        private var last: (start: Int, end: Int, slot: Int32) = (0, 0, -1)

        static let seed = UInt64.random(in: .min ... .max)

        /// The slot of the name in `raw[start..<end]`; nil when it is not ASCII or the table is
        /// being flooded with collisions.
        @inline(__always)
        mutating func slot(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Int32? {
            if last.slot >= 0, last.end - last.start == end - start, Self.same(raw, last.start, start, end - start) {
                return last.slot
            }
            guard let found = lookUp(raw, start, end) else { return nil }
            last = (start, end, found)
            return found
        }

        @inline(__always)
        private mutating func lookUp(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Int32? {
            var h = Self.seed ^ UInt64(end - start) &* 0x9E37_79B9_7F4A_7C15
            var high: UInt64 = 0
            var i = start
            while i + 8 <= end {
                let w = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                high |= w
                h = (h ^ w) &* 0xBF58_476D_1CE4_E5B9
                h ^= h >> 31
                i += 8
            }
            if i < end {
                var w: UInt64 = 0, shift: UInt64 = 0
                while i < end {
                    w |= UInt64(raw[i]) << shift
                    shift += 8
                    i += 1
                }
                high |= w
                h = (h ^ w) &* 0x94D0_49BB_1331_11EB
                h ^= h >> 29
            }
            guard high & 0x8080_8080_8080_8080 == 0 else { return nil }
            h = (h ^ (h >> 32)) &* 0x9E37_79B9_7F4A_7C15
            let mask = table.count - 1
            var at = Int(truncatingIfNeeded: h >> 32) & mask
            lookups += 1
            while true {
                probes += 1
                let found = table[at]
                if found < 0 { break }
                let known = spans[Int(found)]
                if hashes[Int(found)] == h && known.end - known.start == end - start
                    && Self.same(raw, known.start, start, end - start) {
                    return found
                }
                at = (at + 1) & mask
            }
            guard probes <= 4 * lookups + 1024 else { return nil }
            let made = Int32(names.count)
            names.append(String(decoding: UnsafeRawBufferPointer(rebasing: raw[start..<end]), as: UTF8.self))
            spans.append((start, end))
            hashes.append(h)
            table[at] = made
            if names.count * 2 > table.count { grow() }
            return made
        }

        @inline(__always)
        static func same(_ raw: UnsafeRawBufferPointer, _ a: Int, _ b: Int, _ count: Int) -> Bool {
            var i = 0
            while i + 8 <= count {
                if raw.loadUnaligned(fromByteOffset: a + i, as: UInt64.self) != raw.loadUnaligned(fromByteOffset: b + i, as: UInt64.self) { return false }
                i += 8
            }
            while i < count {
                if raw[a + i] != raw[b + i] { return false }
                i += 1
            }
            return true
        }

        /// Doubles the table; slots are placed again by their names' hashes.
        private mutating func grow() {
            table = [Int32](repeating: -1, count: table.count * 2)
            let mask = table.count - 1
            for (slot, h) in hashes.enumerated() {
                var at = Int(truncatingIfNeeded: h >> 32) & mask
                while table[at] >= 0 { at = (at + 1) & mask }
                table[at] = Int32(slot)
            }
        }
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

/// For `twin-bench wire`: an `IngestRequest` read as twind reads it (`IngestWire`), or by
/// SwiftProtobuf (the baseline); returns the readings read.
@_spi(Benchmarks)
public enum IngestDecodeBenchmark {
    public static func decode(_ bytes: [UInt8], baseline: Bool = false) throws -> Int {
        if baseline { return try Twin_V1_IngestRequest(serializedBytes: bytes).readings.count }
        return bytes.withUnsafeBytes { IngestWire.decode($0)?.readings.count ?? -1 }
    }
}
