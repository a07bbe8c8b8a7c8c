import TwinCore

/// A batch of readings holding each distinct device and sensor name once, its readings pointing
/// at them by slot. A batch names its few devices thousands of times; resolving a name per
/// reading (hashing it, retaining its string) was a fifth of ingest's CPU. `LivePlant.resolve`
/// looks each distinct name up once.
public struct NamedReadings: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// Slot in `devices`.
        public var device: Int32
        /// Slot in `sensors`.
        public var sensor: Int32
        /// `nil` when the reading carries no time; out of `TimeBounds` it is `Nanos.min`.
        public var time: Nanos?
        public var value: Double

        public init(device: Int32, sensor: Int32, time: Nanos?, value: Double) {
            self.device = device
            self.sensor = sensor
            self.time = time
            self.value = value
        }
    }

    /// Distinct device ids, in the order of their first reading.
    public var devices: [String]
    /// Distinct sensor names, in the order of their first reading.
    public var sensors: [String]
    public var entries: [Entry]

    /// Slots must be in range: `resolve` trusts them.
    public init(devices: [String] = [], sensors: [String] = [], entries: [Entry] = []) {
        self.devices = devices
        self.sensors = sensors
        self.entries = entries
    }

    /// The readings with their names interned.
    public init<C: Collection>(_ readings: C) where C.Element: ReadingConvertible {
        var deviceSlots: [String: Int32] = [:], sensorSlots: [String: Int32] = [:]
        devices = []
        sensors = []
        entries = []
        entries.reserveCapacity(readings.count)
        func slot(_ name: String, _ slots: inout [String: Int32], _ names: inout [String]) -> Int32 {
            if let known = slots[name] { return known }
            let made = Int32(names.count)
            slots[name] = made
            names.append(name)
            return made
        }
        for r in readings {
            entries.append(Entry(
                device: slot(r.readingDeviceID, &deviceSlots, &devices), sensor: slot(r.readingSensor, &sensorSlots, &sensors),
                time: r.readingTime, value: r.readingValue))
        }
    }

    public var count: Int { entries.count }

    /// Reading `n`'s names.
    public func deviceID(_ n: Int) -> String { devices[Int(entries[n].device)] }
    public func sensor(_ n: Int) -> String { sensors[Int(entries[n].sensor)] }
}
