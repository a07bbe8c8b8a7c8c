import TwinCore

/// The Gorilla time-series compression (Pelkonen et al., VLDB 2015) for one (device, sensor)
/// chunk: delta-of-delta timestamps and XOR-coded float64 values, bit-packed, column after column.
///
/// Timestamps are scaled first by the coarsest unit that divides all of them (1 s, 1 ms, 1 µs or
/// 1 ns), so readings on a regular grid cost one bit each and a jittery millisecond gateway costs
/// a few; any order, equal timestamps and huge gaps still round-trip exactly (the widest bucket
/// holds any 64-bit delta-of-delta).
///
/// Values: real sensors report at a resolution (0.1 °C, 0.01 bar). When every value of a chunk is
/// exactly `k / 10^d` for integers k and a d ≤ 6, the chunk stores the deltas of k, Rice-coded
/// (a noisy temperature at 0.1 °C costs about 5 bits a point instead of ~40 for XOR of full
/// doubles); otherwise values are XOR-coded as in the paper. Either way they
/// round-trip bit for bit, NaN payloads included.
///
/// Format 3 adds two choices per chunk, each a bit in front of its column: a times column on a
/// regular grid (every delta the same: a reading every 5 s) is stored as its first time and the
/// step, nothing per point; and decimal values are predicted either by the previous value or by
/// the mean of the previous eight, whichever codes shorter (a noisy signal around a slow trend
/// costs about half a bit a point less against the mean). Format 2 chunks still decode.
///
/// Layout: format byte, unit exponent byte, value mode byte (0xff XOR, else d), count (varint),
/// then the bit stream: the times column, then the values column.
public enum GorillaCodec {
    static let format: UInt8 = 0x49  // 'I', format 3 (regular grids, value predictors)
    static let format2: UInt8 = 0x48  // 'H', format 2 (columnar, decimal mode)
    static let xorMode: UInt8 = 0xff
    /// Readings the mean predictor averages.
    static let meanWindow = 8

    public enum DecodeError: Error, Equatable {
        case truncated, badHeader, corrupt
    }

    /// Encodes a chunk. `times` and `values` must have the same count.
    public static func encode(times: [Nanos], values: [Double]) -> [UInt8] {
        encode(times: times, values: values, scaled: Decimals.integers(values))
    }

    /// Encodes a chunk whose values' decimal resolution and integers are known
    /// (`Decimals.integers(values)`; nil: XOR-coded).
    static func encode(times: [Nanos], values: [Double], scaled: (decimals: Int, ks: [Int64])?) -> [UInt8] {
        precondition(times.count == values.count, "times and values differ in count")
        let regular = isRegular(times)
        let exponent = regular ? gridExponent(times) : unitExponent(times)
        var bits = BitWriter()
        bits.reserve(bytes: times.count + 16)
        for byte in [format, UInt8(exponent), scaled.map { UInt8($0.decimals) } ?? xorMode] { bits.write(UInt64(byte), count: 8) }
        var count = UInt64(times.count)
        while count >= 0x80 {
            bits.write(count & 0x7f | 0x80, count: 8)
            count >>= 7
        }
        bits.write(count, count: 8)
        writeTimeColumn(times, regular: regular, exponent: exponent, into: &bits)
        if let scaled {
            writeDecimalColumn(scaled.ks, into: &bits)
        } else {
            writeXOR(values, into: &bits)
        }
        return bits.finished
    }

    /// Decodes a chunk written by `encode`.
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> (times: [Nanos], values: [Double]) {
        guard bytes.count >= 4, bytes[0] == format || bytes[0] == format2, bytes[1] <= 3, bytes[2] <= 6 || bytes[2] == xorMode else {
            throw .badHeader
        }
        let current = bytes[0] == format
        var position = 3
        let declared = try readVarint(bytes, &position)
        // Format 2: every point takes at least two bits. Format 3: a regular grid of repeated
        // values takes one bit a point (the values' Rice code), so the count is bounded by the
        // bits there are, plus the few header bits.
        guard declared <= UInt64(bytes.count - position) * (current ? 8 : 4) else { throw .truncated }
        let count = Int(declared)
        var bits = BitReader(bytes: bytes, byteOffset: position)
        let unit = pow1000(Int(bytes[1]))
        let times = current ? try readTimeColumn(count, unit: unit, from: &bits) : try readTimes(count, unit: unit, from: &bits)
        let values: [Double]
        if bytes[2] == xorMode {
            values = try readXOR(count, from: &bits)
        } else if current {
            values = try readDecimalColumn(count, decimals: Int(bytes[2]), from: &bits)
        } else {
            values = try readDecimals(count, decimals: Int(bytes[2]), from: &bits)
        }
        return (times, values)
    }

