import Foundation
import Logging
import Synchronization
import TwinCore

/// One message a channel is given: a notice, or a summary of several when the channel's rate
/// limit would be exceeded.
public struct OutgoingMessage: Sendable {
    /// What the receiver deduplicates by (`Idempotency-Key`): the notice's id, or for a summary
    /// "summary/<first notice id>/<count>".
    public var idempotencyKey: String
    public var notices: [Notice]
    public var sentAt: Nanos
    public var isSummary: Bool { notices.count > 1 }

    public init(notices: [Notice], sentAt: Nanos) {
        self.notices = notices
        self.sentAt = sentAt
        idempotencyKey = notices.count == 1 ? notices[0].id : "summary/\(notices.first?.id ?? "")/\(notices.count)"
    }
}

/// What became of a delivery attempt.
public enum DeliveryOutcome: Sendable, Equatable {
    /// Taken (an HTTP 2xx, an SMTP 250).
    case delivered(String)
    /// Failed in a way that may pass (timeout, 5xx, 429, connection refused): try again later,
    /// not before `after` when the receiver said so.
    case retry(String, after: Nanos?)
    /// Refused for good (a 4xx other than 408/429, a mail server rejecting a recipient).
    case rejected(String)
}

/// Puts messages on the wire: twind's webhook and SMTP clients (`TwinNotify`).
public protocol NoticeSender: Sendable {
    func deliver(_ message: OutgoingMessage, on channel: NotifyConfig.Channel) async -> DeliveryOutcome
}

/// Alerts to people: routes alert changes to channels as notices in the outbox (in the same
/// transaction as the alert change), escalates alerts nobody acknowledged, and delivers the
/// outbox at least once per notice: one worker per channel (a dead endpoint holds up only its
/// own channel), retries with backoff, per-channel rate limits with a summary instead of a
/// flood, quiet hours, and a notice that cannot be delivered within `retry_for` marked failed.
public final class Notifier: Sendable {
    public struct ChannelStatus: Sendable, Equatable {
        public var name: String
        public var kind: NotifyConfig.Kind
        /// Where it sends, without secrets (scheme and host).
        public var target: String
        public var pending = 0
        public var delivered = 0
        public var failed = 0
        public var consecutiveFailures = 0
        public var lastError = ""
        public var lastDeliveredAt: Nanos?
        public var lastAttemptAt: Nanos?
        public var oldestPendingAt: Nanos?
        /// Held back now by its rate limit.
        public var rateLimited = false
        public var summaries = 0
    }

    /// Where the alert's device stands (site, line, type), for routing and the message.
    public struct Placement: Sendable {
        public var site: String
        public var line: String
        public var type: String
        public init(site: String, line: String, type: String) {
            self.site = site
            self.line = line
            self.type = type
        }
    }

    let store: any NoticeStore
    /// Outbox writes end in an fsync: they run here, never on the cooperative pool (nil: inline,
    /// for tests with an in-memory store).
    let writes: BlockingPool?
    let sender: any NoticeSender
    let clock: any TwinClock
    let logger: Logger
    let placement: @Sendable (String) -> Placement?
    /// Told each outcome per channel ("delivered", "retry", "failed") and the channel's
    /// failures in a row after it, for metrics.
    let counted: @Sendable (String, String, Int) -> Void
    let current: Mutex<NotifyConfig>
    private let state = Mutex<State>(State())
    private struct State {
        var pending: [String: Notice] = [:]
        var stats: [String: ChannelStatus] = [:]
        var sent: [String: [Nanos]] = [:]
        var backoffUntil: [String: Nanos] = [:]
        var escalated: Set<String> = []
        var wakes: [String: AsyncStream<Void>.Continuation] = [:]
        var reloaded: AsyncStream<Void>.Continuation?
    }

