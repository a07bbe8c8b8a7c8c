import TwinCore

/// The built-in fleet simulator: physically coherent signals per machine type, with daily load
/// cycles, noise, slow wear, and faults that develop over hours to days and end in failure unless
/// repaired. Ground truth (onset, expected failure, failure, repair, sensor faults) comes out as
/// maintenance events.
///
/// Deterministic: a device's signals depend only on the seed, its id, its start time and the
/// times it is ticked at. Not thread-safe; one owner ticks it.
public struct Simulator: Sendable {
    public struct Options: Sendable {
        public var seed: UInt64 = 1
        /// Mean time between machine-fault onsets per device.
        public var meanTimeBetweenFaults: Nanos = 25 * Time.day
        /// Mean time between sensor faults per device.
        public var meanTimeBetweenSensorFaults: Nanos = 60 * Time.day
        /// Share of devices that start with a fault already developing (so a fresh plant shows some).
        public var initialFaultShare: Double = 0.3
        public init() {}
    }

    /// What one tick produced.
    public struct Output: Sendable {
        public var samples: [Sample] = []
        /// The controller's status per device (`nil`: running; let the live state judge limits).
        public var statuses: [(device: Int32, state: DeviceState?)] = []
        public var events: [MaintenanceEvent] = []
        public init() {}
    }

    struct ActiveFault {
        var kind: MachineFault
        var onset: Nanos
        var failureAt: Nanos
        var severity: Double = 0
    }

    struct ActiveSensorFault {
        var kind: SensorFault
        var sensor: Int
        var onset: Nanos
        var end: Nanos
        /// Drift: units per day; stuck: the frozen value.
        var parameter: Double
        var stuckSet = false
    }

    enum Phase { case running, failed(until: Nanos), maintenance(until: Nanos) }

    struct Machine {
        var plantIndex: Int32
        var id: String
        var type: MachineType
        var rng: SplitMix64
        var baseLoad: Double
        var phaseHours: Double
        var loadNoise: Double = 0
        var wear: Double
        /// Lagged temperatures (absolute °C) per sensor; NaN for non-temperature sensors.
        var temps: [Double]
        var fault: ActiveFault?
        var sensorFault: ActiveSensorFault?
        var phase: Phase = .running
        var nextFaultAt: Nanos
        var nextSensorFaultAt: Nanos
        var lastTick: Nanos
        var pendingEvents: [MaintenanceEvent] = []
    }

    public let options: Options
    var machines: [Machine]

    /// The sign of the drift a device's sensor is having now (+1 up, −1 down; 0 for none): the
    /// detection benchmark's breakdown by the way a drift moves the sensor.
    @_spi(Benchmarks) public func driftSign(device: Int32) -> Double {
        guard let m = machines.first(where: { $0.plantIndex == device }), let sf = m.sensorFault, sf.kind == .drift else { return 0 }
        return sf.parameter < 0 ? -1 : 1
    }

    /// Simulates `devices` (plant index and definition; types the catalog does not know are
    /// skipped) from `start`.
    public init(devices: [(index: Int32, device: Device)], start: Nanos, options: Options = Options()) {
        self.options = options
        machines = devices.compactMap { entry in
            guard let type = MachineCatalog.type(named: entry.device.type) else { return nil }
            var rng = SplitMix64(seed: options.seed &* 0x9E37_79B9_7F4A_7C15 ^ stableHash(entry.device.id))
            let baseLoad = rng.uniform(0.45, 0.8)
            let phaseHours = rng.uniform(-1.5, 1.5)
            let wear = rng.uniform(0, 0.5)
            let ambient = Simulator.ambient(at: start)
            let temps = type.sensors.map { $0.role.isTemperature ? ambient + $0.idle + ($0.full - $0.idle) * baseLoad : Double.nan }
            var machine = Machine(
                plantIndex: entry.index, id: entry.device.id, type: type, rng: rng, baseLoad: baseLoad,
                phaseHours: phaseHours, wear: wear, temps: temps, nextFaultAt: 0, nextSensorFaultAt: 0,
                lastTick: start)
            machine.nextFaultAt = start + Nanos(machine.rng.exponential(mean: Double(options.meanTimeBetweenFaults)))
            machine.nextSensorFaultAt = start + Nanos(machine.rng.exponential(mean: Double(options.meanTimeBetweenSensorFaults)))
            if type.faults.allSatisfy(\.beginsAtRepair) {
                // Wear over the whole life: every machine is somewhere in its life at the start.
                let kind = type.faults[Int(machine.rng.next() % UInt64(type.faults.count))]
                let (lo, hi) = kind.developmentHours
                let duration = Nanos(machine.rng.uniform(lo, hi) * Double(Time.hour))
                let elapsed = Nanos(Double(duration) * machine.rng.uniform(0.02, 0.9))
                Simulator.beginFault(&machine, kind: kind, onset: start - elapsed, duration: duration)
            } else if machine.rng.unit() < options.initialFaultShare {
                // A fault that began before the start, part way to failure.
                let kind = type.faults[Int(machine.rng.next() % UInt64(type.faults.count))]
                let (lo, hi) = kind.developmentHours
                let duration = Nanos(machine.rng.uniform(lo, hi) * Double(Time.hour))
                let elapsed = Nanos(Double(duration) * machine.rng.uniform(0.1, 0.75))
                Simulator.beginFault(&machine, kind: kind, onset: start - elapsed, duration: duration)
            }
            return machine
        }
    }

