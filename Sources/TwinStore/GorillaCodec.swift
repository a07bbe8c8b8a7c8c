import TwinCore

/// The Gorilla time-series compression (Pelkonen et al., VLDB 2015) for one (device, sensor)
/// chunk: delta-of-delta timestamps and XOR-coded float64 values, bit-packed.
///
/// Timestamps are scaled first by the coarsest unit that divides all of them (1 s, 1 ms, 1 µs or
/// 1 ns), so readings on a regular grid cost one bit each and a jittery millisecond gateway costs
/// a few; any order, equal timestamps and huge gaps still round-trip exactly (the widest bucket
/// holds any 64-bit delta-of-delta). Values round-trip bit for bit, NaN payloads included.
///
/// Layout: magic+version byte, unit exponent byte, count (varint), first time (zigzag varint, in
/// units), first value (8 bytes), then the bit stream.
public enum GorillaCodec {
    static let version: UInt8 = 0x47  // 'G', format 1

    public enum DecodeError: Error, Equatable {
        case truncated, badHeader, corrupt
    }

    /// Encodes a chunk. `times` and `values` must have the same count.
    public static func encode(times: [Nanos], values: [Double]) -> [UInt8] {
        precondition(times.count == values.count, "times and values differ in count")
        var out: [UInt8] = [version]
        let exponent = unitExponent(times)
        out.append(UInt8(exponent))
        varint(UInt64(times.count), into: &out)
        guard let first = times.first else { return out }
        let unit = pow1000(exponent)
        varint(zigzag(first / unit), into: &out)
        withUnsafeBytes(of: values[0].bitPattern.littleEndian) { out.append(contentsOf: $0) }

        var bits = BitWriter()
        var previousTime = first / unit
        var previousDelta: Int64 = 0
        var previousValue = values[0].bitPattern
        var leading = UInt64.max  // no window yet
        var trailing: UInt64 = 0
        for i in 1..<times.count {
            // Timestamps.
            let t = times[i] / unit
            let delta = t &- previousTime
            let dod = delta &- previousDelta
            previousTime = t
            previousDelta = delta
            if dod == 0 {
                bits.write(0, count: 1)
            } else if dod >= -63 && dod <= 64 {
                bits.write(0b10, count: 2)
                bits.write(UInt64(bitPattern: dod &+ 63), count: 7)
            } else if dod >= -255 && dod <= 256 {
                bits.write(0b110, count: 3)
                bits.write(UInt64(bitPattern: dod &+ 255), count: 9)
            } else if dod >= -2047 && dod <= 2048 {
                bits.write(0b1110, count: 4)
                bits.write(UInt64(bitPattern: dod &+ 2047), count: 12)
            } else if dod >= Int64(Int32.min) && dod <= Int64(Int32.max) {
                bits.write(0b11110, count: 5)
                bits.write(UInt64(UInt32(bitPattern: Int32(dod))), count: 32)
            } else {
                bits.write(0b11111, count: 5)
                bits.write(UInt64(bitPattern: dod), count: 64)
            }

            // Values.
            let v = values[i].bitPattern
            let xor = v ^ previousValue
            previousValue = v
            if xor == 0 {
                bits.write(0, count: 1)
                continue
            }
            let lz = min(UInt64(xor.leadingZeroBitCount), 31)
            let tz = UInt64(xor.trailingZeroBitCount)
            if leading != UInt64.max && lz >= leading && tz >= trailing {
                bits.write(0b10, count: 2)
                bits.write(xor >> trailing, count: Int(64 - leading - trailing))
            } else {
                leading = lz
                trailing = tz
                let meaningful = 64 - lz - tz
                bits.write(0b11, count: 2)
                bits.write(lz, count: 5)
                bits.write(meaningful - 1, count: 6)  // 1...64 stored as 0...63
                bits.write(xor >> tz, count: Int(meaningful))
            }
        }
        out.append(contentsOf: bits.bytes)
        return out
    }

