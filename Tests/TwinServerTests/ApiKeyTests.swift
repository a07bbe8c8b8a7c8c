import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Proto
import Testing
import TwinClient
import TwinCore
import TwinServer
import TwinStore

/// Gateways push data with API keys: shown once, stored hashed, Ingest only, revocable, and they
/// outlive a restart; account changes outlive one too.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct ApiKeyTests {
    func auth<R: Sendable>(_ d: RunningDaemon, _ token: String?, _ body: (Twin_V1_AuthService.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await TwinConnection.with(d.address, bearer: token) { try await body(Twin_V1_AuthService.Client(wrapping: $0)) }
    }

    /// One Ingest call of one reading with `token`.
    func ingest(_ d: RunningDaemon, _ token: String, value: Double) async throws -> UInt64 {
        var batch = Twin_V1_IngestRequest()
        batch.readings = [Twin_V1_Reading("press-1", "force", Time.now(), value)]
        let message = batch
        let request = StreamingClientRequest<Twin_V1_IngestRequest> { writer in try await writer.write(message) }
        let response = try await TwinConnection.with(d.address, bearer: token) { client in
            try await Twin_V1_TwinService.Client(wrapping: client).ingest(request: request)
        }
        return response.acceptedReadings
    }

    @Test func createIngestRevokeAndRestart() async throws {
        var d = try await RunningDaemon.start { $0.simulator = false }
        let directory = d.directory
        var upsert = Twin_V1_UpsertDeviceRequest()
        upsert.device = gatewayDevice("press-1")
        _ = try await d.withTwin { try await $0.upsertDevice(upsert) }

        var create = Twin_V1_CreateApiKeyRequest()
        create.name = "gateway line 2"
        let made = try await auth(d, d.token) { try await $0.createApiKey(create) }
        #expect(made.secret.hasPrefix("twk_\(made.key.id)_") && made.secret.count > 40)
        #expect(made.key.role == .gateway && made.key.name == "gateway line 2" && !made.key.revoked)

        // It may push data and nothing else.
        #expect(try await ingest(d, made.secret, value: 12.5) == 1)
        let denied = await expectRPCError(.permissionDenied) {
            _ = try await TwinConnection.with(d.address, bearer: made.secret) { try await Twin_V1_TwinService.Client(wrapping: $0).listDevices(Twin_V1_ListDevicesRequest()) }
        }
        #expect(denied?.contains("may only call Ingest") == true)

        // Only an admin creates keys, and only gateway keys.
        var admin = create
        admin.role = .admin
        #expect(await expectRPCError(.invalidArgument) { _ = try await auth(d, d.token) { try await $0.createApiKey(admin) } } != nil)
        var unnamed = create
        unnamed.name = "  "
        #expect(await expectRPCError(.invalidArgument) { _ = try await auth(d, d.token) { try await $0.createApiKey(unnamed) } } != nil)

        // Listed without the secret; last use recorded.
        let listed = try await auth(d, d.token) { try await $0.listApiKeys(Twin_V1_ListApiKeysRequest()) }
        #expect(listed.keys.map(\.id) == [made.key.id] && listed.keys[0].hasLastUsedAt)

        // The secret is not in users.db (only its hash).
        try await d.stop(removing: false)
        let db = try Data(contentsOf: URL(fileURLWithPath: directory + "/users.db"))
        let wal = (try? Data(contentsOf: URL(fileURLWithPath: directory + "/users.db-wal"))) ?? Data()
        // Everything after `twk_<id>_` (the secret is base64url: it may hold "_" itself, and a
        // short piece after its last one can turn up in any file by chance).
        let secretBody = Data(made.secret.dropFirst("twk_\(made.key.id)_".count).utf8)
        #expect(secretBody.count >= 40)
        #expect(db.range(of: secretBody) == nil && wal.range(of: secretBody) == nil)

        // Still valid after a restart; revoked, refused on the next call; audited.
        d = try await RunningDaemon.start { $0.simulator = false; $0.dataDirectory = directory }
        #expect(try await ingest(d, made.secret, value: 13) == 1)
        var revoke = Twin_V1_RevokeApiKeyRequest()
        revoke.id = made.key.id
        _ = try await auth(d, d.token) { try await $0.revokeApiKey(revoke) }
        let refused = await expectRPCError(.unauthenticated) { _ = try await ingest(d, made.secret, value: 14) }
        #expect(refused?.contains("API key is not valid") == true)
        revoke.id = "nope"
        #expect(await expectRPCError(.notFound) { _ = try await auth(d, d.token) { try await $0.revokeApiKey(revoke) } } != nil)
        let after = try await auth(d, d.token) { try await $0.listApiKeys(Twin_V1_ListApiKeysRequest()) }
        #expect(after.keys.first?.revoked == true)
        let audit = try await auth(d, d.token) { try await $0.listAuditEvents(Twin_V1_ListAuditEventsRequest()) }
        #expect(Set(audit.events.map(\.action)).isSuperset(of: ["apikey.created", "apikey.revoked"]))
        // A made-up key in the right shape is refused the same way.
        #expect(await expectRPCError(.unauthenticated) { _ = try await ingest(d, "twk_000000000000_" + String(repeating: "A", count: 43), value: 1) } != nil)
        try await d.stop()
    }

    /// A password change ends the sessions before it, and a restart does not bring them back.
    @Test func endedSessionsStayEndedAcrossARestart() async throws {
        var d = try await RunningDaemon.start { $0.simulator = false }
        let directory = d.directory
        var create = Twin_V1_CreateUserRequest()
        create.username = "vera"
        create.password = "viewer-password-1"
        create.role = .viewer
        _ = try await auth(d, d.token) { try await $0.createUser(create) }
        var login = Twin_V1_LoginRequest()
        login.username = "vera"
        login.password = "viewer-password-1"
        let old = try await auth(d, nil) { try await $0.login(login).accessToken }
        var change = Twin_V1_ChangePasswordRequest()
        change.username = "vera"
        change.newPassword = "viewer-password-2"
        _ = try await auth(d, d.token) { try await $0.changePassword(change) }
        try await d.stop(removing: false)
        d = try await RunningDaemon.start { $0.simulator = false; $0.dataDirectory = directory }
        #expect(await expectRPCError(.unauthenticated) { _ = try await auth(d, old) { try await $0.whoAmI(Twin_V1_WhoAmIRequest()) } } != nil)
        try await d.stop()
    }
}

