import Foundation
import GRDB
import Synchronization
import TwinCore

/// Sensor history in `health_data.db`: compressed, encrypted chunks per (device, sensor), with a
/// durable head for readings not yet in a chunk.
///
/// Every `append` is one SQLite transaction: each series whose open buffer reaches
/// `chunkPoints` with the batch is cut into a chunk (Gorilla-coded points plus 1-minute and
/// 1-hour roll-ups, sealed together and bound to the chunk's row), and the batch's other
/// readings go into `head` as one sealed block, so every reading survives a crash once the
/// call returns. A head block is deleted once
/// every reading in it is in a chunk; `series.flushed_head` records, per series, the last head
/// block it has taken in, so a restart replays exactly the readings not yet chunked.
///
/// Late and out-of-order readings go through the same path and land in a chunk whose time bounds
/// overlap older ones; a query merges chunks by time. Retention turns chunks older than the raw
/// period into roll-up-only chunks and deletes those older than the roll-up period, a bounded
/// slice per `maintain` call, so it never stalls ingest.
public final class SeriesStore: HistoryStore {
    public struct Options: Sendable {
        /// Readings per chunk (per series) before it is cut.
        public var chunkPoints = 240
        /// A batch that brings a series more readings than this is cut into chunks of this size
        /// to twice it (less one); below it, one chunk per series and batch.
        public var largestCut = 17_280
        /// A series buffer older than this is cut even if not full, so the head stays small.
        public var maxBufferAge: Nanos = Time.hour
        /// Raw readings are kept this long; roll-ups longer.
        public var rawRetention: Nanos = 90 * Time.day
        public var rollupRetention: Nanos = 730 * Time.day
        /// Chunks handled per retention step.
        public var retentionBatch = 2_000
        /// Compaction merges a series' small chunks into chunks of up to this many readings
        /// (24 h at a 5 s interval), once it has `compactAfter` new ones: long queries then open
        /// few chunks, and the per-chunk overhead shrinks (SQLite leaves about 1.8 KB of each
        /// chunk's last page unused: 0.4 B a reading at 6 h chunks, 0.1 at 24 h).
        public var compactPoints = 17_280
        public var compactAfter = 8
        /// Chunks of fewer readings than this are merged by compaction; larger ones are final
        /// (and carry their hour roll-ups from the start).
        var mergedBelow: Int { compactPoints / 2 }
        /// Series compacted per maintenance pass.
        public var compactBatch = 1_000

        public init() {}
    }

    struct Series {
        let id: Int64
        let deviceID: String
        let sensor: String
        var buffer = PackedBuffer()
        /// The head block holding the oldest buffered reading; 0 when the buffer is empty.
        var firstHead: Int64 = 0
        var firstArrival: Nanos = 0
        /// Bumped whenever chunks of this series are written: a reader that took the buffer
        /// before and the rows after knows to try again.
        var writes: UInt64 = 0
    }

    struct State {
        /// Series by id - 1 (ids are dense: series are never deleted).
        var series: [Series] = []
        var byName: [String: Int] = [:]
        /// Registry device index → sensor index → series index.
        var byDevice: [[Int]] = []
        var nextHead: Int64 = 1
        var nextChunk: Int64 = 1
        var stagedCounts: [Int32] = []
        /// Scratch for `append`, by series: the series' place in the batch's list of cuts, or -1.
        var cutSlot: [Int32] = []
        /// Per series: chunks cut since its last compaction.
        var freshChunks: [Int] = []
    }

    /// A chunk row about to be written.
    struct NewChunk {
        let series: Int
        let start: Nanos
        let end: Nanos
        let count: Int
        let plain: [UInt8]
    }

    let pool: DatabasePool
    let sealer: Sealer
    public let options: Options
    public var rawRetention: Nanos { options.rawRetention }
    let state: Mutex<State>

