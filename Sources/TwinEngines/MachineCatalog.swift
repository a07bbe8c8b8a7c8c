import TwinCore

/// What a sensor measures physically, so one model of load, heat and faults drives every type.
public enum SensorRole: Sendable {
    case speed, flow, pressureOut, pressureIn, current, vibration, bearingTemp, windingTemp
    case processTemp, oilTemp, gearboxTemp, voltage, power, throughput, oilPressure
    /// Pressure drop across an element (a heat exchanger's tube bundle, a filter).
    case differentialPressure

    /// Quantities that cannot go below zero (a stopped machine's speed, a flow, a current).
    var isNonNegative: Bool { !isTemperature }

    /// The resolution real instruments report at, as decimal places (0.1 °C, 0.01 bar, 1 rpm).
    var scale: Double {
        switch self {
        case .speed: 1
        case .pressureOut, .pressureIn, .oilPressure, .vibration, .differentialPressure: 100
        default: 10
        }
    }

    var isTemperature: Bool {
        switch self {
        case .bearingTemp, .windingTemp, .processTemp, .oilTemp, .gearboxTemp: true
        default: false
        }
    }
}

/// How one sensor of a machine type behaves: value at no load and at full load, noise, limits.
public struct SensorModel: Sendable {
    public var spec: SensorSpec
    public var role: SensorRole
    /// Value while running at zero load and at full load (temperatures: rise above ambient).
    public var idle: Double
    public var full: Double
    /// Standard deviation of measurement noise.
    public var noise: Double

    /// Decimal places the instrument reports, as a power of ten: the role's, finer for small
    /// quantities (a belt speed of 0.6–2.0 m/s is read to 0.01 m/s, not to whole metres).
    var resolution: Double { role.scale * (Swift.max(abs(idle), abs(full)) < 10 && role.scale < 100 ? 100 / role.scale : 1) }
}

/// A machine fault that develops over time and ends in failure unless repaired.
public enum MachineFault: String, Sendable, CaseIterable {
    case bearingWear = "bearing_wear"
    case overheating
    case cavitation
    case leak
    case imbalance
    case gearWear = "gear_wear"
    /// Deposits that build up from the last cleaning on, over weeks, until the element blocks.
    case fouling

    /// The component a repair replaces or fixes.
    public var component: String {
        switch self {
        case .bearingWear: "bearing"
        case .overheating: "cooling"
        case .cavitation: "impeller"
        case .leak: "seal"
        case .imbalance: "rotor"
        case .gearWear: "gearbox"
        case .fouling: "tube bundle"
        }
    }

    /// How long the fault takes from onset to failure, in hours (min, max).
    var developmentHours: (Double, Double) {
        switch self {
        case .bearingWear: (48, 168)
        case .overheating: (8, 48)
        case .cavitation: (12, 72)
        case .leak: (24, 120)
        case .imbalance: (48, 144)
        case .gearWear: (72, 192)
        // The whole service life: it begins at the cleaning (repair) before.
        case .fouling: (14 * 24, 42 * 24)
        }
    }

    /// Faults that begin as soon as the machine is back in service (wear over the whole life),
    /// not at a random time.
    var beginsAtRepair: Bool { self == .fouling }
}

/// A fault of the sensor, not of the machine: the reading lies; the machine is fine.
public enum SensorFault: String, Sendable, CaseIterable {
    case drift = "sensor_drift"
    case stuck = "stuck_sensor"
    case spikes = "sensor_spikes"
    case dropout = "sensor_dropout"
}

/// A machine type: its sensors and the faults it can develop.
public struct MachineType: Sendable {
    public var name: String
    public var label: String
    public var sensors: [SensorModel]
    public var faults: [MachineFault]
    /// True for machines that stop out of shift (nights and Sundays).
    public var shiftOperated: Bool
    /// Machines read once per this period (a historian's hourly value, an operating cycle)
    /// rather than at every simulator tick; nil: every tick.
    public var samplePeriod: Nanos? = nil
    /// False for machines at a steady duty, with no daily load cycle.
    public var dailyCycle = true
}

/// The machine types the simulator knows.
public enum MachineCatalog {
    static func s(
        _ name: String, _ unit: String, _ role: SensorRole, idle: Double, full: Double, noise: Double,
        nominal: (Double, Double), low: Double? = nil, high: Double? = nil,
        _ description: String
    ) -> SensorModel {
        SensorModel(
            spec: SensorSpec(
                name: name, unit: unit, nominalMin: nominal.0, nominalMax: nominal.1, alarmLow: low,
                alarmHigh: high, description: description),
            role: role, idle: idle, full: full, noise: noise)
    }

