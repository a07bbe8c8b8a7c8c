import Foundation
import Testing
import TwinCore
@testable import TwinStore

@Suite struct GorillaCodecTests {
    func roundTrip(_ times: [Nanos], _ values: [Double]) throws -> [UInt8] {
        let bytes = GorillaCodec.encode(times: times, values: values)
        let decoded = try GorillaCodec.decode(bytes)
        #expect(decoded.times == times)
        #expect(decoded.values.map(\.bitPattern) == values.map(\.bitPattern))
        return bytes
    }

    @Test func aRegularGridCostsNothingPerTimestamp() throws {
        let start: Nanos = 1_790_000_000 * Time.second
        let times = (0..<1000).map { start + Nanos($0) * 5 * Time.second }
        // A constant value: one bit a point for the value, none for the time.
        let bytes = try roundTrip(times, Array(repeating: 20.5, count: 1000))
        #expect(bytes.count < 1000 / 8 + 24)
        // One reading off the grid: the delta-of-delta column, about a bit a point.
        var jittered = times
        jittered[500] += Time.millisecond
        let offGrid = try roundTrip(jittered, Array(repeating: 20.5, count: 1000))
        #expect(offGrid.count > 1000 / 4 && offGrid.count < 1000 / 4 + 48)
    }

    /// Gaussian noise at 2 decimals around a daily sine (tsdb_compare's data).
    func noisySine(_ n: Int, seed: UInt64) -> [Double] {
        var state = seed
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Double(state >> 11) + 0.5) / Double(1 << 53)
        }
        return (0..<n).map { i in
            let gauss = (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform())
            return ((40 + 5 * sin(2 * .pi * Double(i * 5) / 86_400) + 0.3 * gauss) * 100).rounded() / 100
        }
    }

    @Test func noiseAroundATrendIsPredictedByTheMeanAndSmooth() throws {
        let start: Nanos = 1_790_000_000 * Time.second
        let times = (0..<8_640).map { start + Nanos($0) * 5 * Time.second }
        let noisy = noisySine(8_640, seed: 7)
        let bytes = try roundTrip(times, noisy)
        // The previous-value predictor would need about 7.6 bits a point; the mean of eight, 7.15.
        #expect(Double(bytes.count) * 8 / 8_640 < 7.3)
        let format2 = Self.format2(times, noisy, decimals: 2)
        #expect(try GorillaCodec.decode(format2).values == noisy)
        #expect(bytes.count < format2.count * 95 / 100)
        // A smooth signal keeps the previous-value predictor (its residuals are smaller).
        let smooth = (0..<2_000).map { ((50 + 10 * sin(Double($0) / 300)) * 10).rounded() / 10 }
        let smoothBytes = try roundTrip(Array(times.prefix(2_000)), smooth)
        #expect(smoothBytes.count <= Self.format2(Array(times.prefix(2_000)), smooth, decimals: 1).count - 2_000 / 8 + 1)
    }

    /// A chunk as format 2 wrote it (delta-of-delta times, previous-value deltas): still readable.
    static func format2(_ times: [Nanos], _ values: [Double], decimals: Int) -> [UInt8] {
        var out: [UInt8] = [GorillaCodec.format2, 3, UInt8(decimals)]
        Varint.append(UInt64(times.count), to: &out)
        var bits = BitWriter()
        GorillaCodec.writeTimes(times, exponent: 3, into: &bits)
        GorillaCodec.writeDecimals(values, decimals: decimals, into: &bits)
        return out + bits.finished
    }

    @Test func formatTwoChunksStillDecode() throws {
        let start: Nanos = 1_790_000_000 * Time.second
        let times = (0..<500).map { start + Nanos($0) * 5 * Time.second + ($0 % 3 == 0 ? Time.second : 0) }
        let values = noisySine(500, seed: 3)
        let decoded = try GorillaCodec.decode(Self.format2(times, values, decimals: 2))
        #expect(decoded.times == times)
        #expect(decoded.values == values)
    }

    /// The decoders' fuzz tier: random bytes, and valid chunks and roll-ups truncated, bit-flipped
    /// and with bytes inserted, must come back as an error or as values, never as a crash or a
    /// runaway allocation.
    @Test func hostileChunksAndRollupsNeverCrashTheDecoders() {
        var rng = SplitMix64(seed: 42)
        let start: Nanos = 1_790_000_000 * Time.second
        var seeds: [[UInt8]] = []
        for n in [0, 1, 2, 3, 50, 400] {
            let times = (0..<n).map { start + Nanos($0) * 5 * Time.second }
            seeds.append(GorillaCodec.encode(times: times, values: noisySine(n, seed: UInt64(n))))
            seeds.append(GorillaCodec.encode(times: times.map { $0 + Nanos($0 % 7) }, values: (0..<n).map { Double($0) * .pi }))
            seeds.append(Self.format2(times, (0..<n).map { Double($0 % 9) / 10 }, decimals: 1))
            let buckets = Rollup.buckets(times: times, values: noisySine(n, seed: 9), width: Time.minute, decimals: 2)
            seeds.append(Rollup.encode(buckets))
        }
        var decoded = 0
        for round in 0..<6_000 {
            var bytes: [UInt8]
            if round % 5 == 0 {
                bytes = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if !bytes.isEmpty && round % 2 == 0 { bytes[0] = [0x48, 0x49, 0x52][Int(rng.next() % 3)] }
            } else {
                bytes = seeds[Int(rng.next() % UInt64(seeds.count))]
                switch rng.next() % 3 {
                case 0: bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count + 1))))
                case 1: if !bytes.isEmpty { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 << (rng.next() % 8)) }
                default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(bytes.count + 1)))
                }
            }
            if let chunk = try? GorillaCodec.decode(bytes) {
                #expect(chunk.times.count == chunk.values.count)
                #expect(chunk.times.count <= max(1, bytes.count) * 8)
                decoded += 1
            }
            if let buckets = try? Rollup.decode(bytes) { #expect(buckets.count <= max(1, bytes.count) * 8) }
        }
        #expect(decoded > 0)  // the mutations left some chunks valid: the test reached the decoders' far ends
    }

    /// The Rice parameter search tries its four candidates in one pass (SIMD lanes); it must
    /// choose exactly what one pass per candidate chose, so chunks encode byte for byte the same.
    @Test func theOnePassRiceSearchChoosesAsOnePassPerCandidate() {
        func byPasses(_ residuals: [UInt64]) -> (parameter: Int, cost: UInt64) {
            var total: Double = 0
            for u in residuals { total += Double(u) }
            let mean = residuals.isEmpty ? 0 : total / Double(residuals.count)
            let guess = mean < 1 ? 0 : mean >= 0x1p29 ? 29 : 63 - UInt64(mean).leadingZeroBitCount
            var best = 0, bestCost = UInt64.max
            for p in max(0, guess - 1)...(guess + 2) {
                var cost: UInt64 = 0
                for u in residuals {
                    let q = u >> UInt64(p)
                    cost &+= q < GorillaCodec.riceEscape ? q + 1 + UInt64(p) : GorillaCodec.riceEscape + 64
                }
                if cost < bestCost { (best, bestCost) = (p, cost) }
            }
            return (best, bestCost)
        }
        var rng = SystemRandomNumberGenerator()
        var cases: [[UInt64]] = [[], [0], [UInt64.max], [0, 0, 0], Array(repeating: UInt64.max, count: 9), [1, 2, 3, 1 << 40]]
        for _ in 0..<2_000 {
            let scale = UInt64.random(in: 0...62, using: &rng)
            let count = Int.random(in: 1...300, using: &rng)
            cases.append((0..<count).map { _ in UInt64.random(in: 0...(UInt64(1) << scale), using: &rng) >> UInt64.random(in: 0...3, using: &rng) })
        }
        for residuals in cases {
            let (p, c) = GorillaCodec.riceParameter(residuals), (q, d) = byPasses(residuals)
            #expect(p == q && c == d, "\(residuals.prefix(8))")
        }
    }

    /// The bytes the encoder writes for a fixed corpus of chunks (regular and jittered grids, every
    /// time unit, both predictors, Rice escapes, decimal and XOR values, values whose resolution
    /// shows only late in the chunk) are pinned by a digest: a faster encoder must write exactly
    /// what the old one wrote, or old readers and the compaction's byte counts drift.
    @Test func theEncoderWritesTheSameBytesForAFixedCorpus() throws {
        var state: UInt64 = 42
        func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
        var total = 0
        for c in 0..<600 {
            let n = Int(next() % 400)
            let unit: Nanos = [1, 1_000, 1_000_000, 1_000_000_000][c % 4]
            let step = Nanos(next() % 10 + 1) * unit
            var t = Nanos(bitPattern: next() % (1 << 61)) / unit * unit
            let jitter = c % 3 == 0
            let decimals = c % 8
            let spread = [0.01, 0.3, 5, 1e4, 1e9][c % 5]
            var v = Double(next() % 1_000)
            var times: [Nanos] = [], values: [Double] = []
            for i in 0..<n {
                t += step + (jitter ? Nanos(next() % 3) * unit : 0)
                v += (Double(next() % 2_001) / 1_000 - 1) * spread
                let spike = next() % 97 == 0 ? spread * 1e8 : 0  // a Rice escape
                times.append(t)
                if decimals == 7 {
                    values.append(i % 50 == 49 ? v : (v * 100).rounded() / 100)  // XOR mode from the 50th
                } else {
                    // Some chunks show a finer resolution only halfway through.
                    let d = c % 5 == 1 && i == n / 2 ? min(decimals + 3, 6) : decimals
                    values.append(((v + spike) * Decimals.powers[d]).rounded() / Decimals.powers[d])
                }
            }
            let bytes = try roundTrip(times, values)
            total += bytes.count
            for b in bytes { digest = (digest ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        #expect(total == 533_211 && digest == 0xa261_994e_2e00_486f, "\(total) bytes, digest \(String(digest, radix: 16))")
    }

    @Test func edgeCasesRoundTripExactly() throws {
        _ = try roundTrip([], [])
        _ = try roundTrip([42], [.pi])
        // Equal timestamps, out of order, huge gaps, negative times, sub-second jitter.
        _ = try roundTrip([5, 5, 5, 3, Int64.max / 2, -Int64.max / 2, 7_000_000_123],
                          [1, 1, -0.0, 0.0, .greatestFiniteMagnitude, -.leastNonzeroMagnitude, 1e-300])
        // A regular grid whose steps wrap around Int64 (equal modulo 2^64 only): its unit comes
        // from the first time and the step, and the decoder's wrapping arithmetic rebuilds it.
        let wide: Nanos = 6_000_000_000_000_000_000
        _ = try roundTrip([0, wide, wide &+ wide, wide &+ wide &+ wide], [1, 2, 3, 4])
        // NaN payloads and infinities survive bit for bit (ingest rejects them; the codec does not care).
        _ = try roundTrip([1, 2, 3, 4], [.nan, .infinity, -.infinity, Double(bitPattern: 0x7ff8_dead_beef_0001)])
        // Random walk with millisecond jitter.
        var rng = SystemRandomNumberGenerator()
        var t: Nanos = 1_790_000_000_000_000_000
        var v = 50.0
        var times: [Nanos] = []
        var values: [Double] = []
        for _ in 0..<5000 {
            t += 5 * Time.second + Nanos(Int.random(in: -3...3, using: &rng)) * Time.millisecond
            v += Double.random(in: -0.5...0.5, using: &rng)
            times.append(t)
            values.append(v)
        }
        _ = try roundTrip(times, values)
    }

    @Test func corruptInputIsAnErrorNotACrash() {
        let bytes = GorillaCodec.encode(times: [1, 2, 3, 4, 5], values: [1, 2, 3, 4, 5])
        #expect(throws: GorillaCodec.DecodeError.self) { try GorillaCodec.decode(Array(bytes.prefix(bytes.count - 2))) }
        #expect(throws: GorillaCodec.DecodeError.badHeader) { try GorillaCodec.decode([0, 0, 0]) }
        #expect(throws: GorillaCodec.DecodeError.self) { try GorillaCodec.decode([0x48, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]) }
    }
}

@Suite struct SealerTests {
    let plaintext = Array("chunk of readings".utf8)
    let place = Array("health_data.db/chunks/pump-001/flow/1790000000".utf8)

    @Test func sealsAndOpens() throws {
        let key = MasterKey.generate()
        let sealer = Sealer(purpose: "chunks", keys: [], current: key)
        let block = sealer.seal(plaintext, context: place)
        #expect(block.count == plaintext.count + Sealer.overhead)
        #expect(try sealer.open(block, context: place) == plaintext)
        #expect(sealer.seal(plaintext, context: place) != block)  // fresh nonce each time
    }

    @Test func aBlockMovedToAnotherRowOrFlippedFailsToOpen() {
        let sealer = Sealer(purpose: "chunks", keys: [], current: .generate())
        var block = sealer.seal(plaintext, context: place)
        #expect(throws: Sealer.OpenError.tampered) {
            try sealer.open(block, context: Array("health_data.db/chunks/pump-002/flow/1790000000".utf8))
        }
        block[block.count / 2] ^= 0x01
        #expect(throws: Sealer.OpenError.tampered) { try sealer.open(block, context: place) }
        #expect(throws: Sealer.OpenError.tampered) { try sealer.open([1, 2, 3], context: place) }
    }

    @Test func wrongKeyAndPurposeAreRefused() throws {
        let a = MasterKey.generate(), b = MasterKey.generate()
        let block = Sealer(purpose: "chunks", keys: [], current: a).seal(plaintext, context: place)
        #expect(throws: Sealer.OpenError.unknownKey(a.id)) { try Sealer(purpose: "chunks", keys: [], current: b).open(block, context: place) }
        #expect(throws: Sealer.OpenError.tampered) { try Sealer(purpose: "audit", keys: [], current: a).open(block, context: place) }
    }

    @Test func rotationKeepsOldBlocksReadable() throws {
        let old = MasterKey.generate(), new = MasterKey.generate()
        let oldBlock = Sealer(purpose: "chunks", keys: [], current: old).seal(plaintext, context: place)
        let rotated = Sealer(purpose: "chunks", keys: [old], current: new)
        #expect(try rotated.open(oldBlock, context: place) == plaintext)
        let newBlock = rotated.seal(plaintext, context: place)
        #expect(try Sealer(purpose: "chunks", keys: [], current: new).open(newBlock, context: place) == plaintext)
        #expect(rotated.currentKeyID == new.id)
    }

    @Test func masterKeyMustBe32Bytes() {
        #expect(throws: TwinError.self) { try MasterKey(bytes: [1, 2, 3]) }
        #expect(throws: Never.self) { try MasterKey(bytes: Array(repeating: 7, count: 32)) }
    }
}