    /// Opens the series store on `health_data.db` (already migrated) and replays its head.
    init(pool: DatabasePool, sealer: Sealer, options: Options) throws(TwinError) {
        self.pool = pool
        self.sealer = sealer
        self.options = options
        var s = State()
        do {
            try pool.read { db in
                var flushed: [Int64] = []
                for row in try Row.fetchAll(db, sql: "SELECT id, device_id, sensor, flushed_head FROM series ORDER BY id") {
                    let id: Int64 = row["id"]
                    guard id == Int64(s.series.count + 1) else { throw TwinError.dataLoss("series ids of \(pool.path) are not dense (id \(id))") }
                    let device: String = row["device_id"]
                    let sensor: String = row["sensor"]
                    s.byName[Self.key(device, sensor)] = s.series.count
                    s.series.append(Series(id: id, deviceID: device, sensor: sensor))
                    flushed.append(row["flushed_head"])
                }
                let maxHead = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM head") ?? 0
                s.nextHead = max(maxHead, flushed.max() ?? 0) + 1
                s.nextChunk = (try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM chunks") ?? 0) + 1
                let now = Time.now()
                for row in try Row.fetchAll(db, sql: "SELECT id, data FROM head ORDER BY id") {
                    let head: Int64 = row["id"]
                    let block = Array(row["data"] as Data)
                    guard let plain = try? sealer.open(block, context: Self.headContext(head)) else {
                        throw TwinError.dataLoss(
                            "unacknowledged-to-chunk readings in head block \(head) of \(pool.path) cannot be opened: altered, or sealed with another key")
                    }
                    try Self.decodeHead(plain) { series, time, value throws(TwinError) in
                        guard series >= 1 && series <= s.series.count else { throw .dataLoss("head block \(head) names unknown series \(series)") }
                        let i = Int(series - 1)
                        if head <= flushed[i] { return }
                        if s.series[i].buffer.isEmpty {
                            s.series[i].firstHead = head
                            s.series[i].firstArrival = now
                        }
                        s.series[i].buffer.append(time: time, value: value)
                    }
                }
            }
        } catch let error as TwinError {
            throw error
        } catch {
            throw .unavailable("cannot open the time series of \(pool.path): \(error)")
        }
        state = Mutex(s)
    }

    static func key(_ device: String, _ sensor: String) -> String { device + "\u{0}" + sensor }

    // MARK: Binding

    public func bind(device index: Int32, id: String, sensors: [String]) throws(TwinError) {
        try state.withLock { s throws(TwinError) in
            var indices: [Int] = []
            for sensor in sensors {
                if let i = s.byName[Self.key(id, sensor)] {
                    indices.append(i)
                    continue
                }
                let newID = Int64(s.series.count + 1)
                do {
                    try pool.write { db in
                        try db.execute(sql: "INSERT INTO series (id, device_id, sensor, flushed_head) VALUES (?, ?, ?, 0)", arguments: [newID, id, sensor])
                    }
                } catch {
                    throw .unavailable("cannot register series \(id)/\(sensor): \(error)")
                }
                s.byName[Self.key(id, sensor)] = s.series.count
                indices.append(s.series.count)
                s.series.append(Series(id: newID, deviceID: id, sensor: sensor))
            }
            let d = Int(index)
            if s.byDevice.count <= d { s.byDevice.append(contentsOf: repeatElement([], count: d + 1 - s.byDevice.count)) }
            s.byDevice[d] = indices
        }
    }

    // MARK: Appending

    public func append(_ samples: [Sample]) throws(TwinError) {
        if samples.isEmpty { return }
        let now = Time.now()
        try state.withLock { s throws(TwinError) in
            // Resolve each sample's series and count what each series gains.
            var seriesOf: [Int] = []
            seriesOf.reserveCapacity(samples.count)
            if s.stagedCounts.count < s.series.count { s.stagedCounts.append(contentsOf: repeatElement(0, count: s.series.count - s.stagedCounts.count)) }
            var touched: [Int] = []
            for sample in samples {
                let d = Int(sample.device)
                guard d >= 0, d < s.byDevice.count, sample.sensor >= 0, Int(sample.sensor) < s.byDevice[d].count else {
                    for t in touched { s.stagedCounts[t] = 0 }
                    throw .internalError("sample for unbound device index \(d) sensor \(sample.sensor)")
                }
                let i = s.byDevice[d][Int(sample.sensor)]
                seriesOf.append(i)
                if s.stagedCounts[i] == 0 { touched.append(i) }
                s.stagedCounts[i] += 1
            }
            let head = s.nextHead
            var cut: [Int] = []
            for i in touched where s.series[i].buffer.count + Int(s.stagedCounts[i]) >= options.chunkPoints {
                cut.append(i)
            }
            for t in touched { s.stagedCounts[t] = 0 }
            if s.cutSlot.count < s.series.count { s.cutSlot.append(contentsOf: repeatElement(-1, count: s.series.count - s.cutSlot.count)) }
            for (slot, i) in cut.enumerated() { s.cutSlot[i] = Int32(slot) }
            defer { for i in cut { s.cutSlot[i] = -1 } }

            // The head block: the readings of the batch that stay in buffers, so they are durable
            // before the call returns. Those of series cut below go into chunks in the same
            // transaction, which also moves those series' flushed_head to this block: a replay
            // would skip them, so they are not written twice (with batches that fill chunks,
            // the head had been most of the bytes each commit wrote).
            let buffered = seriesOf.reduce(0) { $0 + (s.cutSlot[$1] < 0 ? 1 : 0) }
            var plain: [UInt8] = []
            plain.reserveCapacity(buffered * 12 + 8)
            Varint.append(UInt64(buffered), to: &plain)
            var previousTime: Nanos = 0
            for (k, sample) in samples.enumerated() where s.cutSlot[seriesOf[k]] < 0 {
                Varint.append(UInt64(s.series[seriesOf[k]].id), to: &plain)
                Varint.append(GorillaCodec.zigzag(sample.time &- previousTime), to: &plain)
                previousTime = sample.time
                withUnsafeBytes(of: sample.value.bitPattern.littleEndian) { plain.append(contentsOf: $0) }
            }

            // Series that fill up are cut, with this batch's readings.
            var chunks: [NewChunk] = []
            if !cut.isEmpty {
                var times = [[Nanos]](repeating: [], count: cut.count)
                var values = [[Double]](repeating: [], count: cut.count)
                for (slot, i) in cut.enumerated() {
                    (times[slot], values[slot]) = s.series[i].buffer.unpacked()
                }
                for (k, sample) in samples.enumerated() {
                    let slot = Int(s.cutSlot[seriesOf[k]])
                    if slot >= 0 {
                        times[slot].append(sample.time)
                        values[slot].append(sample.value)
                    }
                }
                // One chunk per series and batch, up to `largestCut`: a batch that brings a
                // series many readings (a gateway's backlog, a bulk load) pays the per-chunk
                // costs (sealing, a row, a header) once, not once every `chunkPoints`. A chunk
                // that large is past what compaction merges, so it gets its hour roll-ups now.
                for (slot, i) in cut.enumerated() {
                    let large = times[slot].count >= options.mergedBelow
                    chunks += Self.makeChunks(series: i, times: times[slot], values: values[slot], size: options.largestCut, rollups: large)
                }
            }
            try write(&s, head: buffered > 0 ? (head, plain) : nil, chunks: chunks, flushedHead: head)

            // Committed: now the memory follows.
            s.nextHead += 1
            for i in cut {
                s.series[i].buffer.removeAll()
                s.series[i].firstHead = 0
            }
            for (k, sample) in samples.enumerated() where s.cutSlot[seriesOf[k]] < 0 {
                let i = seriesOf[k]
                if s.series[i].buffer.isEmpty {
                    s.series[i].firstHead = head
                    s.series[i].firstArrival = now
                }
                s.series[i].buffer.append(time: sample.time, value: sample.value)
            }
        }
    }

    /// Writes a head block (if any) and chunks in one transaction, records how far each cut series
    /// has taken in the head, and drops head blocks no buffer needs any more.
    private func write(
        _ s: inout State, head: (id: Int64, plain: [UInt8])?, chunks: [NewChunk], flushedHead: Int64?, retiring: [Int64] = []
    ) throws(TwinError) {
        var sealed: [(id: Int64, chunk: NewChunk, block: [UInt8])] = []
        sealed.reserveCapacity(chunks.count)
        var nextChunk = s.nextChunk
        for chunk in chunks {
            let series = s.series[chunk.series]
            let context = Self.chunkContext(id: nextChunk, series: series, start: chunk.start, end: chunk.end, count: chunk.count, raw: true)
            sealed.append((nextChunk, chunk, sealer.seal(chunk.plain, context: context)))
            nextChunk += 1
        }
        // After this write, the oldest head block still needed by a buffer.
        var oldestNeeded = head?.id ?? s.nextHead
        if !chunks.isEmpty {
            let cut = Set(chunks.map(\.series))
            for (i, series) in s.series.enumerated() where series.firstHead != 0 && !cut.contains(i) {
                oldestNeeded = min(oldestNeeded, series.firstHead)
            }
        }
        let headBlock = head.map { sealer.seal($0.plain, context: Self.headContext($0.id)) }
        do {
            try pool.write { db in
                if let head, let headBlock {
                    try db.cachedStatement(sql: "INSERT INTO head (id, data) VALUES (?, ?)").execute(arguments: [head.id, Data(headBlock)])
                }
                let insert = try db.cachedStatement(sql: "INSERT INTO chunks (id, series_id, start, end, count, raw, data) VALUES (?, ?, ?, ?, ?, 1, ?)")
                let flushed = try db.cachedStatement(sql: "UPDATE series SET flushed_head = ? WHERE id = ?")
                for (id, chunk, block) in sealed {
                    let seriesID = s.series[chunk.series].id
                    try insert.execute(arguments: [id, seriesID, chunk.start, chunk.end, chunk.count, Data(block)])
                    if let flushedHead { try flushed.execute(arguments: [flushedHead, seriesID]) }
                }
                if !retiring.isEmpty {
                    try db.execute(sql: "DELETE FROM chunks WHERE id IN (\(retiring.map(String.init).joined(separator: ",")))")
                }
                if !chunks.isEmpty && flushedHead != nil {
                    try db.cachedStatement(sql: "DELETE FROM head WHERE id < ?").execute(arguments: [oldestNeeded])
                }
            }
        } catch {
            throw .unavailable("cannot store readings: \(error)")
        }
        s.nextChunk = nextChunk
        for chunk in chunks { s.series[chunk.series].writes &+= 1 }
        if s.freshChunks.count < s.series.count { s.freshChunks.append(contentsOf: repeatElement(0, count: s.series.count - s.freshChunks.count)) }
        for chunk in chunks { s.freshChunks[chunk.series] += 1 }
    }

    /// Sorts a series' readings and splits them into chunks of `size` to `2 × size - 1` readings
    /// (fewer only if there are fewer).
    static func makeChunks(series: Int, times: [Nanos], values: [Double], size: Int, rollups: Bool) -> [NewChunk] {
        var times = times
        var values = values
        if !Rollup.isSorted(times) {
            let order = times.indices.sorted { (times[$0], $0) < (times[$1], $1) }
            times = order.map { times[$0] }
            values = order.map { values[$0] }
        }
        let pieces = max(1, times.count / size)
        return (0..<pieces).map { k in
            let range = (times.count * k / pieces)..<(times.count * (k + 1) / pieces)
            return makeChunk(series: series, times: Array(times[range]), values: Array(values[range]), rollups: rollups)
        }
    }

    /// Encodes a chunk's plaintext (readings in time order): raw points, then 1-minute and 1-hour roll-ups.
    ///
    /// Fresh chunks cut from buffers leave the roll-ups out (empty sections): compaction merges
    /// them soon and computes the hour roll-ups once for the merged chunk. While a chunk keeps its
    /// raw points, minute buckets come from them (the minute roll-ups would cost a third as much
    /// again as the points they sum); retention computes the minute roll-ups just before it drops
    /// the raw points.
    static func makeChunk(series: Int, times: [Nanos], values: [Double], rollups: Bool) -> NewChunk {
        let scaled = Decimals.integers(values)
        let raw = GorillaCodec.encode(times: times, values: values, scaled: scaled)
        let hour = rollups ? Self.rollups(times: times, values: values, decimals: scaled?.decimals, width: Time.hour) : []
        return NewChunk(series: series, start: times.first!, end: times.last!, count: times.count, plain: Self.plain(raw: raw, minute: [], hour: hour))
    }

    static func rollups(times: [Nanos], values: [Double], decimals: Int?, width: Nanos) -> [UInt8] {
        Rollup.encode(Rollup.buckets(times: times, values: values, width: width, decimals: decimals))
    }

    /// A chunk's plaintext: raw points, 1-minute roll-ups, 1-hour roll-ups (each may be empty).
    static func plain(raw: [UInt8], minute: [UInt8], hour: [UInt8]) -> [UInt8] {
        var plain: [UInt8] = []
        plain.reserveCapacity(raw.count + minute.count + hour.count + 8)
        Varint.append(UInt64(raw.count), to: &plain)
        plain += raw
        Varint.append(UInt64(minute.count), to: &plain)
        plain += minute
        plain += hour
        return plain
    }

    static func headContext(_ id: Int64) -> [UInt8] { Array("health_data.db/head/\(id)".utf8) }

    static func chunkContext(id: Int64, series: Series, start: Nanos, end: Nanos, count: Int, raw: Bool) -> [UInt8] {
        Array("health_data.db/chunks/\(id)/\(series.id)/\(series.deviceID)/\(series.sensor)/\(start)/\(end)/\(count)/\(raw ? 1 : 0)".utf8)
    }

    static func decodeHead(_ plain: [UInt8], _ body: (Int64, Nanos, Double) throws(TwinError) -> Void) throws(TwinError) {
        var p = 0
        func varint() throws(TwinError) -> UInt64 {
            do { return try GorillaCodec.readVarint(plain, &p) } catch { throw .dataLoss("a head block is truncated") }
        }
        let count = try varint()
        var time: Nanos = 0
        for _ in 0..<count {
            let series = Int64(bitPattern: try varint())
            time = time &+ GorillaCodec.unzigzag(try varint())
            guard p + 8 <= plain.count else { throw .dataLoss("a head block is truncated") }
            var bits: UInt64 = 0
            for k in 0..<8 { bits |= UInt64(plain[p + k]) << (8 * UInt64(k)) }
            p += 8
            try body(series, time, Double(bitPattern: bits))
        }
    }

    // MARK: Maintenance

    /// What one maintenance pass did.
    public struct MaintenanceReport: Sendable, Equatable {
        public var cutStale = 0
        /// Chunks merged away by compaction, and the chunks they became.
        public var compactedFrom = 0
        public var compactedInto = 0
        public var rawExpired = 0
        public var deleted = 0
        public init() {}
    }

    /// Cuts buffers older than `maxBufferAge` (so the head stays small) and runs one bounded slice of
    /// retention. The daemon calls it every minute; each call holds the write lock only briefly.
    @discardableResult
    public func maintain(now: Nanos = Time.now()) throws(TwinError) -> MaintenanceReport {
        var report = MaintenanceReport()
        try state.withLock { s throws(TwinError) in
            let stale = s.series.indices.filter { !s.series[$0].buffer.isEmpty && s.series[$0].firstArrival <= now - options.maxBufferAge }
            if stale.isEmpty { return }
            let chunks = stale.flatMap { i in
                let buffered = s.series[i].buffer.unpacked()
                return Self.makeChunks(series: i, times: buffered.times, values: buffered.values, size: options.chunkPoints, rollups: false)
            }
            try write(&s, head: nil, chunks: chunks, flushedHead: s.nextHead - 1)
            for i in stale {
                s.series[i].buffer.removeAll()
                s.series[i].firstHead = 0
            }
            report.cutStale = stale.count
        }
        (report.compactedFrom, report.compactedInto) = try compact()
        let (expired, deleted) = try expire(now: now)
        report.rawExpired = expired
        report.deleted = deleted
        if report.compactedFrom + report.rawExpired + report.deleted > 0 {
            try state.withLock { _ throws(TwinError) in try SealedDatabase.releaseFreePages(pool) }
        }
        return report
    }

    /// Merges the small chunks of series that have gathered `compactAfter` new ones, up to
    /// `compactBatch` series a pass. Each series is one transaction under the store lock, so a
    /// query sees either the old chunks or the merged one.
    func compact() throws(TwinError) -> (Int, Int) {
        let candidates = state.withLock { s in
            s.freshChunks.indices.filter { s.freshChunks[$0] >= options.compactAfter }.prefix(options.compactBatch)
        }
        var from = 0
        var into = 0
        for i in candidates {
            try state.withLock { s throws(TwinError) in
                let series = s.series[i]
                let rows: [StoredChunk]
                do {
                    rows = try pool.read { db in
                        try Row.fetchAll(
                            db, sql: "SELECT id, start, end, count, raw, data FROM chunks WHERE series_id = ? AND raw = 1 AND count < ? ORDER BY start",
                            arguments: [series.id, options.mergedBelow]
                        ).map { StoredChunk(id: $0["id"], start: $0["start"], end: $0["end"], count: $0["count"], raw: $0["raw"], block: Array($0["data"] as Data)) }
                    }
                } catch {
                    throw .unavailable("cannot read chunks to compact: \(error)")
                }
                // The small chunks' readings, in order, cut into runs of compactPoints: whole
                // chunks, and the one that would overflow a run split between it and the next
                // (whole-chunk groups left each merged chunk short by up to a chunk, and fresh
                // chunks can be large: see `largestCut`). The last run is written when it merges
                // two chunks or holds a split one's rest; a chunk alone is left as it is. A chunk
                // that does not open or decode is left alone too (twind verify reports it).
                typealias Run = (times: [Nanos], values: [Double], pieces: Int, split: Bool)
                var runs: [Run] = []
                var current: Run = ([], [], 0, false)
                var retired: [Int64] = []
                for row in rows {
                    guard let sections = try? open(row, of: series), let (t, v) = try? GorillaCodec.decode(Array(sections.raw)) else { continue }
                    retired.append(row.id)
                    var start = 0
                    while start < t.count {
                        let take = min(options.compactPoints - current.times.count, t.count - start)
                        current.times += t[start..<start + take]
                        current.values += v[start..<start + take]
                        current.pieces += 1
                        current.split = current.split || start > 0
                        start += take
                        if current.times.count == options.compactPoints {
                            runs.append(current)
                            current = ([], [], 0, false)
                        }
                    }
                }
                if current.pieces > 1 || current.split {
                    runs.append(current)
                } else if current.pieces == 1 {
                    retired.removeLast()  // a chunk alone, not split: left as it is
                }
                let merged = runs.flatMap { Self.makeChunks(series: i, times: $0.times, values: $0.values, size: options.compactPoints, rollups: true) }
                s.freshChunks[i] = 0
                if merged.isEmpty { return }
                try write(&s, head: nil, chunks: merged, flushedHead: nil, retiring: retired)
                s.freshChunks[i] = 0  // write counts the merged chunks as fresh ones
                from += retired.count
                into += merged.count
            }
        }
        return (from, into)
    }

    /// Strips raw points from chunks past the raw period (keeping their roll-ups) and deletes
    /// chunks past the roll-up period, at most `retentionBatch` of each.
    func expire(now: Nanos) throws(TwinError) -> (Int, Int) {
        let series = state.withLock { $0.series.map { ($0.id, $0.deviceID, $0.sensor) } }
        do {
            return try pool.write { db in
                let deleted = try Int64.fetchAll(
                    db, sql: "SELECT id FROM chunks WHERE end < ? LIMIT ?", arguments: [now - options.rollupRetention, options.retentionBatch])
                if !deleted.isEmpty {
                    try db.execute(sql: "DELETE FROM chunks WHERE id IN (\(deleted.map(String.init).joined(separator: ",")))")
                }
                let rows = try Row.fetchAll(
                    db, sql: "SELECT id, series_id, start, end, count, data FROM chunks WHERE end < ? AND raw = 1 LIMIT ?",
                    arguments: [now - options.rawRetention, options.retentionBatch])
                let update = try db.cachedStatement(sql: "UPDATE chunks SET raw = 0, data = ? WHERE id = ?")
                for row in rows {
                    let id: Int64 = row["id"]
                    let seriesID: Int64 = row["series_id"]
                    let (sid, device, sensor) = series[Int(seriesID - 1)]
                    let meta = Series(id: sid, deviceID: device, sensor: sensor)
                    let start: Int64 = row["start"], end: Int64 = row["end"], count: Int = row["count"]
                    // A chunk that cannot be opened is left for `twind verify` to report.
                    guard let plain = try? sealer.open(Array(row["data"] as Data), context: Self.chunkContext(id: id, series: meta, start: start, end: end, count: count, raw: true)),
                          let sections = try? Self.sections(plain)
                    else { continue }
                    var minute = Array(sections.minute)
                    var hour = Array(sections.hour)
                    if minute.isEmpty || hour.isEmpty {
                        // The minute roll-ups (and a never-compacted chunk's hour ones) are made
                        // now, before the raw points go.
                        guard let (t, v) = try? GorillaCodec.decode(Array(sections.raw)) else { continue }
                        let decimals = Decimals.of(v)
                        if minute.isEmpty { minute = Self.rollups(times: t, values: v, decimals: decimals, width: Time.minute) }
                        if hour.isEmpty { hour = Self.rollups(times: t, values: v, decimals: decimals, width: Time.hour) }
                    }
                    let stripped = Self.plain(raw: [], minute: minute, hour: hour)
                    let block = sealer.seal(stripped, context: Self.chunkContext(id: id, series: meta, start: start, end: end, count: count, raw: false))
                    try update.execute(arguments: [Data(block), id])
                }
                return (rows.count, deleted.count)
            }
        } catch let error as TwinError {
            throw error
        } catch {
            throw .unavailable("retention failed: \(error)")
        }
    }

    static func sections(_ plain: [UInt8]) throws(GorillaCodec.DecodeError) -> (raw: ArraySlice<UInt8>, minute: ArraySlice<UInt8>, hour: ArraySlice<UInt8>) {
        var p = 0
        let rawCount = Int(try GorillaCodec.readVarint(plain, &p))
        guard p + rawCount <= plain.count else { throw .truncated }
        let raw = plain[p..<p + rawCount]
        p += rawCount
        let minuteCount = Int(try GorillaCodec.readVarint(plain, &p))
        guard p + minuteCount <= plain.count else { throw .truncated }
        return (raw, plain[p..<p + minuteCount], plain[(p + minuteCount)...])
    }

    // MARK: Reading

    public func hasReadings() throws(TwinError) -> Bool {
        do {
            return try pool.read { db in
                try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM chunks) OR EXISTS (SELECT 1 FROM head)") ?? false
            }
        } catch {
            throw .unavailable("cannot read the time series: \(error)")
        }
    }

