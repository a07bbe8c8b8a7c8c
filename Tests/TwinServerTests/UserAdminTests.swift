import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Proto
import Testing
import TwinClient
import TwinCore
import TwinServer

/// Admins manage users; changes take effect on the next call.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct UserAdminTests {
    func login(_ d: RunningDaemon, _ user: String, _ password: String) async throws -> String {
        var request = Twin_V1_LoginRequest()
        request.username = user
        request.password = password
        return try await TwinConnection.with(d.address) { try await Twin_V1_AuthService.Client(wrapping: $0).login(request).accessToken }
    }

    func auth<R: Sendable>(_ d: RunningDaemon, _ token: String?, _ body: (Twin_V1_AuthService.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await TwinConnection.with(d.address, bearer: token) { try await body(Twin_V1_AuthService.Client(wrapping: $0)) }
    }

    @Test func createRoleChangeDisablePasswordAndTheLastAdmin() async throws {
        let d = try await RunningDaemon.start { $0.simulator = false }
        var create = Twin_V1_CreateUserRequest()
        create.username = "olga"
        create.password = "operator-password-1"
        create.role = .operator
        create.email = "olga@plant.example"
        try await auth(d, d.token) { admin in
            let made = try await admin.createUser(create)
            #expect(made.user.role == .operator && made.user.email == "olga@plant.example")
            #expect(await expectRPCError(.alreadyExists) { _ = try await admin.createUser(create) } != nil)
            var weak = create
            weak.username = "weak"
            weak.password = "short"
            #expect(await expectRPCError(.invalidArgument) { _ = try await admin.createUser(weak) }?.contains("12 characters") == true)
            let listed = try await admin.listUsers(Twin_V1_ListUsersRequest())
            #expect(listed.users.map(\.username) == ["admin", "olga"])
        }
        let olga = try await login(d, "olga", "operator-password-1")
        try await auth(d, olga) { client in
            // An operator cannot manage users.
            #expect(await expectRPCError(.permissionDenied) { _ = try await client.listUsers(Twin_V1_ListUsersRequest()) } != nil)
            // Changing one's own password needs the old one.
            var change = Twin_V1_ChangePasswordRequest()
            change.oldPassword = "wrong-old-password"
            change.newPassword = "operator-password-2"
            #expect(await expectRPCError(.invalidArgument) { _ = try await client.changePassword(change) } != nil)
            change.oldPassword = "operator-password-1"
            _ = try await client.changePassword(change)
            // Her sessions ended with the change, this token included.
            #expect(await expectRPCError(.unauthenticated) { _ = try await client.whoAmI(Twin_V1_WhoAmIRequest()) } != nil)
        }
        let again = try await login(d, "olga", "operator-password-2")
        try await auth(d, d.token) { admin in
            var update = Twin_V1_UpdateUserRequest()
            update.username = "olga"
            update.disabled = true
            let disabled = try await admin.updateUser(update)
            #expect(disabled.user.disabled)
            // The last admin can neither be disabled, demoted nor deleted.
            var demote = Twin_V1_UpdateUserRequest()
            demote.username = "admin"
            demote.role = .viewer
            #expect(await expectRPCError(.failedPrecondition) { _ = try await admin.updateUser(demote) }?.contains("last enabled admin") == true)
            var delete = Twin_V1_DeleteUserRequest()
            delete.username = "admin"
            #expect(await expectRPCError(.failedPrecondition) { _ = try await admin.deleteUser(delete) } != nil)
        }
        // Disabled: her token is refused at once, and she cannot log in.
        try await auth(d, again) { client in
            #expect(await expectRPCError(.unauthenticated) { _ = try await client.whoAmI(Twin_V1_WhoAmIRequest()) } != nil)
        }
        #expect(await expectRPCError(.unauthenticated) { _ = try await login(d, "olga", "operator-password-2") } != nil)
        try await auth(d, d.token) { admin in
            var delete = Twin_V1_DeleteUserRequest()
            delete.username = "olga"
            _ = try await admin.deleteUser(delete)
            let left = try await admin.listUsers(Twin_V1_ListUsersRequest())
            #expect(left.users.map(\.username) == ["admin"])
            let audit = try await admin.listAuditEvents(Twin_V1_ListAuditEventsRequest()).events.map(\.action)
            for action in ["user.created", "user.password_changed", "user.updated", "user.deleted"] { #expect(audit.contains(action)) }
        }
        try await d.stop()
    }
}
