import TwinCore
import TwinEngines

/// The failure outlook of one device, as the active model sees it: its prediction, the sensor
/// leading it, when and by which model.
public struct DeviceOutlook: Sendable {
    public var deviceID: String
    public var prediction: LoadedModel.Prediction
    /// The sensor deviating most from its normal.
    public var lead: String?
    public var computedAt: Nanos
    public var modelVersion: String

    public init(deviceID: String, prediction: LoadedModel.Prediction, lead: String?, computedAt: Nanos, modelVersion: String) {
        self.deviceID = deviceID
        self.prediction = prediction
        self.lead = lead
        self.computedAt = computedAt
        self.modelVersion = modelVersion
    }

    public var within24h: Double { prediction.within24h }
    public var within7d: Double { prediction.within7d }
    public var rulHours: Double { prediction.rulHours }
    public var rulLow: Double { prediction.rulLow }
    public var rulHigh: Double { prediction.rulHigh }
    public var contributions: [(feature: String, value: Double, contribution: Double)] { prediction.contributions }
}
