import Foundation
import Synchronization
import TwinCore

/// Failed password checks (Login, and ChangePassword's old password), counted before the
/// password is verified so that a concurrent burst cannot slip past the count:
/// - per account *and* address: 5 free within 15 minutes, then each attempt waits (1 s doubling
///   to 15 min). This stops guessing one account from one place without letting anyone lock the
///   real user out from theirs.
/// - per address, across accounts: 20 free within 15 minutes, then the same doubling waits
///   (password spraying). IPv6 addresses count by their /64.
/// - per account, across addresses: 100 free within 15 minutes (guessing from many places).
/// A success clears only its own account-and-address count (and takes back its own attempt from
/// the other two); it never clears what other accounts or addresses did. The table is bounded:
/// records older than the window are dropped first when it is full.
/// Follows OWASP ASVS V2.2 (anti-automation without account lockout as a weapon).
///
/// The counts outlive a restart: `snapshot` is saved (sealed, in users.db) every few seconds
/// and at shutdown, and `load` takes it back at start, so restarting twind does not hand an
/// attacker a fresh allowance.
public final class LoginThrottle: Sendable {
    struct Record { var failures = 0; var last: Nanos = 0 }
    private struct State { var records: [String: Record] = [:]; var version: UInt64 = 0 }
    private let state = Mutex(State())
    public static let window = 15 * Time.minute
    static let limits: [(scope: Scope, free: Int)] = [(.pair, 5), (.address, 20), (.account, 100)]
    public static let maxEntries = 100_000

    public enum Scope: String, Sendable { case pair, address, account }

    /// The first wait once a limit is reached (then doubling).
    let firstLockout: Nanos
    public init(firstLockout: Nanos = Time.second) { self.firstLockout = firstLockout }

    func lockout(_ failures: Int, free: Int) -> Nanos {
        failures < free ? 0 : min(firstLockout << min(20, Nanos(failures - free)), 15 * Time.minute)
    }

    static func keys(username: String, address: String) -> [(Scope, String, Int)] {
        let addr = Self.addressKey(address)
        return limits.map { limit in
            switch limit.scope {
            case .pair: (limit.scope, "p:\(username)|\(addr)", limit.free)
            case .address: (limit.scope, "a:\(addr)", limit.free)
            case .account: (limit.scope, "u:\(username)", limit.free)
            }
        }
    }

    /// IPv4 as it is; IPv6 by its first 64 bits (one site's addresses are one attacker).
    public static func addressKey(_ address: String) -> String {
        guard address.contains(":") else { return address }
        var bytes = [UInt8](repeating: 0, count: 16)
        guard inet_pton(AF_INET6, address, &bytes) == 1 else { return address }
        return "v6:" + bytes[0..<8].map { String(format: "%02x", $0) }.joined()
    }

    /// Refuses an attempt that must wait; otherwise counts it as failed until `succeeded` says
    /// otherwise.
    public func begin(username: String, address: String, now: Nanos) throws(TwinError) {
        let keys = Self.keys(username: username, address: address)
        let refusal: (Scope, Nanos)? = state.withLock { st in
            defer { st.version &+= 1 }
            var worst: (Scope, Nanos)?
            for (scope, key, free) in keys {
                guard let r = st.records[key], now - r.last < Self.window else { continue }
                let wait = max(0, r.last + lockout(r.failures, free: free) - now)
                if wait > 0, wait > (worst?.1 ?? 0) { worst = (scope, wait) }
            }
            if worst != nil { return worst }
            if st.records.count + keys.count > Self.maxEntries { prune(&st.records, now: now) }
            for (_, key, _) in keys {
                var r = st.records[key] ?? Record()
                if now - r.last >= Self.window { r.failures = 0 }
                r.failures += 1
                r.last = now
                st.records[key] = r
            }
            return nil
        }
        if let (scope, wait) = refusal {
            let what = switch scope {
            case .pair: "this account from this address"
            case .address: "this address (across accounts)"
            case .account: "this account (from many addresses)"
            }
            throw TwinError(.resourceExhausted, "too many failed password checks for \(what); try again in \(max(1, wait / Time.second)) s", reason: .loginThrottled, metadata: ["scope": "\(scope)"])
                .retry(after: wait)
        }
    }

    /// The attempt `begin` counted was right: the account-and-address count starts again, and the
    /// attempt is taken back from the address and account counts.
    public func succeeded(username: String, address: String) {
        state.withLock { st in
            st.version &+= 1
            for (scope, key, _) in Self.keys(username: username, address: address) {
                if scope == .pair { st.records[key] = nil; continue }
                if var r = st.records[key] {
                    r.failures = max(0, r.failures - 1)
                    st.records[key] = r
                }
            }
        }
    }

    /// Clears an account's counts from every address (an admin's unlock).
    public func unlock(username: String) {
        state.withLock { st in
            st.version &+= 1
            st.records = st.records.filter { key, _ in !(key == "u:\(username)" || key.hasPrefix("p:\(username)|")) }
        }
    }

    public var count: Int { state.withLock { $0.records.count } }

    /// One counted record, as saved across restarts.
    public struct Entry: Sendable, Codable, Equatable {
        public var key: String
        public var failures: Int
        public var last: Nanos

        public init(key: String, failures: Int, last: Nanos) {
            self.key = key
            self.failures = failures
            self.last = last
        }
    }

    /// A number that changes whenever the counts do (to save only when something changed).
    public var version: UInt64 { state.withLock { $0.version } }

    /// The records still inside the window, and the version they are of.
    public func snapshot(now: Nanos) -> (version: UInt64, entries: [Entry]) {
        state.withLock { st in
            (st.version, st.records.compactMap { key, r in
                now - r.last < Self.window ? Entry(key: key, failures: r.failures, last: r.last) : nil
            }.sorted { $0.key < $1.key })
        }
    }

    /// Takes back saved records (at start), keeping the higher count where both know a key;
    /// records past the window, from the future (a clock set back) or malformed are dropped.
    public func load(_ entries: [Entry], now: Nanos) {
        state.withLock { st in
            for e in entries.prefix(Self.maxEntries) where e.failures > 0 && now - e.last < Self.window && e.last <= now {
                guard ["p:", "a:", "u:"].contains(where: e.key.hasPrefix) else { continue }
                let current = st.records[e.key]
                if current == nil || current!.failures < e.failures {
                    st.records[e.key] = Record(failures: e.failures, last: max(e.last, current?.last ?? 0))
                }
            }
        }
    }

    private func prune(_ s: inout [String: Record], now: Nanos) {
        s = s.filter { now - $0.value.last < Self.window }
        if s.count > Self.maxEntries * 9 / 10 {
            // Still full of live records: the oldest tenth goes.
            let cut = s.values.map(\.last).sorted()[s.count / 10]
            s = s.filter { $0.value.last > cut }
        }
    }
}

