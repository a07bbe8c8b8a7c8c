import Foundation
import Logging
import Synchronization
import TwinApp
import TwinCore
import TwinEngines

/// The running plant: registry and live state, the update bus, and the simulator (if any).
/// Services and the simulator loop go through it so every change reaches the subscribers.
public final class Plant: Sendable {
    public let live: LivePlant
    public let health = HealthEngine()
    public let bus = UpdateBus()
    /// Told every changed snapshot before subscribers hear of the change (twind encodes them
    /// there once for every subscriber).
    let snapshotsChanged: @Sendable ([DeviceSnapshot]) -> Void
    /// Where the plant's rules read the time.
    public let clock: any TwinClock
    public let heartbeat: Nanos
    public let store: any PlantStore
    public let history: any HistoryStore
    public let logger: Logger
    /// History and pattern queries (SQLite reads, decoding, analysis) run here: at most two at a
    /// time, off the cooperative pool and at lower priority, so ingest, streams and health checks
    /// keep their threads and get the CPU first.
    public let queries = BlockingPool(name: "history queries", workers: max(1, ProcessInfo.processInfo.activeProcessorCount / 2), queueLimit: 32, maxWait: .seconds(10), niceness: 10, idle: true)
    /// Store commits of `Ingest` batches and simulator ticks (each ends in an fsync) run on one
    /// thread of their own: a slow disk holds that thread, never the cooperative pool that the
    /// streams, health checks and every other call need. The store serializes writers anyway.
    /// One thread, so jobs run in the order queued: `Ingest` relies on it to queue a stream's
    /// next batch while the one before is being stored.
    public let writes = BlockingPool(name: "store writes", workers: 1, queueLimit: 1_000, maxWait: .seconds(30))
    /// `Ingest` batches, once stored, are applied here (live state, health engine, subscribers),
    /// in the order they were stored, while the store writer goes on with the next batch: the
    /// two halves of a batch's work overlap on two cores instead of running one after the other
    /// on the writer's thread.
    public let applying = BlockingPool(name: "live apply", workers: 1, queueLimit: 0)

    public init(
        options: LivePlant.Options, heartbeat: Nanos, store: any PlantStore, history: any HistoryStore, logger: Logger,
        clock: any TwinClock = SystemClock(), snapshotsChanged: @escaping @Sendable ([DeviceSnapshot]) -> Void = { _ in }
    ) {
        self.clock = clock
        self.snapshotsChanged = snapshotsChanged
        self.live = LivePlant(options: options)
        self.heartbeat = heartbeat
        self.store = store
        self.history = history
        self.logger = logger
    }

    /// The one "device not found" check: the device a request names in `field` (empty → the
    /// field is required; unknown → DEVICE_NOT_FOUND with ResourceInfo).
    public func device(_ id: String, field: String = "device_id") throws(TwinError) -> (index: Int32, device: Device) {
        if id.isEmpty { throw TwinError.invalidArgument("\(field) is required").field(field) }
        guard let index = live.index(of: id), let device = live.device(at: index) else { throw .deviceNotFound(id, field: field) }
        return (index, device)
    }

    /// DEVICE_NOT_FOUND for the first of `ids` (a filter list in `field`) that is not known.
    public func checkDevices(_ ids: some Sequence<String>, field: String) throws(TwinError) {
        for (n, id) in ids.enumerated() where live.index(of: id) == nil { throw .deviceNotFound(id, field: "\(field)[\(n)]") }
    }

    /// Adds or replaces a device and tells the bus.
    @discardableResult
    public func upsert(_ device: Device, now: Nanos? = nil) throws(TwinError) -> (device: Device, created: Bool, index: Int32) {
        let now = now ?? clock.now()
        let existing = live.device(device.id)
        if let existing, existing.simulated, existing.sensors != device.sensors {
            throw .failedPrecondition(
                "device '\(device.id)' is simulated and its sensors are fixed by the simulator; run twind with --simulator off to define it yourself",
                reason: .deviceConflict)
        }
        var device = device
        device.simulated = existing?.simulated ?? device.simulated
        // Validated here so nothing invalid is saved (LivePlant checks again, cheaply).
        try device.validate()
        // Durable before it is acknowledged.
        device.createdAt = existing?.createdAt ?? now
        device.updatedAt = now
        try store.saveDevice(device)
        let result = try live.upsert(device, now: now)
        try history.bind(device: result.index, id: device.id, sensors: device.sensors.map(\.name))
        if result.created || existing?.sensors != device.sensors { health.bind(device: result.index, sensors: device.sensors) }
        bus.registryChanged(identities: live.identities())
        publish([result.index])
        return result
    }

