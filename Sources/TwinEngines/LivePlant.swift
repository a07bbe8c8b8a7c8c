import Synchronization
import TwinCore

/// Anything that looks like a reading from outside (the gRPC message, a CSV row), so ingest can
/// validate it without copying it into another type first.
public protocol ReadingConvertible {
    var readingDeviceID: String { get }
    var readingSensor: String { get }
    /// `nil` when the reading carries no time.
    var readingTime: Nanos? { get }
    var readingValue: Double { get }
}

extension Reading: ReadingConvertible {
    public var readingDeviceID: String { deviceID }
    public var readingSensor: String { sensor }
    public var readingTime: Nanos? { time }
    public var readingValue: Double { value }
}

/// The latest known state of one device.
public struct DeviceSnapshot: Sendable, Equatable {
    public struct Value: Sendable, Equatable {
        public var sensor: Int32
        public var value: Double
        public var time: Nanos
        /// The source said it went away (a Sparkplug death); the value is the last known one.
        public var stale = false
    }

    public var index: Int32
    public var deviceID: String
    public var type: String
    public var state: DeviceState
    /// Time of the newest reading; 0 if none yet.
    public var time: Nanos
    /// Sensors that have reported, in the device's sensor order.
    public var values: [Value]
    public var version: UInt64
    /// The device's sensor names by index (shared storage, not a copy per snapshot).
    public var sensorNames: [String]
    /// Set once the health engine has scored the device.
    public var health: HealthSummary? = nil
    public var openAlerts: UInt32 = 0
}

/// The short health verdict carried in live snapshots.
public struct HealthSummary: Sendable, Equatable {
    public enum Level: String, Sendable { case healthy, degraded, critical }
    public var score: Double
    public var level: Level
    public var headline: String

    public init(score: Double, headline: String) {
        self.score = score
        self.level = score >= 80 ? .healthy : score >= 50 ? .degraded : .critical
        self.headline = headline
    }
}

/// The fleet registry and the live state of every device, behind one lock so they agree.
///
/// Readings are validated against the registry (`resolve`), made durable by the caller, then
/// applied (`apply`). Each change bumps the device's `version`; callers pass the changed indices
/// on to whoever streams them.
public final class LivePlant: Sendable {
    /// Limits applied to incoming readings and to the liveness of devices.
    public struct Options: Sendable {
        /// A device with no reading for this long is `offline`.
        public var offlineAfter: Nanos = 15 * Time.second
        /// Readings further than this in the future are rejected.
        public var maxFutureSkew: Nanos = 5 * Time.minute
        /// Readings older than this are rejected.
        public var lateWindow: Nanos = 7 * Time.day
        /// Most readings one batch may hold.
        public var maxBatch: Int = 100_000
        public init() {}
    }

    @usableFromInline
    struct Slot {
        @usableFromInline var device: Device
        var sensorNames: [String]
        @usableFromInline var sensorIndex: [String: Int32]
        var values: [Double]
        var times: [Nanos]
        var newest: Nanos = 0
        var version: UInt64 = 0
        var hint: DeviceState?
        /// Wall-clock time the device last reported; 0 = never.
        var lastArrival: Nanos = 0
        var state: DeviceState = .offline
        /// The `apply` call that last touched the slot, so a device changes once per call.
        var touchedEpoch: UInt64 = 0
        var health: HealthSummary?
        var openAlerts: UInt32 = 0
        /// Its source said it went away (a Sparkplug NDEATH/DDEATH): offline, values stale,
        /// until it reports again.
        var dead = false

        init(device: Device) {
            self.device = device
            self.sensorNames = device.sensors.map(\.name)
            self.sensorIndex = Dictionary(uniqueKeysWithValues: device.sensors.enumerated().map { ($1.name, Int32($0)) })
            self.values = Array(repeating: .nan, count: device.sensors.count)
            self.times = Array(repeating: 0, count: device.sensors.count)
        }

        mutating func deriveState(now: Nanos, offlineAfter: Nanos) -> DeviceState {
            if dead { return .offline }
            if let hint { return hint }
            if lastArrival == 0 || now - lastArrival > offlineAfter { return .offline }
            var result = DeviceState.running
            for (i, spec) in device.sensors.enumerated() {
                let v = values[i]
                if v.isNaN { continue }
                if let high = spec.alarmHigh, v > high { return .alarm }
                if let low = spec.alarmLow, v < low { return .alarm }
                if v > spec.nominalMax || v < spec.nominalMin { result = .warning }
            }
            return result
        }
    }

