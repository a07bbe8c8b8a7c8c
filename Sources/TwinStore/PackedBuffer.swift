import TwinCore

/// A series' readings not yet in a chunk, packed so that thousands of series can buffer a chunk's
/// worth each: about 2–3 bytes a reading for readings on a regular grid at an instrument's
/// resolution, instead of 16.
///
/// Each reading is a zigzag varint of its time's delta-of-delta, then a varint whose low bit
/// says how the value follows: 0, the delta of the value as an integer at the buffer's decimal
/// resolution; 1, the raw 8 bytes (a value not on that grid, NaN, -0.0). When a value needs more
/// decimals (up to 6) the buffer is repacked at the finer resolution.
struct PackedBuffer: Sendable {
    private(set) var count = 0
    private var bytes: [UInt8] = []
    private var decimals = 0
    private var lastTime: Nanos = 0
    private var lastDelta: Int64 = 0
    private var lastK: Int64 = 0

    var isEmpty: Bool { count == 0 }
    var byteCount: Int { bytes.count }

    mutating func append(time: Nanos, value: Double) {
        if count == 0, let d = Decimals.of([value]) { decimals = max(decimals, d) }
        // The common case costs one check: the value is on the buffer's grid.
        var onGrid = Decimals.fits(value, decimals)
        if !onGrid, let d = (decimals + 1..<Decimals.powers.count).first(where: { Decimals.fits(value, $0) }) {
            repack(decimals: d)
            onGrid = true
        }
        let delta = time &- lastTime
        Varint.append(GorillaCodec.zigzag(delta &- lastDelta), to: &bytes)
        lastDelta = delta
        lastTime = time
        if onGrid {
            let k = Int64((value * Decimals.powers[decimals]).rounded())
            Varint.append(GorillaCodec.zigzag(k &- lastK) << 1, to: &bytes)
            lastK = k
        } else {
            bytes.append(1)
            withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
        }
        count += 1
    }

    /// The readings in arrival order.
    func unpacked() -> (times: [Nanos], values: [Double]) {
        var times: [Nanos] = []
        var values: [Double] = []
        times.reserveCapacity(count)
        values.reserveCapacity(count)
        var p = 0
        var time: Nanos = 0
        var delta: Int64 = 0
        var k: Int64 = 0
        let scale = Decimals.powers[decimals]
        // The bytes were written by `append`: they always decode.
        for _ in 0..<count {
            delta = delta &+ GorillaCodec.unzigzag(try! GorillaCodec.readVarint(bytes, &p))
            time = time &+ delta
            times.append(time)
            let tag = try! GorillaCodec.readVarint(bytes, &p)
            if tag & 1 == 0 {
                k = k &+ GorillaCodec.unzigzag(tag >> 1)
                values.append(Double(k) / scale)
            } else {
                var raw: UInt64 = 0
                for b in 0..<8 { raw |= UInt64(bytes[p + b]) << (8 * UInt64(b)) }
                p += 8
                values.append(Double(bitPattern: raw))
            }
        }
        return (times, values)
    }

    mutating func removeAll() {
        self = PackedBuffer()
    }

    private mutating func repack(decimals d: Int) {
        let (times, values) = unpacked()
        self = PackedBuffer()
        decimals = d
        for (t, v) in zip(times, values) { append(time: t, value: v) }
    }
}
