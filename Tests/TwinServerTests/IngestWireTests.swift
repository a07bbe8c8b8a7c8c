import GRPCCore
import Proto
import SwiftProtobuf
import Testing
import TwinCore
@testable import TwinServer

/// `Ingest` requests are read by hand (`IngestWire`) with SwiftProtobuf behind it for any other
/// shape: whatever a client sends must mean exactly what SwiftProtobuf would have made of it.
@Suite struct IngestWireTests {
    static let names = ["", "a", "pump-001", "bearing_temp", "ünïcode ✓", String(repeating: "x", count: 300), "nul\u{0}inside"]
    static let values: [Double] = [0, -0.0, 1, -1, .nan, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 21.37]
    static let seconds: [Int64] = [0, 1, -1, 1_790_000_000, -9_000_000_000, .max, .min, 7_258_118_400, 7_258_118_399]
    static let nanos: [Int32] = [0, 1, -1, 999_999_999, 1_000_000_000, .max, .min]

    static func pick<T>(_ list: [T], _ rng: inout SplitMix64) -> T { list[Int(rng.next() % UInt64(list.count))] }

    static func request(_ rng: inout SplitMix64) -> Twin_V1_IngestRequest {
        var request = Twin_V1_IngestRequest()
        // Most requests name things in ASCII, as plants do; one in five anything at all.
        let names = rng.next() % 5 == 0 ? Self.names : Self.names.filter { $0.utf8.allSatisfy { $0 < 0x80 } }
        for _ in 0..<Int(rng.next() % 40) {
            var r = Twin_V1_Reading()
            if rng.next() % 8 != 0 { r.deviceID = pick(names, &rng) }
            if rng.next() % 8 != 0 { r.sensor = pick(names, &rng) }
            if rng.next() % 6 != 0 {
                r.time.seconds = rng.next() % 3 == 0 ? pick(seconds, &rng) : 1_790_000_000 + Int64(rng.next() % 100_000)
                r.time.nanos = rng.next() % 3 == 0 ? pick(nanos, &rng) : Int32(rng.next() % 1_000_000_000)
            }
            r.value = rng.next() % 3 == 0 ? pick(values, &rng) : Double(Int(rng.next() % 100_000)) / 100
            request.readings.append(r)
        }
        request.importHistory = rng.next() % 4 == 0
        return request
    }

    /// What SwiftProtobuf makes of the bytes (nil: it refuses them).
    static func reference(_ bytes: [UInt8]) -> IngestBatch? {
        (try? Twin_V1_IngestRequest(serializedBytes: bytes)).map(IngestBatch.init)
    }

    static func same(_ a: IngestBatch?, _ b: IngestBatch?) -> Bool {
        guard let a, let b else { return a == nil && b == nil }
        guard a.importHistory == b.importHistory, a.readings.count == b.readings.count else { return false }
        for n in 0..<a.readings.count {
            let x = a.readings.entries[n], y = b.readings.entries[n]
            guard a.readings.deviceID(n) == b.readings.deviceID(n), a.readings.sensor(n) == b.readings.sensor(n),
                  x.time == y.time, x.value.bitPattern == y.value.bitPattern else { return false }
        }
        // Each distinct name once, in the order of first use.
        return a.readings.devices == b.readings.devices && a.readings.sensors == b.readings.sensors
    }

    static func read(_ bytes: [UInt8]) -> IngestBatch? { try? IngestBatchDeserializer().deserialize(bytes) }

    @Test func plainRequestsTakeTheFastPathAndMeanWhatSwiftProtobufReads() throws {
        var rng = SplitMix64(seed: 2026)
        var fast = 0
        for _ in 0..<2_000 {
            let bytes: [UInt8] = try Self.request(&rng).serializedBytes()
            let batch = Self.read(bytes)
            #expect(Self.same(batch, Self.reference(bytes)))
            if bytes.withUnsafeBytes({ IngestWire.decode($0) }) != nil { fast += 1 }
        }
        #expect(fast > 1_000)  // names are ASCII in most of them: those never reach SwiftProtobuf
    }