    @usableFromInline
    struct State {
        @usableFromInline var slots: [Slot] = []
        @usableFromInline var index: [String: Int32] = [:]
        var epoch: UInt64 = 0
    }

    public let options: Options
    @usableFromInline let state = Mutex(State())

    /// Device and sensor names to indices, for `resolve`: an immutable copy made when the
    /// registry has changed, so that resolving a batch (10,000 readings) holds no lock that the
    /// live state's writers need. Lock order: `state`, then this.
    @usableFromInline final class Directory: Sendable {
        @usableFromInline let index: [String: Int32]
        @usableFromInline let sensors: [[String: Int32]]
        @usableFromInline let names: [[String]]

        init(_ s: State) {
            index = s.index
            sensors = s.slots.map(\.sensorIndex)
            names = s.slots.map(\.sensorNames)
        }
    }
    private let directoryCache = Mutex<Directory?>(nil)

    /// The names as they are now (made again after a registry change).
    @usableFromInline func directory() -> Directory {
        if let known = directoryCache.withLock({ $0 }) { return known }
        return state.withLock { s in
            let made = Directory(s)
            directoryCache.withLock { $0 = made }
            return made
        }
    }

    public init(options: Options = Options()) {
        self.options = options
    }

    // MARK: Registry

    /// Adds a device or replaces its definition. Values of sensors that keep their name survive.
    @discardableResult
    public func upsert(_ device: Device, now: Nanos) throws(TwinError) -> (device: Device, created: Bool, index: Int32) {
        try device.validate()
        return state.withLock { s in
            if let i = s.index[device.id] {
                let old = s.slots[Int(i)]
                var updated = device
                updated.createdAt = old.device.createdAt
                updated.updatedAt = now
                var slot = Slot(device: updated)
                for (name, j) in slot.sensorIndex {
                    if let k = old.sensorIndex[name] {
                        slot.values[Int(j)] = old.values[Int(k)]
                        slot.times[Int(j)] = old.times[Int(k)]
                    }
                }
                slot.newest = old.newest
                slot.version = old.version + 1
                slot.hint = old.hint
                slot.lastArrival = old.lastArrival
                slot.dead = old.dead
                slot.state = slot.deriveState(now: now, offlineAfter: options.offlineAfter)
                s.slots[Int(i)] = slot
                directoryCache.withLock { $0 = nil }
                return (updated, false, i)
            }
            var created = device
            created.createdAt = now
            created.updatedAt = now
            let i = Int32(s.slots.count)
            s.slots.append(Slot(device: created))
            s.index[device.id] = i
            directoryCache.withLock { $0 = nil }
            return (created, true, i)
        }
    }

    public var count: Int { state.withLock { $0.slots.count } }

    public func index(of deviceID: String) -> Int32? { state.withLock { $0.index[deviceID] } }

    public func device(_ id: String) -> Device? {
        state.withLock { s in s.index[id].map { s.slots[Int($0)].device } }
    }

    public func device(at index: Int32) -> Device? {
        state.withLock { s in Int(index) < s.slots.count ? s.slots[Int(index)].device : nil }
    }

    /// Devices matching a filter (empty sets match all), sorted by id.
    public func devices(types: Set<String> = [], site: String = "", line: String = "") -> [Device] {
        state.withLock { s in
            s.slots.lazy.map(\.device).filter {
                (types.isEmpty || types.contains($0.type)) && (site.isEmpty || $0.site == site)
                    && (line.isEmpty || $0.line == line)
            }
        }.sorted { $0.id < $1.id }
    }

    /// Id and type of every device, by index: what stream filters need.
    public func identities() -> [(id: String, type: String)] {
        state.withLock { s in s.slots.map { ($0.device.id, $0.device.type) } }
    }

    // MARK: Readings

    /// The checks every reading of a batch passes, and the errors naming the one that fails
    /// (READING_INVALID with its index in the batch, the field and the problem).
    private struct ReadingRules {
        let now: Nanos, window: Nanos, earliest: Nanos, latest: Nanos, maxFutureSkew: Nanos
        let importing: Bool

        init(now: Nanos, lateWindow: Nanos?, options: Options) {
            self.now = now
            window = lateWindow ?? options.lateWindow
            earliest = now - window
            latest = now + options.maxFutureSkew
            maxFutureSkew = options.maxFutureSkew
            importing = lateWindow != nil
        }

