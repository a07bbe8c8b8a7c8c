import Foundation

// The accounts of twind as the rules see them (users, API keys, refresh-token outcomes) and
// what they need of storage (`UsersStore`) and of password hashing (`PasswordHashing`).
// `TwinStore` implements both (users.db, Argon2id); tests use in-memory ones.

/// A user of twind, as `users.db` keeps it (the e-mail sealed, the password as an Argon2id hash).
public struct User: Sendable, Equatable {
    public enum Role: String, Sendable, CaseIterable, Comparable {
        /// Programs that push data with an API key: below viewer (they read nothing); the access
        /// table names the few calls they may make.
        case gateway
        case viewer, `operator`, admin

        public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }
        public var rank: Int { Self.allCases.firstIndex(of: self)! }

        /// The roles a person (a user account) can have.
        public static let people: [Role] = [.viewer, .operator, .admin]
    }

    public var id: Int64
    public var username: String
    public var role: Role
    public var disabled: Bool
    public var createdAt: Nanos
    public var lastLoginAt: Nanos?
    public var passwordHash: String
    public var email: String

    public init(id: Int64, username: String, role: Role, disabled: Bool, createdAt: Nanos, lastLoginAt: Nanos?, passwordHash: String, email: String) {
        self.id = id
        self.username = username
        self.role = role
        self.disabled = disabled
        self.createdAt = createdAt
        self.lastLoginAt = lastLoginAt
        self.passwordHash = passwordHash
        self.email = email
    }
}

/// What a refresh token's use found.
public enum RefreshOutcome: Sendable, Equatable {
    /// The token was valid and is now used; its family continues with a new token.
    case valid(userID: Int64, family: String)
    /// The token had been used already: its whole family is now revoked.
    case reused(userID: Int64, family: String)
    /// Unknown, expired or revoked.
    case invalid
}

/// A key a program (a gateway) sends instead of logging in. Only a SHA-256 hash of its secret is
/// kept: the secret is 256 random bits, so a slow hash would add nothing but cost per call.
public struct ApiKey: Sendable, Equatable {
    public var id: String
    public var name: String
    public var role: User.Role
    public var createdAt: Nanos
    public var createdBy: String
    public var lastUsedAt: Nanos?
    public var revokedAt: Nanos?
    /// What the key may write for; empty: the whole plant.
    public var scope = ApiKeyScope()

    public init(id: String, name: String, role: User.Role, createdAt: Nanos, createdBy: String, lastUsedAt: Nanos? = nil, revokedAt: Nanos? = nil, scope: ApiKeyScope = .init()) {
        self.id = id
        self.name = name
        self.role = role
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.lastUsedAt = lastUsedAt
        self.revokedAt = revokedAt
        self.scope = scope
    }
}

/// The devices a gateway key may write readings for. Each dimension that is given narrows it:
/// the device's site must be one of `sites`, its line one of `lines`, its id match one of
/// `devices` (patterns with `*` and `?`). Nothing given: every device.
public struct ApiKeyScope: Sendable, Equatable, Codable {
    public var sites: [String] = []
    public var lines: [String] = []
    public var devices: [String] = []

    public init(sites: [String] = [], lines: [String] = [], devices: [String] = []) {
        self.sites = sites
        self.lines = lines
        self.devices = devices
    }

    public var isEverything: Bool { sites.isEmpty && lines.isEmpty && devices.isEmpty }

    public func allows(id: String, site: String, line: String) -> Bool {
        (sites.isEmpty || sites.contains(site)) && (lines.isEmpty || lines.contains(line))
            && (devices.isEmpty || devices.contains { Self.matches(pattern: $0, id) })
    }

    /// `*` any run of characters, `?` one character, everything else itself. Iterative (no
    /// backtracking blow-up on hostile patterns).
    public static func matches(pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.utf8), t = Array(text.utf8)
        var i = 0, j = 0, star = -1, mark = 0
        while j < t.count {
            if i < p.count && (p[i] == UInt8(ascii: "?") || p[i] == t[j]) {
                i += 1; j += 1
            } else if i < p.count && p[i] == UInt8(ascii: "*") {
                star = i; mark = j; i += 1
            } else if star >= 0 {
                i = star + 1; mark += 1; j = mark
            } else {
                return false
            }
        }
        while i < p.count && p[i] == UInt8(ascii: "*") { i += 1 }
        return i == p.count
    }

    /// Words for messages: "sites S1, S2; devices press-*".
    public var description: String {
        if isEverything { return "the whole plant" }
        var parts: [String] = []
        if !sites.isEmpty { parts.append("sites \(sites.joined(separator: ", "))") }
        if !lines.isEmpty { parts.append("lines \(lines.joined(separator: ", "))") }
        if !devices.isEmpty { parts.append("devices \(devices.joined(separator: ", "))") }
        return parts.joined(separator: "; ")
    }
}