    /// Decodes a chunk written by `encode`.
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> (times: [Nanos], values: [Double]) {
        guard bytes.count >= 3, bytes[0] == version, bytes[1] <= 3 else { throw .badHeader }
        let unit = pow1000(Int(bytes[1]))
        var position = 2
        let declared = try readVarint(bytes, &position)
        var times: [Nanos] = []
        var values: [Double] = []
        guard declared > 0 else { return (times, values) }
        // Every point after the first takes at least two bits.
        guard declared <= UInt64(bytes.count) * 4 + 1 else { throw .truncated }
        let count = Int(declared)
        times.reserveCapacity(count)
        values.reserveCapacity(count)
        var previousTime = unzigzag(try readVarint(bytes, &position))
        guard position + 8 <= bytes.count else { throw .truncated }
        var raw: UInt64 = 0
        for k in 0..<8 { raw |= UInt64(bytes[position + k]) << (8 * UInt64(k)) }
        position += 8
        var previousValue = raw
        times.append(previousTime &* unit)
        values.append(Double(bitPattern: previousValue))

        var bits = BitReader(bytes: bytes, byteOffset: position)
        var previousDelta: Int64 = 0
        var leading: UInt64 = 0
        var trailing: UInt64 = 0
        var windowSet = false
        for _ in 1..<count {
            var dod: Int64
            if try bits.read(1) == 0 {
                dod = 0
            } else if try bits.read(1) == 0 {
                dod = Int64(bitPattern: try bits.read(7)) - 63
            } else if try bits.read(1) == 0 {
                dod = Int64(bitPattern: try bits.read(9)) - 255
            } else if try bits.read(1) == 0 {
                dod = Int64(bitPattern: try bits.read(12)) - 2047
            } else if try bits.read(1) == 0 {
                dod = Int64(Int32(bitPattern: UInt32(try bits.read(32))))
            } else {
                dod = Int64(bitPattern: try bits.read(64))
            }
            previousDelta = previousDelta &+ dod
            previousTime = previousTime &+ previousDelta
            times.append(previousTime &* unit)

            if try bits.read(1) == 0 {
                values.append(Double(bitPattern: previousValue))
                continue
            }
            if try bits.read(1) == 1 {
                leading = try bits.read(5)
                let meaningful = try bits.read(6) + 1
                guard leading + meaningful <= 64 else { throw .corrupt }
                trailing = 64 - leading - meaningful
                windowSet = true
            } else if !windowSet {
                throw .corrupt  // a window reused before any was set
            }
            let meaningful = Int(64 - leading - trailing)
            let xor = try bits.read(meaningful) << trailing
            previousValue ^= xor
            values.append(Double(bitPattern: previousValue))
        }
        return (times, values)
    }

    /// The largest k in 0...3 such that every time is a multiple of 1000^k ns.
    static func unitExponent(_ times: [Nanos]) -> Int {
        var exponent = 3
        for t in times {
            while exponent > 0 && t % pow1000(exponent) != 0 { exponent -= 1 }
            if exponent == 0 { break }
        }
        return exponent
    }

    static func pow1000(_ k: Int) -> Int64 { [1, 1_000, 1_000_000, 1_000_000_000][k] }

    static func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }
    static func unzigzag(_ v: UInt64) -> Int64 { Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1) }

    static func varint(_ value: UInt64, into out: inout [UInt8]) {
        Varint.append(value, to: &out)
    }

    static func readVarint(_ bytes: [UInt8], _ position: inout Int) throws(DecodeError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < bytes.count, shift < 64 else { throw .truncated }
            let b = bytes[position]
            position += 1
            value |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return value }
            shift += 7
        }
    }
}

/// Appends bits most-significant first.
struct BitWriter {
    private(set) var bytes: [UInt8] = []
    private var used = 8  // bits used in the last byte

    /// Writes the low `count` bits of `value` (0...64).
    mutating func write(_ value: UInt64, count: Int) {
        var remaining = count
        while remaining > 0 {
            if used == 8 {
                bytes.append(0)
                used = 0
            }
            let take = min(8 - used, remaining)
            let shift = remaining - take
            let chunk = UInt8(truncatingIfNeeded: (value >> UInt64(shift)) & ((1 << UInt64(take)) - 1))
            bytes[bytes.count - 1] |= chunk << UInt8(8 - used - take)
            used += take
            remaining -= take
        }
    }
}

/// Reads bits most-significant first.
struct BitReader {
    let bytes: [UInt8]
    var bit: Int

    init(bytes: [UInt8], byteOffset: Int) {
        self.bytes = bytes
        self.bit = byteOffset * 8
    }

    mutating func read(_ count: Int) throws(GorillaCodec.DecodeError) -> UInt64 {
        guard bit + count <= bytes.count * 8 else { throw .truncated }
        var value: UInt64 = 0
        var remaining = count
        while remaining > 0 {
            let byte = bytes[bit >> 3]
            let offset = bit & 7
            let take = min(8 - offset, remaining)
            let chunk = (UInt64(byte) >> UInt64(8 - offset - take)) & ((1 << UInt64(take)) - 1)
            value = take == 64 ? chunk : (value << UInt64(take)) | chunk
            bit += take
            remaining -= take
        }
        return value
    }
}
