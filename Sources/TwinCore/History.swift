/// A downsampled bucket of readings. Buckets of the same span merge in any order.
public struct Bucket: Sendable, Equatable {
    /// Start of the bucket's span.
    public var start: Nanos
    public var count: Int64
    public var min: Double
    public var max: Double
    public var sum: Double
    /// The reading with the latest time in the bucket, and that time.
    public var last: Double
    public var lastTime: Nanos

    public init(start: Nanos, count: Int64, min: Double, max: Double, sum: Double, last: Double, lastTime: Nanos) {
        self.start = start
        self.count = count
        self.min = min
        self.max = max
        self.sum = sum
        self.last = last
        self.lastTime = lastTime
    }

    /// A bucket holding one reading.
    public init(start: Nanos, time: Nanos, value: Double) {
        self.init(start: start, count: 1, min: value, max: value, sum: value, last: value, lastTime: time)
    }

    public var mean: Double { count == 0 ? .nan : sum / Double(count) }

    /// Adds another bucket's readings (of the same span) to this one.
    @inlinable
    public mutating func merge(_ other: Bucket) {
        if other.count == 0 { return }
        if count == 0 {
            self = Bucket(start: start, count: other.count, min: other.min, max: other.max, sum: other.sum, last: other.last, lastTime: other.lastTime)
            return
        }
        count += other.count
        min = Swift.min(min, other.min)
        max = Swift.max(max, other.max)
        sum += other.sum
        if other.lastTime >= lastTime {
            last = other.last
            lastTime = other.lastTime
        }
    }

    /// Adds one reading.
    @inlinable
    public mutating func add(time: Nanos, value: Double) {
        merge(Bucket(start: start, time: time, value: value))
    }
}

/// What `GetHistory` asks the store.
public struct HistoryQuery: Sendable {
    public var deviceID: String
    /// Sensor names; each gets one series in the answer, in this order.
    public var sensors: [String]
    public var from: Nanos
    public var to: Nanos
    /// Bucket width; 0 for raw points. Buckets start at multiples of `step` since the epoch.
    public var step: Nanos
    /// A raw answer holding more points than this, over all its sensors together, is refused.
    public var maxRawPoints = HistoryQuery.rawPointLimit
    /// Raw points in one answer, over all its sensors.
    public static let rawPointLimit = 500_000
    /// Buckets in one answer, over all its sensors.
    public static let bucketLimit = 1_000_000

    public init(deviceID: String, sensors: [String], from: Nanos, to: Nanos, step: Nanos) {
        self.deviceID = deviceID
        self.sensors = sensors
        self.from = from
        self.to = to
        self.step = step
    }
}

/// The answer for one sensor: raw points (oldest first) or buckets (oldest first, empty ones left out).
public struct SeriesHistory: Sendable {
    public var sensor: String
    public var times: [Nanos] = []
    public var values: [Double] = []
    public var buckets: [Bucket] = []

    public init(sensor: String) {
        self.sensor = sensor
    }
}

/// Sensor history: readings appended durably, read back raw or downsampled. `TwinStore`
/// implements it with compressed, encrypted chunks in SQLite.
public protocol HistoryStore: Sendable {
    /// Names the series behind a registry device index: `sensors[i]` is sensor index i. Called when
    /// a device is registered or its definition changes, before its samples are appended.
    func bind(device index: Int32, id: String, sensors: [String]) throws(TwinError)
    /// Appends samples; durable when it returns (a crash afterwards loses none of them).
    func append(_ samples: [Sample]) throws(TwinError)
    /// Readings of one device's sensors in [from, to).
    func history(_ query: HistoryQuery) throws(TwinError) -> [SeriesHistory]
    /// True when any reading has been stored.
    func hasReadings() throws(TwinError) -> Bool
    /// How far back raw readings are kept (how old an imported reading may be).
    var rawRetention: Nanos { get }
}
