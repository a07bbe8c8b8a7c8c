import Foundation
import GRDB
import Testing
import TwinCore
@testable import TwinStore

/// A temporary health_data.db with one key, reopened at will.
struct TestDatabase {
    let dir: String
    let key = MasterKey.generate()
    var options = SeriesStore.Options()

    init(chunkPoints: Int = 50) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("series-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        options.chunkPoints = chunkPoints
        options.largestCut = chunkPoints  // chunks of chunkPoints, so small tests make many
    }

    var path: String { dir + "/health_data.db" }

    func open(key: MasterKey? = nil) throws -> HealthDatabase {
        let db = try HealthDatabase(path: path, keys: KeyRing(keys: [key ?? self.key], source: "test", generated: false), durability: .normal, series: options)
        try db.series.bind(device: 0, id: "pump-001", sensors: ["flow", "bearing_temp"])
        try db.series.bind(device: 1, id: "fan-002", sensors: ["speed"])
        return db
    }
}

let t0: Nanos = 1_789_995_600 * Time.second  // 2026-09-21T13:00:00Z, on a whole hour

/// A noisy reading at the resolution real instruments report (0.1).
func reading(_ i: Int, sensor: Int32 = 0, device: Int32 = 0) -> Sample {
    let value = (10 * (50 + 10 * sin(Double(i) / 30) + Double((i * 7919) % 13) / 10)).rounded() / 10
    return Sample(device: device, sensor: sensor, time: t0 + Nanos(i) * 5 * Time.second, value: value)
}

func all(_ db: HealthDatabase, _ sensor: String = "flow", device: String = "pump-001", step: Nanos = 0,
         from: Nanos = t0 - Time.day, to: Nanos = t0 + 30 * Time.day) throws -> SeriesHistory {
    try db.series.history(HistoryQuery(deviceID: device, sensors: [sensor], from: from, to: to, step: step))[0]
}

/// Equal buckets, sums up to floating-point summation order.
func same(_ a: [Bucket], _ b: [Bucket]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { x, y in
        x.start == y.start && x.count == y.count && x.min == y.min && x.max == y.max && x.last == y.last
            && x.lastTime == y.lastTime && abs(x.sum - y.sum) <= 1e-9 * max(1, abs(y.sum))
    }
}

@Suite struct SeriesStoreTests {
    @Test func readingsComeBackExactlyAcrossChunksHeadAndRestarts() throws {
        let test = try TestDatabase(chunkPoints: 50)
        let samples = (0..<1_234).map { reading($0) } + (0..<300).map { reading($0, sensor: 1) }
        var db = try test.open()
        for batch in stride(from: 0, to: samples.count, by: 37) {
            try db.series.append(Array(samples[batch..<min(samples.count, batch + 37)]))
        }
        func check(_ db: HealthDatabase) throws {
            let flow = try all(db)
            #expect(flow.times == (0..<1_234).map { reading($0).time })
            #expect(flow.values == (0..<1_234).map { reading($0).value })
            #expect(try all(db, "bearing_temp").times.count == 300)
            #expect(try all(db, "speed", device: "fan-002").times.isEmpty)
        }
        try check(db)
        // The unchunked tail is replayed from the head; chunked readings are not replayed twice.
        db.close()
        db = try test.open()
        try check(db)
        // Appending after a restart continues cleanly.
        try db.series.append((1_234..<1_300).map { reading($0) })
        db.close()
        db = try test.open()
        #expect(try all(db).times.count == 1_300)
        let report = try db.series.verify()
        #expect(report.problems.isEmpty)
        #expect(report.readings + 1_300 + 300 - report.readings >= 0)
    }