    public static let pump = MachineType(
        name: "pump", label: "Centrifugal pump",
        sensors: [
            s("flow", "m³/h", .flow, idle: 25, full: 120, noise: 1.5, nominal: (15, 135), "discharge flow"),
            s("discharge_pressure", "bar", .pressureOut, idle: 2.2, full: 6.0, noise: 0.05, nominal: (1.5, 7.0), high: 8.5, "discharge pressure"),
            s("suction_pressure", "bar", .pressureIn, idle: 1.25, full: 1.05, noise: 0.02, nominal: (0.8, 1.5), low: 0.5, "suction pressure"),
            s("vibration", "mm/s", .vibration, idle: 1.1, full: 2.0, noise: 0.08, nominal: (0, 4.5), high: 7.1, "bearing housing vibration RMS"),
            s("bearing_temp", "°C", .bearingTemp, idle: 8, full: 28, noise: 0.3, nominal: (5, 70), high: 85, "drive-end bearing temperature"),
            s("motor_current", "A", .current, idle: 9, full: 38, noise: 0.4, nominal: (4, 45), high: 52, "motor phase current"),
            s("speed", "rpm", .speed, idle: 1480, full: 1480, noise: 2, nominal: (1400, 1520), "shaft speed"),
        ],
        faults: [.bearingWear, .cavitation, .leak, .overheating], shiftOperated: false)

    public static let motor = MachineType(
        name: "motor", label: "Induction motor",
        sensors: [
            s("speed", "rpm", .speed, idle: 1495, full: 1470, noise: 1.5, nominal: (1440, 1510), "shaft speed"),
            s("current", "A", .current, idle: 12, full: 62, noise: 0.6, nominal: (5, 70), high: 80, "phase current"),
            s("winding_temp", "°C", .windingTemp, idle: 15, full: 65, noise: 0.4, nominal: (5, 110), high: 130, "stator winding temperature"),
            s("bearing_temp", "°C", .bearingTemp, idle: 8, full: 22, noise: 0.3, nominal: (5, 70), high: 85, "bearing temperature"),
            s("vibration", "mm/s", .vibration, idle: 0.9, full: 1.6, noise: 0.06, nominal: (0, 4.5), high: 7.1, "vibration RMS"),
            s("voltage", "V", .voltage, idle: 400, full: 398, noise: 1.5, nominal: (380, 420), low: 360, high: 440, "supply voltage"),
        ],
        faults: [.bearingWear, .overheating, .imbalance], shiftOperated: false)

    public static let compressor = MachineType(
        name: "compressor", label: "Screw compressor",
        sensors: [
            s("discharge_pressure", "bar", .pressureOut, idle: 6.2, full: 8.0, noise: 0.04, nominal: (5.5, 9.0), high: 10.5, "discharge pressure"),
            s("discharge_temp", "°C", .processTemp, idle: 35, full: 75, noise: 0.5, nominal: (30, 100), high: 110, "discharge air temperature"),
            s("oil_temp", "°C", .oilTemp, idle: 25, full: 50, noise: 0.3, nominal: (20, 80), high: 90, "oil temperature"),
            s("vibration", "mm/s", .vibration, idle: 1.5, full: 2.8, noise: 0.1, nominal: (0, 5.0), high: 8.0, "vibration RMS"),
            s("current", "A", .current, idle: 42, full: 118, noise: 1.0, nominal: (30, 125), high: 135, "motor current"),
            s("flow", "m³/min", .flow, idle: 4, full: 12, noise: 0.15, nominal: (3, 13), "free air delivery"),
        ],
        faults: [.leak, .overheating, .bearingWear], shiftOperated: false)

    public static let fan = MachineType(
        name: "fan", label: "Ventilation fan",
        sensors: [
            s("speed", "rpm", .speed, idle: 600, full: 1480, noise: 4, nominal: (500, 1550), "fan speed (VFD)"),
            s("airflow", "m³/s", .flow, idle: 6, full: 20, noise: 0.3, nominal: (4, 22), "air flow"),
            s("vibration", "mm/s", .vibration, idle: 1.0, full: 2.2, noise: 0.08, nominal: (0, 4.5), high: 7.1, "vibration RMS"),
            s("bearing_temp", "°C", .bearingTemp, idle: 6, full: 20, noise: 0.3, nominal: (5, 65), high: 80, "bearing temperature"),
            s("current", "A", .current, idle: 5, full: 24, noise: 0.3, nominal: (3, 28), high: 32, "motor current"),
        ],
        faults: [.imbalance, .bearingWear], shiftOperated: true)

