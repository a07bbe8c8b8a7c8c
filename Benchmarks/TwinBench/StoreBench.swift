import ArgumentParser
import Foundation
import GRDB
import TwinCore
import TwinEngines
import Proto
import TwinStore
@_spi(Benchmarks) import TwinServer

// MARK: - Time-series store against a naive baseline (in process)

struct StoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Store ingest, bytes per point and GetHistory latency, against one sealed row per reading.",
        discussion: """
            Simulates the default plant (12 machines, a reading per sensor every 5 s) for --days and \
            appends it to the store in batches of --batch, then queries it. The baseline stores the \
            first --baseline-days the seed design's way (a row per reading, each value sealed on its \
            own, indexed by series and time); its per-point figures are compared with the store's.
            """)
    @Option var days = 30
    @Option var baselineDays = 1
    @Option var batch = 1_000
    @Option(help: "full or normal") var durability = "full"

    func run() async throws { try measure() }

    /// Synchronous on purpose: the store's API is, and GRDB's async overloads would get in the way.
    func measure() throws {
        let durability = HealthDatabase.Durability(rawValue: self.durability) ?? .full
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keys = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: dir)
        let end = (Time.now() / Time.hour) * Time.hour
        let start = end - Nanos(days) * Time.day

        // The store.
        let store = try HealthDatabase(path: dir + "/health_data.db", keys: keys, durability: durability)
        let plant = LivePlant()
        let fleet = MachineCatalog.defaultPlant(count: 12)
        var registered: [(Int32, Device)] = []
        for d in fleet {
            let index = try plant.upsert(d, now: start).index
            try store.series.bind(device: index, id: d.id, sensors: d.sensors.map(\.name))
            registered.append((index, d))
        }
        // Compaction runs as twind runs it (every minute); here every simulated 10 minutes, and
        // its time counts as ingest time.
        let (total, appendTime) = try Self.feed(
            registered, from: start, to: end, batch: batch, between: { _ = try store.series.maintain(now: Time.now()) },
            append: { try store.series.append($0) })
        _ = try store.series.maintain(now: Time.now() + 2 * Time.hour)  // cut what is left in buffers
        try store.checkpoint()
        let storeBytes = Self.size(dir + "/health_data.db") + Self.size(dir + "/health_data.db-wal")
        let storeRate = Double(total) / appendTime.seconds

        // GetHistory: 24 h raw of one sensor, 30 d in 1,000 buckets or fewer (1 h steps).
        func time(_ runs: Int, _ body: () throws -> Int) rethrows -> (Double, Int) {
            var costs: [Double] = []
            var n = 0
            for _ in 0..<runs {
                let began = ContinuousClock.now
                n = try body()
                costs.append((ContinuousClock.now - began).milliseconds)
            }
            return (percentile(costs, 0.5), n)
        }
        let device = fleet[0].id
        let sensor = fleet[0].sensors[0].name
        let (raw24, rawPoints) = try time(50) {
            try store.series.history(HistoryQuery(deviceID: device, sensors: [sensor], from: end - Time.day, to: end, step: 0))[0].times.count
        }
        // The answer to it: built and serialized, one message per point against packed columns.
        let rawSeries = try store.series.history(HistoryQuery(deviceID: device, sensors: [sensor], from: end - Time.day, to: end, step: 0))
        let (perPoint, perPointBytes) = try time(50) { try HistoryAnswerBenchmark.encode(rawSeries, device: device, columnar: false) }
        let (columnar, columnarBytes) = try time(50) { try HistoryAnswerBenchmark.encode(rawSeries, device: device, columnar: true) }
        // The baseline: the same answers built as messages and serialized by SwiftProtobuf.
        let (perPointMessages, _) = try time(20) { try HistoryAnswerBenchmark.encode(rawSeries, device: device, columnar: false, messages: true) }
        let (columnarMessages, _) = try time(20) { try HistoryAnswerBenchmark.encode(rawSeries, device: device, columnar: true, messages: true) }
        let span = Nanos(days) * Time.day
        let step = ((span / 1_000 + Time.hour - 1) / Time.hour) * Time.hour
        let (down, buckets) = try time(50) {
            try store.series.history(HistoryQuery(deviceID: device, sensors: [sensor], from: start, to: end, step: step))[0].buckets.count
        }
        let (down1m, buckets1m) = try time(20) {
            try store.series.history(HistoryQuery(deviceID: device, sensors: [sensor], from: start, to: end, step: 45 * Time.minute))[0].buckets.count
        }
        store.close()

        // The baseline: one sealed row per reading.
        let baselineDir = dir + "/baseline"
        try FileManager.default.createDirectory(atPath: baselineDir, withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")") }
        let pool = try DatabasePool(path: baselineDir + "/readings.db", configuration: configuration)
        try pool.write { db in
            try db.execute(sql: """
                CREATE TABLE readings (id INTEGER PRIMARY KEY, series INTEGER NOT NULL, time INTEGER NOT NULL, value BLOB NOT NULL);
                CREATE INDEX readings_by_series_time ON readings (series, time);
                """)
        }
        let sealer = Sealer(purpose: "baseline", keys: [], current: keys.current)
        var nextID: Int64 = 1
        let (baseTotal, baseTime) = try Self.feed(registered, from: start, to: start + Nanos(baselineDays) * Time.day, batch: batch) { slice in
            try pool.write { db in
                let statement = try db.cachedStatement(sql: "INSERT INTO readings (id, series, time, value) VALUES (?, ?, ?, ?)")
                for s in slice {
                    let series = Int64(s.device) << 8 | Int64(s.sensor)
                    let sealed = sealer.seal(withUnsafeBytes(of: s.value.bitPattern) { Array($0) }, context: Array("readings/\(nextID)/\(series)/\(s.time)".utf8))
                    try statement.execute(arguments: [nextID, series, s.time, Data(sealed)])
                    nextID += 1
                }
            }
        }
        try pool.writeWithoutTransaction { try $0.checkpoint(.truncate) }
        let baseBytes = Self.size(baselineDir + "/readings.db") + Self.size(baselineDir + "/readings.db-wal")
        let baseRate = Double(baseTotal) / baseTime.seconds
        let (baseRaw24, _) = try time(20) {
            try pool.read { db in
                var n = 0
                let rows = try Row.fetchCursor(
                    db, sql: "SELECT id, series, time, value FROM readings WHERE series = ? AND time >= ? AND time < ?",
                    arguments: [Int64(registered[0].0) << 8, start, start + Time.day])
                while let row = try rows.next() {
                    let id: Int64 = row[0], series: Int64 = row[1], time: Int64 = row[2]
                    _ = try sealer.open(Array(row[3] as Data), context: Array("readings/\(id)/\(series)/\(time)".utf8))
                    n += 1
                }
                return n
            }
        }
        try pool.close()

        let storeBPP = Double(storeBytes) / Double(total)
        let baseBPP = Double(baseBytes) / Double(baseTotal)
        report("store (\(durability.rawValue) durability, batches of \(batch))", [
            ("", "store                         baseline (row per reading)"),
            ("readings", pad("\(total) (\(days) d, 12 machines)") + "\(baseTotal) (\(baselineDays) d)"),
            ("ingest (incl. compaction)", pad(String(format: "%.0f points/s", storeRate)) + String(format: "%.0f points/s   → %.1f× better", baseRate, storeRate / baseRate)),
            ("bytes/point on disk", pad(String(format: "%.2f (%.1f MB)", storeBPP, Double(storeBytes) / 1e6)) + String(format: "%.1f   → %.1f× smaller", baseBPP, baseBPP / storeBPP)),
            ("24 h of one sensor, raw", pad("\(ms(raw24)) (\(rawPoints) points)") + ms(baseRaw24)),
            ("  its answer, per point", "\(ms(perPoint)) to write, \(perPointBytes) bytes (as messages by SwiftProtobuf: \(ms(perPointMessages)))"),
            ("  its answer, columnar", "\(ms(columnar)) to write, \(columnarBytes) bytes (as messages by SwiftProtobuf: \(ms(columnarMessages)))"),
            ("\(days) d in ≤ 1000 buckets", "\(ms(down)) (\(buckets) buckets of \(DurationText.format(step)), 1 h roll-ups)"),
            ("\(days) d in 45 min buckets", "\(ms(down1m)) (\(buckets1m) buckets, from raw points while they are kept, 1 min roll-ups after)"),
        ])
    }

    /// Simulates the plant over [from, to) at 5 s and hands its readings to `append` in batches;
    /// `between` runs every simulated 10 minutes. Returns the readings and the time spent in both.
    static func feed(
        _ registered: [(Int32, Device)], from start: Nanos, to end: Nanos, batch: Int,
        between: () throws -> Void = {}, append: ([Sample]) throws -> Void
    ) throws -> (Int, Duration) {
        var sim = Simulator(devices: registered, start: start)
        var output = Simulator.Output()
        var pending: [Sample] = []
        var spent = Duration.zero
        var total = 0
        var t = start
        while t < end {
            sim.tick(at: t, into: &output)
            pending += output.samples
            while pending.count >= batch {
                let slice = Array(pending.prefix(batch))
                pending.removeFirst(batch)
                let began = ContinuousClock.now
                try append(slice)
                spent += ContinuousClock.now - began
                total += slice.count
            }
            t += 5 * Time.second
            if (t - start) % (10 * Time.minute) == 0 {
                let began = ContinuousClock.now
                try between()
                spent += ContinuousClock.now - began
            }
        }
        return (total, spent)
    }

    func pad(_ text: String) -> String { text.padding(toLength: 30, withPad: " ", startingAt: 0) }

    static func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0
    }
}