        enum Problem { case notFinite, timeMissing, timeOutOfRange, timeInFuture, timeTooOld }

        /// What is wrong with a reading's value and time, if anything.
        @inline(__always)
        func problem(time: Nanos?, value: Double) -> Problem? {
            guard value.isFinite else { return .notFinite }
            guard let time else { return .timeMissing }
            guard TimeBounds.contains(time) else { return .timeOutOfRange }
            if time > latest { return .timeInFuture }
            if time < earliest { return .timeTooOld }
            return nil
        }

        func error(_ problem: Problem, _ n: Int, device id: String, sensor: String, time: Nanos?, value: Double) -> TwinError {
            let t = time ?? 0
            switch problem {
            case .notFinite:
                return bad(n, "value", "not_finite", device: id, sensor: sensor, "reading \(n) (\(id)/\(sensor)): value \(value) is not a finite number")
            case .timeMissing:
                return bad(n, "time", "time_missing", device: id, sensor: sensor, "reading \(n) (\(id)/\(sensor)): time is required")
            case .timeOutOfRange:
                return bad(n, "time", "time_out_of_range", device: id, sensor: sensor,
                           "reading \(n) (\(id)/\(sensor)): time is outside the accepted range, \(TimeBounds.instantRange)")
            case .timeInFuture:
                return bad(n, "time", "time_in_future", device: id, sensor: sensor,
                    "reading \(n) (\(id)/\(sensor)): time is \(DurationText.format(t - now)) in the future; at most \(DurationText.format(maxFutureSkew)) is allowed (check the gateway's clock)")
            case .timeTooOld:
                return bad(n, "time", "time_too_old", device: id, sensor: sensor,
                    "reading \(n) (\(id)/\(sensor)): time is \(DurationText.format(now - t)) old; readings older than \(DurationText.format(window)) are not accepted\(importing ? " (the raw retention)" : " (to bring in older history, import it: twin import, or import_history on IngestRequest)")")
            }
        }

        func unknownDevice(_ n: Int, _ id: String) -> TwinError {
            bad(n, "device_id", "unknown_device", device: id, "reading \(n): unknown device '\(id.prefix(80))'; register it with UpsertDevice first")
        }

        func unknownSensor(_ n: Int, _ id: String, _ sensor: String, known: [String]) -> TwinError {
            bad(n, "sensor", "unknown_sensor", device: id, sensor: sensor,
                "reading \(n): device '\(id)' has no sensor '\(sensor.prefix(80))' (it has: \(known.joined(separator: ", ")))")
        }

        func bad(_ n: Int, _ field: String, _ problem: String, device: String, sensor: String? = nil, _ text: String) -> TwinError {
            var metadata = ["reading": "\(n)", "device": String(device.prefix(200)), "problem": problem]
            if let sensor { metadata["sensor"] = String(sensor.prefix(200)) }
            return TwinError.invalidArgument(text, reason: .readingInvalid).adding(metadata).field("readings[\(n)].\(field)")
        }
    }

    private func checkBatchSize(_ count: Int) throws(TwinError) {
        if count > options.maxBatch {
            throw TwinError.invalidArgument("batch has \(count) readings; at most \(options.maxBatch) are allowed per batch", reason: .limitExceeded)
                .adding(["limit": "\(options.maxBatch)"]).field("readings")
        }
    }

    /// Validates a batch against the registry and the time limits and resolves it to samples.
    /// All or nothing: the first bad reading throws `invalidArgument` naming its index and why.
    /// `lateWindow` replaces the options' one (a history import takes the raw retention).
    /// The names are interned first and each distinct one looked up once (below).
    public func resolve<C: Collection>(_ readings: C, now: Nanos, lateWindow: Nanos? = nil, into samples: inout [Sample]) throws(TwinError)
    where C.Element: ReadingConvertible {
        try checkBatchSize(readings.count)
        try resolve(NamedReadings(readings), now: now, lateWindow: lateWindow, into: &samples)
    }