    struct StoredChunk {
        let id: Int64
        let start: Nanos
        let end: Nanos
        let count: Int
        let raw: Bool
        let block: [UInt8]
    }

    public func history(_ query: HistoryQuery) throws(TwinError) -> [SeriesHistory] {
        var result: [SeriesHistory] = []
        // The raw-point limit holds for the whole answer: each series gets what is left.
        var remaining = query
        for sensor in query.sensors {
            let taken = try snapshot(query, sensor: sensor)
            var answer = SeriesHistory(sensor: sensor)
            if let (series, chunks) = taken {
                if query.step > 0 {
                    answer.buckets = try downsample(series: series, chunks: chunks, query: query)
                } else {
                    (answer.times, answer.values) = try raw(series: series, chunks: chunks, query: remaining)
                    remaining.maxRawPoints -= answer.times.count
                }
            }
            result.append(answer)
        }
        return result
    }

    /// A series' buffer and its chunk rows in the range, consistent with each other (no reading
    /// twice, none missing): the buffer is taken under the store lock, the rows are read outside
    /// it (so ingest never waits for a reader's SQLite work), and if chunks of the series were
    /// written in between the read is made again; after three tries, under the lock.
    func snapshot(_ query: HistoryQuery, sensor: String) throws(TwinError) -> (Series, [StoredChunk])? {
        func rows(_ id: Int64) throws(TwinError) -> [StoredChunk] {
            do {
                return try pool.read { db in
                    try Row.fetchAll(
                        db, sql: "SELECT id, start, end, count, raw, data FROM chunks WHERE series_id = ? AND end >= ? AND start < ? ORDER BY start",
                        arguments: [id, query.from, query.to])
                }.map {
                    StoredChunk(id: $0["id"], start: $0["start"], end: $0["end"], count: $0["count"], raw: $0["raw"], block: Array($0["data"] as Data))
                }
            } catch {
                throw .unavailable("cannot read the history of \(query.deviceID)/\(sensor): \(error)")
            }
        }
        let key = Self.key(query.deviceID, sensor)
        for _ in 0..<3 {
            guard let (i, series) = state.withLock({ s -> (Int, Series)? in s.byName[key].map { ($0, s.series[$0]) } }) else { return nil }
            let read = try rows(series.id)
            if state.withLock({ $0.series[i].writes == series.writes }) { return (series, read) }
        }
        return try state.withLock { s throws(TwinError) -> (Series, [StoredChunk])? in
            guard let i = s.byName[key] else { return nil }
            return (s.series[i], try rows(s.series[i].id))
        }
    }