    /// Records maintenance events durably (simulator ground truth or RecordEvent).
    public func record(_ events: [MaintenanceEvent], relearn: Bool = true) throws(TwinError) -> [MaintenanceEvent] {
        let stored = try store.appendEvents(events)
        if relearn { self.relearn(after: stored) }
        return stored
    }

    /// What the health engine learns anew after maintenance: a repaired machine's normals, a
    /// serviced sensor's.
    public func relearn(after events: [MaintenanceEvent]) {
        for e in events where e.kind == .repair || e.kind == .partReplaced || e.kind == .sensorServiced {
            guard let index = live.index(of: e.deviceID) else { continue }
            switch e.kind {
            case .repair, .partReplaced: health.relearn(device: index)
            case .sensorServiced: health.serviced(device: index, sensor: e.component)
            default: break
            }
        }
    }

    /// Registers many devices at start-up (one bus notification).
    public func register(_ devices: [Device], now: Nanos? = nil) throws(TwinError) -> [(index: Int32, device: Device)] {
        let now = now ?? clock.now()
        var result: [(index: Int32, device: Device)] = []
        result.reserveCapacity(devices.count)
        for device in devices {
            let r = try live.upsert(device, now: now)
            try history.bind(device: r.index, id: r.device.id, sensors: r.device.sensors.map(\.name))
            health.bind(device: r.index, sensors: r.device.sensors)
            result.append((r.index, r.device))
        }
        bus.registryChanged(identities: live.identities())
        return result
    }

    /// Stores samples durably, then applies them to the live state; nothing reaches subscribers
    /// (or is acknowledged) before it is stored.
    public func ingest(_ samples: [Sample], hints: [(device: Int32, state: DeviceState?)] = [], now: Nanos) throws(TwinError) {
        try history.append(samples)
        apply(samples, hints: hints, now: now)
    }

    /// Applies samples already stored: all of them, or for a history import only what is newer
    /// than the live state (and recent), so the past raises no alerts and does not bring a
    /// device back to life.
    private func applyStored(_ samples: [Sample], importing: Bool, now: Nanos) {
        guard importing else { return apply(samples, now: now) }
        let live = self.live.newerThanLive(samples, now: now)
        if !live.isEmpty { apply(live, now: now) }
    }

    /// One `Ingest` stream's standing with the store writer: once a batch of it failed or was
    /// refused, its later batches (queued already) are not stored either, so a stream never has
    /// a gap that its client did not see.
    public final class IngestStream: Sendable {
        let failed = Mutex(false)
        public init() {}
    }

    /// A batch waiting for the store writer (see `queueForStore`).
    public final class StoreTicket: Sendable {
        let samples: [Sample]
        let importing: Bool
        let now: Nanos
        let stream: IngestStream
        let outcome = OneShot<Result<BlockingPool.Completion, TwinError>>()

        init(samples: [Sample], importing: Bool, now: Nanos, stream: IngestStream) {
            self.samples = samples
            self.importing = importing
            self.now = now
            self.stream = stream
        }

        /// A failure also stops the stream's later batches.
        func finish(_ result: Result<BlockingPool.Completion, TwinError>) {
            if case .failure = result { stream.failed.withLock { $0 = true } }
            outcome.set(result)
        }
    }

    /// Batches queued for the store writer, in the order queued.
    private let waitingToStore = Mutex<[StoreTicket]>([])
    /// `Ingest` batches queued and not yet answered (each queued ticket is passed to `store`,
    /// which counts it out).
    private let ingesting = Atomic<Int>(0)

    /// How long a heavy query waits, at most, for `Ingest` batches in flight to be answered.
    public static let ingestFirstLimit: Duration = .milliseconds(25)

    /// A heavy read (history, patterns) on the query pool, ingest first: before it starts it
    /// waits while `Ingest` batches are in flight, up to `ingestFirstLimit`, so that someone
    /// reading history does not slow a plant's readings down. The query thread's low priority
    /// already gives ingest the CPU, but an answer's bytes still go out through the transport
    /// at normal priority; four clients looping 24 h raw queries took about a tenth of the
    /// ingest rate that way (README, hardening).
    public func query<T: Sendable>(_ work: @escaping @Sendable () throws(TwinError) -> T) async throws(TwinError) -> T {
        try await queries.run { [self] () throws(TwinError) -> T in
            yieldToIngest(limit: Self.ingestFirstLimit)
            return try work()
        }
    }

    /// On a query thread (never the cooperative pool): waits while `Ingest` batches are in
    /// flight, up to `limit`.
    public func yieldToIngest(limit: Duration) {
        let deadline = ContinuousClock.now + limit
        while ingesting.load(ordering: .relaxed) > 0, ContinuousClock.now < deadline { usleep(1_000) }
    }
    /// Readings the writer stores in one transaction at most (a group always takes at least one batch).
    static let groupLimit = 200_000