    /// `resolve` for a batch whose names are interned: each distinct device name is looked up
    /// once, and each device's sensor once per distinct sensor name (while devices × sensor
    /// names stays a small table). The same checks, in the same order, with the same errors.
    public func resolve(_ batch: NamedReadings, now: Nanos, lateWindow: Nanos? = nil, into samples: inout [Sample]) throws(TwinError) {
        try checkBatchSize(batch.count)
        samples.removeAll(keepingCapacity: true)
        samples.reserveCapacity(batch.count)
        let rules = ReadingRules(now: now, lateWindow: lateWindow, options: options)
        let names = directory()
        // Device index by slot (-1: not looked up yet), sensor index by (device slot, sensor slot).
        var deviceOf = [Int32](repeating: -1, count: batch.devices.count)
        let width = batch.sensors.count
        let pairs = batch.devices.count.multipliedReportingOverflow(by: width)
        let cached = !pairs.overflow && pairs.partialValue <= 1 << 16
        var sensorOf = [Int32](repeating: -1, count: cached ? pairs.partialValue : 0)
        try deviceOf.withUnsafeMutableBufferPointer { (deviceOf) throws(TwinError) in
            try sensorOf.withUnsafeMutableBufferPointer { (sensorOf) throws(TwinError) in
                for n in batch.entries.indices {
                    let e = batch.entries[n]
                    let slot = Int(e.device)
                    var device = deviceOf[slot]
                    if device < 0 {
                        guard let i = names.index[batch.devices[slot]] else { throw rules.unknownDevice(n, batch.devices[slot]) }
                        deviceOf[slot] = i
                        device = i
                    }
                    let key = slot &* width &+ Int(e.sensor)
                    var sensor: Int32 = cached ? sensorOf[key] : -1
                    if sensor < 0 {
                        let name = batch.sensors[Int(e.sensor)]
                        guard let s = Self.sensor(name, names.names[Int(device)], names.sensors[Int(device)]) else {
                            throw rules.unknownSensor(n, batch.devices[slot], name, known: names.names[Int(device)])
                        }
                        if cached { sensorOf[key] = s }
                        sensor = s
                    }
                    if let problem = rules.problem(time: e.time, value: e.value) {
                        throw rules.error(problem, n, device: batch.devices[slot], sensor: batch.sensors[Int(e.sensor)], time: e.time, value: e.value)
                    }
                    samples.append(Sample(device: device, sensor: sensor, time: e.time!, value: e.value))
                }
            }
        }
    }

    /// A sensor's index by name: a scan of a few names costs less than hashing the name.
    @usableFromInline @inline(__always)
    static func sensor(_ name: String, _ names: [String], _ index: [String: Int32]) -> Int32? {
        if names.count > 8 { return index[name] }
        for (i, n) in names.enumerated() where n == name { return Int32(i) }
        return nil
    }

    /// Applies resolved samples and status hints; returns the indices of devices that changed.
    /// A sample older than the sensor's latest value is kept by the store but does not move the
    /// live value back.
    public func apply(_ samples: [Sample], hints: [(device: Int32, state: DeviceState?)] = [], now: Nanos) -> [Int32] {
        state.withLock { s in
            s.epoch &+= 1
            let epoch = s.epoch
            var changed: [Int32] = []
            func touch(_ d: Int, _ s: inout State) {
                if s.slots[d].touchedEpoch != epoch {
                    s.slots[d].touchedEpoch = epoch
                    changed.append(Int32(d))
                }
            }
            for sample in samples {
                let d = Int(sample.device)
                guard d < s.slots.count, Int(sample.sensor) < s.slots[d].values.count else { continue }
                touch(d, &s)
                s.slots[d].lastArrival = now
                s.slots[d].dead = false
                let k = Int(sample.sensor)
                if sample.time >= s.slots[d].times[k] {
                    s.slots[d].times[k] = sample.time
                    s.slots[d].values[k] = sample.value
                    if sample.time > s.slots[d].newest { s.slots[d].newest = sample.time }
                }
            }
            // A status report is a sign of life too (a stopped machine's controller still talks).
            for (device, hint) in hints where Int(device) < s.slots.count {
                let d = Int(device)
                if s.slots[d].lastArrival == 0 { touch(d, &s) }
                s.slots[d].lastArrival = now
                if s.slots[d].hint != hint {
                    s.slots[d].hint = hint
                    touch(d, &s)
                }
            }
            for d in changed {
                let i = Int(d)
                s.slots[i].state = s.slots[i].deriveState(now: now, offlineAfter: options.offlineAfter)
                s.slots[i].version &+= 1
            }
            return changed
        }
    }