    /// The fuzz tier for this decoder: requests with unknown and repeated fields, other wire types,
    /// truncated, bit-flipped or with bytes inserted: the same answer as SwiftProtobuf, or the
    /// same refusal (INVALID_ARGUMENT, which twind words as REQUEST_INVALID), never a crash.
    @Test func hostileBytesGetTheAnswerSwiftProtobufGives() throws {
        var rng = SplitMix64(seed: 77)
        var refused = 0
        for round in 0..<6_000 {
            var bytes: [UInt8] = try Self.request(&rng).serializedBytes()
            switch round % 6 {
            case 0: bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count + 1))))
            case 1: if !bytes.isEmpty { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 << (rng.next() % 8)) }
            case 2: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(bytes.count + 1)))
            case 3:
                // A field twice, an unknown field, another wire type for a known one.
                let extras: [[UInt8]] = [[0x10, 0x01], [0x18, 0x05], [0x0a, 0x02, 0x08, 0x01], [0x0a, 0x04, 0x0a, 0x02, 0x41, 0x42],
                                         [0x0a, 0x09, 0x21, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f], [0x0a, 0x03, 0x1a, 0x01, 0x08], [0x0d, 1, 2, 3, 4]]
                bytes += Self.pick(extras, &rng)
            case 4: bytes = (0..<Int(rng.next() % 48)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            default: break
            }
            let batch = Self.read(bytes)
            #expect(Self.same(batch, Self.reference(bytes)), "round \(round): \(bytes)")
            if batch == nil {
                refused += 1
                do {
                    _ = try IngestBatchDeserializer().deserialize(bytes)
                } catch let error as RPCError {
                    #expect(error.code == .invalidArgument && error.message.hasPrefix("Can't deserialize"))
                }
            }
        }
        #expect(refused > 100)
    }

    @Test func timesOutOfRangeReadAsRefusableAndRepeatedFieldsFollowTheProto() throws {
        var request = Twin_V1_IngestRequest()
        var r = Twin_V1_Reading()
        r.deviceID = "pump-001"
        r.sensor = "flow"
        r.time.seconds = -9_000_000_000
        r.value = 1.5
        request.readings = [r]
        let batch = try IngestBatchDeserializer().deserialize(try request.serializedBytes() as [UInt8])
        #expect(batch.readings.entries.first?.time == .min)
        // device_id twice: the last one counts (protobuf's rule), through SwiftProtobuf.
        let twice: [UInt8] = try request.serializedBytes() + [0x0a, 0x04, 0x0a, 0x02, 0x41, 0x42]
        let merged = try IngestBatchDeserializer().deserialize(twice)
        #expect(merged.readings.count == 2 && merged.readings.deviceID(1) == "AB")
    }

    /// A request naming thousands of devices (the name table grows many times over) reads
    /// as SwiftProtobuf reads it, each name held once.
    @Test func manyDistinctNamesAreEachHeldOnce() throws {
        var request = Twin_V1_IngestRequest()
        for k in 0..<20_000 {
            var r = Twin_V1_Reading()
            r.deviceID = "device-\(k % 5_000)-" + String(repeating: "n", count: k % 23)
            r.sensor = k % 3 == 0 ? "" : "s\(k % 7)"
            r.time.seconds = 1_790_000_000 + Int64(k)
            r.value = Double(k)
            request.readings.append(r)
        }
        let bytes: [UInt8] = try request.serializedBytes()
        let fast = try #require(bytes.withUnsafeBytes { IngestWire.decode($0) })
        #expect(Self.same(fast, Self.reference(bytes)))
        #expect(Set(fast.readings.devices).count == fast.readings.devices.count)
        #expect(fast.readings.sensors.count == 8)
    }
}