    public init(
        config: NotifyConfig, store: any NoticeStore, writes: BlockingPool? = nil, sender: any NoticeSender, clock: any TwinClock = SystemClock(), logger: Logger,
        placement: @escaping @Sendable (String) -> Placement? = { _ in nil }, counted: @escaping @Sendable (String, String, Int) -> Void = { _, _, _ in },
        accounts: @escaping @Sendable () async -> [User] = { [] }
    ) throws(TwinError) {
        self.accounts = accounts
        self.store = store
        self.writes = writes
        self.sender = sender
        self.clock = clock
        self.logger = logger
        self.placement = placement
        self.counted = counted
        current = Mutex(config)
        let pending = try store.pendingNotices()
        state.withLock { s in
            for n in pending { s.pending[n.id] = n }
            for n in pending where n.event == .escalated { s.escalated.insert(n.id) }
        }
    }

    public var config: NotifyConfig { current.withLock { $0 } }

    /// twind's user accounts, for e-mail channels that name users or roles.
    let accounts: @Sendable () async -> [User]

    /// Sends `message` on `channel`, an e-mail channel with its users' and roles' addresses
    /// added (enabled users with an address; each address once); `nobody` says what comes of a
    /// channel that has nobody to write to.
    func deliver(_ message: OutgoingMessage, on channel: NotifyConfig.Channel, nobody: (String) -> DeliveryOutcome) async -> DeliveryOutcome {
        guard channel.kind == .email, !channel.toUsers.isEmpty || !channel.toRoles.isEmpty else { return await sender.deliver(message, on: channel) }
        var c = channel
        for user in await accounts() where !user.disabled && !user.email.isEmpty {
            if channel.toUsers.contains(user.username) || channel.toRoles.contains(user.role) { c.to.append(user.email) }
        }
        var seen = Set<String>()
        c.to = c.to.filter { seen.insert($0.lowercased()).inserted }
        if c.to.isEmpty {
            let named = (channel.toUsers + channel.toRoles.map { "role \($0.rawValue)" }).joined(separator: ", ")
            return nobody("no recipient: none of \(named) is an enabled user with an e-mail address (twin users set-email NAME ADDRESS)")
        }
        return await sender.deliver(message, on: c)
    }

    /// Puts another configuration in force (SIGHUP); notices already queued keep their channel
    /// (one whose channel is gone fails with that said).
    public func replaceConfig(_ config: NotifyConfig) {
        current.withLock { $0 = config }
        let reloaded = state.withLock { $0.reloaded }
        reloaded?.yield()
        wakeAll()
    }

    // MARK: Routing

    /// The notices a batch of alert changes makes (opened, acknowledged, resolved), for the
    /// alert book to save with the alerts. Quiet hours set when each may go.
    public func route(_ alerts: [Alert]) -> [Notice] {
        let config = self.config
        guard !config.routes.isEmpty else { return [] }
        let now = clock.now()
        var result: [Notice] = []
        var seen: Set<String> = []
        for a in alerts {
            // Only the change itself makes a notice: an alert saved again later (its value
            // updated, shelved, still acknowledged at the next pass) was notified already.
            let event: Notice.Event
            switch a.state {
            case .resolved:
                guard a.resolvedAt == a.updatedAt else { continue }
                event = .resolved
            case .acknowledged:
                guard a.acknowledgedAt == a.updatedAt else { continue }
                event = .acknowledged
            case .open:
                guard a.openedAt == a.updatedAt else { continue }
                event = .opened
            }
            let at = place(a.deviceID)
            for r in config.routes where r.events.contains(event) && r.matches(a, site: at.site, line: at.line, type: at.type) {
                for channel in r.channels {
                    let n = Self.notice(a, event, for: channel, by: r, at: at, now: now)
                    if seen.insert(n.id).inserted { result.append(n) }
                }
            }
        }
        return result
    }

    /// Where a device stands (empty when it is not known).
    func place(_ device: String) -> Placement { placement(device) ?? Placement(site: "", line: "", type: "") }

