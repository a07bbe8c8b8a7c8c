/// An entry in a device's maintenance log; these are the labels prediction learns from.
public struct MaintenanceEvent: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case failure, repair, inspection, partReplaced, faultOnset, sensorServiced, maintenance, note
    }

    public enum Source: String, Sendable, Codable {
        case `operator`, simulator, `import`
    }

    public var id: String
    public var deviceID: String
    public var kind: Kind
    public var time: Nanos
    public var component: String
    public var fault: String
    public var notes: String
    public var recordedBy: String
    public var source: Source
    /// Ground truth for a fault onset: when it ends in failure if not repaired.
    public var expectedFailureAt: Nanos?
    /// Work that takes the machine out of service: how long from `time` (its alerts are
    /// suppressed meanwhile).
    public var duration: Nanos?

    public init(
        id: String = "", deviceID: String, kind: Kind, time: Nanos, component: String = "",
        fault: String = "", notes: String = "", recordedBy: String = "", source: Source,
        expectedFailureAt: Nanos? = nil, duration: Nanos? = nil
    ) {
        self.id = id
        self.deviceID = deviceID
        self.kind = kind
        self.time = time
        self.component = component
        self.fault = fault
        self.notes = notes
        self.recordedBy = recordedBy
        self.source = source
        self.expectedFailureAt = expectedFailureAt
        self.duration = duration
    }
}