    // MARK: Format 3 columns

    /// One bit, then either the delta-of-delta column (0) or, for a regular grid (1), the first
    /// time and the step as signed integers.
    /// Whether every step between times is the same. Every time is a multiple of the unit, so
    /// the scaled steps the column stores are equal exactly when the raw ones are (modulo 2^64
    /// too: two scaled steps differ by less than 2^64 / 125^k), and the check needs no division.
    static func isRegular(_ times: [Nanos]) -> Bool {
        guard times.count > 2 else { return true }
        let step = times[1] &- times[0]
        for i in 2..<times.count where times[i] &- times[i - 1] != step { return false }
        return true
    }

    /// `unitExponent` of a regular grid: that of its first time and step. The decoder rebuilds
    /// time i as (first + i × step) in units, times the unit, all modulo 2^64, which is the i-th
    /// time whenever first and step are multiples of the unit (even where the steps wrap).
    static func gridExponent(_ times: [Nanos]) -> Int {
        times.count > 2 ? unitExponent([times[0], times[1] &- times[0]]) : unitExponent(times)
    }

    static func writeTimeColumn(_ times: [Nanos], regular: Bool, exponent: Int, into bits: inout BitWriter) {
        if !regular {
            bits.write(0, count: 1)
            writeTimes(times, exponent: exponent, into: &bits)
            return
        }
        bits.write(1, count: 1)
        guard let first = times.first else { return }
        let unit = pow1000(exponent)
        writeSigned(first / unit, into: &bits)
        if times.count > 1 { writeSigned(times[1] / unit &- first / unit, into: &bits) }
    }

    static func readTimeColumn(_ count: Int, unit: Int64, from bits: inout BitReader) throws(DecodeError) -> [Nanos] {
        if try bits.read(1) == 0 { return try readTimes(count, unit: unit, from: &bits) }
        guard count > 0 else { return [] }
        let first = try readSigned(from: &bits)
        let step = count > 1 ? try readSigned(from: &bits) : 0
        var times: [Nanos] = []
        times.reserveCapacity(count)
        var t = first
        for _ in 0..<count {
            times.append(t &* unit)
            t = t &+ step
        }
        return times
    }

    /// One bit naming the predictor (0: the previous value, 1: the mean of the previous
    /// `meanWindow`), then the residuals Rice-coded as in format 2.
    static func writeDecimalColumn(_ ks: [Int64], into bits: inout BitWriter) {
        // Both predictors' residuals in one pass; the mean of the previous eight is a running sum
        // over `ks` itself (the same rounded mean as `Predictor`).
        let n = ks.count
        var byPrevious: [UInt64] = [], byMean: [UInt64] = []
        byPrevious.reserveCapacity(n)
        byMean.reserveCapacity(n)
        var previousSum: UInt64 = 0, meanSum: UInt64 = 0, bitsUsed: UInt64 = 0
        var last: Int64 = 0, sum: Int64 = 0
        for (i, k) in ks.enumerated() {
            // A full window divides by 8: a shift (floor, as `floorDiv`).
            let predicted = i >= meanWindow ? (sum &+ 4) >> 3 : i == 0 ? last : Rollup.floorDiv(sum &+ Int64(i) / 2, Int64(i))
            let p = zigzag(k &- last), m = zigzag(k &- predicted)
            byPrevious.append(p)
            byMean.append(m)
            previousSum &+= p
            meanSum &+= m
            bitsUsed |= p | m
            last = k
            sum = sum &+ k
            if i >= meanWindow { sum = sum &- ks[i - meanWindow] }
        }
        // The sums as `riceParameter` adds them (Doubles, in order): the integer sums are the
        // same number while they stay below 2^53.
        let exact = bitsUsed < 1 << 36 && n < 1 << 16
        let previous = exact ? riceParameter(byPrevious, total: Double(previousSum)) : riceParameter(byPrevious)
        let mean = exact ? riceParameter(byMean, total: Double(meanSum)) : riceParameter(byMean)
        let useMean = mean.cost < previous.cost
        bits.write(useMean ? 1 : 0, count: 1)
        let chosen = useMean ? mean.parameter : previous.parameter
        bits.write(UInt64(chosen), count: 5)
        for u in useMean ? byMean : byPrevious { writeRice(u, parameter: chosen, into: &bits) }
    }