    // MARK: Ticking

    /// Advances every machine to `time` and writes what they report into `output` (cleared first).
    public mutating func tick(at time: Nanos, into output: inout Output) {
        output.samples.removeAll(keepingCapacity: true)
        output.statuses.removeAll(keepingCapacity: true)
        output.events.removeAll(keepingCapacity: true)
        let ambient = Simulator.ambient(at: time)
        let hourOfDay = Double((time % Time.day + Time.day) % Time.day) / Double(Time.hour)
        let dayOfWeek = Int(((time / Time.day) + 4) % 7)  // 1970-01-01 was a Thursday; 0 = Sunday
        for m in machines.indices {
            Simulator.step(&machines[m], to: time, ambient: ambient, hourOfDay: hourOfDay, dayOfWeek: dayOfWeek,
                           options: options, output: &output)
        }
    }

    /// Convenience for tests and backfill: one tick, returning a fresh output.
    public mutating func tick(at time: Nanos) -> Output {
        var output = Output()
        tick(at: time, into: &output)
        return output
    }

    /// An operator repaired a device (repair, part replaced, maintenance, sensor serviced): clears
    /// the machine fault (or only the sensor fault for `sensorServiced`) and brings it back.
    public mutating func recordMaintenance(deviceID: String, kind: MaintenanceEvent.Kind, at time: Nanos) -> Bool {
        guard let m = machines.firstIndex(where: { $0.id == deviceID }) else { return false }
        switch kind {
        case .repair, .partReplaced, .maintenance:
            machines[m].fault = nil
            machines[m].phase = .running
            machines[m].wear *= 0.2
            machines[m].nextFaultAt = Simulator.nextFault(after: time, &machines[m], mean: Double(options.meanTimeBetweenFaults))
            return true
        case .sensorServiced:
            machines[m].sensorFault = nil
            return true
        default:
            return false
        }
    }

    /// When the next machine fault begins after a repair at `time`: at once for wear over the
    /// whole life (fouling), else after a random time in service with the given mean.
    static func nextFault(after time: Nanos, _ m: inout Machine, mean: Double) -> Nanos {
        if m.type.faults.allSatisfy(\.beginsAtRepair) { return time }
        return time + Nanos(m.rng.exponential(mean: mean))
    }

    static func ambient(at time: Nanos) -> Double {
        let hour = Double((time % Time.day + Time.day) % Time.day) / Double(Time.hour)
        return 20 + 4 * _sin(2 * .pi * (hour - 9) / 24)
    }

    static func beginFault(_ m: inout Machine, kind: MachineFault, onset: Nanos, duration: Nanos) {
        m.fault = ActiveFault(kind: kind, onset: onset, failureAt: onset + duration)
        m.pendingEvents.append(
            MaintenanceEvent(
                deviceID: m.id, kind: .faultOnset, time: onset, component: kind.component, fault: kind.rawValue,
                notes: "simulated \(kind.rawValue.replacingUnderscores) began", recordedBy: "simulator",
                source: .simulator, expectedFailureAt: onset + duration))
    }

