import Crypto
import Foundation
import JWTKit
import Logging
import Synchronization
import TwinCore

/// The claims of an access token. Issuer, audience and expiry are checked at verification.
struct AccessClaims: JWTPayload {
    var sub: SubjectClaim
    var role: String
    var exp: ExpirationClaim
    var iat: IssuedAtClaim
    var jti: IDClaim
    var iss: IssuerClaim
    var aud: AudienceClaim
    /// The session (refresh-token family) the token belongs to: logging out ends it at once.
    var sid: String?

    /// Expiry is checked by `Identity.verify(bearer:)` against its clock, not here.
    func verify(using algorithm: some JWTAlgorithm) async throws {
        guard iss.value == Identity.issuer else { throw JWTError.claimVerificationFailure(failedClaim: iss, reason: "wrong issuer") }
        try aud.verifyIntendedAudience(includes: Identity.audience)
    }
}

/// Who is calling: from a verified access token.
public struct Principal: Sendable, Equatable {
    public var username: String
    public var role: User.Role
    public var expiresAt: Nanos
    public var issuedAt: Nanos = 0
    public var tokenID: String
    /// Set when the caller presented an API key rather than an access token.
    public var apiKeyID: String? = nil
    /// The login session (refresh-token family) of an access token.
    public var session: String? = nil
    /// The part of the plant an API key may write for; nil: all of it.
    public var scope: ApiKeyScope? = nil

    /// The caller of the RPC being served, set by `AuthInterceptor`.
    @TaskLocal public static var current: Principal?

    public init(username: String, role: User.Role, expiresAt: Nanos, issuedAt: Nanos = 0, tokenID: String, apiKeyID: String? = nil, session: String? = nil, scope: ApiKeyScope? = nil) {
        self.username = username
        self.role = role
        self.expiresAt = expiresAt
        self.issuedAt = issuedAt
        self.tokenID = tokenID
        self.apiKeyID = apiKeyID
        self.session = session
        self.scope = scope
    }

    /// What the session rules look at.
    public var token: SessionRules.Token {
        .init(username: username, issuedAt: issuedAt, expiresAt: expiresAt, session: session, tokenID: tokenID)
    }
}

/// A session's tokens, as Login and Refresh return them.
public struct Session: Sendable {
    public var accessToken: String
    public var accessExpiresAt: Nanos
    public var refreshToken: String
    public var refreshExpiresAt: Nanos
    public var user: User
}

/// Users, passwords and tokens: Login checks an Argon2id hash and issues a short-lived HS256 JWT
/// (signing key sealed in users.db, algorithm pinned at verification) plus a single-use refresh
/// token stored as a hash; using a refresh token twice revokes its family.
public final class Identity: Sendable {
    static let issuer = "twind"
    static let audience = "twin"
    static let algorithm = "HS256"
    public static let failureMessage = "wrong username or password"