    static func readDecimalColumn(_ count: Int, decimals: Int, from bits: inout BitReader) throws(DecodeError) -> [Double] {
        guard count > 0 else { return [] }
        let useMean = try bits.read(1) == 1
        let scale = Decimals.powers[decimals]
        let parameter = Int(try bits.read(5))
        var values: [Double] = []
        values.reserveCapacity(count)
        var predictor = Predictor(mean: useMean)
        for _ in 0..<count {
            let k = predictor.next &+ unzigzag(try readRice(parameter: parameter, from: &bits))
            predictor.add(k)
            values.append(Double(k) / scale)
        }
        return values
    }

    /// The next value's prediction from those before it: the previous one, or the rounded mean of
    /// the last `meanWindow` (fewer at the start). Integer arithmetic, the same in both directions.
    struct Predictor {
        let mean: Bool
        var window = [Int64](repeating: 0, count: GorillaCodec.meanWindow)
        var filled = 0
        var position = 0
        var sum: Int64 = 0
        var last: Int64 = 0

        init(mean: Bool) { self.mean = mean }

        @inline(__always) var next: Int64 {
            guard mean, filled > 0 else { return last }
            let n = Int64(filled)
            return Rollup.floorDiv(sum &+ n / 2, n)
        }

        @inline(__always) mutating func add(_ k: Int64) {
            last = k
            guard mean else { return }
            sum = sum &- window[position] &+ k
            window[position] = k
            position = (position + 1) % GorillaCodec.meanWindow
            if filled < GorillaCodec.meanWindow { filled += 1 }
        }
    }

    /// The Rice parameter that makes these residuals shortest, and their cost in bits.
    static func riceParameter(_ residuals: [UInt64]) -> (parameter: Int, cost: UInt64) {
        var total: Double = 0
        for u in residuals { total += Double(u) }
        return riceParameter(residuals, total: total)
    }

    /// The same, given the residuals' sum (as a Double, added in order).
    static func riceParameter(_ residuals: [UInt64], total: Double) -> (parameter: Int, cost: UInt64) {
        // The cost of parameter p is Σ (u >> p) + 1 + p, or the escape's 88 bits. For roughly
        // geometric residuals the best p is near log2 of their mean: try it and its neighbours.
        let mean = residuals.isEmpty ? 0 : total / Double(residuals.count)
        let guess = mean < 1 ? 0 : mean >= 0x1p29 ? 29 : 63 - UInt64(mean).leadingZeroBitCount
        // The (up to) four candidates in one pass: the encoder's hottest loop. Their quotients
        // are q, q/2, q/4, q/8 of the lowest one's; when that one is no escape, none is.
        let low = max(0, guess - 1), candidates = guess + 2 - low + 1
        let shifts = SIMD4<UInt64>(UInt64(low), UInt64(low + 1), UInt64(low + 2), UInt64(low + 3))
        var q0: UInt64 = 0, q1: UInt64 = 0, q2: UInt64 = 0, q3: UInt64 = 0
        var escapes = SIMD4<UInt64>(repeating: 0)  // per candidate: escaped residuals' extra cost
        for u in residuals {
            let q = u >> UInt64(low)
            if q < riceEscape {
                q0 &+= q
                q1 &+= q >> 1
                q2 &+= q >> 2
                q3 &+= q >> 3
                continue
            }
            // Rare: count a lane's quotient, or its escape's 88 bits less the 1 + p every
            // residual is charged below.
            let lanes = SIMD4<UInt64>(repeating: u) &>> shifts
            let quotients = lanes.replacing(with: 0, where: lanes .>= riceEscape)
            q0 &+= quotients[0]
            q1 &+= quotients[1]
            q2 &+= quotients[2]
            q3 &+= quotients[3]
            escapes &+= SIMD4<UInt64>(repeating: riceEscape + 63)
                .replacing(with: 0, where: lanes .< riceEscape) &- shifts.replacing(with: 0, where: lanes .< riceEscape)
        }
        let count = UInt64(residuals.count)
        let costs = SIMD4<UInt64>(q0, q1, q2, q3) &+ escapes &+ count &* (shifts &+ 1)
        var best = 0
        var bestCost = UInt64.max
        for lane in 0..<candidates where costs[lane] < bestCost {
            bestCost = costs[lane]
            best = low + lane
        }
        return (best, bestCost)
    }


