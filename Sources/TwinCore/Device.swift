/// A sensor fitted to a device: what it measures, its unit and its limits.
public struct SensorSpec: Sendable, Hashable, Codable {
    /// Unique within the device, e.g. `bearing_temp`.
    public var name: String
    /// Unit of the values, e.g. `°C`.
    public var unit: String
    /// Normal operating range (informational; used by health scoring and the live state).
    public var nominalMin: Double
    public var nominalMax: Double
    /// Alarm limits; `nil` means no alarm on that side.
    public var alarmLow: Double?
    public var alarmHigh: Double?
    /// Free text for people.
    public var description: String

    public init(
        name: String, unit: String, nominalMin: Double, nominalMax: Double,
        alarmLow: Double? = nil, alarmHigh: Double? = nil, description: String = ""
    ) {
        self.name = name
        self.unit = unit
        self.nominalMin = nominalMin
        self.nominalMax = nominalMax
        self.alarmLow = alarmLow
        self.alarmHigh = alarmHigh
        self.description = description
    }
}

/// A machine in the plant.
public struct Device: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var type: String
    public var site: String
    public var line: String
    public var sensors: [SensorSpec]
    public var labels: [String: String]
    /// True when the built-in simulator generates this device's readings.
    public var simulated: Bool
    /// Nanoseconds since the Unix epoch.
    public var createdAt: Int64
    public var updatedAt: Int64

    public init(
        id: String, name: String = "", type: String, site: String = "", line: String = "",
        sensors: [SensorSpec], labels: [String: String] = [:], simulated: Bool = false,
        createdAt: Int64 = 0, updatedAt: Int64 = 0
    ) {
        self.id = id
        self.name = name
        self.type = type
        self.site = site
        self.line = line
        self.sensors = sensors
        self.labels = labels
        self.simulated = simulated
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Checks what a device definition must satisfy before it is registered.
    public func validate() throws(TwinError) {
        try Identifier.validateDeviceID(id)
        if type.isEmpty { throw .invalidArgument("device '\(id)': type is required") }
        if type.utf8.count > 64 { throw .invalidArgument("device '\(id)': type is longer than 64 characters") }
        if sensors.isEmpty { throw .invalidArgument("device '\(id)': at least one sensor is required") }
        if sensors.count > 256 { throw .invalidArgument("device '\(id)': at most 256 sensors, got \(sensors.count)") }
        var seen = Set<String>()
        for sensor in sensors {
            try Identifier.validateSensorName(sensor.name, device: id)
            if !seen.insert(sensor.name).inserted {
                throw .invalidArgument("device '\(id)': sensor '\(sensor.name)' is listed twice")
            }
            for (label, value) in [("nominal_min", sensor.nominalMin), ("nominal_max", sensor.nominalMax)]
            where !value.isFinite {
                throw .invalidArgument("device '\(id)', sensor '\(sensor.name)': \(label) must be finite")
            }
            if sensor.nominalMin > sensor.nominalMax {
                throw .invalidArgument(
                    "device '\(id)', sensor '\(sensor.name)': nominal_min \(sensor.nominalMin) is above nominal_max \(sensor.nominalMax)")
            }
            if let low = sensor.alarmLow, let high = sensor.alarmHigh, low > high {
                throw .invalidArgument(
                    "device '\(id)', sensor '\(sensor.name)': alarm_low \(low) is above alarm_high \(high)")
            }
        }
    }
}

/// The operating state of a device as the live state sees it.
public enum DeviceState: String, Sendable, Codable, CaseIterable {
    case running, idle, warning, alarm, failed, maintenance, offline
}

/// Rules for device ids and sensor names, shared by every entry point.
public enum Identifier {
    static func isIDCharacter(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
            || c == 0x2D || c == 0x5F || c == 0x2E
    }

    /// Device ids: letters, digits, `-`, `_`, `.`; 1–64 characters.
    public static func validateDeviceID(_ id: String) throws(TwinError) {
        if id.isEmpty { throw .invalidArgument("device id is required") }
        if id.utf8.count > 64 || !id.utf8.allSatisfy(isIDCharacter) {
            throw .invalidArgument(
                "device id '\(id.prefix(80))' is invalid: use 1–64 letters, digits, '-', '_' or '.'")
        }
    }

    /// Sensor names: lowercase letters, digits, `_`, `.`; 1–64 characters.
    public static func validateSensorName(_ name: String, device: String) throws(TwinError) {
        let ok = !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2E }
        if !ok {
            throw .invalidArgument(
                "device '\(device)': sensor name '\(name.prefix(80))' is invalid: use 1–64 lowercase letters, digits, '_' or '.'")
        }
    }
}