    public let users: any UsersStore
    let hasher: any PasswordHashing
    /// Told the outcome of every login: "ok", "failed" or "throttled" (twind counts them).
    let loginOutcome: @Sendable (String) -> Void
    let keys: JWTKeyCollection
    let signingKID: String
    let accessTTL: Nanos
    let refreshTTL: Nanos
    let logger: Logger
    /// A hash nobody's password matches, verified for unknown users so they take as long.
    let decoyHash: String
    public let throttle: LoginThrottle
    /// When tokens stop being good before they expire (logout, account changes).
    let sessions: SessionRules
    public let clock: any TwinClock
    /// Argon2id runs here, never on the cooperative pool (see `BlockingPool`): one core's worth
    /// fewer than the machine has (at least one), at lower priority, so a flood of password
    /// checks leaves a core to everything else.
    public let hashing = BlockingPool(
        name: "password hashing", workers: max(1, ProcessInfo.processInfo.activeProcessorCount - 1), queueLimit: 8, maxWait: .seconds(5), niceness: 10)
    public init(
        users: any UsersStore, hasher: any PasswordHashing, accessTTL: Nanos, refreshTTL: Nanos, logger: Logger, firstLockout: Nanos = Time.second,
        clock: any TwinClock = SystemClock(), loginOutcome: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws {
        self.loginOutcome = loginOutcome
        self.users = users
        self.clock = clock
        throttle = LoginThrottle(firstLockout: firstLockout)
        self.hasher = hasher
        self.accessTTL = accessTTL
        self.refreshTTL = refreshTTL
        self.logger = logger
        let collection = JWTKeyCollection()
        let stored = try users.signingKeys(now: clock.now())
        for (id, key) in stored {
            await collection.add(hmac: HMACKey(key: SymmetricKey(data: key)), digestAlgorithm: .sha256, kid: JWKIdentifier(string: "k\(id)"))
        }
        keys = collection
        signingKID = "k\(stored.last!.id)"
        decoyHash = try hasher.decoy()
        sessions = SessionRules(clock: clock, accessTTL: accessTTL, cutoffs: try users.sessionCutoffs())
        try loadApiKeys()
        do {
            if let saved = try users.savedThrottle() {
                throttle.load(try JSONDecoder().decode([LoginThrottle.Entry].self, from: Data(saved)), now: clock.now())
                savedThrottleVersion.withLock { $0 = throttle.version }
            }
        } catch {
            logger.error("the saved login throttle cannot be read; counting failed logins from zero", metadata: ["error": "\((error as? TwinError)?.message ?? "\(error)")"])
        }
    }

    private let savedThrottleVersion = Mutex<UInt64>(0)

    /// Saves the login throttle's counts when they changed since the last save (every few
    /// seconds, and at shutdown), so a restart does not clear them. Blocking: run it off the
    /// cooperative pool.
    public func persistThrottle(now: Nanos) {
        guard savedThrottleVersion.withLock({ $0 }) != throttle.version else { return }
        let (version, entries) = throttle.snapshot(now: now)
        do {
            try users.saveThrottle(Array(try JSONEncoder().encode(entries)))
            savedThrottleVersion.withLock { $0 = version }
        } catch {
            logger.error("cannot save the login throttle", metadata: ["error": "\((error as? TwinError)?.message ?? "\(error)")"])
        }
    }

    /// With no users, creates `admin` with a password from `TWIND_ADMIN_PASSWORD`, else a random
    /// one written once to `<data>/initial-admin-password` (0600). Never logs the password.
    public func bootstrapAdmin(dataDirectory: String, environment: [String: String]) throws(TwinError) {
        guard try users.userCount() == 0 else { return }
        let given = environment["TWIND_ADMIN_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        if let given {
            do throws(TwinError) { try Self.validatePassword(given) } catch {
                throw .invalidArgument("TWIND_ADMIN_PASSWORD: \(error.message)")
            }
        }
        let password = given ?? Self.randomPassword()
        try users.createUser(username: "admin", role: .admin, passwordHash: try hasher.hash(password), email: "", now: clock.now(), audit: nil)
        if given != nil {
            logger.notice("created user admin with the password from TWIND_ADMIN_PASSWORD")
        } else {
            let path = dataDirectory + "/initial-admin-password"
            unlink(path)
            try PrivateFile.create(path, contents: password + "\n")
            logger.notice("created user admin; its password is in a file readable by twind's user only: log in and change it, then delete the file", metadata: ["file": "\(path)"])
        }
        try users.audit(.init(time: clock.now(), action: .userCreated, actor: "twind", peer: "local", detail: "admin (first start)"))
    }

    /// An audit entry for an event that changes nothing in users.db (a login, a change in
    /// health_data.db or the models): written on its own; a failure is logged, never dropped
    /// silently. Changes to users.db write their entry in their own transaction instead.
    public func recordAudit(_ entry: AuditEntry) {
        do { try users.audit(entry) } catch {
            logger.error("cannot write an audit entry", metadata: ["kind": "\(entry.kind)", "error": "\(error.message)"])
        }
    }

    /// An audit entry that must be written before the change it records may go ahead.
    public func audit(_ entry: AuditEntry) throws(TwinError) {
        do { try users.audit(entry) } catch {
            logger.error("cannot write an audit entry", metadata: ["kind": "\(entry.kind)", "error": "\(error.message)"])
            throw TwinError.unavailable("the audit log cannot be written, so the change was not made: \(error.message)")
        }
    }

    static func randomPassword() -> String {
        let alphabet = Array("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var rng = SystemRandomNumberGenerator()
        return String((0..<20).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
    }

    // MARK: Login, refresh, logout

    public func login(username: String, password: String, peer: String) async throws(TwinError) -> Session {
        // The rules for usernames are public: one that breaks them names nobody, and never
        // reaches the throttle table or the audit log.
        try Self.validateUsername(username)
        guard password.utf8.count <= Self.maximumPasswordBytes else {
            throw TwinError.invalidArgument("the password is longer than \(Self.maximumPasswordBytes) bytes").field("password")
        }
        let address = Self.address(of: peer)
        do {
            try throttle.begin(username: username, address: address, now: clock.now())
        } catch {
            loginOutcome("throttled")
            throw error
        }
        let user = try users.user(named: username)
        // Unknown users verify against a decoy, so both take the same time and give the same answer.
        let encoded = user?.passwordHash ?? decoyHash
        let hasher = self.hasher
        let matches = try await hashing.run { hasher.verify(password, against: encoded) }
        guard let user, matches, !user.disabled else {
            loginOutcome("failed")
            recordAudit(.init(time: clock.now(), action: .loginFailed, actor: username, peer: peer, detail: user == nil ? "unknown user" : user!.disabled ? "disabled" : "wrong password"))
            throw .unauthenticated(.credentialsInvalid, Self.failureMessage)
        }
        throttle.succeeded(username: username, address: address)
        loginOutcome("ok")
        let now = clock.now()
        let rehash = hasher.needsRehash(user.passwordHash) ? try? await hashing.run { () throws(TwinError) -> String in try hasher.hash(password) } : nil
        try users.recordLogin(
            userID: user.id, at: now, newHash: rehash,
            audit: .init(time: now, action: .loginOK, actor: username, peer: peer, detail: rehash == nil ? "" : "password rehashed with stronger parameters"))
        var session = try await issue(for: user, family: UUID().uuidString, now: now)
        session.user.lastLoginAt = now
        return session
    }

    public func refresh(token: String, peer: String) async throws(TwinError) -> Session {
        let now = clock.now()
        switch try users.useRefreshToken(token, now: now) {
        case .invalid:
            throw .unauthenticated(.refreshTokenInvalid, "the refresh token is not valid (expired, revoked or unknown); log in again")
        case .reused(let userID, let family):
            endSessions([family])
            let name = (try? users.user(id: userID))??.username ?? "#\(userID)"
            logger.warning("a used refresh token was presented again; its session is revoked", metadata: ["user": "\(name)", "peer": "\(peer)"])
            recordAudit(.init(time: now, action: .tokenFamilyRevoked, actor: name, peer: peer, detail: "refresh token reused"))
            throw .unauthenticated(.refreshTokenInvalid, "this refresh token was already used, so its session has been revoked; log in again")
        case .valid(let userID, let family):
            guard let user = try users.user(id: userID), !user.disabled else {
                throw .unauthenticated(.sessionEnded, "the account is disabled or gone; log in again")
            }
            return try await issue(for: user, family: family, now: now)
        }
    }

    /// Ends a session: its refresh tokens are revoked and its access tokens refused from now on
    /// (not only when they expire). With no refresh token, the caller's own session ends (for a
    /// token from before sessions were named in tokens: every refresh token of the caller).
    public func logout(token: String, principal: Principal?) throws(TwinError) {
        if !token.isEmpty {
            guard let family = try users.revokeRefreshFamily(of: token) else { throw TwinError.invalidArgument("that refresh token is not known", reason: .refreshTokenInvalid).field("refresh_token") }
            endSessions([family])
        } else if let principal, principal.apiKeyID == nil, let user = try users.user(named: principal.username) {
            if let session = principal.session {
                try users.revokeRefreshFamily(session)
            } else {
                try users.revokeRefreshTokens(userID: user.id)
            }
            endSessions([principal.session ?? "jti:" + principal.tokenID])
        } else {
            throw .unauthenticated(.tokenMissing, "log in first, or pass the refresh token to revoke")
        }
    }

    /// Sessions logged out (or revoked as stolen): their access tokens are refused at once.
    /// After a restart, users.db answers (`isSessionRevoked`).
    func endSessions(_ ended: [String]) { sessions.end(sessions: ended) }

    /// Fired whenever access may have been taken away (a session ended, an account changed, a key
    /// revoked): open streams check their caller again at once.
    public var accessChanged: ChangeSignal { sessions.changed }

    /// Whether `principal` may still act now: its token unexpired, its session not logged out, its
    /// account not changed since the token was issued, its API key not revoked. Long-lived streams
    /// ask on every batch and whenever `accessChanged` fires.
    public func recheck(_ principal: Principal) throws(TwinError) {
        if let keyID = principal.apiKeyID {
            guard apiKeys.withLock({ $0.values.contains { $0.key.id == keyID } }) else {
                throw .unauthenticated(.sessionEnded, "the API key was revoked; ask an admin for a new one (twin apikeys create)")
            }
            return
        }
        try sessions.recheck(principal.token)
    }

    public func issue(for user: User, family: String, now: Nanos) async throws(TwinError) -> Session {
        let claims = AccessClaims(
            sub: .init(value: user.username), role: user.role.rawValue,
            exp: .init(value: Date(timeIntervalSince1970: Double(now + accessTTL) / 1e9)),
            iat: .init(value: Date(timeIntervalSince1970: Double(now) / 1e9)), jti: .init(value: UUID().uuidString),
            iss: .init(value: Self.issuer), aud: .init(value: [Self.audience]), sid: family)
        let access: String
        do {
            access = try await keys.sign(claims, kid: JWKIdentifier(string: signingKID))
        } catch {
            throw .internalError("cannot sign an access token: \(error)")
        }
        let refresh = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        try users.storeRefreshToken(refresh, family: family, userID: user.id, expiresAt: now + refreshTTL)
        return Session(accessToken: access, accessExpiresAt: now + accessTTL, refreshToken: refresh, refreshExpiresAt: now + refreshTTL, user: user)
    }

    // MARK: Verifying access tokens

    /// Ends a user's sessions (disabled, deleted, role or password changed): tokens issued
    /// until now are refused from the next call, not at their expiry; the cut-off is kept in
    /// users.db, so a restart does not bring them back.
    public func invalidateTokens(of user: User) {
        let cutoff = sessions.endAccount(user.username)
        try? users.endSessions(userID: user.id, before: cutoff)
    }

    /// API keys by the hash of their secret (revoked ones are dropped), loaded at start.
    let apiKeys = Mutex<[Data: ApiKeyUse]>([:])
    struct ApiKeyUse { var key: ApiKey; var lastRecorded: Nanos }

    /// Tokens already verified, until they expire: a client sends the same token on every call
    /// for 15 minutes, and a dictionary lookup is far cheaper than an HMAC and a JSON parse.
    let verified = Mutex<[String: Principal]>([:])
    static let cacheLimit = 10_000

    /// Verifies `authorization: Bearer <jwt>` (once per token; see `verified`).
    public func authenticate(bearer token: String) async throws(TwinError) -> Principal {
        if token.hasPrefix(Self.apiKeyPrefix) { return try authenticate(apiKey: token) }
        let now = clock.now()
        if let known = verified.withLock({ $0[token] }) {
            try checkNotRevoked(known)
            if known.expiresAt > now { return known }
            _ = verified.withLock { $0.removeValue(forKey: token) }
            throw .unauthenticated(.tokenExpired, "the access token has expired; refresh it or log in again")
        }
        let principal = try await verify(bearer: token)
        try checkNotRevoked(principal)
        if let session = principal.session, try users.isSessionRevoked(family: session) {
            throw .unauthenticated(.sessionEnded, "this session was logged out; log in again")
        }
        // First sight of this token: the account must still exist, be enabled and have that role
        // (catches changes made before a restart, and deleted users).
        guard let user = try users.user(named: principal.username), !user.disabled, user.role == principal.role else {
            throw .unauthenticated(.sessionEnded, "this session was ended by an account change (role, password, disabled, deleted); log in again")
        }
        verified.withLock { cache in
            if cache.count >= Self.cacheLimit { cache = cache.filter { $0.value.expiresAt > now } }
            if cache.count < Self.cacheLimit { cache[token] = principal }
        }
        return principal
    }

    public func checkNotRevoked(_ principal: Principal) throws(TwinError) {
        try sessions.checkNotRevoked(principal.token)
    }

    /// Checks a token: signature with the pinned algorithm, issuer, audience, expiry.
    func verify(bearer token: String) async throws(TwinError) -> Principal {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = Self.base64URL(parts[0]),
              let fields = try? JSONSerialization.jsonObject(with: header) as? [String: Any]
        else { throw .unauthenticated(.tokenInvalid, "the access token is malformed; log in again") }
        guard fields["alg"] as? String == Self.algorithm else {
            throw .unauthenticated(.tokenInvalid, "the access token is not signed the way twind signs; log in again")
        }
        let claims: AccessClaims
        do {
            claims = try await keys.verify(token, as: AccessClaims.self)
        } catch let error as JWTError where error.errorType == .claimVerificationFailure && (error.failedClaim is ExpirationClaim) {
            throw .unauthenticated(.tokenExpired, "the access token has expired; refresh it or log in again")
        } catch {
            throw .unauthenticated(.tokenInvalid, "the access token is not valid; log in again")
        }
        guard let role = User.Role(rawValue: claims.role) else { throw .unauthenticated(.tokenInvalid, "the access token names an unknown role") }
        let expiresAt = Nanos.clamping(seconds: claims.exp.value.timeIntervalSince1970)
        guard expiresAt > clock.now() else {
            throw .unauthenticated(.tokenExpired, "the access token has expired; refresh it or log in again")
        }
        return Principal(
            username: claims.sub.value, role: role, expiresAt: expiresAt,
            issuedAt: Nanos.clamping(seconds: claims.iat.value.timeIntervalSince1970), tokenID: claims.jti.value, session: claims.sid)
    }

    static func base64URL(_ text: Substring) -> Data? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s)
    }

    /// The address part of a gRPC peer ("ipv4:127.0.0.1:5000" → "127.0.0.1").
    public static func address(of peer: String) -> String {
        let parts = peer.split(separator: ":")
        if parts.first == "ipv4", parts.count >= 3 { return String(parts[1]) }
        if parts.first == "ipv6", parts.count >= 3 { return parts.dropFirst().dropLast().joined(separator: ":") }
        return peer
    }
}

