import GRPCCore
import Proto
import SwiftProtobuf
import TwinApp
import TwinCore
import TwinStore

/// `twin.v1.AuthService`: sessions, users, API keys and the audit log.
struct AuthService: Twin_V1_AuthService.SimpleServiceProtocol {
    let identity: Identity
    /// The plant's audit entries (alerts acknowledged and resolved), kept in health_data.db
    /// beside the changes they record.
    let plant: HealthDatabase

    func login(request: Twin_V1_LoginRequest, context: ServerContext) async throws -> Twin_V1_LoginResponse {
        if request.username.isEmpty || request.password.isEmpty { throw TwinError.invalidArgument("username and password are required") }
        let session = try await identity.login(username: request.username, password: request.password, peer: context.clientPeer)
        var response = Twin_V1_LoginResponse()
        response.accessToken = session.accessToken
        response.refreshToken = session.refreshToken
        response.accessTokenExpiresAt = .init(nanos: session.accessExpiresAt)
        response.refreshTokenExpiresAt = .init(nanos: session.refreshExpiresAt)
        response.user = session.user.proto
        return response
    }

    func refresh(request: Twin_V1_RefreshRequest, context: ServerContext) async throws -> Twin_V1_RefreshResponse {
        if request.refreshToken.isEmpty { throw TwinError.invalidArgument("refresh_token is required").field("refresh_token") }
        let session = try await identity.refresh(token: request.refreshToken, peer: context.clientPeer)
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
            throw TwinError.unauthenticated(.tokenMissing, "no access token: log in (twin login) and send it as 'authorization: Bearer <token>'")
        }
        guard let user = try identity.users.user(named: principal.username) else {
            throw TwinError.unauthenticated(.sessionEnded, "user '\(principal.username)' no longer exists")
        }
        var response = Twin_V1_WhoAmIResponse()
        response.user = user.proto
        response.tokenExpiresAt = .init(nanos: principal.expiresAt)
        return response
    }

    func changePassword(request: Twin_V1_ChangePasswordRequest, context: ServerContext) async throws -> Twin_V1_ChangePasswordResponse {
        guard let caller = Principal.current else { throw TwinError.unauthenticated(.tokenMissing, "log in first (twin login)") }
        try await identity.changePassword(username: request.username, old: request.oldPassword, new: request.newPassword, by: caller, peer: context.clientPeer)
        return Twin_V1_ChangePasswordResponse()
    }

    static func role(_ proto: Twin_V1_Role, field: String) throws(TwinError) -> User.Role {
        guard let role = User.Role(proto: proto), role != .gateway else {
            throw .invalidArgument("\(field) must be ROLE_VIEWER, ROLE_OPERATOR or ROLE_ADMIN (gateways get API keys)")
        }
        return role
    }

    func createUser(request: Twin_V1_CreateUserRequest, context: ServerContext) async throws -> Twin_V1_CreateUserResponse {
        let user = try await identity.createUser(
            username: request.username, password: request.password, role: try Self.role(request.role, field: "role"), email: request.email,
            by: Principal.current, peer: context.clientPeer)
        var response = Twin_V1_CreateUserResponse()
        response.user = user.proto
        return response
    }

    func listUsers(request: Twin_V1_ListUsersRequest, context: ServerContext) async throws -> Twin_V1_ListUsersResponse {
        var response = Twin_V1_ListUsersResponse()
        response.users = try identity.users.allUsers().map(\.proto)
        return response
    }

    func updateUser(request: Twin_V1_UpdateUserRequest, context: ServerContext) async throws -> Twin_V1_UpdateUserResponse {
        let role = request.role == .unspecified ? nil : try Self.role(request.role, field: "role")
        let user = try identity.updateUser(
            username: request.username, role: role, disabled: request.hasDisabled ? request.disabled : nil,
            email: request.hasEmail ? request.email : nil, by: Principal.current, peer: context.clientPeer)
        var response = Twin_V1_UpdateUserResponse()
        response.user = user.proto
        return response
    }

    func deleteUser(request: Twin_V1_DeleteUserRequest, context: ServerContext) async throws -> Twin_V1_DeleteUserResponse {
        try identity.deleteUser(username: request.username, by: Principal.current, peer: context.clientPeer)
        return Twin_V1_DeleteUserResponse()
    }

    func unlockUser(request: Twin_V1_UnlockUserRequest, context: ServerContext) async throws -> Twin_V1_UnlockUserResponse {
        try identity.unlock(username: request.username, by: Principal.current, peer: context.clientPeer)
        return Twin_V1_UnlockUserResponse()
    }

    func createApiKey(request: Twin_V1_CreateApiKeyRequest, context: ServerContext) async throws -> Twin_V1_CreateApiKeyResponse {
        let role = request.role == .unspecified ? .gateway : User.Role(proto: request.role)
        guard let role else { throw TwinError.invalidArgument("role must be ROLE_GATEWAY (or unspecified)") }
        let scope = ApiKeyScope(sites: request.scope.sites, lines: request.scope.lines, devices: request.scope.devices)
        let (key, secret) = try identity.createApiKey(name: request.name, role: role, scope: scope, by: Principal.current, peer: context.clientPeer)
        var response = Twin_V1_CreateApiKeyResponse()
        response.key = key.proto
        response.secret = secret
        return response
    }

    func listApiKeys(request: Twin_V1_ListApiKeysRequest, context: ServerContext) async throws -> Twin_V1_ListApiKeysResponse {
        var response = Twin_V1_ListApiKeysResponse()
        response.keys = try identity.users.apiKeys().map(\.key.proto)
        return response
    }

    func revokeApiKey(request: Twin_V1_RevokeApiKeyRequest, context: ServerContext) async throws -> Twin_V1_RevokeApiKeyResponse {
        try identity.revokeApiKey(id: request.id, by: Principal.current, peer: context.clientPeer)
        return Twin_V1_RevokeApiKeyResponse()
    }


    func listAuditEvents(request: Twin_V1_ListAuditEventsRequest, context: ServerContext) async throws -> Twin_V1_ListAuditEventsResponse {
        if request.limit < 0 || request.limit > 10_000 { throw TwinError.invalidArgument("limit must be from 0 to 10000, got \(request.limit)") }
        let limit = request.limit == 0 ? 200 : Int(request.limit)
        let since = request.hasSince ? try request.since.checked("since") : .min
        // Both logs, newest first: each is sorted, so the newest `limit` of the two are among
        // the newest `limit` of each.
        let entries = (try identity.users.auditEntries(limit: limit, since: since) + plant.auditEntries(limit: limit, since: since))
            .sorted { $0.time > $1.time }.prefix(limit)
        var response = Twin_V1_ListAuditEventsResponse()
        response.events = entries.map(\.proto)
        return response
    }
}