    // MARK: Columns

    /// Delta-of-delta coded integers (the first one against 0).
    static func writeTimes(_ times: [Nanos], exponent: Int, into bits: inout BitWriter) {
        var previous: Int64 = 0
        var previousDelta: Int64 = 0
        for t in times {
            let scaled = scaledDown(t, exponent)
            let delta = scaled &- previous
            writeSigned(delta &- previousDelta, into: &bits)
            previous = scaled
            previousDelta = delta
        }
    }

    static func readTimes(_ count: Int, unit: Int64, from bits: inout BitReader) throws(DecodeError) -> [Nanos] {
        var times: [Nanos] = []
        times.reserveCapacity(count)
        var previous: Int64 = 0
        var previousDelta: Int64 = 0
        for _ in 0..<count {
            previousDelta = previousDelta &+ (try readSigned(from: &bits))
            previous = previous &+ previousDelta
            times.append(previous &* unit)
        }
        return times
    }

    /// Values that are all `k / 10^d`: the deltas of k, zigzagged and Rice-coded with the
    /// parameter (5 bits, first in the column) that makes this column shortest. Sensor noise at
    /// the instrument's resolution makes roughly geometric deltas, which is what Rice codes suit.
    static func writeDecimals(_ values: [Double], decimals: Int, into bits: inout BitWriter) {
        let scale = Decimals.powers[decimals]
        var previous: Int64 = 0
        var deltas: [UInt64] = []
        deltas.reserveCapacity(values.count)
        for v in values {
            let k = Int64((v * scale).rounded())
            deltas.append(zigzag(k &- previous))
            previous = k
        }
        let best = riceParameter(deltas).parameter
        bits.write(UInt64(best), count: 5)
        for u in deltas { writeRice(u, parameter: best, into: &bits) }
    }

    static func readDecimals(_ count: Int, decimals: Int, from bits: inout BitReader) throws(DecodeError) -> [Double] {
        let scale = Decimals.powers[decimals]
        var values: [Double] = []
        values.reserveCapacity(count)
        guard count > 0 else { return values }
        let parameter = Int(try bits.read(5))
        var k: Int64 = 0
        for _ in 0..<count {
            k = k &+ unzigzag(try readRice(parameter: parameter, from: &bits))
            values.append(Double(k) / scale)
        }
        return values
    }

    /// A quotient this large is written as an escape (that many ones) and the value in 64 bits.
    static let riceEscape: UInt64 = 24

    @inline(__always)
    static func writeRice(_ u: UInt64, parameter p: Int, into bits: inout BitWriter) {
        let q = u >> UInt64(p)
        if q < riceEscape {
            // q ones, a zero, the p low bits: at most 24 + 31 bits, one write.
            let low = p == 0 ? 0 : u & (UInt64.max >> UInt64(64 - p))
            bits.write(((1 << q) - 1) << UInt64(p + 1) | low, count: Int(q) + 1 + p)
        } else {
            bits.write((1 << riceEscape) - 1, count: Int(riceEscape))
            bits.write(u, count: 64)
        }
    }

    @inline(__always)
    static func readRice(parameter p: Int, from bits: inout BitReader) throws(DecodeError) -> UInt64 {
        // The unary quotient: its ones counted at once in the next 64 bits.
        let ones = Swift.min((~bits.peek()).leadingZeroBitCount, Int(riceEscape))
        if ones == Int(riceEscape) {
            _ = try bits.read(ones)
            return try bits.read(64)
        }
        _ = try bits.read(ones + 1)
        let q = UInt64(ones)
        return p > 0 ? q << UInt64(p) | (try bits.read(p)) : q
    }

