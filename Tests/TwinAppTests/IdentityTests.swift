import Foundation
import Logging
import Testing
import TwinApp
import TwinCore

/// Identity's rules — login, refresh-token rotation, logout, account changes, API keys, the last
/// admin — on an in-memory store with a test clock: no SQLite, no daemon, no sleeps.
@Suite struct IdentityTests {
    let clock = ManualClock()
    let store = InMemoryUsers()

    func identity(hasher: CheapHasher = CheapHasher()) async throws -> Identity {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let identity = try await Identity(users: store, hasher: hasher, accessTTL: 15 * Time.minute, refreshTTL: Time.day, logger: logger, clock: clock)
        try identity.bootstrapAdmin(dataDirectory: "/nonexistent", environment: ["TWIND_ADMIN_PASSWORD": "admin-password-1"])
        return identity
    }

    func reason(_ body: () async throws -> Void) async -> TwinError.Reason? {
        do { try await body(); return nil } catch { return (error as? TwinError)?.reason ?? .notFound }
    }

    @Test func loginIssuesTokensAWrongPasswordAndAnUnknownUserLookTheSame() async throws {
        let id = try await identity()
        let session = try await id.login(username: "admin", password: "admin-password-1", peer: "ipv4:10.0.0.1:5000")
        let principal = try await id.authenticate(bearer: session.accessToken)
        #expect(principal.username == "admin" && principal.role == .admin)
        #expect(session.accessExpiresAt == clock.now() + 15 * Time.minute)
        var messages: [String] = []
        for (user, password) in [("admin", "wrong-password-1"), ("nobody", "wrong-password-1")] {
            do { _ = try await id.login(username: user, password: password, peer: "ipv4:10.0.0.2:5000") } catch { messages.append(error.message) }
        }
        #expect(messages == [Identity.failureMessage, Identity.failureMessage])
        #expect(Array(store.auditLog.map(\.kind).suffix(3)) == ["login.ok", "login.failed", "login.failed"])
    }

    @Test func aRefreshTokenRotatesAndASecondUseRevokesTheSession() async throws {
        let id = try await identity()
        let first = try await id.login(username: "admin", password: "admin-password-1", peer: "local")
        let second = try await id.refresh(token: first.refreshToken, peer: "local")
        #expect(second.refreshToken != first.refreshToken)
        // The old token again: stolen or replayed. The whole session ends, its access tokens too.
        #expect(await reason { _ = try await id.refresh(token: first.refreshToken, peer: "local") } == .refreshTokenInvalid)
        #expect(await reason { _ = try await id.refresh(token: second.refreshToken, peer: "local") } == .refreshTokenInvalid)
        #expect(await reason { _ = try await id.authenticate(bearer: second.accessToken) } == .sessionEnded)
        #expect(store.auditLog.contains { $0.kind == AuditEntry.Action.tokenFamilyRevoked.rawValue })
    }

    @Test func expiredTokensAreRefusedByTheClockTheRulesAreGiven() async throws {
        let id = try await identity()
        let session = try await id.login(username: "admin", password: "admin-password-1", peer: "local")
        // An access token the cache has not seen, and one it has: both expire on this clock.
        let fresh = try await id.issue(for: session.user, family: "f2", now: clock.now()).accessToken
        _ = try await id.authenticate(bearer: session.accessToken)
        clock.advance(by: 15 * Time.minute)
        #expect(await reason { _ = try await id.authenticate(bearer: fresh) } == .tokenExpired)
        #expect(await reason { _ = try await id.authenticate(bearer: session.accessToken) } == .tokenExpired)
        clock.advance(by: Time.day)
        #expect(await reason { _ = try await id.refresh(token: session.refreshToken, peer: "local") } == .refreshTokenInvalid)
    }

