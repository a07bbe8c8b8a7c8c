import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Proto
import Testing
import TwinClient
import TwinCore
import TwinServer

/// Access taken away ends what is already open: an Ingest stream at its next batch, a
/// StreamUpdates stream at once, a logged-out session's access tokens on their next call.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct AccessEndsTests {
    func auth<R: Sendable>(_ d: RunningDaemon, _ token: String?, _ body: (Twin_V1_AuthService.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await TwinConnection.with(d.address, bearer: token) { try await body(Twin_V1_AuthService.Client(wrapping: $0)) }
    }

    func twin<R: Sendable>(_ d: RunningDaemon, _ token: String?, _ body: (Twin_V1_TwinService.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await TwinConnection.with(d.address, bearer: token) { try await body(Twin_V1_TwinService.Client(wrapping: $0)) }
    }

    /// A user with `role`, logged in.
    func user(_ d: RunningDaemon, _ name: String, _ role: Twin_V1_Role) async throws -> Twin_V1_LoginResponse {
        var create = Twin_V1_CreateUserRequest()
        create.username = name
        create.password = "password-of-\(name)"
        create.role = role
        _ = try await auth(d, d.token) { try await $0.createUser(create) }
        var login = Twin_V1_LoginRequest()
        login.username = name
        login.password = create.password
        return try await auth(d, nil) { try await $0.login(login) }
    }

    func daemonWithPress() async throws -> RunningDaemon {
        let d = try await RunningDaemon.start { $0.simulator = false }
        var upsert = Twin_V1_UpsertDeviceRequest()
        upsert.device = gatewayDevice("press-1")
        _ = try await d.withTwin { try await $0.upsertDevice(upsert) }
        return d
    }

    func batch(_ value: Double) -> Twin_V1_IngestRequest {
        var b = Twin_V1_IngestRequest()
        b.readings = [Twin_V1_Reading("press-1", "force", Time.now(), value)]
        return b
    }

    /// Waits (bounded) until press-1's live force reading is `value`.
    func waitForForce(_ d: RunningDaemon, _ value: Double) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            var get = Twin_V1_GetDeviceRequest()
            get.deviceID = "press-1"
            let snapshot = try await d.withTwin { try await $0.getDevice(get).snapshot }
            if snapshot.values.contains(where: { $0.sensor == "force" && $0.value == value }) { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// One Ingest stream: a batch, then `revoke` (once the batch is live), then a second batch.
    func ingestAcrossRevocation(_ d: RunningDaemon, token: String, revoke: @escaping @Sendable () async throws -> Void) async throws {
        let first = batch(101), second = batch(202)
        let request = StreamingClientRequest<Twin_V1_IngestRequest> { writer in
            try await writer.write(first)
            guard try await waitForForce(d, 101) else { throw RPCError(code: .aborted, message: "test: the first batch never arrived") }
            try await revoke()
            try await writer.write(second)
        }
        let message = await expectRPCError(.unauthenticated) { _ = try await twin(d, token) { try await $0.ingest(request: request) } }
        #expect(message != nil)
        // The second batch was not taken.
        var get = Twin_V1_GetDeviceRequest()
        get.deviceID = "press-1"
        let values = try await d.withTwin { try await $0.getDevice(get).snapshot.values }
        #expect(values.first { $0.sensor == "force" }?.value == 101)
    }

    @Test func aRevokedKeyStopsAnOpenIngestStream() async throws {
        let d = try await daemonWithPress()
        defer { Task { try? await d.stop() } }
        var create = Twin_V1_CreateApiKeyRequest()
        create.name = "line 2"
        let key = try await auth(d, d.token) { try await $0.createApiKey(create) }
        try await ingestAcrossRevocation(d, token: key.secret) {
            var revoke = Twin_V1_RevokeApiKeyRequest()
            revoke.id = key.key.id
            _ = try await auth(d, d.token) { try await $0.revokeApiKey(revoke) }
        }
    }

    @Test func aDisabledOrDemotedOperatorStopsIngesting() async throws {
        let d = try await daemonWithPress()
        defer { Task { try? await d.stop() } }
        for change in ["disable", "demote", "delete"] {
            let session = try await user(d, "op-\(change)", .operator)
            try await ingestAcrossRevocation(d, token: session.accessToken) {
                if change == "delete" {
                    var delete = Twin_V1_DeleteUserRequest()
                    delete.username = "op-\(change)"
                    _ = try await auth(d, d.token) { try await $0.deleteUser(delete) }
                } else {
                    var update = Twin_V1_UpdateUserRequest()
                    update.username = "op-\(change)"
                    if change == "disable" { update.disabled = true } else { update.role = .viewer }
                    _ = try await auth(d, d.token) { try await $0.updateUser(update) }
                }
            }
        }
    }

    @Test func streamUpdatesEndsWhenItsUserIsDisabledOrLoggedOut() async throws {
        let d = try await daemonWithPress()
        defer { Task { try? await d.stop() } }
        for change in ["disable", "delete", "logout"] {
            let session = try await user(d, "viewer-\(change)", .viewer)
            let message = await expectRPCError(.unauthenticated) {
                try await twin(d, session.accessToken) { client in
                    try await client.streamUpdates(Twin_V1_StreamUpdatesRequest()) { response in
                        for try await update in response.messages {
                            guard case .syncComplete = update.update else { continue }
                            switch change {
                            case "disable":
                                var update = Twin_V1_UpdateUserRequest()
                                update.username = "viewer-\(change)"
                                update.disabled = true
                                _ = try await auth(d, d.token) { try await $0.updateUser(update) }
                            case "delete":
                                var delete = Twin_V1_DeleteUserRequest()
                                delete.username = "viewer-\(change)"
                                _ = try await auth(d, d.token) { try await $0.deleteUser(delete) }
                            default:
                                var logout = Twin_V1_LogoutRequest()
                                logout.refreshToken = session.refreshToken
                                _ = try await auth(d, nil) { try await $0.logout(logout) }
                            }
                        }
                    }
                }
            }
            #expect(message != nil)
        }
    }

    @Test func aLoggedOutSessionsAccessTokenIsRefusedAtOnce() async throws {
        let d = try await daemonWithPress()
        defer { Task { try? await d.stop() } }
        // Logout with the refresh token (as twin logout does).
        let a = try await user(d, "alice", .viewer)
        _ = try await auth(d, a.accessToken) { try await $0.whoAmI(.init()) }
        var logout = Twin_V1_LogoutRequest()
        logout.refreshToken = a.refreshToken
        _ = try await auth(d, nil) { try await $0.logout(logout) }
        let refused = await expectRPCError(.unauthenticated) { _ = try await auth(d, a.accessToken) { try await $0.whoAmI(.init()) } }
        #expect(refused?.contains("logged out") == true)

        // Logout with only the access token ends that session too; another session of the
        // same user logged in elsewhere keeps its access token until it refreshes.
        var login = Twin_V1_LoginRequest()
        login.username = "alice"
        login.password = "password-of-alice"
        let first = try await auth(d, nil) { try await $0.login(login) }
        let second = try await auth(d, nil) { try await $0.login(login) }
        _ = try await auth(d, first.accessToken) { try await $0.logout(.init()) }
        #expect(await expectRPCError(.unauthenticated) { _ = try await auth(d, first.accessToken) { try await $0.whoAmI(.init()) } } != nil)
        _ = try await auth(d, second.accessToken) { try await $0.whoAmI(.init()) }

        // The session stays ended after a restart (users.db knows the family is revoked).
        let directory = d.directory
        try await d.stop(removing: false)
        let again = try await RunningDaemon.start { $0.dataDirectory = directory; $0.simulator = false }
        defer { Task { try? await again.stop() } }
        #expect(await expectRPCError(.unauthenticated) { _ = try await auth(again, a.accessToken) { try await $0.whoAmI(.init()) } } != nil)
    }
}