    func open(_ chunk: StoredChunk, of series: Series) throws(TwinError) -> (raw: ArraySlice<UInt8>, minute: ArraySlice<UInt8>, hour: ArraySlice<UInt8>) {
        let context = Self.chunkContext(id: chunk.id, series: series, start: chunk.start, end: chunk.end, count: chunk.count, raw: chunk.raw)
        guard let plain = try? sealer.open(chunk.block, context: context), let sections = try? Self.sections(plain) else {
            throw .dataLoss(
                "the history of \(Self.span(series, chunk)) (chunk \(chunk.id), \(chunk.count) readings) cannot be read: it was altered or is corrupt; run twind verify")
        }
        return sections
    }

    func raw(series: Series, chunks: [StoredChunk], query: HistoryQuery) throws(TwinError) -> ([Nanos], [Double]) {
        var times: [Nanos] = []
        var values: [Double] = []
        for chunk in chunks {
            let sections = try open(chunk, of: series)
            if !chunk.raw { continue }  // past the raw retention: roll-ups only
            guard let (t, v) = try? GorillaCodec.decode(Array(sections.raw)) else {
                throw .dataLoss("the history of \(Self.span(series, chunk)) does not decode; run twind verify")
            }
            let lower = Self.lowerBound(t, query.from)
            let upper = Self.lowerBound(t, query.to)
            if lower < upper {
                times += t[lower..<upper]
                values += v[lower..<upper]
            }
            if times.count > query.maxRawPoints { throw Self.tooMany(series, query) }
        }
        let buffered = series.buffer.unpacked()
        for (t, v) in zip(buffered.times, buffered.values) where t >= query.from && t < query.to {
            times.append(t)
            values.append(v)
        }
        if times.count > query.maxRawPoints { throw Self.tooMany(series, query) }
        if !Rollup.isSorted(times) {
            let order = times.indices.sorted { (times[$0], $0) < (times[$1], $1) }
            times = order.map { times[$0] }
            values = order.map { values[$0] }
        }
        return (times, values)
    }