/// A key limited to part of the plant writes there and nowhere else.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct ApiKeyScopeTests {
    @Test func patternsMatchWithoutBacktrackingBlowUp() {
        #expect(ApiKeyScope.matches(pattern: "press-*", "press-12"))
        #expect(ApiKeyScope.matches(pattern: "p?ess-*2", "press-12"))
        #expect(!ApiKeyScope.matches(pattern: "press-*", "pump-1"))
        #expect(ApiKeyScope.matches(pattern: "*", ""))
        #expect(!ApiKeyScope.matches(pattern: "", "x"))
        // A hostile pattern against a long id answers at once.
        #expect(!ApiKeyScope.matches(pattern: String(repeating: "*a", count: 60) + "b", String(repeating: "a", count: 5000)))
    }

    @Test func aScopedKeyWritesOnlyForItsDevices() async throws {
        var d = try await RunningDaemon.start { $0.simulator = false }
        let directory = d.directory
        for (id, site) in [("press-1", "north"), ("press-2", "south"), ("pump-1", "north")] {
            var upsert = Twin_V1_UpsertDeviceRequest()
            upsert.device = gatewayDevice(id)
            upsert.device.site = site
            _ = try await d.withTwin { try await $0.upsertDevice(upsert) }
        }
        var create = Twin_V1_CreateApiKeyRequest()
        create.name = "north presses"
        create.scope.sites = ["north"]
        create.scope.devices = ["press-*"]
        let made = try await TwinConnection.with(d.address, bearer: d.token) { try await Twin_V1_AuthService.Client(wrapping: $0).createApiKey(create) }
        #expect(made.key.scope.sites == ["north"] && made.key.scope.devices == ["press-*"])

        func ingest(_ device: String, on d: RunningDaemon) async throws -> UInt64 {
            var batch = Twin_V1_IngestRequest()
            batch.readings = [Twin_V1_Reading(device, "force", Time.now(), 10)]
            let message = batch
            let request = StreamingClientRequest<Twin_V1_IngestRequest> { writer in try await writer.write(message) }
            return try await TwinConnection.with(d.address, bearer: made.secret) { try await Twin_V1_TwinService.Client(wrapping: $0).ingest(request: request) }.acceptedReadings
        }
        #expect(try await ingest("press-1", on: d) == 1)
        for outside in ["press-2", "pump-1"] {
            let message = await expectRPCError(.permissionDenied) { _ = try await ingest(outside, on: d) }
            #expect(message?.contains("'\(outside)' is outside the scope") == true)
        }

        // Too many entries or empty ones are refused at creation.
        var bad = create
        bad.scope.devices = [""]
        #expect(await expectRPCError(.invalidArgument) { _ = try await TwinConnection.with(d.address, bearer: d.token) { try await Twin_V1_AuthService.Client(wrapping: $0).createApiKey(bad) } } != nil)

        // The scope is kept across a restart.
        try await d.stop(removing: false)
        let again = try await RunningDaemon.start { $0.dataDirectory = directory; $0.simulator = false }
        d = again
        defer { Task { try? await again.stop() } }
        #expect(await expectRPCError(.permissionDenied) { _ = try await ingest("pump-1", on: again) } != nil)
        #expect(try await ingest("press-1", on: again) == 1)
        let listed = try await TwinConnection.with(d.address, bearer: d.token) { try await Twin_V1_AuthService.Client(wrapping: $0).listApiKeys(.init()) }
        #expect(listed.keys.first?.scope.devices == ["press-*"])
    }
}