    static func step(
        _ m: inout Machine, to time: Nanos, ambient: Double, hourOfDay: Double, dayOfWeek: Int,
        options: Options, output: inout Output
    ) {
        let dt = max(0, Double(time - m.lastTick) / 1e9)
        // Machines read once a period report at the first tick of each period.
        let reports = m.type.samplePeriod.map { time / $0 != m.lastTick / $0 } ?? true
        m.lastTick = time
        m.wear = min(1, m.wear + dt / (400 * 86400))

        // Lifecycle: failure, repair crew, back in service.
        switch m.phase {
        case .running:
            if let fault = m.fault {
                let span = Double(fault.failureAt - fault.onset)
                let s = span > 0 ? Double(time - fault.onset) / span : 1
                m.fault!.severity = min(1, max(0, s))
                if time >= fault.failureAt {
                    let wait = Nanos(m.rng.uniform(1, 8) * Double(Time.hour))
                    m.phase = .failed(until: fault.failureAt + wait)
                    m.pendingEvents.append(
                        MaintenanceEvent(
                            deviceID: m.id, kind: .failure, time: fault.failureAt, component: fault.kind.component,
                            fault: fault.kind.rawValue, notes: "simulated failure: \(fault.kind.rawValue.replacingUnderscores)",
                            recordedBy: "simulator", source: .simulator))
                }
            } else if time >= m.nextFaultAt {
                let kind = m.type.faults[Int(m.rng.next() % UInt64(m.type.faults.count))]
                let (lo, hi) = kind.developmentHours
                beginFault(&m, kind: kind, onset: m.nextFaultAt, duration: Nanos(m.rng.uniform(lo, hi) * Double(Time.hour)))
            }
        case .failed(let until):
            if time >= until {
                m.phase = .maintenance(until: until + Nanos(m.rng.uniform(2, 16) * Double(Time.hour)))
            }
        case .maintenance(let until):
            if time >= until, let fault = m.fault {
                m.pendingEvents.append(
                    MaintenanceEvent(
                        deviceID: m.id, kind: .repair, time: until, component: fault.kind.component, fault: fault.kind.rawValue,
                        notes: "simulated repair: \(fault.kind.component) replaced", recordedBy: "simulator", source: .simulator))
                m.fault = nil
                m.phase = .running
                m.wear *= 0.2
                m.nextFaultAt = nextFault(after: until, &m, mean: Double(options.meanTimeBetweenFaults) * (1 - 0.5 * m.wear))
            }
        }

        // Sensor faults begin and end on their own; they never stop the machine.
        if let sf = m.sensorFault, time >= sf.end {
            m.pendingEvents.append(
                MaintenanceEvent(
                    deviceID: m.id, kind: .sensorServiced, time: sf.end, component: m.type.sensors[sf.sensor].spec.name,
                    fault: sf.kind.rawValue, notes: "simulated sensor recalibrated", recordedBy: "simulator", source: .simulator))
            m.sensorFault = nil
        } else if m.sensorFault == nil, time >= m.nextSensorFaultAt {
            let kind = SensorFault.allCases[Int(m.rng.next() % UInt64(SensorFault.allCases.count))]
            let sensor = Int(m.rng.next() % UInt64(m.type.sensors.count))
            let spec = m.type.sensors[sensor].spec
            let span = max(spec.nominalMax - spec.nominalMin, 1)
            let parameter = kind == .drift ? (m.rng.unit() < 0.5 ? -1 : 1) * span * m.rng.uniform(0.04, 0.12) : 0
            let onset = m.nextSensorFaultAt
            m.sensorFault = ActiveSensorFault(
                kind: kind, sensor: sensor, onset: onset, end: onset + Nanos(m.rng.uniform(6, 96) * Double(Time.hour)),
                parameter: parameter)
            m.nextSensorFaultAt = onset + Nanos(m.rng.exponential(mean: Double(options.meanTimeBetweenSensorFaults)))
            m.pendingEvents.append(
                MaintenanceEvent(
                    deviceID: m.id, kind: .faultOnset, time: onset, component: spec.name, fault: kind.rawValue,
                    notes: "simulated \(kind.rawValue.replacingUnderscores) on \(spec.name)", recordedBy: "simulator",
                    source: .simulator))
        }

        // Load: a daily cycle around the machine's base load, some slow noise, shifts for some types.
        let running: Bool
        let status: DeviceState?
        switch m.phase {
        case .running:
            let offShift = m.type.shiftOperated && (dayOfWeek == 0 || hourOfDay < 6 || hourOfDay >= 22)
            running = !offShift
            status = offShift ? .idle : nil
        case .failed:
            running = false
            status = .failed
        case .maintenance:
            running = false
            status = .maintenance
        }
        m.loadNoise = m.loadNoise * 0.98 + 0.02 * m.rng.normal() * 0.5
        let daily = m.type.dailyCycle ? 0.22 * _sin(2 * .pi * (hourOfDay - 8 + m.phaseHours) / 24) : 0
        let load = running ? min(1, max(0.05, m.baseLoad + daily + m.loadNoise)) : 0
        output.statuses.append((m.plantIndex, status))
        output.events.append(contentsOf: m.pendingEvents)
        m.pendingEvents.removeAll()

        // Under maintenance the sensors are disconnected: nothing is reported.
        if case .maintenance = m.phase { return }
        let firstSample = output.samples.count
        defer { if !reports { output.samples.removeSubrange(firstSample...) } }

        let severity = m.fault?.severity ?? 0
        let faultKind = m.fault?.kind
        let tau = 900.0  // thermal time constant, seconds
        let alpha = dt > 0 ? 1 - _exp(-dt / tau) : 0
        for (k, model) in m.type.sensors.enumerated() {
            var value: Double
            if model.role.isTemperature {
                var target = ambient + (running ? model.idle + (model.full - model.idle) * load : 0)
                target += faultHeat(faultKind, role: model.role, severity: severity, running: running)
                m.temps[k] += (target - m.temps[k]) * alpha
                value = m.temps[k]
            } else if !running {
                value = stoppedValue(model)
            } else {
                value = model.idle + (model.full - model.idle) * load
                if model.role == .vibration { value *= 1 + 0.25 * m.wear }
                value = applyFault(faultKind, to: value, model: model, severity: severity, load: load, rng: &m.rng)
            }
            // A stopped machine's sensors read near zero with a little noise, never below.
            value += (running || model.role.isTemperature ? model.noise : model.noise * 0.1) * m.rng.normal()
            if model.role.isNonNegative { value = max(0, value) }

            if let sf = m.sensorFault, sf.sensor == k {
                switch sf.kind {
                case .drift:
                    value += sf.parameter * Double(time - sf.onset) / Double(Time.day)
                case .stuck:
                    if !m.sensorFault!.stuckSet {
                        m.sensorFault!.parameter = value
                        m.sensorFault!.stuckSet = true
                    }
                    value = m.sensorFault!.parameter
                case .spikes:
                    if m.rng.unit() < 0.03 {
                        value += (model.spec.nominalMax - model.spec.nominalMin) * m.rng.uniform(0.8, 2.5)
                    }
                case .dropout:
                    if m.rng.unit() < 0.7 { continue }
                }
            }
            // Instruments report at a resolution (and the store compresses such values well).
            let scale = model.resolution
            value = (value * scale).rounded() / scale
            output.samples.append(Sample(device: m.plantIndex, sensor: Int32(k), time: time, value: value))
        }
    }