    /// Queues a batch for the store writer; `store(_:)` then has it stored. Call in the stream's
    /// order: batches are stored in the order queued.
    public func queueForStore(_ samples: [Sample], importing: Bool, now: Nanos, stream: IngestStream) -> StoreTicket {
        let ticket = StoreTicket(samples: samples, importing: importing, now: now, stream: stream)
        ingesting.add(1, ordering: .relaxed)
        waitingToStore.withLock { $0.append(ticket) }
        return ticket
    }

    /// Has a queued batch stored durably (on the store writer's thread) and queued to be applied
    /// on `applying`, in the order stored; returns once it has been applied (`Ingest`
    /// acknowledges a batch only then) or with the reason it was not stored. Group commit: the
    /// writer takes every batch waiting (from all streams, up to `groupLimit` readings) and
    /// stores them in one transaction, one commit and one fsync where each batch had its own;
    /// if that fails, every batch of the group fails. A history import moves the live state only
    /// with what is newer than it (`applyStored`).
    public func store(_ ticket: StoreTicket) async -> TwinError? {
        defer { ingesting.subtract(1, ordering: .relaxed) }
        do {
            try await writes.run { [self] () throws(TwinError) in storeWaiting() }
        } catch {
            // Refused or late: unless an earlier job has taken the batch already, it fails here.
            let mine = waitingToStore.withLock { w -> Bool in
                guard let at = w.firstIndex(where: { $0 === ticket }) else { return false }
                w.remove(at: at)
                return true
            }
            if mine { ticket.finish(.failure(error)) }
        }
        switch await ticket.outcome.value() {
        case .success(let applied):
            await applied.wait()
            return nil
        case .failure(let error):
            return error
        }
    }

    /// On the store writer's thread: stores the batches waiting, as one group.
    private func storeWaiting() {
        let group = waitingToStore.withLock { w -> [StoreTicket] in
            var count = 0, taken = 0
            while taken < w.count, taken == 0 || count + w[taken].samples.count <= Self.groupLimit {
                count += w[taken].samples.count
                taken += 1
            }
            defer { w.removeFirst(taken) }
            return Array(w.prefix(taken))
        }
        var admitted: [StoreTicket] = []
        for ticket in group {
            if ticket.stream.failed.withLock({ $0 }) {
                ticket.finish(.failure(TwinError(.unavailable, "an earlier batch of this stream was not stored", reason: .storeUnavailable)))
            } else {
                admitted.append(ticket)
            }
        }
        guard !admitted.isEmpty else { return }
        do throws(TwinError) {
            try history.append(admitted.count == 1 ? admitted[0].samples : admitted.flatMap(\.samples))
        } catch {
            for ticket in admitted { ticket.finish(.failure(error)) }
            return
        }
        for ticket in admitted {
            let samples = ticket.samples, importing = ticket.importing, now = ticket.now
            ticket.finish(.success(applying.enqueue { [self] in applyStored(samples, importing: importing, now: now) }))
        }
    }

    /// Applies samples (already durable) and status hints to the live state, then publishes.
    public func apply(_ samples: [Sample], hints: [(device: Int32, state: DeviceState?)] = [], now: Nanos) {
        let changed = live.apply(samples, hints: hints, now: now)
        observe(samples)
        publish(changed)
    }

    /// Feeds readings to the health engine with each device's operating mode.
    public func observe(_ samples: [Sample]) {
        let unique = Sample.devices(samples, below: live.count).map(Int32.init)
        let states = live.states(unique)
        var modes: [Int32: DeviceState.Mode] = [:]
        for (i, d) in unique.enumerated() { modes[d] = states[i].mode }
        health.observe(samples, modes: modes)
    }

    /// Sets health verdicts and alert counts on the live snapshots and tells subscribers.
    public func annotate(_ marks: [(index: Int32, health: HealthSummary?, openAlerts: UInt32)]) {
        publish(live.annotate(marks))
    }

    /// Devices whose source said it went away: offline, values stale, until they report again.
    public func markDead(_ indices: [Int32], now: Nanos) {
        publish(live.markDead(indices, now: now))
    }

    /// Periodic housekeeping: offline detection and heartbeats.
    public func housekeeping(now: Nanos) {
        publish(live.sweep(now: now))
        bus.heartbeat(now: now)
    }

    /// Hands the changed snapshots to `snapshotsChanged`, then tells the subscribers.
    private func publish(_ changed: [Int32]) {
        if changed.isEmpty { return }
        snapshotsChanged(live.snapshots(changed))
        bus.publish(changed)
    }
}