    public static let conveyor = MachineType(
        name: "conveyor", label: "Belt conveyor",
        sensors: [
            s("belt_speed", "m/s", .speed, idle: 0.6, full: 2.0, noise: 0.01, nominal: (0.4, 2.2), "belt speed"),
            s("throughput", "t/h", .throughput, idle: 40, full: 300, noise: 4, nominal: (20, 320), "material throughput"),
            s("motor_current", "A", .current, idle: 7, full: 30, noise: 0.3, nominal: (4, 34), high: 38, "drive motor current"),
            s("gearbox_temp", "°C", .gearboxTemp, idle: 10, full: 35, noise: 0.3, nominal: (5, 80), high: 90, "gearbox oil temperature"),
            s("vibration", "mm/s", .vibration, idle: 0.8, full: 1.8, noise: 0.06, nominal: (0, 4.5), high: 6.0, "drive vibration RMS"),
        ],
        faults: [.gearWear, .bearingWear, .overheating], shiftOperated: true)

    public static let turbine = MachineType(
        name: "turbine", label: "Steam turbine",
        sensors: [
            s("speed", "rpm", .speed, idle: 3000, full: 3000, noise: 3, nominal: (2950, 3050), high: 3300, "rotor speed"),
            s("power", "kW", .power, idle: 400, full: 2000, noise: 10, nominal: (300, 2100), "electrical output"),
            s("exhaust_temp", "°C", .processTemp, idle: 330, full: 510, noise: 1.5, nominal: (300, 540), high: 560, "exhaust steam temperature"),
            s("bearing_temp", "°C", .bearingTemp, idle: 25, full: 55, noise: 0.3, nominal: (20, 90), high: 100, "journal bearing temperature"),
            s("vibration", "mm/s", .vibration, idle: 1.6, full: 2.6, noise: 0.08, nominal: (0, 5.5), high: 9.0, "shaft vibration RMS"),
            s("lube_oil_pressure", "bar", .oilPressure, idle: 2.6, full: 2.5, noise: 0.02, nominal: (2.0, 3.0), low: 1.2, "lube oil pressure"),
        ],
        faults: [.imbalance, .bearingWear, .overheating], shiftOperated: false)

    /// A shell-and-tube heat exchanger read once an hour at a steady duty: the pressure drop
    /// across the tube bundle rises as deposits build up from the last cleaning, over weeks,
    /// until it blocks; the other readings are noisy and tell nothing of it. Not in the default
    /// plant: name it in a fleet file (`"type": "heat_exchanger"`).
    public static let heatExchanger = MachineType(
        name: "heat_exchanger", label: "Heat exchanger",
        sensors: [
            s("tube_dp", "bar", .differentialPressure, idle: 0.35, full: 0.45, noise: 0.04, nominal: (0.2, 0.9), high: 1.2, "pressure drop across the tube bundle"),
            s("inlet_temp", "°C", .processTemp, idle: 60, full: 60, noise: 2.5, nominal: (50, 95), "hot side inlet temperature"),
            s("outlet_temp", "°C", .processTemp, idle: 25, full: 25, noise: 2.5, nominal: (20, 60), "hot side outlet temperature"),
            s("flow", "m³/h", .flow, idle: 30, full: 45, noise: 4, nominal: (20, 60), "hot side flow"),
        ],
        faults: [.fouling], shiftOperated: false, samplePeriod: Time.hour, dailyCycle: false)

    public static let all: [MachineType] = [pump, motor, compressor, fan, conveyor, turbine, heatExchanger]

    public static func type(named name: String) -> MachineType? { all.first { $0.name == name } }

    /// The device definition of the simulated machine `number` of a type.
    public static func device(type: MachineType, id: String, number: Int, site: String, line: String) -> Device {
        Device(
            id: id, name: "\(type.label) \(number)", type: type.name, site: site, line: line,
            sensors: type.sensors.map(\.spec), labels: ["source": "simulator"], simulated: true)
    }

    /// The default plant: about a dozen machines of every type, or `count` machines cycling through
    /// the types (pump-001, motor-001, …), ten machines a line.
    public static func defaultPlant(count: Int = 12, site: String = "plant-a") -> [Device] {
        let mix: [MachineType] = [pump, motor, compressor, pump, fan, conveyor, motor, turbine, pump, compressor, fan, conveyor]
        var numbers: [String: Int] = [:]
        let width = count >= 1000 ? (count >= 10_000 ? 5 : 4) : 3
        return (0..<count).map { i in
            let type = mix[i % mix.count]
            let n = numbers[type.name, default: 0] + 1
            numbers[type.name] = n
            let digits = String(n)
            let id = "\(type.name)-\(String(repeating: "0", count: max(0, width - digits.count)))\(digits)"
            return device(type: type, id: id, number: n, site: site, line: "line-\(i / 10 + 1)")
        }
    }
}