// MARK: - The chunk codec alone

struct CodecBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "codec",
        abstract: "Chunk encoding and decoding speed and bits per point, on sensor-like series.",
        discussion: """
            Encodes --series series of --points readings every 5 s (a daily sine plus noise of σ 0.3 \
            at 2 decimals, as tsdb_compare.py's data) into chunks of --chunk readings, as the store \
            cuts fresh chunks, --runs times, and decodes them; prints the median rate of each.
            """)
    @Option var series = 20
    @Option var points = 17_280
    @Option var chunk = 250
    @Option var runs = 9

    func run() async throws {
        var random = SplitMix64(seed: 7)
        let start: Nanos = 1_700_000_000 * Time.second
        var chunks: [([Nanos], [Double])] = []
        for s in 0..<series {
            let base = 40 + 3 * Double(s), amplitude = 5 + Double(s % 7)
            var times: [Nanos] = [], values: [Double] = []
            for i in 0..<points {
                let t = start + Nanos(i) * 5 * Time.second
                let day = Double(t / Time.second % 86_400) / 86_400
                // Box-Muller: one normal from two uniforms.
                let u1 = max(Double(random.next() >> 11) / Double(1 << 53), 1e-300), u2 = Double(random.next() >> 11) / Double(1 << 53)
                let noise = 0.3 * (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
                times.append(t)
                values.append(Decimals.round(base + amplitude * Foundation.sin(2 * Double.pi * day) + noise, decimals: 2))
                if times.count == chunk {
                    chunks.append((times, values))
                    times = []
                    values = []
                }
            }
            if !times.isEmpty { chunks.append((times, values)) }
        }
        let total = series * points
        var encoded: [[UInt8]] = []
        var encodeRates: [Double] = [], decodeRates: [Double] = []
        for _ in 0..<runs {
            let began = ContinuousClock.now
            encoded = chunks.map { GorillaCodec.encode(times: $0.0, values: $0.1) }
            encodeRates.append(Double(total) / (ContinuousClock.now - began).seconds)
            let decodeBegan = ContinuousClock.now
            var n = 0
            for bytes in encoded { n += try GorillaCodec.decode(bytes).times.count }
            decodeRates.append(Double(total) / (ContinuousClock.now - decodeBegan).seconds)
            precondition(n == total)
        }
        let bytes = encoded.reduce(0) { $0 + $1.count }
        report("chunk codec (\(series) series × \(points) readings, chunks of \(chunk), median of \(runs))", [
            ("encode", String(format: "%.1f M points/s (%.1f–%.1f)", percentile(encodeRates, 0.5) / 1e6, encodeRates.min()! / 1e6, encodeRates.max()! / 1e6)),
            ("decode", String(format: "%.1f M points/s (%.1f–%.1f)", percentile(decodeRates, 0.5) / 1e6, decodeRates.min()! / 1e6, decodeRates.max()! / 1e6)),
            ("size", String(format: "%.2f bits per point", Double(bytes * 8) / Double(total))),
        ])
    }
}

