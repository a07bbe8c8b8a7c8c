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

    @Test func regularGridCostsAboutOneBitPerTimestamp() throws {
        let start: Nanos = 1_790_000_000 * Time.second
        let times = (0..<1000).map { start + Nanos($0) * 5 * Time.second }
        let values = (0..<1000).map { 20 + Double($0 % 7) * 0.25 }
        let bytes = try roundTrip(times, values)
        #expect(bytes.count < 1000 * 3)  // well under 3 bytes a point before sealing
    }

    @Test func edgeCasesRoundTripExactly() throws {
        _ = try roundTrip([], [])
        _ = try roundTrip([42], [.pi])
        // Equal timestamps, out of order, huge gaps, negative times, sub-second jitter.
        _ = try roundTrip([5, 5, 5, 3, Int64.max / 2, -Int64.max / 2, 7_000_000_123],
                          [1, 1, -0.0, 0.0, .greatestFiniteMagnitude, -.leastNonzeroMagnitude, 1e-300])
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