    /// Gorilla's XOR coding: a repeated value costs one bit; otherwise the meaningful bits of the
    /// XOR with the previous value, reusing the previous leading/trailing-zero window when it fits.
    static func writeXOR(_ values: [Double], into bits: inout BitWriter) {
        guard let first = values.first else { return }
        bits.write(first.bitPattern, count: 64)
        var previous = first.bitPattern
        var leading = UInt64.max  // no window yet
        var trailing: UInt64 = 0
        for value in values.dropFirst() {
            let v = value.bitPattern
            let xor = v ^ previous
            previous = v
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
    }

    static func readXOR(_ count: Int, from bits: inout BitReader) throws(DecodeError) -> [Double] {
        var values: [Double] = []
        guard count > 0 else { return values }
        values.reserveCapacity(count)
        var previous = try bits.read(64)
        values.append(Double(bitPattern: previous))
        var leading: UInt64 = 0
        var trailing: UInt64 = 0
        var windowSet = false
        for _ in 1..<count {
            if try bits.read(1) == 0 {
                values.append(Double(bitPattern: previous))
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
            previous ^= try bits.read(Int(64 - leading - trailing)) << trailing
            values.append(Double(bitPattern: previous))
        }
        return values
    }

    /// Gorilla's variable-width buckets for a signed integer: 0 costs one bit, small magnitudes a
    /// few, anything 69 at most.
    @inline(__always)
    static func writeSigned(_ x: Int64, into bits: inout BitWriter) {
        if x == 0 {
            bits.write(0, count: 1)
        } else if x >= -63 && x <= 64 {
            bits.write(0b10 << 7 | UInt64(bitPattern: x &+ 63), count: 9)
        } else if x >= -255 && x <= 256 {
            bits.write(0b110 << 9 | UInt64(bitPattern: x &+ 255), count: 12)
        } else if x >= -2047 && x <= 2048 {
            bits.write(0b1110 << 12 | UInt64(bitPattern: x &+ 2047), count: 16)
        } else if x >= Int64(Int32.min) && x <= Int64(Int32.max) {
            bits.write(0b11110, count: 5)
            bits.write(UInt64(UInt32(bitPattern: Int32(x))), count: 32)
        } else {
            bits.write(0b11111, count: 5)
            bits.write(UInt64(bitPattern: x), count: 64)
        }
    }

    @inline(__always)
    static func readSigned(from bits: inout BitReader) throws(DecodeError) -> Int64 {
        if try bits.read(1) == 0 { return 0 }
        if try bits.read(1) == 0 { return Int64(bitPattern: try bits.read(7)) - 63 }
        if try bits.read(1) == 0 { return Int64(bitPattern: try bits.read(9)) - 255 }
        if try bits.read(1) == 0 { return Int64(bitPattern: try bits.read(12)) - 2047 }
        if try bits.read(1) == 0 { return Int64(Int32(bitPattern: UInt32(try bits.read(32)))) }
        return Int64(bitPattern: try bits.read(64))
    }

    // MARK: Helpers

    /// The largest k in 0...3 such that every time is a multiple of 1000^k ns.
    static func unitExponent(_ times: [Nanos]) -> Int {
        var exponent = 3
        for t in times {
            while exponent > 0 && !divisible(t, exponent) { exponent -= 1 }
            if exponent == 0 { break }
        }
        return exponent
    }

    /// Whether t is a multiple of 1000^k (k in 1...3), by constant divisors (multiplications,
    /// where a divisor read from a table is a 64-bit division each).
    @inline(__always)
    static func divisible(_ t: Int64, _ k: Int) -> Bool {
        switch k {
        case 3: t % 1_000_000_000 == 0
        case 2: t % 1_000_000 == 0
        default: t % 1_000 == 0
        }
    }

    /// t / 1000^k (k in 0...3), by constant divisors.
    @inline(__always)
    static func scaledDown(_ t: Int64, _ k: Int) -> Int64 {
        switch k {
        case 3: t / 1_000_000_000
        case 2: t / 1_000_000
        case 1: t / 1_000
        default: t
        }
    }

    static func pow1000(_ k: Int) -> Int64 { [1, 1_000, 1_000_000, 1_000_000_000][k] }

    static func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }
    static func unzigzag(_ v: UInt64) -> Int64 { Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1) }

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

/// Finds the decimal resolution of a column of values.
public enum Decimals {
    static let powers: [Double] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000]
    static let limit = Double(1 << 50)

    /// The smallest d ≤ 6 such that every value is exactly `Double(k) / 10^d` for an integer k
    /// (bit for bit, so -0.0, NaN and infinities never qualify); nil when there is none.
    public static func of(_ values: [Double]) -> Int? { integers(values)?.decimals }