// MARK: - Reading Ingest requests off the wire

struct WireBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wire",
        abstract: "Reading IngestRequests off the wire, as twind does, against SwiftProtobuf.",
        discussion: """
            Decodes --requests requests of --batch readings shaped as tsdb_compare.py sends them \
            (device "series-N" of 20, sensor "v", whole-second times, 2-decimal values), --runs \
            times; prints the median rate of each.
            """)
    @Option var requests = 100
    @Option var batch = 10_000
    @Option var runs = 9

    func run() async throws {
        var payloads: [[UInt8]] = []
        for r in 0..<requests {
            var request = Twin_V1_IngestRequest()
            for k in 0..<batch {
                var reading = Twin_V1_Reading()
                reading.deviceID = "series-\(k % 20)"
                reading.sensor = "v"
                reading.time = .init(seconds: 1_700_000_000 + Int64((r * batch + k) / 20) * 5, nanos: 0)
                reading.value = Double((r * 7 + k * 13) % 10_000) / 100
                request.readings.append(reading)
            }
            payloads.append(try request.serializedBytes())
        }
        let total = Double(requests * batch)
        func rate(_ baseline: Bool) throws -> [Double] {
            try (0..<runs).map { _ in
                let began = ContinuousClock.now
                for p in payloads {
                    let n = try IngestDecodeBenchmark.decode(p, baseline: baseline)
                    precondition(n == batch)
                }
                return total / (ContinuousClock.now - began).seconds
            }
        }
        let wire = try rate(false), baseline = try rate(true)
        func text(_ rates: [Double]) -> String {
            String(format: "%.1f M readings/s (%.1f–%.1f)", percentile(rates, 0.5) / 1e6, rates.min()! / 1e6, rates.max()! / 1e6)
        }
        report("IngestRequest decoding (\(requests) × \(batch) readings, median of \(runs))", [
            ("twind (IngestWire)", text(wire)),
            ("SwiftProtobuf", text(baseline)),
        ])
    }
}
