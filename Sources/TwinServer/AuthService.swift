import GRPCCore
import Proto
import SwiftProtobuf
import TwinCore
import TwinStore

/// `twin.v1.AuthService`: Login, Refresh, Logout and WhoAmI work; user and API-key management
/// and the audit listing answer UNIMPLEMENTED until they are built.
struct AuthService: Twin_V1_AuthService.SimpleServiceProtocol {
    let identity: Identity

    func login(request: Twin_V1_LoginRequest, context: ServerContext) async throws -> Twin_V1_LoginResponse {
        if request.username.isEmpty || request.password.isEmpty { throw TwinError.invalidArgument("username and password are required") }
        let session = try await identity.login(username: request.username, password: request.password, peer: context.remotePeer)
        var response = Twin_V1_LoginResponse()
        response.accessToken = session.accessToken
        response.refreshToken = session.refreshToken
        response.accessTokenExpiresAt = .init(nanos: session.accessExpiresAt)
        response.refreshTokenExpiresAt = .init(nanos: session.refreshExpiresAt)
        response.user = session.user.proto
        return response
    }

    func refresh(request: Twin_V1_RefreshRequest, context: ServerContext) async throws -> Twin_V1_RefreshResponse {
        if request.refreshToken.isEmpty { throw TwinError.invalidArgument("refresh_token is required") }
        let session = try await identity.refresh(token: request.refreshToken, peer: context.remotePeer)
        var response = Twin_V1_RefreshResponse()
        response.accessToken = session.accessToken
        response.refreshToken = session.refreshToken
        response.accessTokenExpiresAt = .init(nanos: session.accessExpiresAt)
        response.refreshTokenExpiresAt = .init(nanos: session.refreshExpiresAt)
        return response
    }

    func logout(request: Twin_V1_LogoutRequest, context: ServerContext) async throws -> Twin_V1_LogoutResponse {
        try identity.logout(token: request.refreshToken, principal: Principal.current)
        return Twin_V1_LogoutResponse()
    }

    func whoAmI(request: Twin_V1_WhoAmIRequest, context: ServerContext) async throws -> Twin_V1_WhoAmIResponse {
        guard let principal = Principal.current else {
            throw TwinError(.unauthenticated, "no access token: log in (twin login) and send it as 'authorization: Bearer <token>'")
        }
        guard let user = try identity.users.user(named: principal.username) else {
            throw TwinError(.unauthenticated, "user '\(principal.username)' no longer exists")
        }
        var response = Twin_V1_WhoAmIResponse()
        response.user = user.proto
        response.tokenExpiresAt = .init(nanos: principal.expiresAt)
        return response
    }

    func changePassword(request: Twin_V1_ChangePasswordRequest, context: ServerContext) async throws -> Twin_V1_ChangePasswordResponse { throw notYetBuilt("ChangePassword", "user management") }
    func createUser(request: Twin_V1_CreateUserRequest, context: ServerContext) async throws -> Twin_V1_CreateUserResponse { throw notYetBuilt("CreateUser", "user management") }
    func listUsers(request: Twin_V1_ListUsersRequest, context: ServerContext) async throws -> Twin_V1_ListUsersResponse { throw notYetBuilt("ListUsers", "user management") }
    func updateUser(request: Twin_V1_UpdateUserRequest, context: ServerContext) async throws -> Twin_V1_UpdateUserResponse { throw notYetBuilt("UpdateUser", "user management") }
    func deleteUser(request: Twin_V1_DeleteUserRequest, context: ServerContext) async throws -> Twin_V1_DeleteUserResponse { throw notYetBuilt("DeleteUser", "user management") }
    func unlockUser(request: Twin_V1_UnlockUserRequest, context: ServerContext) async throws -> Twin_V1_UnlockUserResponse { throw notYetBuilt("UnlockUser", "user management") }
    func createApiKey(request: Twin_V1_CreateApiKeyRequest, context: ServerContext) async throws -> Twin_V1_CreateApiKeyResponse { throw notYetBuilt("CreateApiKey", "API keys") }
    func listApiKeys(request: Twin_V1_ListApiKeysRequest, context: ServerContext) async throws -> Twin_V1_ListApiKeysResponse { throw notYetBuilt("ListApiKeys", "API keys") }
    func revokeApiKey(request: Twin_V1_RevokeApiKeyRequest, context: ServerContext) async throws -> Twin_V1_RevokeApiKeyResponse { throw notYetBuilt("RevokeApiKey", "API keys") }
    func listAuditEvents(request: Twin_V1_ListAuditEventsRequest, context: ServerContext) async throws -> Twin_V1_ListAuditEventsResponse {
        if request.limit < 0 || request.limit > 10_000 { throw TwinError.invalidArgument("limit must be from 0 to 10000, got \(request.limit)") }
        let entries = try identity.users.auditEntries(
            limit: request.limit == 0 ? 200 : Int(request.limit), since: request.hasSince ? request.since.nanosSinceEpoch : .min)
        var response = Twin_V1_ListAuditEventsResponse()
        response.events = entries.map { e in
            var event = Twin_V1_AuditEvent()
            event.time = .init(nanos: e.time)
            event.action = e.kind
            event.actor = e.actor
            event.peer = e.peer
            event.detail = e.detail
            return event
        }
        return response
    }
}

extension User {
    var proto: Twin_V1_User {
        var u = Twin_V1_User()
        u.username = username
        u.role = switch role {
        case .viewer: .viewer
        case .operator: .operator
        case .admin: .admin
        }
        u.disabled = disabled
        u.createdAt = .init(nanos: createdAt)
        if let lastLoginAt { u.lastLoginAt = .init(nanos: lastLoginAt) }
        u.email = email
        return u
    }
}