    static func stoppedValue(_ model: SensorModel) -> Double {
        switch model.role {
        case .voltage: model.idle
        case .pressureIn: model.idle
        case .pressureOut: model.idle * 0.3  // static head / residual pressure
        default: 0
        }
    }

    static func faultHeat(_ fault: MachineFault?, role: SensorRole, severity s: Double, running: Bool) -> Double {
        guard let fault, running else { return 0 }
        switch (fault, role) {
        case (.bearingWear, .bearingTemp): return 32 * s * s
        case (.imbalance, .bearingTemp): return 14 * s
        case (.overheating, .windingTemp), (.overheating, .processTemp), (.overheating, .oilTemp), (.overheating, .gearboxTemp):
            return 50 * _pow(s, 1.5)
        case (.overheating, .bearingTemp): return 10 * s
        case (.gearWear, .gearboxTemp): return 40 * s * s
        case (.leak, .processTemp): return 12 * s
        default: return 0
        }
    }

    static func applyFault(
        _ fault: MachineFault?, to value: Double, model: SensorModel, severity s: Double, load: Double,
        rng: inout SplitMix64
    ) -> Double {
        guard let fault, s > 0 else { return value }
        switch (fault, model.role) {
        case (.bearingWear, .vibration): return value + (model.full * 2.8) * (s * s) + model.full * 0.4 * s
        case (.bearingWear, .current): return value * (1 + 0.03 * s)
        case (.imbalance, .vibration): return value + model.full * 2.6 * s * (0.5 + load)
        case (.overheating, .current): return value * (1 + 0.06 * s)
        case (.cavitation, .pressureIn): return value - 0.55 * s
        case (.cavitation, .vibration): return value + model.full * (1.2 * s + 1.6 * s * abs(rng.normal()))
        case (.cavitation, .flow): return value * (1 - 0.25 * s)
        case (.cavitation, .pressureOut): return value * (1 - 0.15 * s)
        case (.leak, .pressureOut): return value * (1 - 0.35 * s)
        case (.leak, .flow): return value * (1 - 0.2 * s)
        case (.leak, .current): return value * (1 + 0.12 * s)
        case (.leak, .oilPressure): return value * (1 - 0.55 * s)
        case (.leak, .power): return value * (1 - 0.1 * s)
        case (.gearWear, .vibration): return value + model.full * 2.2 * s * s
        case (.gearWear, .current): return value * (1 + 0.08 * s)
        case (.gearWear, .speed): return value * (1 - 0.04 * s)
        case (.imbalance, .power): return value * (1 - 0.03 * s)
        case (.fouling, .differentialPressure): return value * (1 + 1.6 * _pow(s, 1.5))
        default: return value
        }
    }
}

extension String {
    fileprivate var replacingUnderscores: String {
        String(map { $0 == "_" ? " " : $0 })
    }
}
