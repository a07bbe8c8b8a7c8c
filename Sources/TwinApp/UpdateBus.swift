import Synchronization
import TwinCore

/// Fans device changes out to every `StreamUpdates` subscriber without ever buffering more than
/// one pending entry per device per subscriber.
///
/// Publishing marks a device dirty in each matching subscription; a subscriber that has not yet
/// taken a dirty device gets its skip counter bumped instead (latest-state conflation). Each
/// subscriber's stream task takes the dirty set when it is ready to write, reads the current
/// snapshots and sends them, so a slow reader costs memory bounded by the fleet size.
public final class UpdateBus: Sendable {
    public init() {}

    /// Why a subscription ended.
    public enum CloseReason: Sendable { case cancelled, shuttingDown }

    /// Which devices a subscriber wants (empty sets: all).
    public struct Filter: Sendable {
        public var deviceIDs: Set<String>
        public var types: Set<String>

        public init(deviceIDs: Set<String> = [], types: Set<String> = []) {
            self.deviceIDs = deviceIDs
            self.types = types
        }

        public var matchesAll: Bool { deviceIDs.isEmpty && types.isEmpty }

        public func matches(id: String, type: String) -> Bool {
            (deviceIDs.isEmpty || deviceIDs.contains(id)) && (types.isEmpty || types.contains(type))
        }
    }

    public final class Subscription: Sendable {
        struct State {
            /// Per device index: `notDirty`, or how many updates were skipped since it became dirty.
            var skipped: [UInt64] = []
            var dirty: [Int32] = []
            /// Per device index: 0 unknown, 1 matches, 2 does not.
            var mask: [UInt8] = []
            var closed: CloseReason?
            var lastSent: Nanos
            var heartbeatDue = false
            var skippedTotal: UInt64 = 0
            /// Alerts opened, changed or resolved on matching devices, oldest first (bounded).
            var alerts: [Alert] = []
        }

        static let alertBacklog = 1_000

        static let notDirty = UInt64.max
        public let id: UInt64
        public let filter: Filter
        public let heartbeat: Nanos
        let state: Mutex<State>
        /// Yields when something became pending; finishes when the subscription closes.
        public let wakeups: AsyncStream<Void>
        private let wake: AsyncStream<Void>.Continuation

        init(id: UInt64, filter: Filter, heartbeat: Nanos, now: Nanos) {
            self.id = id
            self.filter = filter
            self.heartbeat = heartbeat
            self.state = Mutex(State(lastSent: now))
            (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        }

        /// Marks changed devices dirty; returns true if anything new became pending.
        fileprivate func mark(_ changed: [Int32], identities: [(id: String, type: String)]) {
            let woke = state.withLock { s -> Bool in
                if s.closed != nil { return false }
                // Each grows on its own: `resetMask` empties the mask (a device changed type)
                // while the dirty marks stay.
                if s.skipped.count < identities.count {
                    s.skipped.append(contentsOf: repeatElement(Self.notDirty, count: identities.count - s.skipped.count))
                }
                if s.mask.count < identities.count {
                    s.mask.append(contentsOf: repeatElement(0, count: identities.count - s.mask.count))
                }
                var added = false
                for d in changed {
                    let i = Int(d)
                    guard i >= 0, i < s.skipped.count, i < s.mask.count, i < identities.count else { continue }
                    if !filter.matchesAll {
                        if s.mask[i] == 0 {
                            s.mask[i] = filter.matches(id: identities[i].id, type: identities[i].type) ? 1 : 2
                        }
                        if s.mask[i] == 2 { continue }
                    }
                    if s.skipped[i] == Self.notDirty {
                        s.skipped[i] = 0
                        s.dirty.append(d)
                        added = true
                    } else {
                        s.skipped[i] &+= 1
                        s.skippedTotal &+= 1
                    }
                }
                return added
            }
            if woke { wake.yield() }
        }

        /// Queues alert changes for this subscriber (those of devices its filter matches).
        fileprivate func queue(_ alerts: [Alert], types: [String: String]) {
            let woke = state.withLock { s -> Bool in
                if s.closed != nil { return false }
                let matching = alerts.filter { filter.matchesAll || filter.matches(id: $0.deviceID, type: types[$0.deviceID] ?? "") }
                if matching.isEmpty { return false }
                s.alerts.append(contentsOf: matching)
                if s.alerts.count > Self.alertBacklog { s.alerts.removeFirst(s.alerts.count - Self.alertBacklog) }
                return true
            }
            if woke { wake.yield() }
        }

        fileprivate func resetMask() { state.withLock { $0.mask.removeAll(keepingCapacity: true) } }

        fileprivate func checkHeartbeat(now: Nanos) {
            let due = state.withLock { s in
                if s.closed == nil && !s.heartbeatDue && now - s.lastSent >= heartbeat {
                    s.heartbeatDue = true
                    return true
                }
                return false
            }
            if due { wake.yield() }
        }

        /// What the stream should send next.
        public enum Next {
            case alerts([Alert])
            case updates([(device: Int32, skipped: UInt64)])
            case heartbeat(skippedTotal: UInt64)
            case nothing
        }

        /// Takes everything pending: the dirty devices, or a due heartbeat.
        public func take(now: Nanos) -> Next {
            state.withLock { s in
                if !s.alerts.isEmpty {
                    let taken = s.alerts
                    s.alerts.removeAll()
                    s.lastSent = now
                    s.heartbeatDue = false
                    return .alerts(taken)
                }
                if !s.dirty.isEmpty {
                    let taken = s.dirty.map { (device: $0, skipped: s.skipped[Int($0)]) }
                    for d in s.dirty { s.skipped[Int(d)] = Self.notDirty }
                    s.dirty.removeAll(keepingCapacity: true)
                    s.lastSent = now
                    s.heartbeatDue = false
                    return .updates(taken)
                }
                if s.heartbeatDue {
                    s.heartbeatDue = false
                    s.lastSent = now
                    return .heartbeat(skippedTotal: s.skippedTotal)
                }
                return .nothing
            }
        }

        /// Notes that something was sent, so no heartbeat is due for a while.
        public func sent(now: Nanos) { state.withLock { $0.lastSent = now } }

        public var closeReason: CloseReason? { state.withLock { $0.closed } }

        public func close(_ reason: CloseReason) {
            state.withLock { s in
                if s.closed == nil { s.closed = reason }
            }
            wake.finish()
        }
    }

