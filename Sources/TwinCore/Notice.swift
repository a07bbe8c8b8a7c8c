/// One notification about an alert for one channel, as the outbox keeps it until it is
/// delivered: at least once, deduplicated by `id`, which is also the idempotency key the
/// receiver sees ("<alert id>/<event>/<channel>").
public struct Notice: Sendable, Codable, Equatable {
    public enum Event: String, Sendable, Codable, CaseIterable {
        case opened, acknowledged, resolved, escalated, test
    }
    public enum State: String, Sendable, Codable { case pending, delivered, failed }

    public var id: String
    public var channel: String
    /// The route that sent it here (its name in the notifications file).
    public var route: String
    public var event: Event
    /// The alert as it was when the notice was made.
    public var alert: Alert
    /// Where the device stands, for the message (empty when unknown).
    public var site = ""
    public var line = ""
    public var deviceType = ""
    public var createdAt: Nanos
    public var state: State = .pending
    public var attempts = 0
    /// Not sent before this (retry backoff, quiet hours).
    public var notBefore: Nanos
    public var lastError = ""
    public var deliveredAt: Nanos?

    public init(channel: String, route: String, event: Event, alert: Alert, at time: Nanos, notBefore: Nanos? = nil) {
        self.id = "\(alert.id)/\(event.rawValue)/\(channel)"
        self.channel = channel
        self.route = route
        self.event = event
        self.alert = alert
        self.createdAt = time
        self.notBefore = notBefore ?? time
    }
}