    @Test func logoutEndsThatSessionAtOnceAndNoOther() async throws {
        let id = try await identity()
        let a = try await id.login(username: "admin", password: "admin-password-1", peer: "local")
        let b = try await id.login(username: "admin", password: "admin-password-1", peer: "local")
        try id.logout(token: a.refreshToken, principal: nil)
        #expect(await reason { _ = try await id.authenticate(bearer: a.accessToken) } == .sessionEnded)
        #expect(await reason { _ = try await id.authenticate(bearer: b.accessToken) } == nil)
        #expect(await reason { _ = try await id.refresh(token: a.refreshToken, peer: "local") } == .refreshTokenInvalid)
    }

    @Test func aDemotedOrDisabledUsersTokensEndAndTheLastAdminStays() async throws {
        let id = try await identity()
        let admin = try await id.authenticate(bearer: try await id.login(username: "admin", password: "admin-password-1", peer: "local").accessToken)
        _ = try await id.createUser(username: "olga", password: "olga-password-1", role: .operator, email: "", by: admin, peer: "local")
        let olga = try await id.login(username: "olga", password: "olga-password-1", peer: "local")
        let principal = try await id.authenticate(bearer: olga.accessToken)
        clock.advance(by: Time.second)
        _ = try id.updateUser(username: "olga", role: .viewer, disabled: nil, email: nil, by: admin, peer: "local")
        #expect(await reason { _ = try await id.authenticate(bearer: olga.accessToken) } == .sessionEnded)
        #expect(await reason { try id.recheck(principal) } == .sessionEnded)
        #expect(await reason { _ = try await id.refresh(token: olga.refreshToken, peer: "local") } == .refreshTokenInvalid)
        // The only enabled admin can be neither demoted, disabled nor deleted.
        #expect(await reason { _ = try id.updateUser(username: "admin", role: .operator, disabled: nil, email: nil, by: admin, peer: "local") } == .lastAdmin)
        #expect(await reason { try id.deleteUser(username: "admin", by: admin, peer: "local") } == .lastAdmin)
    }

    @Test func aChangeWhoseAuditCannotBeWrittenIsNotMade() async throws {
        let id = try await identity()
        store.setFailAudit(true)
        #expect(await reason { _ = try await id.createUser(username: "ivan", password: "ivan-password-1", role: .viewer, email: "", by: nil, peer: "local") } != nil)
        store.setFailAudit(false)
        #expect(try store.user(named: "ivan") == nil)
    }

    @Test func aRevokedApiKeyIsRefusedFromTheNextCall() async throws {
        let id = try await identity()
        let (key, secret) = try id.createApiKey(name: "line 2", role: .gateway, scope: .init(sites: ["north"]), by: nil, peer: "local")
        let principal = try await id.authenticate(bearer: secret)
        #expect(principal.apiKeyID == key.id && principal.role == .gateway && principal.scope?.sites == ["north"])
        let changes = id.accessChanged.subscribe()
        try id.revokeApiKey(id: key.id, by: nil, peer: "local")
        var wake = changes.makeAsyncIterator()
        #expect(await wake.next() != nil)  // open streams are told at once
        #expect(await reason { try id.recheck(principal) } == .sessionEnded)
        #expect(await reason { _ = try await id.authenticate(bearer: secret) } == .tokenInvalid)
        // A person's role is refused for a key.
        #expect(await reason { _ = try id.createApiKey(name: "x", role: .admin, by: nil, peer: "local") } == .requestInvalid)
    }

    @Test func aWeakerHashIsReplacedAtTheNextLogin() async throws {
        let old = try await identity(hasher: CheapHasher(cost: 1))
        let before = try #require(try store.user(named: "admin")).passwordHash
        _ = old
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let stronger = try await Identity(users: store, hasher: CheapHasher(cost: 2), accessTTL: 15 * Time.minute, refreshTTL: Time.day, logger: logger, clock: clock)
        _ = try await stronger.login(username: "admin", password: "admin-password-1", peer: "local")
        let after = try #require(try store.user(named: "admin")).passwordHash
        #expect(before.hasPrefix("test1$") && after.hasPrefix("test2$"))
    }
}