    struct State {
        var subscriptions: [UInt64: Subscription] = [:]
        var nextID: UInt64 = 1
        var identities: [(id: String, type: String)] = []
        var shuttingDown = false
    }

    private let state = Mutex(State())

    public var subscriberCount: Int { state.withLock { $0.subscriptions.count } }

    /// Registers a subscriber; changes published from now on reach it. Throws if shutting down.
    public func subscribe(filter: Filter, heartbeat: Nanos, now: Nanos) throws(TwinError) -> Subscription {
        let sub: Subscription? = state.withLock { s in
            if s.shuttingDown { return nil }
            let sub = Subscription(id: s.nextID, filter: filter, heartbeat: heartbeat, now: now)
            s.nextID += 1
            s.subscriptions[sub.id] = sub
            return sub
        }
        guard let sub else { throw .unavailable("twind is shutting down") }
        return sub
    }

    public func unsubscribe(_ sub: Subscription) {
        sub.close(.cancelled)
        _ = state.withLock { $0.subscriptions.removeValue(forKey: sub.id) }
    }

    /// The registry changed (devices added, or a type changed): filters are re-evaluated.
    public func registryChanged(identities: [(id: String, type: String)]) {
        let subs = state.withLock { s in
            s.identities = identities
            return Array(s.subscriptions.values)
        }
        for sub in subs { sub.resetMask() }
    }

    /// Publishes changed device indices to every subscriber.
    public func publish(_ changed: [Int32]) {
        if changed.isEmpty { return }
        let (subs, identities) = state.withLock { s in (Array(s.subscriptions.values), s.identities) }
        for sub in subs { sub.mark(changed, identities: identities) }
    }

    /// Sends alert changes to the subscribers whose filter matches the device.
    public func publishAlerts(_ alerts: [Alert]) {
        if alerts.isEmpty { return }
        let (subs, identities) = state.withLock { s in (Array(s.subscriptions.values), s.identities) }
        var types: [String: String] = [:]
        for a in alerts where types[a.deviceID] == nil { types[a.deviceID] = identities.first { $0.id == a.deviceID }?.type ?? "" }
        for sub in subs { sub.queue(alerts, types: types) }
    }

    /// Wakes subscribers whose heartbeat is due. Called by the daemon's housekeeping ticker.
    public func heartbeat(now: Nanos) {
        let subs = state.withLock { Array($0.subscriptions.values) }
        for sub in subs { sub.checkHeartbeat(now: now) }
    }

    /// Ends every stream with UNAVAILABLE and refuses new ones.
    public func shutdown() {
        let subs = state.withLock { s in
            s.shuttingDown = true
            return Array(s.subscriptions.values)
        }
        for sub in subs { sub.close(.shuttingDown) }
    }
}