    /// The first index whose time is ≥ `t` in sorted `times`.
    static func lowerBound(_ times: [Nanos], _ t: Nanos) -> Int {
        var low = 0
        var high = times.count
        while low < high {
            let mid = (low + high) / 2
            if times[mid] < t { low = mid + 1 } else { high = mid }
        }
        return low
    }

    static func tooMany(_ series: Series, _ query: HistoryQuery) -> TwinError {
        .init(.outOfRange,
              "the answer would hold more than \(HistoryQuery.rawPointLimit) raw readings (over all its sensors; reached at \(series.deviceID)/\(series.sensor)); ask for a step or max_points to downsample, fewer sensors, or a shorter range")
    }

    func downsample(series: Series, chunks: [StoredChunk], query: HistoryQuery) throws(TwinError) -> [Bucket] {
        let step = query.step
        let first = Rollup.floorDiv(query.from, step) * step
        let bucketCount = Int((query.to - first + step - 1) / step)
        var out = (0..<bucketCount).map { Bucket(start: first + Nanos($0) * step, count: 0, min: 0, max: 0, sum: 0, last: 0, lastTime: .min) }
        // The coarsest roll-up level that tiles the step.
        let level = Rollup.levels.lastIndex { step % $0 == 0 }
        @inline(__always) func slot(_ t: Nanos) -> Int? {
            guard t >= query.from && t < query.to else { return nil }
            return Int((t - first) / step)
        }
        for chunk in chunks {
            let sections = try open(chunk, of: series)
            // Roll-ups answer when they tile the step, and for chunks whose raw points expired;
            // a chunk across an edge of the range that is not on the level's grid uses its raw
            // points, so the edge buckets are exact.
            var useLevel = level
            if let l = useLevel, chunk.raw {
                let width = Rollup.levels[l]
                let cutsFrom = query.from % width != 0 && chunk.start < query.from
                let cutsTo = query.to % width != 0 && chunk.end >= Rollup.floorDiv(query.to, width) * width
                if cutsFrom || cutsTo { useLevel = nil }
            }
            // A chunk with its raw points may have no roll-ups at this level (fresh chunks have
            // none; compacted ones only hourly): its raw points answer.
            if let l = useLevel, chunk.raw && (l == 0 ? sections.minute : sections.hour).isEmpty { useLevel = nil }
            if !chunk.raw && useLevel == nil { useLevel = 0 }
            if let useLevel {
                guard let buckets = try? Rollup.decode(Array(useLevel == 0 ? sections.minute : sections.hour)) else {
                    throw .dataLoss("the roll-ups of \(Self.span(series, chunk)) do not decode; run twind verify")
                }
                // A bucket starting before an off-grid `from` comes from a chunk wholly inside the
                // range (edge chunks use raw points), so it counts in the first query bucket.
                let inside = chunk.start >= query.from
                for b in buckets { if let k = slot(inside ? max(b.start, query.from) : b.start) { out[k].merge(b) } }
            } else {
                guard let (t, v) = try? GorillaCodec.decode(Array(sections.raw)) else {
                    throw .dataLoss("the history of \(Self.span(series, chunk)) does not decode; run twind verify")
                }
                for (time, value) in zip(t, v) { if let k = slot(time) { out[k].add(time: time, value: value) } }
            }
        }
        let buffered = series.buffer.unpacked()
        for (time, value) in zip(buffered.times, buffered.values) { if let k = slot(time) { out[k].add(time: time, value: value) } }
        return out.filter { $0.count > 0 }
    }