    /// Readings chunked in the same commit are not written to the head too: a replay would skip
    /// them (their series' flushed_head moves to that block), and with batches that fill chunks
    /// the head had been most of what each commit wrote.
    @Test func theHeadHoldsOnlyTheReadingsNotChunkedWithThem() throws {
        let test = try TestDatabase(chunkPoints: 50)
        var db = try test.open()
        // Each batch: 60 flow readings (flow is cut every time) and 3 bearing temperatures (they
        // stay in the buffer), interleaved in time.
        for b in 0..<4 {
            var batch = (0..<60).map { reading(b * 60 + $0) }
            for k in 0..<3 { batch.insert(reading(b * 3 + k, sensor: 1), at: 20 * k) }
            try db.series.append(batch)
        }
        func headReadings(_ db: HealthDatabase) throws -> [Int64] {
            let rows = try db.pool.read { try Row.fetchAll($0, sql: "SELECT id, data FROM head ORDER BY id") }
            var series: [Int64] = []
            for row in rows {
                let plain = try #require(try? db.series.sealer.open(Array(row["data"] as Data), context: SeriesStore.headContext(row["id"])))
                try SeriesStore.decodeHead(plain) { id, _, _ in series.append(id) }
            }
            return series
        }
        #expect(try headReadings(db) == Array(repeating: 2, count: 12), "only bearing_temp (series 2) is in the head")
        func check(_ db: HealthDatabase) throws {
            #expect(try all(db).values == (0..<240).map { reading($0).value })
            #expect(try all(db, "bearing_temp").values == (0..<12).map { reading($0, sensor: 1).value })
        }
        try check(db)
        db.close()
        db = try test.open()
        try check(db)
        // A batch that is all chunked writes no head block at all.
        let before = try db.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM head") }
        try db.series.append((240..<300).map { reading($0) })
        #expect(try db.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM head") } == before)
        db.close()
        db = try test.open()
        #expect(try all(db).times.count == 300)
        #expect(try all(db, "bearing_temp").times.count == 12)
    }

    @Test func aBatchThatBringsASeriesManyReadingsIsCutAsOneChunk() throws {
        var test = try TestDatabase(chunkPoints: 50)
        test.options.largestCut = 1_000
        var db = try test.open()
        func chunks() throws -> [Int] {
            try db.pool.read { try Int.fetchAll($0, sql: "SELECT count FROM chunks WHERE series_id = 1 ORDER BY id") }
        }
        // 600 readings in one batch: one chunk, not twelve of 50.
        try db.series.append((0..<600).map { reading($0) })
        #expect(try chunks() == [600])
        // 2,500: more than the largest cut, two chunks of 1,250.
        try db.series.append((600..<3_100).map { reading($0) })
        #expect(try chunks() == [600, 1_250, 1_250])
        // 30: stays in the buffer (the head) until the series has chunkPoints.
        try db.series.append((3_100..<3_130).map { reading($0) })
        #expect(try chunks().count == 3)
        db.close()
        db = try test.open()
        #expect(try all(db).values == (0..<3_130).map { reading($0).value })
    }

    /// A cut chunk at least half a compacted one's size is never merged by compaction: it is
    /// written with its hour roll-ups (smaller ones get theirs when compaction merges them).
    @Test func aLargeCutChunkCarriesItsHourRollups() throws {
        var test = try TestDatabase(chunkPoints: 50)
        test.options.largestCut = 20_000
        test.options.compactPoints = 2_000
        let db = try test.open()
        try db.series.append((0..<999).map { reading($0) })
        try db.series.append((999..<4_999).map { reading($0) })
        let rows = try db.pool.read { d in
            try Row.fetchAll(d, sql: "SELECT id, start, end, count, raw, data FROM chunks WHERE series_id = 1 ORDER BY start")
        }
        let series: SeriesStore.Series = db.series.state.withLock { $0.series[0] }
        let hours = try rows.map { row in
            let chunk = SeriesStore.StoredChunk(id: row["id"], start: row["start"], end: row["end"], count: row["count"], raw: row["raw"], block: Array(row["data"] as Data))
            return (chunk.count, try !db.series.open(chunk, of: series).hour.isEmpty)
        }
        #expect(hours.map(\.0) == [999, 4_000])
        #expect(hours.map(\.1) == [false, true])
        let (from, to) = (t0 - Time.hour, t0 + Time.day)
        #expect(same(try all(db, step: Time.hour, from: from, to: to).buckets, reference((0..<4_999).map { reading($0) }, step: Time.hour, from: from, to: to)))
        #expect(try db.series.verify().problems.isEmpty)
    }

