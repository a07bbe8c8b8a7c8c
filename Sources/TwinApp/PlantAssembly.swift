import Logging
import TwinCore
import TwinEngines

/// How a starting daemon puts its plant together: the declared fleet (a fleet file, or the
/// default simulated plant), the devices saved by `UpsertDevice` before the restart, the
/// simulator for the simulated ones, and the maintenance windows still running.
public enum PlantAssembly {
    /// Registers the fleet and the saved devices. A saved device comes back as it was saved,
    /// except that a simulated one keeps the simulator's definition (its sensors are the
    /// simulator's). Returns every registered device with its index.
    public static func register(fleet: [Device], plant: Plant, now: Nanos) throws(TwinError) -> [(index: Int32, device: Device)] {
        let simulatedIDs = Set(fleet.filter(\.simulated).map(\.id))
        let saved = try plant.store.savedDevices().filter { !simulatedIDs.contains($0.id) }
        let savedIDs = Set(saved.map(\.id))
        return try plant.register(fleet.filter { !savedIDs.contains($0.id) } + saved, now: now)
    }

    /// The simulator for the simulated devices among `registered`, starting `backfill` in the
    /// past; nil when there are none or the simulator is off.
    public static func simulator(
        for registered: [(index: Int32, device: Device)], enabled: Bool, seed: UInt64, backfill: Nanos, interval: Nanos, now: Nanos, logger: Logger
    ) -> SimulatorRunner? {
        let simulated = registered.filter { $0.device.simulated }
        guard enabled, !simulated.isEmpty else { return nil }
        var options = Simulator.Options()
        options.seed = seed
        return SimulatorRunner(simulator: Simulator(devices: simulated, start: now - backfill, options: options), interval: interval, logger: logger)
    }

    /// Maintenance recorded with a duration that is not over yet keeps suppressing alerts after
    /// a restart. Returns how many windows were restored.
    @discardableResult
    public static func restoreMaintenanceWindows(store: any PlantStore, alerts: AlertBook, now: Nanos) throws(TwinError) -> Int {
        var windows = EventQuery()
        windows.from = now - 90 * Time.day
        windows.limit = 1_000_000
        var restored = 0
        for e in try store.events(windows) {
            if let d = e.duration, e.time + d > now {
                alerts.suppress(device: e.deviceID, from: e.time, until: e.time + d)
                restored += 1
            }
        }
        return restored
    }
}