    /// A notice of `alert` for `channel` by route `r`: where its device stands, and not before
    /// the route's quiet hours end.
    static func notice(_ alert: Alert, _ event: Notice.Event, for channel: String, by r: NotifyConfig.Route, at p: Placement, now: Nanos) -> Notice {
        var n = Notice(channel: channel, route: r.name, event: event, alert: alert, at: now)
        n.site = p.site
        n.line = p.line
        n.deviceType = p.type
        n.notBefore = r.quietHours?.release(now, severity: alert.severity) ?? now
        return n
    }

    /// Notices the alert book saved: they join the queue and their channels wake.
    public func queued(_ notices: [Notice]) {
        guard !notices.isEmpty else { return }
        state.withLock { s in for n in notices where s.pending[n.id] == nil { s.pending[n.id] = n } }
        for channel in Set(notices.map(\.channel)) { wake(channel) }
    }

    /// Escalation: an alert still open (not acknowledged) `escalate_after` after it opened is
    /// sent to the route's `escalate_to` channels, once.
    public func escalate(open alerts: [Alert]) async {
        let config = self.config
        let now = clock.now()
        var made: [Notice] = []
        for r in config.routes {
            guard let after = r.escalateAfter else { continue }
            for a in alerts where a.state == .open && now - a.openedAt >= after {
                let at = place(a.deviceID)
                guard r.matches(a, site: at.site, line: at.line, type: at.type) else { continue }
                for channel in r.escalateTo {
                    let n = Self.notice(a, .escalated, for: channel, by: r, at: at, now: now)
                    if !state.withLock({ $0.escalated.contains(n.id) }) { made.append(n) }
                }
            }
        }
        // Forget escalations of alerts no longer open (they cannot escalate again).
        let open = Set(alerts.lazy.filter { $0.state == .open }.map(\.id))
        state.withLock { s in s.escalated = s.escalated.filter { open.contains(String($0.prefix { $0 != "/" })) } }
        guard !made.isEmpty else { return }
        do {
            // One delivered before a restart is in the outbox still: not added, not sent again.
            let added = try await offPool { [store, made] () throws(TwinError) -> [Notice] in try store.enqueueNotices(made) }
            state.withLock { s in for n in made { s.escalated.insert(n.id) } }
            queued(added)
        } catch {
            logger.error("cannot queue escalations", metadata: ["error": "\(error.message)"])
        }
    }

    // MARK: Delivery

    /// How long a channel waits after its `failures`-th failure in a row: 2 s doubling, at most 5 min.
    public static func backoff(_ failures: Int) -> Nanos {
        min(2 * Time.second << min(max(failures - 1, 0), 20), 5 * Time.minute)
    }