    @Test func lateAndOutOfOrderReadingsLandInPlace() throws {
        let test = try TestDatabase(chunkPoints: 40)
        let db = try test.open()
        var order = Array(0..<500)
        var rng = SystemRandomNumberGenerator()
        order.shuffle(using: &rng)
        for batch in stride(from: 0, to: 500, by: 25) {
            try db.series.append(order[batch..<batch + 25].map { reading($0) })
        }
        // A late batch for an hour already chunked, including a duplicate timestamp.
        try db.series.append([Sample(device: 0, sensor: 0, time: t0 + 3 * Time.second, value: 99.5)])
        let flow = try all(db)
        #expect(flow.times.count == 501)
        #expect(flow.times == flow.times.sorted())
        #expect(flow.values.contains(99.5))
        #expect(flow.times[1] == t0 + 3 * Time.second)
    }

    /// Buckets computed by brute force from the raw readings.
    func reference(_ samples: [Sample], step: Nanos, from: Nanos, to: Nanos) -> [Bucket] {
        var buckets: [Nanos: Bucket] = [:]
        for s in samples where s.time >= from && s.time < to {
            let start = Rollup.floorDiv(s.time, step) * step
            buckets[start, default: Bucket(start: start, count: 0, min: 0, max: 0, sum: 0, last: 0, lastTime: .min)].add(time: s.time, value: s.value)
        }
        return buckets.values.sorted { $0.start < $1.start }
    }

    @Test func downsampledHistoryMatchesABruteForceReference() throws {
        let test = try TestDatabase(chunkPoints: 100)
        let db = try test.open()
        // Three days at 5 s with a gap, plus late readings sent afterwards.
        var samples = (0..<52_000).filter { !(20_000..<21_000).contains($0) }.map { reading($0) }
        let late = (20_000..<20_050).map { reading($0) }
        for batch in stride(from: 0, to: samples.count, by: 1_000) {
            try db.series.append(Array(samples[batch..<min(samples.count, batch + 1_000)]))
        }
        try db.series.append(late)
        samples += late
        // Edges off the minute grid: the buckets there must still be exact.
        for (from, to) in [
            (t0 + 2 * Time.hour + 17 * Time.second, t0 + 60 * Time.hour - 23 * Time.second),
            (t0 + 2 * Time.hour, t0 + 60 * Time.hour),
        ] { for step in [Time.minute, 15 * Time.minute, Time.hour, 6 * Time.hour, 7 * Time.second * 13] {
            let got = try all(db, step: step, from: from, to: to).buckets
            let want = reference(samples, step: step, from: from, to: to)
            #expect(got.count == want.count, "step \(step)")
            for (g, w) in zip(got, want) {
                #expect(g.start == w.start && g.count == w.count && g.min == w.min && g.max == w.max && g.last == w.last)
                #expect(abs(g.sum - w.sum) < 1e-6 * max(1, abs(w.sum)))
            }
        } }
    }

    @Test func retentionKeepsRollupsAfterRawExpiresAndNeverLosesTheHead() throws {
        var test = try TestDatabase(chunkPoints: 60)
        test.options.rawRetention = 2 * Time.day
        test.options.rollupRetention = 10 * Time.day
        test.options.retentionBatch = 7
        test.options.compactAfter = .max  // retention alone here
        let db = try test.open()
        let samples = (0..<6_000).map { reading($0) }  // ~8.3 h
        try db.series.append(samples)
        let before = try all(db, step: Time.hour).buckets
        // Three days on: raw points past 2 d go, a few chunks per pass; roll-ups stay.
        var passes = 0
        while try db.series.maintain(now: t0 + 3 * Time.day).rawExpired > 0 { passes += 1 }
        #expect(passes >= 10)
        #expect(try all(db).times.isEmpty)
        #expect(same(try all(db, step: Time.hour).buckets, before))
        // Eleven days on: everything goes.
        while try db.series.maintain(now: t0 + 11 * Time.day).deleted > 0 {}
        #expect(try all(db, step: Time.hour).buckets.isEmpty)
        #expect(try db.series.verify().problems.isEmpty)
    }

