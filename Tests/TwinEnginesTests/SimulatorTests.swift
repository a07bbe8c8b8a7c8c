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
        // Every type read at each tick; slow-sampled ones (heat exchangers) come from fleet files.
        #expect(Set(devices.map(\.type)) == Set(MachineCatalog.all.filter { $0.samplePeriod == nil }.map(\.name)))
        let big = MachineCatalog.defaultPlant(count: 10_000)
        #expect(Set(big.map(\.id)).count == 10_000)
        for d in devices { #expect(throws: Never.self) { try d.validate() } }
    }

    /// A heat exchanger reads once an hour at a steady duty; its tube bundle fouls from each
    /// cleaning on, over weeks: the pressure drop climbs (the other readings tell nothing), and
    /// it blocks 14–42 days after its cleaning; the fouling begins again at the repair.
    @Test func aHeatExchangerFoulsOverItsWholeLifeAndReadsHourly() throws {
        let start: Nanos = 1_790_000_000 * Time.second / Time.day * Time.day
        let device = MachineCatalog.device(type: MachineCatalog.heatExchanger, id: "hx-001", number: 1, site: "a", line: "b")
        var options = Simulator.Options()
        options.seed = 3
        options.meanTimeBetweenSensorFaults = 10_000 * Time.day
        var sim = Simulator(devices: [(0, device)], start: start, options: options)
        var output = Simulator.Output()
        var t = start
        var readings: [Sample] = [], events: [MaintenanceEvent] = []
        while t < start + 120 * Time.day {
            t += Time.minute
            sim.tick(at: t, into: &output)
            readings += output.samples
            events += output.events
        }
        // One reading per sensor per hour (none during maintenance).
        let dp = readings.filter { $0.sensor == 0 }
        #expect(Set(dp.map { $0.time / Time.hour }).count == dp.count)
        #expect(dp.count > 100 * 24 && dp.count <= 120 * 24)
        let failures = events.filter { $0.kind == .failure }.map(\.time), repairs = events.filter { $0.kind == .repair }.map(\.time)
        #expect(failures.count >= 3, "\(failures.count) failures in 120 days")
        // Each life after a cleaning lasts 14–42 days, and its fouling began at the cleaning.
        for (repair, failure) in zip(repairs, failures.dropFirst()) {
            #expect((14 * Time.day...42 * Time.day + Time.hour).contains(failure - repair), "\(Double(failure - repair) / Double(Time.day)) days")
            #expect(events.contains { $0.kind == .faultOnset && $0.fault == "fouling" && $0.time == repair })
        }
        // Over a life the pressure drop climbs: its last day's mean well above its first day's.
        if let repair = repairs.first, let failure = failures.first(where: { $0 > repair }) {
            let life = dp.filter { $0.time > repair && $0.time < failure }.map(\.value)
            let first = life.prefix(24).reduce(0, +) / 24, last = life.suffix(24).reduce(0, +) / 24
            #expect(last > 2 * first, "first day \(first) bar, last day \(last) bar")
        }
    }
}
