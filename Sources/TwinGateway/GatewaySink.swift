import TwinCore

/// One reading a gateway brings in, named the way twind names things.
public struct GatewayReading: Sendable, Equatable {
    public var device: String
    public var sensor: String
    public var time: Nanos
    public var value: Double
    /// Stored, but does not move the live state (Sparkplug `is_historical`, bad quality).
    public var historical: Bool
    /// Moves the live state, not stored (Sparkplug `is_transient`).
    public var transient: Bool

    public init(device: String, sensor: String, time: Nanos, value: Double, historical: Bool = false, transient: Bool = false) {
        self.device = device
        self.sensor = sensor
        self.time = time
        self.value = value
        self.historical = historical
        self.transient = transient
    }
}

/// What a delivery did: how many readings were taken and which were refused, and why.
public struct GatewayDelivery: Sendable {
    public var accepted: Int
    public var refused: [(index: Int, error: TwinError)]
    public init(accepted: Int, refused: [(index: Int, error: TwinError)]) {
        self.accepted = accepted
        self.refused = refused
    }
}

/// The seam between the protocol gateways and the plant: the same path as `Ingest`
/// (validation, the store, health, alerts, the bus), implemented by the daemon.
public protocol GatewaySink: Sendable {
    /// Registers a device a gateway defines (a Sparkplug birth), or updates it when its
    /// definition changed; an unchanged definition costs nothing.
    func define(_ device: Device, now: Nanos) throws(TwinError)
    /// Registers a device a mapping with `auto_register` met, or adds the sensors it lacks
    /// (its other sensors and definition stay); returns the definition now in force.
    func extend(_ device: Device, now: Nanos) throws(TwinError) -> Device
    /// Validates each reading, stores the valid ones durably and applies them. Readings that fail
    /// validation are refused one by one; throws only when the store cannot take them (then
    /// nothing was stored).
    func deliver(_ readings: [GatewayReading], now: Nanos) throws(TwinError) -> GatewayDelivery
    /// Marks devices offline with their values stale (their source said it went away).
    func markOffline(_ devices: [String], at: Nanos)
}

/// What a gateway gathered since its last commit, and the commit itself: readings pending,
/// a store failure kept for the commit to throw, the readings accepted since, and the
/// once-a-minute-per-topic rule for logging refusals. Shared by the Sparkplug host and the
/// topic consumer.
struct PendingReadings {
    var readings: [GatewayReading] = []
    private var storeError: TwinError?
    private var accepted = 0
    private var logged = LogLimiter()

    /// Delivers what is pending (before a redefinition, or at the commit). Returns the batch
    /// and its result; nil when nothing was pending or the store failed (kept for `commit`).
    mutating func deliver(to sink: any GatewaySink, now: Nanos) -> (batch: [GatewayReading], result: GatewayDelivery)? {
        if readings.isEmpty { return nil }
        let batch = readings
        readings.removeAll(keepingCapacity: true)
        do {
            let result = try sink.deliver(batch, now: now)
            accepted += result.accepted
            return (batch, result)
        } catch {
            storeError = error
            return nil
        }
    }

    /// The commit point: throws a store failure since the last commit (nothing of this round may
    /// be acknowledged), else returns the readings accepted since.
    mutating func commit() throws(TwinError) -> Int {
        if let error = storeError {
            storeError = nil
            accepted = 0
            throw error
        }
        defer { accepted = 0 }
        return accepted
    }

    /// True when a refusal on `topic` should be logged now (once a minute per topic).
    mutating func shouldLog(_ topic: String, now: Nanos) -> Bool {
        logged.shouldLog(topic, now: now)
    }
}

/// Once a minute per key: how the gateways log refusals that may repeat on every message
/// (all are counted; the log gets one line a minute). At most 10,000 keys are remembered.
struct LogLimiter {
    private var last: [String: Nanos] = [:]

    mutating func shouldLog(_ key: String, now: Nanos) -> Bool {
        if let at = last[key], now - at < Time.minute { return false }
        if last.count > 10_000 { last = [:] }
        last[key] = now
        return true
    }
}
