import Foundation
import Synchronization
import TwinApp
import TwinCore

/// `UsersStore` in memory, with users.db's semantics (a refresh token used twice revokes its
/// family; an audited change and its entry go together): Identity's rules are tested on it with
/// a test clock, no SQLite and no daemon. `failAudit` makes audit writes fail, as a full disk would.
final class InMemoryUsers: UsersStore {
    struct Token { var family: String; var userID: Int64; var expiresAt: Nanos; var used = false; var revoked = false }
    struct State {
        var users: [Int64: User] = [:]
        var tokens: [String: Token] = [:]
        var cutoffs: [Int64: Nanos] = [:]
        var keys: [(key: ApiKey, secretHash: Data)] = []
        var throttle: [UInt8]?
        var audit: [AuditEntry] = []
        var failAudit = false
    }
    let state = Mutex(State())

    var auditLog: [AuditEntry] { state.withLock { $0.audit } }
    func setFailAudit(_ fail: Bool) { state.withLock { $0.failAudit = fail } }

    private func record(_ s: inout State, _ entry: AuditEntry?) throws(TwinError) {
        guard let entry else { return }
        if s.failAudit { throw .unavailable("the disk is full") }
        s.audit.append(entry)
    }

    private func withState<T>(_ body: (inout State) throws(TwinError) -> T) throws(TwinError) -> T {
        try state.withLock { (s: inout State) throws(TwinError) -> T in
            var copy = s
            let result = try body(&copy)
            s = copy  // all or nothing, as a transaction
            return result
        }
    }

    func userCount() throws(TwinError) -> Int { state.withLock { $0.users.count } }

    func createUser(username: String, role: User.Role, passwordHash: String, email: String, now: Nanos, audit: AuditEntry?) throws(TwinError) -> User {
        try withState { s throws(TwinError) in
            guard !s.users.values.contains(where: { $0.username == username }) else { throw TwinError(.alreadyExists, "user '\(username)' already exists") }
            let user = User(id: (s.users.keys.max() ?? 0) + 1, username: username, role: role, disabled: false, createdAt: now, lastLoginAt: nil, passwordHash: passwordHash, email: email)
            s.users[user.id] = user
            try record(&s, audit)
            return user
        }
    }

    func user(named username: String) throws(TwinError) -> User? { state.withLock { $0.users.values.first { $0.username == username } } }
    func user(id: Int64) throws(TwinError) -> User? { state.withLock { $0.users[id] } }
    func allUsers() throws(TwinError) -> [User] { state.withLock { $0.users.values.sorted { $0.id < $1.id } } }

    func recordLogin(userID: Int64, at time: Nanos, newHash: String?, audit: AuditEntry?) throws(TwinError) {
        try withState { s throws(TwinError) in
            s.users[userID]?.lastLoginAt = time
            if let newHash { s.users[userID]?.passwordHash = newHash }
            try record(&s, audit)
        }
    }

    func updateUser(_ user: User, role: User.Role?, disabled: Bool?, email: String?, audit: AuditEntry?) throws(TwinError) -> User {
        try withState { s throws(TwinError) in
            guard var u = s.users[user.id] else { throw TwinError.notFound("no such user") }
            if let role { u.role = role }
            if let disabled { u.disabled = disabled }
            if let email { u.email = email }
            s.users[user.id] = u
            try record(&s, audit)
            return u
        }
    }

    func setPasswordHash(userID: Int64, _ hash: String, audit: AuditEntry?) throws(TwinError) {
        try withState { s throws(TwinError) in
            s.users[userID]?.passwordHash = hash
            try record(&s, audit)
        }
    }

    func deleteUser(id: Int64, audit: AuditEntry?) throws(TwinError) {
        try withState { s throws(TwinError) in
            s.users[id] = nil
            try record(&s, audit)
        }
    }

    func storeRefreshToken(_ token: String, family: String, userID: Int64, expiresAt: Nanos) throws(TwinError) {
        state.withLock { $0.tokens[token] = Token(family: family, userID: userID, expiresAt: expiresAt) }
    }

    func useRefreshToken(_ token: String, now: Nanos) throws(TwinError) -> RefreshOutcome {
        state.withLock { s in
            guard let t = s.tokens[token] else { return .invalid }
            if t.used {
                for (k, v) in s.tokens where v.family == t.family { s.tokens[k]?.revoked = true }
                return .reused(userID: t.userID, family: t.family)
            }
            if t.revoked || t.expiresAt <= now { return .invalid }
            s.tokens[token]?.used = true
            return .valid(userID: t.userID, family: t.family)
        }
    }