    /// Marks devices offline with their values stale because their source said they went away
    /// (at `now`); the next reading brings them back. Returns the devices that changed.
    public func markDead(_ indices: [Int32], now: Nanos) -> [Int32] {
        state.withLock { s in
            var changed: [Int32] = []
            for i in indices where Int(i) < s.slots.count && !s.slots[Int(i)].dead {
                s.slots[Int(i)].dead = true
                if s.slots[Int(i)].lastArrival == 0 { s.slots[Int(i)].lastArrival = now }
                s.slots[Int(i)].state = .offline
                s.slots[Int(i)].version &+= 1
                changed.append(i)
            }
            return changed
        }
    }

    /// The samples newer than the live value of their sensor (and recent enough to be live):
    /// what of a history import may move the live state.
    public func newerThanLive(_ samples: [Sample], now: Nanos) -> [Sample] {
        let recent = now - options.offlineAfter
        return state.withLock { s in
            samples.filter { sample in
                let d = Int(sample.device), k = Int(sample.sensor)
                guard d < s.slots.count, k < s.slots[d].times.count else { return false }
                return sample.time >= recent && sample.time > s.slots[d].times[k]
            }
        }
    }

    /// Marks devices that stopped reporting as offline; returns the ones whose state changed.
    public func sweep(now: Nanos) -> [Int32] {
        state.withLock { s in
            var changed: [Int32] = []
            for i in s.slots.indices where s.slots[i].lastArrival != 0 && s.slots[i].state != .offline {
                let st = s.slots[i].deriveState(now: now, offlineAfter: options.offlineAfter)
                if st != s.slots[i].state {
                    s.slots[i].state = st
                    s.slots[i].version &+= 1
                    changed.append(Int32(i))
                }
            }
            return changed
        }
    }

    /// Sets health verdicts and open-alert counts; returns the devices whose snapshot changed
    /// (a score moving by less than one point is not a change worth sending).
    public func annotate(_ marks: [(index: Int32, health: HealthSummary?, openAlerts: UInt32)]) -> [Int32] {
        state.withLock { s in
            var changed: [Int32] = []
            for m in marks where Int(m.index) < s.slots.count {
                let old = s.slots[Int(m.index)]
                let same = old.openAlerts == m.openAlerts && old.health?.level == m.health?.level && old.health?.headline == m.health?.headline
                    && abs((old.health?.score ?? -10) - (m.health?.score ?? -10)) < 1
                if same { continue }
                s.slots[Int(m.index)].health = m.health
                s.slots[Int(m.index)].openAlerts = m.openAlerts
                s.slots[Int(m.index)].version += 1
                if old.lastArrival != 0 { changed.append(m.index) }
            }
            return changed
        }
    }

    /// The operating state of each device (offline for unknown indices).
    public func states(_ indices: [Int32]) -> [DeviceState] {
        state.withLock { s in indices.map { Int($0) < s.slots.count ? s.slots[Int($0)].state : .offline } }
    }

    /// The snapshot of one device; `nil` if unknown or it never reported.
    public func snapshot(_ index: Int32) -> DeviceSnapshot? {
        state.withLock { s in
            guard Int(index) < s.slots.count, s.slots[Int(index)].lastArrival != 0 else { return nil }
            return Self.snapshot(of: s.slots[Int(index)], index: index)
        }
    }

    /// The devices among `indices` that have reported at least once.
    public func reported(_ indices: [Int32]) -> [Int32] {
        state.withLock { s in indices.filter { Int($0) < s.slots.count && s.slots[Int($0)].lastArrival != 0 } }
    }

    /// Snapshots of several devices at once (one lock), skipping those that never reported.
    public func snapshots(_ indices: some Sequence<Int32>) -> [DeviceSnapshot] {
        let indices = Array(indices)
        return state.withLock { s in
            indices.compactMap { i in
                guard Int(i) < s.slots.count, s.slots[Int(i)].lastArrival != 0 else { return nil }
                return Self.snapshot(of: s.slots[Int(i)], index: i)
            }
        }
    }

    private static func snapshot(of slot: Slot, index: Int32) -> DeviceSnapshot {
        var values: [DeviceSnapshot.Value] = []
        values.reserveCapacity(slot.values.count)
        for k in slot.values.indices where !slot.values[k].isNaN {
            values.append(.init(sensor: Int32(k), value: slot.values[k], time: slot.times[k], stale: slot.dead))
        }
        return DeviceSnapshot(
            index: index, deviceID: slot.device.id, type: slot.device.type, state: slot.state,
            time: slot.newest, values: values, version: slot.version, sensorNames: slot.sensorNames, health: slot.health,
            openAlerts: slot.openAlerts)
    }
}
