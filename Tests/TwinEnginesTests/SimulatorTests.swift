import Testing
import TwinCore
@testable import TwinEngines

@Suite struct SimulatorTests {
    let start: Nanos = 1_790_000_000 * Time.second

    func plant(_ count: Int) -> [(index: Int32, device: Device)] {
        MachineCatalog.defaultPlant(count: count).enumerated().map { (Int32($0.offset), $0.element) }
    }

    @Test func sameSeedSameSignalsOtherSeedOtherSignals() {
        var a = Simulator(devices: plant(12), start: start)
        var b = Simulator(devices: plant(12), start: start)
        var options = Simulator.Options()
        options.seed = 2
        var c = Simulator(devices: plant(12), start: start, options: options)
        for step in 1...50 {
            let t = start + Nanos(step) * 5 * Time.second
            let (x, y, z) = (a.tick(at: t), b.tick(at: t), c.tick(at: t))
            #expect(x.samples == y.samples)
            #expect(x.events == y.events)
            if step == 50 { #expect(x.samples != z.samples) }
        }
    }

    @Test func everyDeviceReportsEverySensorWithinPhysicalSense() {
        var sim = Simulator(devices: plant(12), start: start)
        let out = sim.tick(at: start + 5 * Time.second)
        let devices = MachineCatalog.defaultPlant(count: 12)
        let reported = Set(out.samples.map(\.device))
        // Every device reports (a device under maintenance or with a dropout may not, but not all).
        #expect(reported.count >= 10)
        for s in out.samples {
            let spec = devices[Int(s.device)].sensors[Int(s.sensor)]
            #expect(s.value.isFinite)
            if spec.unit == "°C" { #expect((-20...700).contains(s.value), "\(spec.name) = \(s.value)") }
        }
    }

    /// A machine fault is recorded at onset with its expected failure time, the signals degrade
    /// towards it, the failure is recorded when it happens, and a repair follows.
    @Test func faultGroundTruthOnsetFailureRepair() {
        var options = Simulator.Options()
        options.initialFaultShare = 0
        options.meanTimeBetweenSensorFaults = 10_000 * Time.day
        options.meanTimeBetweenFaults = 2 * Time.day
        let devices = [(Int32(0), MachineCatalog.defaultPlant(count: 1)[0])]  // pump-001
        var sim = Simulator(devices: devices, start: start, options: options)
        var events: [MaintenanceEvent] = []
        var vibrationBySeverity: [(Double, Double)] = []
        let step = Time.minute
        var t = start
        while t < start + 40 * Time.day && !events.contains(where: { $0.kind == .repair }) {
            t += step
            let out = sim.tick(at: t)
            events += out.events
            if let fault = sim.machines[0].fault, case .running = sim.machines[0].phase,
               let v = out.samples.first(where: { $0.sensor == 3 }) {
                vibrationBySeverity.append((fault.severity, v.value))
            }
        }
        guard let onset = events.first(where: { $0.kind == .faultOnset }),
              let failure = events.first(where: { $0.kind == .failure }),
              let repair = events.first(where: { $0.kind == .repair })
        else {
            Issue.record("expected onset, failure and repair within 40 days, got \(events.map(\.kind))")
            return
        }
        #expect(onset.source == .simulator)
        #expect(onset.expectedFailureAt == failure.time)
        #expect(onset.time < failure.time && failure.time < repair.time)
        #expect(onset.fault == failure.fault)
        // Degradation shows: late in the fault the machine vibrates more (bearing wear/cavitation)
        // or it is a fault that shows elsewhere; at least its signals differ from early on.
        let early = vibrationBySeverity.filter { $0.0 < 0.2 }.map(\.1)
        let late = vibrationBySeverity.filter { $0.0 > 0.8 }.map(\.1)
        if ["bearing_wear", "cavitation"].contains(onset.fault), !early.isEmpty, !late.isEmpty {
            let earlyMean: Double = early.reduce(0, +) / Double(early.count)
            let lateMean: Double = late.reduce(0, +) / Double(late.count)
            #expect(lateMean > 1.5 * earlyMean)
        }
    }

    @Test func stuckSensorRepeatsItsValueAndIsRecordedAsASensorFault() {
        var options = Simulator.Options()
        options.initialFaultShare = 0
        options.meanTimeBetweenFaults = 10_000 * Time.day
        options.meanTimeBetweenSensorFaults = Time.hour
        var found = false
        for seed in UInt64(1)...40 where !found {
            options.seed = seed
            var sim = Simulator(devices: [(0, MachineCatalog.defaultPlant(count: 1)[0])], start: start, options: options)
            var t = start
            for _ in 0..<200 {
                t += Time.minute
                let out = sim.tick(at: t)
                if let onset = out.events.first(where: { $0.fault == SensorFault.stuck.rawValue }) {
                    let sensor = sim.machines[0].sensorFault!.sensor
                    #expect(onset.kind == .faultOnset)
                    #expect(onset.component == MachineCatalog.pump.sensors[sensor].spec.name)
                    let a = sim.tick(at: t + Time.minute).samples.first { $0.sensor == Int32(sensor) }!.value
                    let b = sim.tick(at: t + 2 * Time.minute).samples.first { $0.sensor == Int32(sensor) }!.value
                    #expect(a == b)
                    found = true
                    break
                }
            }
        }
        #expect(found)
    }

    @Test func operatorRepairClearsTheFault() {
        var options = Simulator.Options()
        options.initialFaultShare = 1
        var sim = Simulator(devices: [(0, MachineCatalog.defaultPlant(count: 1)[0])], start: start, options: options)
        #expect(sim.machines[0].fault != nil)
        let repaired = sim.recordMaintenance(deviceID: "pump-001", kind: .repair, at: start)
        #expect(repaired)
        #expect(sim.machines[0].fault == nil)
        let unknown = sim.recordMaintenance(deviceID: "nope", kind: .repair, at: start)
        #expect(!unknown)
    }

    @Test func defaultPlantHasEveryTypeAndUniqueIDs() {
        let devices = MachineCatalog.defaultPlant(count: 12)
        #expect(Set(devices.map(\.type)) == Set(MachineCatalog.all.map(\.name)))
        let big = MachineCatalog.defaultPlant(count: 10_000)
        #expect(Set(big.map(\.id)).count == 10_000)
        for d in devices { #expect(throws: Never.self) { try d.validate() } }
    }
}