    /// One delivery pass for one channel: what is due goes out, oldest first, one at a time
    /// (a summary of all of it when more is due than the rate limit leaves room for).
    public func deliverDue(channel name: String) async {
        let now = clock.now()
        let config = self.config
        var (due, expired) = state.withLock { s -> ([Notice], [Notice]) in
            let mine = s.pending.values.filter { $0.channel == name }
            let expired = mine.filter { now - $0.createdAt > config.retryFor || config.channel(name) == nil }
            for n in expired { s.pending[n.id] = nil }
            if let until = s.backoffUntil[name], until > now { return ([], expired) }
            return (mine.filter { $0.notBefore <= now && now - $0.createdAt <= config.retryFor }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }, expired)
        }
        if !expired.isEmpty {
            for k in expired.indices {
                expired[k].state = .failed
                if expired[k].lastError.isEmpty || config.channel(name) == nil {
                    expired[k].lastError = config.channel(name) == nil ? "channel '\(name)' is no longer configured" : "not delivered within \(DurationText.format(config.retryFor))"
                }
            }
            await save(expired)
            record(name, failed: expired.count, error: expired.last?.lastError)
        }
        guard let channel = config.channel(name), !due.isEmpty else { refreshPending(name); return }
        while !due.isEmpty {
            if Task.isCancelled { return }
            let room = state.withLock { s -> Int in
                guard let limit = channel.rateLimit else { return .max }
                s.sent[name] = (s.sent[name] ?? []).filter { now - $0 < limit.period }
                return limit.count - (s.sent[name]?.count ?? 0)
            }
            if room <= 0 {
                state.withLock { $0.stats[name, default: Self.blank(channel)].rateLimited = true }
                break
            }
            let batch = due.count > room ? due : [due[0]]
            let message = OutgoingMessage(notices: batch, sentAt: clock.now())
            // With nobody to write to it is retried: an address may come before retry_for ends.
            let outcome = await deliver(message, on: channel) { .retry($0, after: nil) }
            let at = clock.now()
            var updated = batch
            for k in updated.indices { updated[k].attempts += 1 }
            switch outcome {
            case .delivered:
                for k in updated.indices {
                    updated[k].state = .delivered
                    updated[k].deliveredAt = at
                    updated[k].lastError = ""
                }
                await save(updated)
                state.withLock { s in
                    for n in updated { s.pending[n.id] = nil }
                    s.sent[name, default: []].append(at)
                    s.backoffUntil[name] = nil
                    var st = s.stats[name, default: Self.blank(channel)]
                    st.delivered += updated.count
                    st.consecutiveFailures = 0
                    st.lastDeliveredAt = at
                    st.lastAttemptAt = at
                    st.rateLimited = false
                    if message.isSummary { st.summaries += 1 }
                    s.stats[name] = st
                }
                counted(name, "delivered", 0)
                due.removeFirst(batch.count)
            case .retry(let why, let after):
                for k in updated.indices { updated[k].lastError = why }
                let failures = state.withLock { s -> Int in
                    var st = s.stats[name, default: Self.blank(channel)]
                    st.consecutiveFailures += 1
                    st.lastError = why
                    st.lastAttemptAt = at
                    s.stats[name] = st
                    for n in updated { s.pending[n.id] = n }
                    s.backoffUntil[name] = at + max(after ?? 0, Self.backoff(st.consecutiveFailures))
                    return st.consecutiveFailures
                }
                await save(updated)
                counted(name, "retry", failures)
                if failures == 1 || failures % 10 == 0 {
                    logger.warning("notification not delivered; will retry", metadata: ["channel": "\(name)", "error": "\(why)", "failures": "\(failures)"])
                }
                refreshPending(name)
                return
            case .rejected(let why):
                for k in updated.indices {
                    updated[k].state = .failed
                    updated[k].lastError = why
                }
                await save(updated)
                state.withLock { s in for n in updated { s.pending[n.id] = nil } }
                record(name, failed: updated.count, error: why)
                logger.error("notification refused by the receiver", metadata: ["channel": "\(name)", "error": "\(why)"])
                due.removeFirst(batch.count)
            }
        }
        refreshPending(name)
    }

    func save(_ notices: [Notice]) async {
        do { try await offPool { [store] () throws(TwinError) in try store.updateNotices(notices) } } catch {
            logger.error("cannot save notification state", metadata: ["error": "\(error.message)"])
        }
    }

    func offPool<T: Sendable>(_ work: @escaping @Sendable () throws(TwinError) -> T) async throws(TwinError) -> T {
        guard let writes else { return try work() }
        return try await writes.run(work)
    }

    func record(_ name: String, failed: Int, error: String?) {
        guard failed > 0 else { return }
        let kind = config.channel(name)
        state.withLock { s in
            var st = s.stats[name] ?? ChannelStatus(name: name, kind: kind?.kind ?? .webhook, target: kind?.target ?? "")
            st.failed += failed
            st.consecutiveFailures += 1
            if let error { st.lastError = error }
            st.lastAttemptAt = clock.now()
            s.stats[name] = st
        }
        let failures = state.withLock { $0.stats[name]?.consecutiveFailures ?? 0 }
        for _ in 0..<failed { counted(name, "failed", failures) }
    }

    func refreshPending(_ name: String) {
        state.withLock { s in
            let mine = s.pending.values.filter { $0.channel == name }
            guard s.stats[name] != nil || !mine.isEmpty else { return }
            let channel = current.withLock { $0.channel(name) }
            var st = s.stats[name] ?? ChannelStatus(name: name, kind: channel?.kind ?? .webhook, target: channel?.target ?? "")
            st.pending = mine.count
            st.oldestPendingAt = mine.map(\.createdAt).min()
            if mine.isEmpty { st.rateLimited = false }
            s.stats[name] = st
        }
    }

    static func blank(_ c: NotifyConfig.Channel) -> ChannelStatus { ChannelStatus(name: c.name, kind: c.kind, target: c.target) }

    /// Every configured channel's state (and any that still holds notices).
    public func status() -> [ChannelStatus] {
        let config = self.config
        for c in config.channels { refreshPending(c.name) }
        return state.withLock { s in
            var result = config.channels.map { c -> ChannelStatus in
                var st = s.stats[c.name] ?? Self.blank(c)
                st.kind = c.kind
                st.target = c.target
                return st
            }
            for (name, st) in s.stats where config.channel(name) == nil && st.pending > 0 { result.append(st) }
            return result
        }
    }

    /// Sends a test message on a channel now, outside the outbox; says what came of it.
    public func test(channel name: String, by user: String) async throws(TwinError) -> (outcome: DeliveryOutcome, took: Nanos) {
        guard let channel = config.channel(name) else {
            throw .missing(
                .channelNotFound, type: "twin.v1.NotificationChannel", name: name,
                "no notification channel is named '\(name.prefix(64))' (twin notify status lists them)")
        }
        let now = clock.now()
        var alert = Alert(id: "test-\(now / Time.millisecond)", deviceID: "twin-test", rule: "test", sensor: "", severity: .info,
                          message: "test notification from twind, sent by \(user)", value: nil, at: now)
        alert.ruleVersion = config.version
        let notice = Notice(channel: name, route: "test", event: .test, alert: alert, at: now)
        let began = ContinuousClock.now
        let outcome = await deliver(OutgoingMessage(notices: [notice], sentAt: now), on: channel) { .rejected($0) }
        let took = ContinuousClock.now - began
        return (outcome, Nanos(took.components.seconds) * Time.second + Nanos(took.components.attoseconds / 1_000_000_000))
    }

    // MARK: Running

    func wake(_ channel: String) {
        let c = state.withLock { $0.wakes[channel] }
        c?.yield()
    }

    func wakeAll() {
        for c in state.withLock({ Array($0.wakes.values) }) { c.yield() }
    }

    /// Delivers until cancelled: one worker per channel, woken by new notices and every second
    /// (retries, quiet hours ending), and the escalation check every second.
    public func run(openAlerts: @escaping @Sendable () -> [Alert], every tick: Duration = .seconds(1)) async {
        let (reloads, reloaded) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        state.withLock { $0.reloaded = reloaded }
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: tick)
                    await self.escalate(open: openAlerts())
                    self.wakeAll()
                }
            }
            var started: Set<String> = []
            func startWorkers() {
                // Channels gone from the configuration keep a worker: it fails their notices.
                let names = Set(config.channels.map(\.name)).union(state.withLock { Set($0.pending.values.map(\.channel)) })
                for name in names.subtracting(started) {
                    started.insert(name)
                    let (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
                    state.withLock { $0.wakes[name] = wake }
                    wake.yield()
                    group.addTask {
                        for await _ in wakes { await self.deliverDue(channel: name) }
                    }
                }
            }
            startWorkers()
            for await _ in reloads { startWorkers() }
            group.cancelAll()
        }
    }
}
