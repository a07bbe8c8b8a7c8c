import Synchronization
import TwinCore

/// When an access token stops being good before it expires. A token is refused when
/// - it has expired (`recheck`, which long-lived streams run on every batch);
/// - its session was logged out, or revoked because its refresh token was used twice: at once,
///   not at expiry (`end(sessions:)`);
/// - its account changed after it was issued (disabled, deleted, role or password changed):
///   `endAccount` sets a cut-off, and tokens issued at or before it are refused.
/// Ended sessions are remembered for one access-token lifetime (a token of theirs has expired
/// by then); the store keeps them too, for a restart. Every change fires `changed`, so open
/// streams check their caller again at once rather than at their next batch.
public final class SessionRules: Sendable {
    /// What the rules need of an access token.
    public struct Token: Sendable, Equatable {
        public var username: String
        public var issuedAt: Nanos
        public var expiresAt: Nanos
        /// The session (refresh-token family); nil for a token from before sessions had names.
        public var session: String?
        public var tokenID: String

        public init(username: String, issuedAt: Nanos, expiresAt: Nanos, session: String?, tokenID: String) {
            self.username = username
            self.issuedAt = issuedAt
            self.expiresAt = expiresAt
            self.session = session
            self.tokenID = tokenID
        }
    }

    public let clock: any TwinClock
    /// How long an access token lives: ended sessions are forgotten after it.
    public let accessTTL: Nanos
    private let ended = Mutex<[String: Nanos]>([:])
    private let cutoffs: Mutex<[String: Nanos]>
    /// Fired whenever access may have been taken away.
    public let changed = ChangeSignal()

    /// `cutoffs`: per user, the account changes saved before a restart.
    public init(clock: any TwinClock, accessTTL: Nanos, cutoffs: [String: Nanos] = [:]) {
        self.clock = clock
        self.accessTTL = accessTTL
        self.cutoffs = Mutex(cutoffs)
    }

    /// The key under which a token with no session name is ended on its own.
    public static func tokenKey(_ tokenID: String) -> String { "jti:" + tokenID }

    /// Ends sessions (session names, or `tokenKey`s): their tokens are refused from now on.
    public func end(sessions: [String]) {
        let now = clock.now()
        let ttl = accessTTL
        ended.withLock { ended in
            ended = ended.filter { now - $0.value <= ttl }
            for s in sessions { ended[s] = now }
        }
        changed.fire()
    }

    /// Ends every session of an account: tokens issued until now are refused. Returns the
    /// cut-off, for the store to keep across a restart.
    @discardableResult
    public func endAccount(_ username: String) -> Nanos {
        let now = clock.now()
        cutoffs.withLock { $0[username] = now }
        changed.fire()
        return now
    }

    /// Refuses a token whose session ended or whose account changed after it was issued.
    public func checkNotRevoked(_ token: Token) throws(TwinError) {
        if let cutoff = cutoffs.withLock({ $0[token.username] }), token.issuedAt <= cutoff {
            throw .unauthenticated(.sessionEnded, "this session was ended by an account change (role, password, disabled); log in again")
        }
        let session = token.session ?? ""
        let own = Self.tokenKey(token.tokenID)
        if ended.withLock({ $0[session] != nil || $0[own] != nil }) {
            throw .unauthenticated(.sessionEnded, "this session was logged out; log in again")
        }
    }

    /// Whether the token may still act now: unexpired, and not revoked.
    public func recheck(_ token: Token) throws(TwinError) {
        guard token.expiresAt > clock.now() else {
            throw .unauthenticated(.tokenExpired, "the access token has expired; refresh it or log in again")
        }
        try checkNotRevoked(token)
    }

    /// Sessions remembered as ended now (bounded by the access-token lifetime).
    public var endedCount: Int {
        let now = clock.now()
        let ttl = accessTTL
        return ended.withLock { $0.values.filter { now - $0 <= ttl }.count }
    }
}

/// Wakes every subscriber when it fires; a subscriber that has not looked yet sees one wake-up
/// however often it fired. Subscriptions end with the task that iterates them.
public final class ChangeSignal: Sendable {
    private let subscribers = Mutex<(next: UInt64, all: [UInt64: AsyncStream<Void>.Continuation])>((0, [:]))

    public init() {}

    public func subscribe() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let id = subscribers.withLock { s in
            s.next += 1
            s.all[s.next] = continuation
            return s.next
        }
        continuation.onTermination = { [weak self] _ in _ = self?.subscribers.withLock { $0.all.removeValue(forKey: id) } }
        return stream
    }

    public func fire() {
        for c in subscribers.withLock({ Array($0.all.values) }) { c.yield() }
    }

    public var count: Int { subscribers.withLock { $0.all.count } }
}
