import Logging
import Synchronization
import Testing
import TwinApp
import TwinCore
import TwinEngines

/// A starting daemon's plant: fleet, saved devices, simulator, maintenance windows. In-memory
/// stores and a test clock.
@Suite struct PlantAssemblyTests {
    let clock = ManualClock()
    var logger: Logger {
        var l = Logger(label: "test")
        l.logLevel = .critical
        return l
    }

    func plant(saved: [Device] = [], events: [MaintenanceEvent] = []) -> Plant {
        Plant(options: .init(), heartbeat: 5 * Time.second, store: MemoryPlantStore(saved, events), history: MemoryHistory(), logger: logger, clock: clock)
    }

    @Test func savedDevicesComeBackButASimulatedOneKeepsTheSimulatorsSensors() throws {
        let fleet = MachineCatalog.defaultPlant(count: 2)
        let pump = try #require(fleet.first)
        // Saved before the restart: the simulated pump with a sensor of someone's own, and a device added by UpsertDevice.
        var edited = pump
        edited.sensors = [SensorSpec(name: "made_up", unit: "", nominalMin: 0, nominalMax: 1)]
        let press = Device(id: "press-7", type: "press", sensors: [SensorSpec(name: "force", unit: "kN", nominalMin: 0, nominalMax: 800)])
        let p = plant(saved: [edited, press])
        let registered = try PlantAssembly.register(fleet: fleet, plant: p, now: clock.now())
        #expect(Set(registered.map(\.device.id)) == Set(fleet.map(\.id) + ["press-7"]))
        #expect(registered.first { $0.device.id == pump.id }?.device.sensors == pump.sensors)
        #expect(registered.first { $0.device.id == "press-7" }?.device.sensors.map(\.name) == ["force"])
        // Only the simulated devices get a simulator, and none when it is off.
        #expect(PlantAssembly.simulator(for: registered, enabled: true, seed: 1, backfill: 0, interval: Time.second, now: clock.now(), logger: logger) != nil)
        #expect(PlantAssembly.simulator(for: registered, enabled: false, seed: 1, backfill: 0, interval: Time.second, now: clock.now(), logger: logger) == nil)
        let onlyPress = registered.filter { $0.device.id == "press-7" }
        #expect(PlantAssembly.simulator(for: onlyPress, enabled: true, seed: 1, backfill: 0, interval: Time.second, now: clock.now(), logger: logger) == nil)
    }

    @Test func maintenanceStillRunningKeepsSuppressingAlerts() throws {
        let now = clock.now()
        let events = [
            MaintenanceEvent(deviceID: "pump-1", kind: .maintenance, time: now - Time.hour, source: .operator, duration: 2 * Time.hour),
            MaintenanceEvent(deviceID: "pump-2", kind: .maintenance, time: now - 3 * Time.hour, source: .operator, duration: Time.hour),
            MaintenanceEvent(deviceID: "pump-3", kind: .inspection, time: now - Time.hour, source: .operator),
        ]
        let store = MemoryPlantStore([], events)
        let book = try AlertBook(store: MemoryAlertStore(), clock: clock, logger: logger)
        #expect(try PlantAssembly.restoreMaintenanceWindows(store: store, alerts: book, now: now) == 1)
        #expect(book.isSuppressed("pump-1", at: now))
        #expect(!book.isSuppressed("pump-1", at: now + 2 * Time.hour))
        #expect(!book.isSuppressed("pump-2", at: now))
        #expect(!book.isSuppressed("pump-3", at: now))
    }

    /// A sensor-serviced event (the simulator's, or `RecordEvent` by a technician) ends the
    /// health engine's verdict that the sensor is off, and its normals are learned anew.
    @Test func aServicedSensorIsNoLongerCalledOff() throws {
        let p = plant()
        let start = clock.now()
        let device = Device(id: "fan-1", type: "fan", sensors: [SensorSpec(name: "current", unit: "A", nominalMin: 0, nominalMax: 100)])
        let index = try p.upsert(device, now: start).index
        // Three days of 12 h under load and 12 h at rest (0 A), then 20 A at rest.
        var t = start
        func feed(hours: Int, offset: Double = 0) {
            for _ in 0..<(hours * 60) {
                t += Time.minute
                let running = (t - start) / (12 * Time.hour) % 2 == 0
                let value = (running ? 40 + 20 * Double((t / Time.minute) % 7) / 7 : 0) + offset
                p.health.observe([Sample(device: index, sensor: 0, time: t, value: value)], modes: [index: running ? .running : .idle])
            }
        }
        feed(hours: 84)
        feed(hours: 2, offset: 20)
        func drift() -> Bool { p.health.score(device: index, state: .idle, outlook: nil, now: t)?.factors.contains { $0.kind == .drift } ?? false }
        #expect(drift())
        _ = try p.record([MaintenanceEvent(deviceID: "fan-1", kind: .sensorServiced, time: t, component: "current", source: .operator)])
        #expect(!drift())
    }
}

final class MemoryPlantStore: PlantStore {
    let state: Mutex<(devices: [Device], events: [MaintenanceEvent])>
    init(_ devices: [Device], _ events: [MaintenanceEvent]) { state = Mutex((devices, events)) }
    func saveDevice(_ device: Device) throws(TwinError) { state.withLock { $0.devices.removeAll { $0.id == device.id }; $0.devices.append(device) } }
    func savedDevices() throws(TwinError) -> [Device] { state.withLock { $0.devices } }
    func appendEvents(_ events: [MaintenanceEvent]) throws(TwinError) -> [MaintenanceEvent] {
        state.withLock { $0.events += events }
        return events
    }
    func events(_ query: EventQuery) throws(TwinError) -> [MaintenanceEvent] {
        state.withLock { $0.events }.filter { e in query.from.map { e.time >= $0 } ?? true }
    }
}

final class MemoryHistory: HistoryStore {
    let samples = Mutex<[Sample]>([])
    func bind(device index: Int32, id: String, sensors: [String]) throws(TwinError) {}
    func append(_ samples: [Sample]) throws(TwinError) { self.samples.withLock { $0 += samples } }
    func history(_ query: HistoryQuery) throws(TwinError) -> [SeriesHistory] { [] }
    func hasReadings() throws(TwinError) -> Bool { samples.withLock { !$0.isEmpty } }
    var rawRetention: Nanos { 90 * Time.day }
}
