import TwinCore

/// Alarm-management figures over a period (ISA-18.2, EEMUA 191): how many alerts opened, per
/// hour, the peak 10-minute rate and floods, the most frequent rules and devices, standing and
/// chattering alerts. Pure: computed from a list of alerts.
public struct AlertReport: Sendable, Equatable {
    public var from: Nanos
    public var to: Nanos
    public var opened = 0
    public var reopened = 0
    public var perHour = 0.0
    public var peak10m = 0
    public var peak10mAt: Nanos?
    /// 10-minute windows from `from` with more than `floodThreshold` openings.
    public var floodWindows = 0
    public var floodPercent = 0.0
    public var topRules: [(name: String, count: Int)] = []
    public var topDevices: [(name: String, count: Int)] = []
    /// Not resolved after more than a day, oldest first.
    public var standing: [Alert] = []
    public var chattering: [Alert] = []
    public var shelved = 0

    public static let window = 10 * Time.minute
    public static let floodThreshold = 10
    public static let standingAfter = Time.day

    public static func == (a: AlertReport, b: AlertReport) -> Bool {
        a.from == b.from && a.to == b.to && a.opened == b.opened && a.peak10m == b.peak10m && a.floodWindows == b.floodWindows
            && a.topRules.map(\.name) == b.topRules.map(\.name) && a.topDevices.map(\.name) == b.topDevices.map(\.name)
            && a.standing == b.standing && a.chattering == b.chattering && a.shelved == b.shelved
    }

    public init(alerts: [Alert], from: Nanos, to: Nanos, limit: Int = 50) {
        self.from = from
        self.to = to
        let inPeriod = alerts.filter { $0.openedAt >= from && $0.openedAt < to }
        opened = inPeriod.count
        reopened = inPeriod.reduce(0) { $0 + Int($1.reopened ?? 0) }
        let hours = Double(max(to - from, Time.minute)) / Double(Time.hour)
        perHour = Double(opened) / hours
        // The peak: the most openings within any 10 minutes (a window starting at an opening).
        let times = inPeriod.map(\.openedAt).sorted()
        var j = 0
        for (i, t) in times.enumerated() {
            while j < times.count && times[j] < t + Self.window { j += 1 }
            if j - i > peak10m {
                peak10m = j - i
                peak10mAt = t
            }
        }
        // Floods: fixed 10-minute windows from `from`.
        var perWindow: [Int64: Int] = [:]
        for t in times { perWindow[(t - from) / Self.window, default: 0] += 1 }
        floodWindows = perWindow.values.filter { $0 > Self.floodThreshold }.count
        let windows = max(1, (to - from + Self.window - 1) / Self.window)
        floodPercent = 100 * Double(floodWindows) / Double(windows)
        func top(_ key: (Alert) -> String) -> [(name: String, count: Int)] {
            var counts: [String: Int] = [:]
            for a in inPeriod { counts[key(a), default: 0] += 1 }
            return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(10).map { ($0.key, $0.value) }
        }
        topRules = top { $0.rule }
        topDevices = top { $0.deviceID }
        standing = Array(alerts.filter { $0.state != .resolved && to - $0.openedAt > Self.standingAfter }
            .sorted { ($0.openedAt, $0.id) < ($1.openedAt, $1.id) }.prefix(limit))
        chattering = Array(alerts.filter { $0.chattering && $0.updatedAt >= from }
            .sorted { ($0.reopened ?? 0, $1.id) > ($1.reopened ?? 0, $0.id) }.prefix(limit))
        shelved = alerts.filter { $0.state != .resolved && $0.isShelved(at: to) }.count
    }
}