    @Test func compactionMergesSmallChunksWithoutChangingHistory() throws {
        var test = try TestDatabase(chunkPoints: 20)
        test.options.compactPoints = 200
        test.options.compactAfter = 4
        let db = try test.open()
        let samples = (0..<1_000).map { reading($0) }
        for batch in stride(from: 0, to: 1_000, by: 10) { try db.series.append(Array(samples[batch..<batch + 10])) }
        // A late reading in an old chunk's span, and the other series untouched.
        try db.series.append([Sample(device: 0, sensor: 0, time: t0 + 2 * Time.second, value: 1.5)])
        let before = try all(db)
        let hourly = try all(db, step: Time.minute).buckets
        func chunks() throws -> Int { try db.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM chunks") }! }
        #expect(try chunks() == 50)
        let report = try db.series.maintain(now: t0)
        #expect(report.compactedFrom >= 45 && report.compactedInto <= 8)
        #expect(try chunks() < 10)
        #expect(try all(db).times == before.times)
        #expect(try all(db).values == before.values)
        #expect(same(try all(db, step: Time.minute).buckets, hourly))
        #expect(try db.series.verify().problems.isEmpty)
        // The pages the merged-away chunks held go back to the file system.
        #expect(try db.pool.read { try Int.fetchOne($0, sql: "PRAGMA auto_vacuum") } == 2)
        #expect(try db.pool.read { try Int.fetchOne($0, sql: "PRAGMA freelist_count") } == 0)
    }

    @Test func compactedChunksKeepHourRollupsOnlyAndMinuteBucketsStayExact() throws {
        var test = try TestDatabase(chunkPoints: 100)
        test.options.compactPoints = 2_000
        test.options.compactAfter = 2
        test.options.rawRetention = 2 * Time.day
        test.options.rollupRetention = 10 * Time.day
        let db = try test.open()
        let samples = (0..<6_000).map { reading($0) }  // ~8.3 h
        try db.series.append(samples)
        #expect(try db.series.maintain(now: t0).compactedInto > 0)
        // A compacted chunk: raw points and hour roll-ups, no minute roll-ups (the raw points
        // answer minute steps while they are kept).
        let rows = try db.pool.read { d in
            try Row.fetchAll(d, sql: "SELECT id, start, end, count, raw, data FROM chunks WHERE series_id = 1 AND count > 100")
        }
        let series: SeriesStore.Series = db.series.state.withLock { $0.series[0] }
        var sections: [(raw: ArraySlice<UInt8>, minute: ArraySlice<UInt8>, hour: ArraySlice<UInt8>)] = []
        for row in rows {
            let chunk = SeriesStore.StoredChunk(id: row["id"], start: row["start"], end: row["end"], count: row["count"], raw: row["raw"], block: Array(row["data"] as Data))
            sections.append(try db.series.open(chunk, of: series))
        }
        #expect(!sections.isEmpty)
        #expect(sections.allSatisfy { $0.minute.isEmpty && !$0.hour.isEmpty })
        let (from, to) = (t0 - Time.hour, t0 + Time.day)
        for step in [Time.minute, 5 * Time.minute, Time.hour] {
            #expect(same(try all(db, step: step, from: from, to: to).buckets, reference(samples, step: step, from: from, to: to)), "step \(step)")
        }
        // Past the raw period retention makes the minute roll-ups before the points go.
        while try db.series.maintain(now: t0 + 3 * Time.day).rawExpired > 0 {}
        #expect(try all(db).times.isEmpty)
        for step in [Time.minute, 5 * Time.minute, Time.hour] {
            #expect(same(try all(db, step: step, from: from, to: to).buckets, reference(samples, step: step, from: from, to: to)), "step \(step) after retention")
        }
        #expect(try db.series.verify().problems.isEmpty)
    }

    @Test func compactionFillsEachMergedChunkToCompactPoints() throws {
        var test = try TestDatabase(chunkPoints: 100)
        test.options.largestCut = 700
        test.options.compactPoints = 2_000
        test.options.compactAfter = 2
        let db = try test.open()
        for b in 0..<10 { try db.series.append((b * 700..<(b + 1) * 700).map { reading($0) }) }
        func counts() throws -> [Int] {
            try db.pool.read { try Int.fetchAll($0, sql: "SELECT count FROM chunks WHERE series_id = 1 ORDER BY start") }
        }
        #expect(try counts() == Array(repeating: 700, count: 10))
        // Runs of exactly 2,000 (a chunk that overflows one is split into the next), and the
        // rest: not 1,400-reading pairs of whole chunks.
        #expect(try db.series.maintain(now: t0).compactedFrom == 10)
        #expect(try counts() == [2_000, 2_000, 2_000, 1_000])
        // One fresh chunk alone is left as it is; two are merged.
        try db.series.append((7_000..<7_700).map { reading($0) })
        _ = try db.series.maintain(now: t0)
        #expect(try counts() == [2_000, 2_000, 2_000, 1_000, 700])
        try db.series.append((7_700..<8_400).map { reading($0) })
        _ = try db.series.maintain(now: t0)
        #expect(try counts() == [2_000, 2_000, 2_000, 1_000, 1_400])
        #expect(try all(db).values == (0..<8_400).map { reading($0).value })
        #expect(try db.series.verify().problems.isEmpty)
    }

    @Test func aStaleBufferIsCutAndTheHeadEmptied() throws {
        let test = try TestDatabase(chunkPoints: 1_000)
        let db = try test.open()
        try db.series.append((0..<10).map { reading($0) })
        #expect(try db.series.maintain(now: Time.now() + 2 * Time.hour).cutStale == 1)
        #expect(try db.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM head") } == 0)
        #expect(try all(db).times.count == 10)
    }

    @Test func tamperedOrSwappedChunksAreDataLossNamingTheSeries() throws {
        let test = try TestDatabase(chunkPoints: 20)
        let db = try test.open()
        try db.series.append((0..<100).map { reading($0) } + (0..<100).map { reading($0, sensor: 1) })
        // Flip one bit in the first chunk of flow.
        try db.pool.write { db in
            let row = try Row.fetchOne(db, sql: "SELECT id, data FROM chunks WHERE series_id = 1 ORDER BY start LIMIT 1")!
            var data = Array(row["data"] as Data)
            data[data.count / 2] ^= 0x10
            try db.execute(sql: "UPDATE chunks SET data = ? WHERE id = ?", arguments: [Data(data), row["id"] as Int64])
        }
        let error = try #require(throws: TwinError.self) { try all(db) }
        #expect(error.code == .dataLoss)
        #expect(error.message.contains("pump-001/flow"))
        // Everything else still reads.
        #expect(try all(db, "bearing_temp").times.count == 100)
        #expect(try all(db, from: t0 + 50 * 5 * Time.second).times.count == 50)
        // Swap two intact chunks of bearing_temp: both fail to open.
        try db.pool.write { db in
            let rows = try Row.fetchAll(db, sql: "SELECT id, data FROM chunks WHERE series_id = 2 ORDER BY start LIMIT 2")
            try db.execute(sql: "UPDATE chunks SET data = ? WHERE id = ?", arguments: [rows[1]["data"] as Data, rows[0]["id"] as Int64])
            try db.execute(sql: "UPDATE chunks SET data = ? WHERE id = ?", arguments: [rows[0]["data"] as Data, rows[1]["id"] as Int64])
        }
        #expect(throws: TwinError.self) { try all(db, "bearing_temp") }
        let report = try db.series.verify()
        #expect(report.problems.count == 3)
        #expect(report.problems.allSatisfy { $0.contains("pump-001/") })
    }

    @Test func aDifferentKeyIsRefusedWithOneClearLine() throws {
        let test = try TestDatabase()
        try test.open().series.append((0..<10).map { reading($0) })
        let error = try #require(throws: TwinError.self) { try test.open(key: MasterKey.generate()) }
        #expect(error.code == .failedPrecondition)
        #expect(error.message.contains("does not match this data directory"))
    }

    @Test func aDatabaseFromThePreviousSchemaIsMigratedKeepingItsData() throws {
        let test = try TestDatabase()
        do {
            let pool = try DatabasePool(path: test.path)
            try HealthDatabase.migrator(Sealer(purpose: "health_data", keys: [], current: .generate())).migrate(pool, upTo: "v1: devices, events, key checks")
            try pool.write { try $0.execute(sql: "INSERT INTO devices (id, definition) VALUES ('x', x'7b7d')") }
            try pool.close()
        }
        let db = try test.open()
        #expect(try db.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM devices") } == 1)
        try db.series.append((0..<10).map { reading($0) })
        #expect(try all(db).times.count == 10)
    }

    @Test func rollupsEncodeCompactlyAndRoundTrip() throws {
        let times = (0..<600).map { reading($0).time }
        let values = (0..<600).map { reading($0).value }
        let buckets = Rollup.buckets(times: times, values: values, width: Time.minute, decimals: Decimals.of(values))
        #expect(buckets.count == 50)
        #expect(try Rollup.decode(Rollup.encode(buckets)) == buckets)
        #expect(Rollup.encode(buckets).count < 50 * 12)
        let chunk = GorillaCodec.encode(times: times, values: values)
        #expect(chunk.count < 600 * 2)  // decimal mode: well under 2 bytes a reading
        #expect(Decimals.of([0.1, 0.25, 3]) == 2)
        #expect(Decimals.of([-0.0]) == nil)
        #expect(Decimals.of([.pi]) == nil)
    }
}

@Suite struct PackedBufferTests {
    @Test func readingsRoundTripExactlyWhateverTheirResolution() {
        var buffer = PackedBuffer()
        let times: [Nanos] = [10, 20, 30, 25, 1_000_000_000_000, -5, 40, 50, 60]
        let values: [Double] = [71, 71.5, 71.25, .nan, -0.0, 1e300, 0.000001, 3.14159265, 72]
        for (t, v) in zip(times, values) { buffer.append(time: t, value: v) }
        let unpacked = buffer.unpacked()
        #expect(unpacked.times == times)
        #expect(unpacked.values.map(\.bitPattern) == values.map(\.bitPattern))
    }

