import TwinCore

/// The failure outlook of one device, as the active model sees it.
public struct DeviceOutlook: Sendable {
    public var deviceID: String
    public var within24h: Double
    public var within7d: Double
    public var rulHours: Double
    public var rulLow: Double
    public var rulHigh: Double
    public var contributions: [(feature: String, value: Double, contribution: Double)]
    /// The sensor deviating most from its normal.
    public var lead: String?
    public var computedAt: Nanos
    public var modelVersion: String

    public init(
        deviceID: String, within24h: Double, within7d: Double, rulHours: Double, rulLow: Double, rulHigh: Double,
        contributions: [(feature: String, value: Double, contribution: Double)], lead: String?, computedAt: Nanos, modelVersion: String
    ) {
        self.deviceID = deviceID
        self.within24h = within24h
        self.within7d = within7d
        self.rulHours = rulHours
        self.rulLow = rulLow
        self.rulHigh = rulHigh
        self.contributions = contributions
        self.lead = lead
        self.computedAt = computedAt
        self.modelVersion = modelVersion
    }
}
