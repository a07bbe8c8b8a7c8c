import Foundation
import TwinCore
import SwiftProtobuf

/// The generator every hostile request is made from again by its seed.
public typealias SeededGenerator = SplitMix64

/// Builds well-formed but hostile protobuf messages (wire bytes) for any message of a
/// `Contract`: extreme times and durations, empty/huge/odd strings, out-of-range numbers,
/// unknown enum values, NaN/±Inf, huge repeated fields; and now and then a message that is not
/// well-formed at all (truncated, invalid UTF-8, random bytes).
public struct HostileMessages {
    public let contract: Contract
    /// Strings worth trying beside the hostile ones (existing device ids, sensor names...), so
    /// that requests get past "not found" and reach deeper checks.
    public var hints: [String]
    var rng: SeededGenerator

    public init(contract: Contract, seed: UInt64, hints: [String] = []) {
        self.contract = contract
        self.hints = hints
        rng = SeededGenerator(seed: seed)
    }

    /// At most this many bytes in one generated message (below the default 4 MiB limit, so most
    /// requests reach the handlers; a few go beyond it on purpose).
    static let budget = 1 << 20

    public mutating func message(_ type: String) -> [UInt8] {
        var out: [UInt8] = []
        var budget = Self.budget
        encode(type, depth: 0, into: &out, budget: &budget)
        switch rng.next() % 50 {
        case 0 where !out.isEmpty: out.removeLast(Int(rng.next() % UInt64(out.count)) + 1)  // truncated
        case 1: out = (0..<Int(rng.next() % 64)).map { _ in UInt8.random(in: 0...255, using: &rng) }  // noise
        case 2: out += out  // every field twice (last one wins for scalars, repeated ones grow)
        default: break
        }
        return out
    }

    // MARK: Value pools

    static let signed: [Int64] = [
        0, 1, -1, 2, 7, 100, 10_000, 1_000_000, Int64(Int32.max), Int64(Int32.min), Int64(Int32.max) + 1, 1 << 53,
        -(1 << 53), Int64.max, Int64.min, Int64.max - 1, Int64.min + 1,
    ]
    static let seconds: [Int64] = [
        0, 1, -1, -9_000_000_000, 9_000_000_000, Int64.max, Int64.min, 9_223_372_036, -9_223_372_036, 253_402_300_799,
        253_402_300_800, 7_258_118_400, 7_258_118_401, 3_155_760_000, 3_155_760_001, 86_400, 604_800, 60, 3600,
    ]
    static let nanos: [Int32] = [0, 1, -1, 999_999_999, -999_999_999, 1_000_000_000, Int32.max, Int32.min, 854_775_807, -854_775_808]
    static let doubles: [Double] = [
        .nan, .infinity, -.infinity, -0.0, 0, 1, -1, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
        .leastNonzeroMagnitude, 1e18, -1e18, 9.3e18, 1e-300, 0.1, 42,
    ]
    static let floats: [Float] = [.nan, .infinity, -.infinity, -0.0, 0, 1, .greatestFiniteMagnitude, .leastNonzeroMagnitude]
    static let strings: [String] = [
        "", " ", "a", "*", "?", "%", "%s%n", "..", "../../etc/passwd", "/", "\\", "'; DROP TABLE users; --", "\u{0}",
        "a\u{0}b", "ü", "🚀", "\u{202E}evil", "e\u{301}\u{301}\u{301}", "\n", "\r\n", "\t", "-1", "0", "NaN", "Infinity",
        "1e309", "twk_000000000000_x", "Bearer x", "{}", "[]", "<script>", String(repeating: "x", count: 1000),
        String(repeating: "é", count: 5000), String(repeating: "a", count: 70_000),
    ]

    // MARK: Encoding

    mutating func pick<T>(_ pool: [T]) -> T { pool[Int(rng.next() % UInt64(pool.count))] }
    mutating func chance(_ n: UInt64) -> Bool { rng.next() % n == 0 }

