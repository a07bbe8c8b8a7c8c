import Logging
import Synchronization
import TwinCore
import TwinEngines

/// The running plant: registry and live state, the update bus, and the simulator (if any).
/// Services and the simulator loop go through it so every change reaches the subscribers.
final class Plant: Sendable {
    let live: LivePlant
    let bus = UpdateBus()
    let encoder = SnapshotEncoder()
    let heartbeat: Nanos
    let store: any PlantStore
    let history: any HistoryStore
    let logger: Logger

    init(options: LivePlant.Options, heartbeat: Nanos, store: any PlantStore, history: any HistoryStore, logger: Logger) {
        self.live = LivePlant(options: options)
        self.heartbeat = heartbeat
        self.store = store
        self.history = history
        self.logger = logger
    }

    /// Adds or replaces a device and tells the bus.
    @discardableResult
    func upsert(_ device: Device, now: Nanos = Time.now()) throws(TwinError) -> (device: Device, created: Bool, index: Int32) {
        let existing = live.device(device.id)
        if let existing, existing.simulated, existing.sensors != device.sensors {
            throw .failedPrecondition(
                "device '\(device.id)' is simulated and its sensors are fixed by the simulator; run twind with --simulator off to define it yourself")
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
        bus.registryChanged(identities: live.identities())
        publish([result.index])
        return result
    }

    /// Records maintenance events durably (simulator ground truth or RecordEvent).
    func record(_ events: [MaintenanceEvent]) throws(TwinError) -> [MaintenanceEvent] {
        try store.appendEvents(events)
    }

    /// Registers many devices at start-up (one bus notification).
    func register(_ devices: [Device], now: Nanos = Time.now()) throws(TwinError) -> [(index: Int32, device: Device)] {
        var result: [(index: Int32, device: Device)] = []
        result.reserveCapacity(devices.count)
        for device in devices {
            let r = try live.upsert(device, now: now)
            try history.bind(device: r.index, id: r.device.id, sensors: r.device.sensors.map(\.name))
            result.append((r.index, r.device))
        }
        bus.registryChanged(identities: live.identities())
        return result
    }

    /// Stores samples durably, then applies them to the live state; nothing reaches subscribers
    /// (or is acknowledged) before it is stored.
    func ingest(_ samples: [Sample], hints: [(device: Int32, state: DeviceState?)] = [], now: Nanos) throws(TwinError) {
        try history.append(samples)
        apply(samples, hints: hints, now: now)
    }

    /// Applies samples (already durable) and status hints to the live state, then publishes.
    func apply(_ samples: [Sample], hints: [(device: Int32, state: DeviceState?)] = [], now: Nanos) {
        publish(live.apply(samples, hints: hints, now: now))
    }

    /// Periodic housekeeping: offline detection and heartbeats.
    func housekeeping(now: Nanos) {
        publish(live.sweep(now: now))
        bus.heartbeat(now: now)
    }

    /// Encodes the changed snapshots once for every subscriber, then tells the subscribers.
    private func publish(_ changed: [Int32]) {
        if changed.isEmpty { return }
        encoder.refresh(live.snapshots(changed))
        bus.publish(changed)
    }
}
