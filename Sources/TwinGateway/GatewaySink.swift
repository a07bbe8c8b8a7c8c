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