    /// "pump-001/flow from <start> to <end>", for messages about a damaged chunk.
    static func span(_ series: Series, _ chunk: StoredChunk) -> String {
        "\(series.deviceID)/\(series.sensor) from \(Time.iso(chunk.start)) to \(Time.iso(chunk.end))"
    }

    // MARK: Verification

    /// What `verify` found.
    public struct VerifyReport: Sendable {
        public var chunks = 0
        public var readings = 0
        public var headBlocks = 0
        public var problems: [String] = []
    }

    /// Opens and decodes every chunk and head block.
    public func verify() throws(TwinError) -> VerifyReport {
        var report = VerifyReport()
        let series = state.withLock { $0.series.map { Series(id: $0.id, deviceID: $0.deviceID, sensor: $0.sensor) } }
        do {
            try pool.read { db in
                let cursor = try Row.fetchCursor(db, sql: "SELECT id, series_id, start, end, count, raw, data FROM chunks ORDER BY id")
                while let row = try cursor.next() {
                    report.chunks += 1
                    let seriesID: Int64 = row["series_id"]
                    guard seriesID >= 1 && seriesID <= series.count else {
                        report.problems.append("chunk \(row["id"] as Int64) names unknown series \(seriesID)")
                        continue
                    }
                    let chunk = StoredChunk(id: row["id"], start: row["start"], end: row["end"], count: row["count"], raw: row["raw"], block: Array(row["data"] as Data))
                    let s = series[Int(seriesID - 1)]
                    do {
                        let sections = try open(chunk, of: s)
                        if chunk.raw {
                            let decoded = try GorillaCodec.decode(Array(sections.raw))
                            guard decoded.times.count == chunk.count else { throw TwinError.dataLoss("chunk \(chunk.id) of \(s.deviceID)/\(s.sensor) holds \(decoded.times.count) readings, its row says \(chunk.count)") }
                            report.readings += chunk.count
                        }
                        // Fresh chunks have none yet, compacted ones only hourly.
                        if !sections.minute.isEmpty { _ = try Rollup.decode(Array(sections.minute)) }
                        if !sections.hour.isEmpty { _ = try Rollup.decode(Array(sections.hour)) }
                    } catch let error as TwinError {
                        report.problems.append(error.message)
                    } catch {
                        report.problems.append("chunk \(chunk.id) of \(Self.span(s, chunk)) does not decode")
                    }
                }
                for row in try Row.fetchAll(db, sql: "SELECT id, data FROM head ORDER BY id") {
                    report.headBlocks += 1
                    let id: Int64 = row["id"]
                    if (try? sealer.open(Array(row["data"] as Data), context: Self.headContext(id))) == nil {
                        report.problems.append("head block \(id) (readings not yet in chunks) cannot be opened: altered or corrupt")
                    }
                }
            }
        } catch {
            throw .unavailable("cannot read the time series: \(error)")
        }
        return report
    }
}
