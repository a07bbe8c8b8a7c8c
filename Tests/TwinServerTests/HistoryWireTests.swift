import Proto
import SwiftProtobuf
import Testing
import TwinCore
@testable import TwinServer

/// `GetHistory` answers are written by hand (`HistoryWire`); a client decodes them with its own
/// protobuf library, so they must be exactly the bytes of the message, whatever the data.
@Suite struct HistoryWireTests {
    static let oddValues: [Double] = [0, -0.0, 1, -1, .nan, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 1e-300, 0.1]
    static let oddTimes: [Nanos] = [0, 1, -1, Time.second, -Time.second, 999_999_999, -999_999_999, 1_700_000_000 * Time.second + 5,
                                    .max, .min, .min + 1, .max - 1, 7_258_118_400 * Time.second]

    static func value(_ rng: inout SplitMix64) -> Double {
        rng.next() % 3 == 0 ? oddValues[Int(rng.next() % UInt64(oddValues.count))] : rng.uniform(-1e6, 1e6)
    }

    static func time(_ rng: inout SplitMix64, after previous: Nanos) -> Nanos {
        switch rng.next() % 4 {
        case 0: oddTimes[Int(rng.next() % UInt64(oddTimes.count))]
        case 1: Nanos(bitPattern: rng.next())
        default: previous &+ Nanos(rng.next() % 10_000_000_000)
        }
    }

    static func series(_ rng: inout SplitMix64, step: Nanos) -> HistoryWire.Series {
        let names = ["", "a", "bearing_temp", "ünïcode ✓", String(repeating: "x", count: 300)]
        var h = SeriesHistory(sensor: names[Int(rng.next() % UInt64(names.count))])
        let n = [0, 1, 2, 17, 200][Int(rng.next() % 5)]
        var t: Nanos = 1_700_000_000 * Time.second
        for _ in 0..<n {
            t = time(&rng, after: t)
            if step > 0 {
                let counts: [Int64] = [0, 1, 127, 128, 1 << 40, .max, -1]
                h.buckets.append(Bucket(start: t, count: counts[Int(rng.next() % UInt64(counts.count))], min: value(&rng), max: value(&rng),
                                        sum: value(&rng), last: value(&rng), lastTime: t))
            } else {
                h.times.append(t)
                h.values.append(value(&rng))
            }
        }
        return .init(unit: ["", "°C", "bar"][Int(rng.next() % 3)], history: h)
    }

    @Test func writesExactlyTheBytesOfTheMessage() throws {
        var rng = SplitMix64(seed: 20261203)
        let aggregates: [Twin_V1_Aggregate] = [.unspecified, .mean, .min, .max, .last, .count]
        let steps: [Nanos] = [0, 0, Time.second, 5 * Time.minute + 1, 1, 28 * Time.day, .max]
        for round in 0..<2_000 {
            let step = steps[round % steps.count]
            let aggregate = aggregates[Int(rng.next() % UInt64(aggregates.count))]
            let columnar = rng.next() % 2 == 0
            let device = ["", "pump-1", String(repeating: "d", count: 200)][round % 3]
            let series = (0..<Int(rng.next() % 4)).map { _ in Self.series(&rng, step: step) }

            var message = Twin_V1_GetHistoryResponse()
            message.deviceID = device
            if step > 0 { message.step = .init(nanos: step) }
            message.series = series.map { $0.history.proto(unit: $0.unit, step: step, aggregate: aggregate, columnar: columnar) }
            let expected: [UInt8] = try message.serializedBytes()
            let written = HistoryWire.encode(deviceID: device, step: step, series: series, aggregate: aggregate, columnar: columnar)
            #expect(written == expected, "round \(round): step \(step), \(aggregate), columnar \(columnar), \(series.count) series")
            if written != expected { return }
        }
    }

    @Test func aDayOfRawReadingsDecodesToTheReadings() throws {
        var h = SeriesHistory(sensor: "a")
        let start = 1_790_000_000 * Time.second
        for i in 0..<17_280 {
            h.times.append(start + Nanos(i) * 5 * Time.second)
            h.values.append(Double(i % 977) * 0.1)
        }
        for columnar in [false, true] {
            let bytes = try #require(HistoryWire.encode(deviceID: "history", step: 0, series: [.init(unit: "bar", history: h)], aggregate: .unspecified, columnar: columnar))
            let decoded = try Twin_V1_GetHistoryResponse(serializedBytes: bytes)
            #expect(decoded.deviceID == "history" && decoded.series.count == 1 && decoded.series[0].unit == "bar")
            if columnar {
                #expect(decoded.series[0].columns.values == h.values)
                #expect(decoded.series[0].columns.timeDeltas.reduce(0, +) == h.times.last)
            } else {
                #expect(decoded.series[0].points.map { $0.time.seconds * Time.second + Int64($0.time.nanos) } == h.times)
                #expect(decoded.series[0].points.map(\.value) == h.values)
            }
        }
    }

    @Test func aWriterNeverWritesPastItsBuffer() {
        var storage = [UInt8](repeating: 0xAA, count: 12)
        storage.withUnsafeMutableBufferPointer { all in
            var w = HistoryWire.Writer(UnsafeMutableBufferPointer(rebasing: all[0..<8]))
            w.double(2, 1.5)  // 9 bytes into 8
            w.string(1, "pump")
            #expect(w.overflowed)
            #expect(w.position <= 8)
        }
        #expect(storage[8..<12].allSatisfy { $0 == 0xAA })
    }
}