/// Argon2id in twind (`TwinStore.PasswordHasher`); anything that hashes and verifies the same way.
public protocol PasswordHashing: Sendable {
    /// Hashes a password with a fresh salt, in an encoded form that carries its parameters.
    func hash(_ password: String) throws(TwinError) -> String
    /// True when `password` matches `encoded` (in constant time).
    func verify(_ password: String, against encoded: String) -> Bool
    /// True when `encoded` was made with weaker parameters than these (rehash at the next login).
    func needsRehash(_ encoded: String) -> Bool
    /// A hash nobody's password matches, made with these parameters: verified for unknown
    /// users, so that they take as long as known ones.
    func decoy() throws(TwinError) -> String
}

/// Where users, sessions (refresh tokens), API keys, the signing keys, the login throttle's
/// counts and the access audit log are kept. Every change is durable when it returns, and a
/// change given an `audit` entry commits with it or not at all. `TwinStore.UsersDatabase`
/// implements it on SQLite (sealed rows, bound by MACs).
public protocol UsersStore: Sendable {
    func userCount() throws(TwinError) -> Int
    /// `alreadyExists` if the name is taken.
    @discardableResult
    func createUser(username: String, role: User.Role, passwordHash: String, email: String, now: Nanos, audit: AuditEntry?) throws(TwinError) -> User
    func user(named username: String) throws(TwinError) -> User?
    func user(id: Int64) throws(TwinError) -> User?
    func allUsers() throws(TwinError) -> [User]
    func recordLogin(userID: Int64, at time: Nanos, newHash: String?, audit: AuditEntry?) throws(TwinError)
    func updateUser(_ user: User, role: User.Role?, disabled: Bool?, email: String?, audit: AuditEntry?) throws(TwinError) -> User
    func setPasswordHash(userID: Int64, _ hash: String, audit: AuditEntry?) throws(TwinError)
    func deleteUser(id: Int64, audit: AuditEntry?) throws(TwinError)

    /// Keeps a refresh token (by its hash) in its family (session).
    func storeRefreshToken(_ token: String, family: String, userID: Int64, expiresAt: Nanos) throws(TwinError)
    /// Uses a refresh token once: a second use revokes its whole family.
    func useRefreshToken(_ token: String, now: Nanos) throws(TwinError) -> RefreshOutcome
    /// Revokes the family of a token; returns the family, nil for an unknown token.
    func revokeRefreshFamily(of token: String) throws(TwinError) -> String?
    func revokeRefreshFamily(_ family: String) throws(TwinError)
    func isSessionRevoked(family: String) throws(TwinError) -> Bool
    func revokeRefreshTokens(userID: Int64) throws(TwinError)
    /// Tokens of the user issued before `time` are refused (kept across a restart).
    func endSessions(userID: Int64, before time: Nanos) throws(TwinError)
    /// Per username, the latest such cut-off.
    func sessionCutoffs() throws(TwinError) -> [String: Nanos]

    func saveThrottle(_ bytes: [UInt8]) throws(TwinError)
    func savedThrottle() throws(TwinError) -> [UInt8]?
    /// The token-signing keys, oldest first (one is made when there is none).
    func signingKeys(now: Nanos) throws(TwinError) -> [(id: Int64, key: [UInt8])]

    func createApiKey(id: String, name: String, role: User.Role, secret: String, createdBy: String, scope: ApiKeyScope, now: Nanos, audit: AuditEntry?) throws(TwinError) -> ApiKey
    /// All keys, revoked ones included, with the hash of each secret (`ApiKey.hash`).
    func apiKeys() throws(TwinError) -> [(key: ApiKey, secretHash: Data)]
    /// False when no such key.
    func revokeApiKey(id: String, now: Nanos, audit: AuditEntry?) throws(TwinError) -> Bool
    func touchApiKey(id: String, at time: Nanos) throws(TwinError)

    @discardableResult
    func audit(_ entry: AuditEntry) throws(TwinError) -> Int64
    func auditEntries(limit: Int, since: Nanos) throws(TwinError) -> [AuditEntry]
}
