import GRPCCore
import Proto

// Services whose capabilities arrive with later work. Every method answers UNIMPLEMENTED with a
// message naming what is missing, never fake data.

/// `twin.v1.AuthService`: not built yet (identity and access).
struct AuthService: Twin_V1_AuthService.SimpleServiceProtocol {
    func login(request: Twin_V1_LoginRequest, context: ServerContext) async throws -> Twin_V1_LoginResponse { throw notYetBuilt("Login", "identity and access") }
    func refresh(request: Twin_V1_RefreshRequest, context: ServerContext) async throws -> Twin_V1_RefreshResponse { throw notYetBuilt("Refresh", "identity and access") }
    func logout(request: Twin_V1_LogoutRequest, context: ServerContext) async throws -> Twin_V1_LogoutResponse { throw notYetBuilt("Logout", "identity and access") }
    func whoAmI(request: Twin_V1_WhoAmIRequest, context: ServerContext) async throws -> Twin_V1_WhoAmIResponse { throw notYetBuilt("WhoAmI", "identity and access") }
    func changePassword(request: Twin_V1_ChangePasswordRequest, context: ServerContext) async throws -> Twin_V1_ChangePasswordResponse { throw notYetBuilt("ChangePassword", "identity and access") }
    func createUser(request: Twin_V1_CreateUserRequest, context: ServerContext) async throws -> Twin_V1_CreateUserResponse { throw notYetBuilt("CreateUser", "identity and access") }
    func listUsers(request: Twin_V1_ListUsersRequest, context: ServerContext) async throws -> Twin_V1_ListUsersResponse { throw notYetBuilt("ListUsers", "identity and access") }
    func updateUser(request: Twin_V1_UpdateUserRequest, context: ServerContext) async throws -> Twin_V1_UpdateUserResponse { throw notYetBuilt("UpdateUser", "identity and access") }
    func deleteUser(request: Twin_V1_DeleteUserRequest, context: ServerContext) async throws -> Twin_V1_DeleteUserResponse { throw notYetBuilt("DeleteUser", "identity and access") }
    func unlockUser(request: Twin_V1_UnlockUserRequest, context: ServerContext) async throws -> Twin_V1_UnlockUserResponse { throw notYetBuilt("UnlockUser", "identity and access") }
    func createApiKey(request: Twin_V1_CreateApiKeyRequest, context: ServerContext) async throws -> Twin_V1_CreateApiKeyResponse { throw notYetBuilt("CreateApiKey", "identity and access") }
    func listApiKeys(request: Twin_V1_ListApiKeysRequest, context: ServerContext) async throws -> Twin_V1_ListApiKeysResponse { throw notYetBuilt("ListApiKeys", "identity and access") }
    func revokeApiKey(request: Twin_V1_RevokeApiKeyRequest, context: ServerContext) async throws -> Twin_V1_RevokeApiKeyResponse { throw notYetBuilt("RevokeApiKey", "identity and access") }
    func listAuditEvents(request: Twin_V1_ListAuditEventsRequest, context: ServerContext) async throws -> Twin_V1_ListAuditEventsResponse { throw notYetBuilt("ListAuditEvents", "identity and access") }
}

/// `twin.v1.ModelService`: not built yet (model training).
struct ModelService: Twin_V1_ModelService.SimpleServiceProtocol {
    func retrain(request: Twin_V1_RetrainRequest, context: ServerContext) async throws -> Twin_V1_RetrainResponse { throw notYetBuilt("Retrain", "model training") }
    func getTrainingJob(request: Twin_V1_GetTrainingJobRequest, context: ServerContext) async throws -> Twin_V1_GetTrainingJobResponse { throw notYetBuilt("GetTrainingJob", "model training") }
    func listModels(request: Twin_V1_ListModelsRequest, context: ServerContext) async throws -> Twin_V1_ListModelsResponse { throw notYetBuilt("ListModels", "model training") }
    func activateModel(request: Twin_V1_ActivateModelRequest, context: ServerContext) async throws -> Twin_V1_ActivateModelResponse { throw notYetBuilt("ActivateModel", "model training") }
}
