import TwinCore

/// Roll-ups: the readings of a chunk summarised per minute and per hour (count, min, max, sum,
/// last), kept after the raw points expire. Buckets from different chunks covering the same span
/// merge (late readings land in another chunk), so a query merges by bucket start.
public enum Rollup {
    public static let levels: [Nanos] = [Time.minute, Time.hour]

    /// Buckets of `width` (aligned to multiples of it since the epoch) over the given points, in
    /// time order. With `decimals`, sums are added as exact integers, so they stay decimal too
    /// (and compress like the readings).
    public static func buckets(times: [Nanos], values: [Double], width: Nanos, decimals: Int?) -> [Bucket] {
        var result: [Bucket] = []
        var sums: [Int64] = []
        let scale = decimals.map { Decimals.powers[$0] } ?? 1
        var order = Array(times.indices)
        if !isSorted(times) { order.sort { times[$0] < times[$1] } }
        var current = Bucket(start: .min, count: 0, min: 0, max: 0, sum: 0, last: 0, lastTime: .min)
        var exact: Int64 = 0
        for i in order {
            let t = times[i]
            let v = values[i]
            if t >= current.start &+ width || current.count == 0 {
                if current.count > 0 {
                    result.append(current)
                    sums.append(exact)
                }
                current = Bucket(start: floorDiv(t, width) * width, time: t, value: v)
                exact = 0
            } else {
                current.count += 1
                if v < current.min { current.min = v }
                if v > current.max { current.max = v }
                current.sum += v
                if t >= current.lastTime {
                    current.last = v
                    current.lastTime = t
                }
            }
            if decimals != nil { exact += Int64((v * scale).rounded()) }
        }
        if current.count > 0 {
            result.append(current)
            sums.append(exact)
        }
        if decimals != nil {
            for k in result.indices { result[k].sum = Double(sums[k]) / scale }
        }
        return result
    }

    static func isSorted(_ times: [Nanos]) -> Bool {
        var previous = Nanos.min
        for t in times {
            if t < previous { return false }
            previous = t
        }
        return true
    }

    @inline(__always)
    public static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    static let format: UInt8 = 0x52  // 'R'

    /// Columnar like the chunk codec: starts and last-times delta-of-delta, counts likewise, the
    /// four value columns each in decimal or XOR mode.
    public static func encode(_ buckets: [Bucket]) -> [UInt8] {
        let starts = buckets.map(\.start)
        let lastTimes = buckets.map(\.lastTime)
        let columns = [buckets.map(\.min), buckets.map(\.max), buckets.map(\.sum), buckets.map(\.last)]
        let modes = columns.map { Decimals.of($0) }
        let startUnit = GorillaCodec.unitExponent(starts)
        let lastUnit = GorillaCodec.unitExponent(lastTimes)
        var out: [UInt8] = [format, UInt8(startUnit), UInt8(lastUnit)] + modes.map { $0.map(UInt8.init) ?? GorillaCodec.xorMode }
        Varint.append(UInt64(buckets.count), to: &out)
        var bits = BitWriter()
        GorillaCodec.writeTimes(starts, exponent: startUnit, into: &bits)
        GorillaCodec.writeTimes(lastTimes, exponent: lastUnit, into: &bits)
        GorillaCodec.writeTimes(buckets.map(\.count), exponent: 0, into: &bits)
        for (column, mode) in zip(columns, modes) {
            if let mode { GorillaCodec.writeDecimals(column, decimals: mode, into: &bits) } else { GorillaCodec.writeXOR(column, into: &bits) }
        }
        out.append(contentsOf: bits.finished)
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(GorillaCodec.DecodeError) -> [Bucket] {
        guard bytes.count >= 8, bytes[0] == format, bytes[1] <= 3, bytes[2] <= 3,
              bytes[3..<7].allSatisfy({ $0 <= 6 || $0 == GorillaCodec.xorMode })
        else { throw .badHeader }
        var position = 7
        let declared = try GorillaCodec.readVarint(bytes, &position)
        guard declared <= UInt64(bytes.count - position) * 8 else { throw .truncated }
        let count = Int(declared)
        var bits = BitReader(bytes: bytes, byteOffset: position)
        let starts = try GorillaCodec.readTimes(count, unit: GorillaCodec.pow1000(Int(bytes[1])), from: &bits)
        let lastTimes = try GorillaCodec.readTimes(count, unit: GorillaCodec.pow1000(Int(bytes[2])), from: &bits)
        let counts = try GorillaCodec.readTimes(count, unit: 1, from: &bits)
        var columns: [[Double]] = []
        for k in 0..<4 {
            let mode = bytes[3 + k]
            columns.append(mode == GorillaCodec.xorMode
                ? try GorillaCodec.readXOR(count, from: &bits) : try GorillaCodec.readDecimals(count, decimals: Int(mode), from: &bits))
        }
        return (0..<count).map { i in
            Bucket(start: starts[i], count: counts[i], min: columns[0][i], max: columns[1][i], sum: columns[2][i], last: columns[3][i], lastTime: lastTimes[i])
        }
    }
}