    @Test func regularReadingsAtAResolutionTakeAFewBytes() {
        var buffer = PackedBuffer()
        for i in 0..<240 { buffer.append(time: t0 + Nanos(i) * 5 * Time.second, value: reading(i).value) }
        #expect(buffer.count == 240)
        #expect(buffer.byteCount < 240 * 4)
    }
}

/// Readers and writers do not wait for each other's SQLite work, and one answer is bounded.
@Suite struct HistoryLimitTests {
    @Test func theRawLimitHoldsOverAllSensorsOfTheAnswer() throws {
        let test = try TestDatabase(chunkPoints: 50)
        let db = try test.open()
        defer { db.close() }
        try db.series.append((0..<120).map { reading($0) } + (0..<120).map { reading($0, sensor: 1) })
        var query = HistoryQuery(deviceID: "pump-001", sensors: ["flow", "bearing_temp"], from: t0 - Time.day, to: t0 + Time.day, step: 0)
        query.maxRawPoints = 200
        #expect(throws: TwinError.self) { try db.series.history(query) }
        query.maxRawPoints = 240
        #expect(try db.series.history(query).map(\.times.count) == [120, 120])
    }

    @Test func readsAcrossConcurrentCutsSeeEveryReadingOnce() async throws {
        // A writer cutting chunks while readers read: every answer is a prefix of the readings
        // in order, without a duplicate or a gap.
        let test = try TestDatabase(chunkPoints: 20)
        let db = try test.open()
        defer { db.close() }
        let total = 3_000
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for start in stride(from: 0, to: total, by: 7) {
                    try db.series.append((start..<min(total, start + 7)).map { reading($0) })
                }
            }
            for _ in 0..<2 {
                group.addTask {
                    var seen = 0
                    while seen < total {
                        let times = try all(db).times
                        #expect(times == (0..<times.count).map { reading($0).time })
                        seen = times.count
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