    mutating func encode(_ type: String, depth: Int, into out: inout [UInt8], budget: inout Int) {
        if type == "google.protobuf.Timestamp" || type == "google.protobuf.Duration" {
            // The two fields every time check meets: the extremes, and now and then a sane value.
            let s: Int64 = chance(4) ? Int64(Date().timeIntervalSince1970) - Int64(rng.next() % 1_000_000) : pick(Self.seconds)
            if !chance(5) { Wire.varint(field: 1, UInt64(bitPattern: s), into: &out) }
            if !chance(3) { Wire.varint(field: 2, UInt64(bitPattern: Int64(pick(Self.nanos))), into: &out) }
            return
        }
        guard let message = contract.messages[type] else { return }
        for field in message.fields.shuffled(using: &rng) {
            guard budget > 0 else { return }
            // Most fields present; message fields thin out with depth.
            if chance(3) || (field.type == .message && depth >= 3) { continue }
            let count: Int
            if field.repeated {
                switch rng.next() % 20 {
                case 0: count = 0
                case 1: count = field.type == .message ? 2000 : 20_000  // huge
                default: count = Int(rng.next() % 4)
                }
            } else {
                count = 1
            }
            for _ in 0..<count {
                let before = out.count
                value(field, depth: depth, into: &out, budget: &budget)
                budget -= out.count - before
                if budget <= 0 { break }
            }
        }
    }

    mutating func value(_ field: Contract.Field, depth: Int, into out: inout [UInt8], budget: inout Int) {
        let n = field.number
        switch field.type {
        case .int32, .int64:
            Wire.varint(field: n, UInt64(bitPattern: chance(3) ? Int64(rng.next() % 1000) : pick(Self.signed)), into: &out)
        case .uint32, .uint64:
            Wire.varint(field: n, chance(2) ? UInt64(bitPattern: pick(Self.signed)) : rng.next() % 1000, into: &out)
        case .sint32, .sint64:
            let v = pick(Self.signed)
            Wire.varint(field: n, UInt64(bitPattern: (v << 1) ^ (v >> 63)), into: &out)
        case .bool:
            Wire.varint(field: n, pick([0, 1, 2, UInt64.max]), into: &out)
        case .enum:
            let known = contract.enums[field.typeName] ?? [0]
            let v: Int32 = chance(2) ? pick(known) : pick([-1, 99, 1000, Int32.max, Int32.min, Int32(known.count)])
            Wire.varint(field: n, UInt64(bitPattern: Int64(v)), into: &out)
        case .double:
            Wire.fixed64(field: n, pick(Self.doubles).bitPattern, into: &out)
        case .float:
            Wire.fixed32(field: n, pick(Self.floats).bitPattern, into: &out)
        case .fixed64, .sfixed64:
            Wire.fixed64(field: n, UInt64(bitPattern: pick(Self.signed)), into: &out)
        case .fixed32, .sfixed32:
            Wire.fixed32(field: n, UInt32(truncatingIfNeeded: pick(Self.signed)), into: &out)
        case .string:
            if chance(40) {
                Wire.bytes(field: n, [0xC3, 0x28, 0xFF, 0xFE], into: &out)  // not UTF-8: a decode error
            } else {
                let s = !hints.isEmpty && chance(2) ? pick(hints) : pick(Self.strings)
                Wire.bytes(field: n, Array(s.utf8), into: &out)
            }
        case .bytes:
            Wire.bytes(field: n, (0..<Int(rng.next() % 48)).map { _ in UInt8.random(in: 0...255, using: &rng) }, into: &out)
        case .message, .group:
            var inner: [UInt8] = []
            encode(field.typeName, depth: depth + 1, into: &inner, budget: &budget)
            Wire.bytes(field: n, inner, into: &out)
        default:
            break
        }
    }
}

/// Protocol buffers' wire format, the few pieces a generator needs.
enum Wire {
    static func rawVarint(_ v: UInt64, into out: inout [UInt8]) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func tag(_ field: Int, _ wireType: UInt64, into out: inout [UInt8]) {
        rawVarint(UInt64(field) << 3 | wireType, into: &out)
    }

    static func varint(field: Int, _ v: UInt64, into out: inout [UInt8]) {
        tag(field, 0, into: &out)
        rawVarint(v, into: &out)
    }

    static func fixed64(field: Int, _ v: UInt64, into out: inout [UInt8]) {
        tag(field, 1, into: &out)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }

    static func fixed32(field: Int, _ v: UInt32, into out: inout [UInt8]) {
        tag(field, 5, into: &out)
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }

    static func bytes(field: Int, _ b: [UInt8], into out: inout [UInt8]) {
        tag(field, 2, into: &out)
        rawVarint(UInt64(b.count), into: &out)
        out += b
    }
}
