import Dispatch
import Foundation
import Logging
import Synchronization
import Testing
import TwinApp
import TwinCore
import TwinEngines

/// `Ingest` batches queued while the store writer is busy are stored in one transaction (group
/// commit) in the order queued; a group that fails fails every batch in it, and a stream with a
/// failed batch has its later ones refused while other streams go on.
@Suite struct GroupCommitTests {
    /// Records each append (one per transaction) and fails one holding a poisoned value, as a
    /// full disk would.
    final class RecordingHistory: HistoryStore {
        let appends = Mutex<[[Sample]]>([])
        func bind(device index: Int32, id: String, sensors: [String]) throws(TwinError) {}
        func append(_ samples: [Sample]) throws(TwinError) {
            if samples.contains(where: { $0.value == -1 }) { throw TwinError(.unavailable, "disk full", reason: .storeUnavailable) }
            appends.withLock { $0.append(samples) }
        }
        func history(_ query: HistoryQuery) throws(TwinError) -> [SeriesHistory] { [] }
        func hasReadings() throws(TwinError) -> Bool { false }
        var rawRetention: Nanos { 90 * Time.day }
    }

    let now: Nanos = 1_790_000_000 * Time.second

    func batch(_ first: Int, _ count: Int, value: Double? = nil) -> [Sample] {
        (0..<count).map { k in Sample(device: 0, sensor: 0, time: now - Nanos(10_000 - first - k) * Time.second, value: value ?? Double(first + k)) }
    }

    /// A plant of one pump storing into a `RecordingHistory`.
    func pumpPlant() throws -> (Plant, RecordingHistory) {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let history = RecordingHistory()
        let plant = Plant(options: .init(), heartbeat: 5 * Time.second, store: MemoryPlantStore([], []), history: history, logger: logger, clock: ManualClock())
        _ = try plant.register([Device(id: "pump-1", type: "pump", sensors: [SensorSpec(name: "flow", unit: "m³/h", nominalMin: 0, nominalMax: 100)])], now: now)
        return (plant, history)
    }

    /// Holds the store writer until `release` is called, so that batches queue up behind it.
    /// The holding job is queued at once (no task, nothing waits on the cooperative pool: a
    /// first version waited there for the job to start and stalled every other test in the
    /// process, an OPC UA client among them, for 44 s on a loaded CI run).
    func holdWriter(_ plant: Plant) -> @Sendable () -> Void {
        let gate = DispatchSemaphore(value: 0)
        _ = plant.writes.enqueue { gate.wait() }
        return { gate.signal() }
    }

    @Test(.timeLimit(.minutes(1))) func batchesWaitingAreStoredTogetherInOrder() async throws {
        let (plant, history) = try pumpPlant()

        // Two streams' batches queued while the writer is busy: one transaction, in queue order.
        let a = Plant.IngestStream(), b = Plant.IngestStream()
        var release = holdWriter(plant)
        let a1 = plant.queueForStore(batch(0, 10), importing: false, now: now, stream: a)
        let b1 = plant.queueForStore(batch(10, 5), importing: false, now: now, stream: b)
        let a2 = plant.queueForStore(batch(15, 10), importing: false, now: now, stream: a)
        async let r1 = plant.store(a1)
        async let r2 = plant.store(b1)
        async let r3 = plant.store(a2)
        release()
        let first = await [r1, r2, r3]
        #expect(first.allSatisfy { $0 == nil })
        #expect(history.appends.withLock { $0.map { $0.map(\.value) } } == [(0..<25).map(Double.init)])
        // Acknowledged means applied: the live value is the last one stored.
        #expect(plant.live.snapshot(0)?.values.first?.value == 24)

        // A group that fails fails all its batches; those streams' later batches are refused,
        // a new stream's are stored.
        let c = Plant.IngestStream(), d = Plant.IngestStream(), e = Plant.IngestStream()
        release = holdWriter(plant)
        let c1 = plant.queueForStore(batch(25, 3, value: -1), importing: false, now: now, stream: c)
        let d1 = plant.queueForStore(batch(28, 3), importing: false, now: now, stream: d)
        async let f1 = plant.store(c1)
        async let f2 = plant.store(d1)
        release()
        let failed = await [f1, f2]
        #expect(failed.allSatisfy { $0?.message == "disk full" })
        let c2 = plant.queueForStore(batch(31, 3), importing: false, now: now, stream: c)
        let e1 = plant.queueForStore(batch(34, 3), importing: false, now: now, stream: e)
        let refused = await plant.store(c2)
        #expect(refused?.message.contains("an earlier batch of this stream was not stored") == true)
        #expect(await plant.store(e1) == nil)
        #expect(history.appends.withLock { $0.count == 2 && $0[1].map(\.value) == [34, 35, 36] })
        plant.writes.shutdown()
        plant.applying.shutdown()
    }

    /// Ingest first: a heavy query waits while a batch is in flight (here until it is stored
    /// and applied: the limit is long), and does not wait when none is.
    @Test(.timeLimit(.minutes(1))) func aHeavyQueryWaitsForIngestInFlight() async throws {
        let (plant, history) = try pumpPlant()
        plant.yieldToIngest(limit: .seconds(600))  // nothing in flight: returns at once

        let release = holdWriter(plant)
        let ticket = plant.queueForStore(batch(0, 10), importing: false, now: now, stream: Plant.IngestStream())
        let storing = Task { await plant.store(ticket) }
        // The query runs on a thread of its own, as on the query pool.
        let started = OneShot<Void>(), seen = OneShot<Int>()
        Thread {
            started.set(())
            plant.yieldToIngest(limit: .seconds(600))
            seen.set(history.appends.withLock { $0.count })
        }.start()
        await started.value()
        release()
        #expect(await storing.value == nil)
        #expect(await seen.value() == 1, "the query went ahead of the batch in flight")
        plant.writes.shutdown()
        plant.applying.shutdown()
    }
}