    /// The smallest such d and the values' integers k (|k| < 2^50), found in one pass: a value
    /// that is `k / 10^d` is `10k / 10^(d+1)` (the same rational, correctly rounded both times),
    /// so when a later value needs a finer d the integers so far are scaled up, not recomputed.
    public static func integers(_ values: [Double]) -> (decimals: Int, ks: [Int64])? {
        var d = 0
        var ks = [Int64](repeating: 0, count: values.count)
        let found = ks.withUnsafeMutableBufferPointer { ks -> Bool in
            for (i, v) in values.enumerated() {
                while true {
                    if let k = integer(v, d) {
                        ks[i] = k
                        break
                    }
                    d += 1
                    if d == powers.count { return false }
                    for j in 0..<i {
                        ks[j] &*= 10
                        if ks[j].magnitude >= 1 << 50 { return false }  // past the limit at this d
                    }
                }
            }
            return true
        }
        return found ? (d, ks) : nil
    }

    @inline(__always)
    static func fits(_ v: Double, _ d: Int) -> Bool { integer(v, d) != nil }

    /// k when v is exactly `Double(k) / 10^d` with |k| < 2^50.
    @inline(__always)
    static func integer(_ v: Double, _ d: Int) -> Int64? {
        let product = v * powers[d]
        guard abs(product) < limit - 0.5 else { return nil }  // so |k| < 2^50
        // Round to nearest by the 1.5 × 2^52 trick (exact below 2^51; no libm call). It rounds
        // halves to even where `rounded()` rounds them away from zero: a half is never within
        // rounding of an integer, so either way such a v does not fit.
        let scaled = (product + 0x1.8p52) - 0x1.8p52
        let k = Int64(scaled)
        // Through the integer, as the decoder goes (so -0.0 does not qualify).
        return (Double(k) / powers[d]).bitPattern == v.bitPattern ? k : nil
    }

    /// Rounds `value` to `d` decimals the way the codec stores it.
    public static func round(_ value: Double, decimals d: Int) -> Double {
        (value * powers[d]).rounded() / powers[d]
    }
}

/// Appends bits most-significant first, a 64-bit word at a time.
struct BitWriter {
    private var bytes: [UInt8] = []
    private var accumulator: UInt64 = 0  // its low `pending` bits are the ones not yet stored
    private var pending = 0  // < 64

    mutating func reserve(bytes count: Int) { bytes.reserveCapacity(count) }

    /// Writes the low `count` bits of `value` (0...64).
    @inline(__always)
    mutating func write(_ value: UInt64, count: Int) {
        if count == 0 { return }
        let masked = value & (UInt64.max &>> UInt64(64 - count))
        let free = 64 - pending
        if count < free {
            accumulator = accumulator &<< UInt64(count) | masked
            pending += count
            return
        }
        // The word fills: store it, keep what is left over (bits above `pending` are shifted out
        // before they are stored).
        let over = count - free
        let word = (free == 64 ? 0 : accumulator &<< UInt64(free)) | masked &>> UInt64(over)
        withUnsafeBytes(of: word.bigEndian) { bytes.append(contentsOf: $0) }
        accumulator = masked
        pending = over
    }

    /// The bits written, the last byte padded with zeros.
    var finished: [UInt8] {
        var out = bytes
        let word = pending == 0 ? 0 : accumulator &<< UInt64(64 - pending)
        withUnsafeBytes(of: word.bigEndian) { out.append(contentsOf: $0.prefix((pending + 7) / 8)) }
        return out
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

    /// The next 64 bits, most significant first; at least 57 of them are the stream's (past its
    /// end they read as zeros, which callers bound-check before they consume).
    @inline(__always)
    func peek() -> UInt64 {
        let byte = bit >> 3
        var v: UInt64 = 0
        if byte + 8 <= bytes.count {
            v = bytes.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: byte, as: UInt64.self)) }
        } else {
            for k in 0..<8 { v = v << 8 | (byte + k < bytes.count ? UInt64(bytes[byte + k]) : 0) }
        }
        return v << UInt64(bit & 7)
    }

    @inline(__always)
    mutating func read(_ count: Int) throws(GorillaCodec.DecodeError) -> UInt64 {
        guard bit + count <= bytes.count * 8 else { throw .truncated }
        if count == 0 { return 0 }
        if count <= 57 {
            let value = peek() >> UInt64(64 - count)
            bit += count
            return value
        }
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