    func revokeRefreshFamily(of token: String) throws(TwinError) -> String? {
        guard let family = state.withLock({ $0.tokens[token]?.family }) else { return nil }
        try revokeRefreshFamily(family)
        return family
    }

    func revokeRefreshFamily(_ family: String) throws(TwinError) {
        state.withLock { s in for (k, v) in s.tokens where v.family == family { s.tokens[k]?.revoked = true } }
    }

    func isSessionRevoked(family: String) throws(TwinError) -> Bool {
        state.withLock { $0.tokens.values.contains { $0.family == family && $0.revoked } }
    }

    func revokeRefreshTokens(userID: Int64) throws(TwinError) {
        state.withLock { s in for (k, v) in s.tokens where v.userID == userID { s.tokens[k]?.revoked = true } }
    }

    func endSessions(userID: Int64, before time: Nanos) throws(TwinError) { state.withLock { $0.cutoffs[userID] = time } }

    func sessionCutoffs() throws(TwinError) -> [String: Nanos] {
        state.withLock { s in
            Dictionary(uniqueKeysWithValues: s.cutoffs.compactMap { id, t in s.users[id].map { ($0.username, t) } })
        }
    }

    func saveThrottle(_ bytes: [UInt8]) throws(TwinError) { state.withLock { $0.throttle = bytes } }
    func savedThrottle() throws(TwinError) -> [UInt8]? { state.withLock { $0.throttle } }

    let signingKey = (0..<32).map { UInt8($0) }
    func signingKeys(now: Nanos) throws(TwinError) -> [(id: Int64, key: [UInt8])] { [(1, signingKey)] }

    func createApiKey(id: String, name: String, role: User.Role, secret: String, createdBy: String, scope: ApiKeyScope, now: Nanos, audit: AuditEntry?) throws(TwinError) -> ApiKey {
        try withState { s throws(TwinError) in
            let key = ApiKey(id: id, name: name, role: role, createdAt: now, createdBy: createdBy, scope: scope)
            s.keys.append((key, Identity.apiKeyHash(secret)))
            try record(&s, audit)
            return key
        }
    }

    func apiKeys() throws(TwinError) -> [(key: ApiKey, secretHash: Data)] { state.withLock { $0.keys } }

    func revokeApiKey(id: String, now: Nanos, audit: AuditEntry?) throws(TwinError) -> Bool {
        try withState { s throws(TwinError) in
            guard let i = s.keys.firstIndex(where: { $0.key.id == id && $0.key.revokedAt == nil }) else { return false }
            s.keys[i].key.revokedAt = now
            try record(&s, audit)
            return true
        }
    }

    func touchApiKey(id: String, at time: Nanos) throws(TwinError) {
        state.withLock { s in if let i = s.keys.firstIndex(where: { $0.key.id == id }) { s.keys[i].key.lastUsedAt = time } }
    }

    func audit(_ entry: AuditEntry) throws(TwinError) -> Int64 {
        try withState { s throws(TwinError) in
            try record(&s, entry)
            return Int64(s.audit.count)
        }
    }

    func auditEntries(limit: Int, since: Nanos) throws(TwinError) -> [AuditEntry] {
        state.withLock { Array($0.audit.filter { $0.time >= since }.suffix(limit)) }
    }
}

/// Hashes a password in microseconds, for policy tests (Argon2id itself is tested in
/// TwinStoreTests): `test$<salt>$<password reversed>`, with a cost tag `needsRehash` looks at.
struct CheapHasher: PasswordHashing {
    var cost = 1
    func hash(_ password: String) throws(TwinError) -> String { "test\(cost)$\(UUID().uuidString.prefix(8))$\(String(password.reversed()))" }
    func verify(_ password: String, against encoded: String) -> Bool {
        let parts = encoded.split(separator: "$", maxSplits: 2, omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0].hasPrefix("test") && String(parts[2]) == String(password.reversed())
    }
    func needsRehash(_ encoded: String) -> Bool { !encoded.hasPrefix("test\(cost)$") }
    func decoy() throws(TwinError) -> String { try hash(UUID().uuidString) }
}
