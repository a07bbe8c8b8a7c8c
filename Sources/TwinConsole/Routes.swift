import GRPCCore
import Proto

// Every method of the twin.v1 contract the bridge serves (a test checks none is missing).
// Written from proto/twin/v1/*.proto; keep in step when the contract grows.
extension ConnectBridge {
    static func contractRoutes(_ client: GRPCClient<Transport>) -> [Route] {
        let r = RouteBuilder(client: client)
        return [
            r.unary(Twin_V1_AuthService.Method.Login.descriptor, Twin_V1_LoginRequest.self, Twin_V1_LoginResponse.self),
            r.unary(Twin_V1_AuthService.Method.Refresh.descriptor, Twin_V1_RefreshRequest.self, Twin_V1_RefreshResponse.self),
            r.unary(Twin_V1_AuthService.Method.Logout.descriptor, Twin_V1_LogoutRequest.self, Twin_V1_LogoutResponse.self),
            r.unary(Twin_V1_AuthService.Method.WhoAmI.descriptor, Twin_V1_WhoAmIRequest.self, Twin_V1_WhoAmIResponse.self),
            r.unary(Twin_V1_AuthService.Method.ChangePassword.descriptor, Twin_V1_ChangePasswordRequest.self, Twin_V1_ChangePasswordResponse.self),
            r.unary(Twin_V1_AuthService.Method.CreateUser.descriptor, Twin_V1_CreateUserRequest.self, Twin_V1_CreateUserResponse.self),
            r.unary(Twin_V1_AuthService.Method.ListUsers.descriptor, Twin_V1_ListUsersRequest.self, Twin_V1_ListUsersResponse.self),
            r.unary(Twin_V1_AuthService.Method.UpdateUser.descriptor, Twin_V1_UpdateUserRequest.self, Twin_V1_UpdateUserResponse.self),
            r.unary(Twin_V1_AuthService.Method.DeleteUser.descriptor, Twin_V1_DeleteUserRequest.self, Twin_V1_DeleteUserResponse.self),
            r.unary(Twin_V1_AuthService.Method.UnlockUser.descriptor, Twin_V1_UnlockUserRequest.self, Twin_V1_UnlockUserResponse.self),
            r.unary(Twin_V1_AuthService.Method.CreateApiKey.descriptor, Twin_V1_CreateApiKeyRequest.self, Twin_V1_CreateApiKeyResponse.self),
            r.unary(Twin_V1_AuthService.Method.ListApiKeys.descriptor, Twin_V1_ListApiKeysRequest.self, Twin_V1_ListApiKeysResponse.self),
            r.unary(Twin_V1_AuthService.Method.RevokeApiKey.descriptor, Twin_V1_RevokeApiKeyRequest.self, Twin_V1_RevokeApiKeyResponse.self),
            r.unary(Twin_V1_AuthService.Method.ListAuditEvents.descriptor, Twin_V1_ListAuditEventsRequest.self, Twin_V1_ListAuditEventsResponse.self),
            r.unary(Twin_V1_ModelService.Method.Retrain.descriptor, Twin_V1_RetrainRequest.self, Twin_V1_RetrainResponse.self),
            r.unary(Twin_V1_ModelService.Method.GetTrainingJob.descriptor, Twin_V1_GetTrainingJobRequest.self, Twin_V1_GetTrainingJobResponse.self),
            r.unary(Twin_V1_ModelService.Method.ListModels.descriptor, Twin_V1_ListModelsRequest.self, Twin_V1_ListModelsResponse.self),
            r.unary(Twin_V1_ModelService.Method.ActivateModel.descriptor, Twin_V1_ActivateModelRequest.self, Twin_V1_ActivateModelResponse.self),
            r.unary(Twin_V1_TwinService.Method.ListDevices.descriptor, Twin_V1_ListDevicesRequest.self, Twin_V1_ListDevicesResponse.self),
            r.unary(Twin_V1_TwinService.Method.GetDevice.descriptor, Twin_V1_GetDeviceRequest.self, Twin_V1_GetDeviceResponse.self),
            r.unary(Twin_V1_TwinService.Method.UpsertDevice.descriptor, Twin_V1_UpsertDeviceRequest.self, Twin_V1_UpsertDeviceResponse.self),
            r.serverStreaming(Twin_V1_TwinService.Method.StreamUpdates.descriptor, Twin_V1_StreamUpdatesRequest.self, Twin_V1_StreamUpdatesResponse.self),
            r.clientStreaming(Twin_V1_TwinService.Method.Ingest.descriptor, Twin_V1_IngestRequest.self, Twin_V1_IngestResponse.self),
            r.unary(Twin_V1_TwinService.Method.GetHistory.descriptor, Twin_V1_GetHistoryRequest.self, Twin_V1_GetHistoryResponse.self),
            r.unary(Twin_V1_TwinService.Method.GetHealth.descriptor, Twin_V1_GetHealthRequest.self, Twin_V1_GetHealthResponse.self),
            r.unary(Twin_V1_TwinService.Method.GetPatterns.descriptor, Twin_V1_GetPatternsRequest.self, Twin_V1_GetPatternsResponse.self),
            r.unary(Twin_V1_TwinService.Method.GetPrediction.descriptor, Twin_V1_GetPredictionRequest.self, Twin_V1_GetPredictionResponse.self),
            r.unary(Twin_V1_TwinService.Method.GetRecommendations.descriptor, Twin_V1_GetRecommendationsRequest.self, Twin_V1_GetRecommendationsResponse.self),
            r.unary(Twin_V1_TwinService.Method.ListAlerts.descriptor, Twin_V1_ListAlertsRequest.self, Twin_V1_ListAlertsResponse.self),
            r.unary(Twin_V1_TwinService.Method.AckAlert.descriptor, Twin_V1_AckAlertRequest.self, Twin_V1_AckAlertResponse.self),
            r.unary(Twin_V1_TwinService.Method.ResolveAlert.descriptor, Twin_V1_ResolveAlertRequest.self, Twin_V1_ResolveAlertResponse.self),
            r.unary(Twin_V1_TwinService.Method.ShelveAlert.descriptor, Twin_V1_ShelveAlertRequest.self, Twin_V1_ShelveAlertResponse.self),
            r.unary(Twin_V1_TwinService.Method.UnshelveAlert.descriptor, Twin_V1_UnshelveAlertRequest.self, Twin_V1_UnshelveAlertResponse.self),
            r.unary(Twin_V1_TwinService.Method.GetAlertReport.descriptor, Twin_V1_GetAlertReportRequest.self, Twin_V1_GetAlertReportResponse.self),
            r.unary(Twin_V1_TwinService.Method.GetAlertRules.descriptor, Twin_V1_GetAlertRulesRequest.self, Twin_V1_GetAlertRulesResponse.self),
            r.unary(Twin_V1_TwinService.Method.SetAlertRules.descriptor, Twin_V1_SetAlertRulesRequest.self, Twin_V1_SetAlertRulesResponse.self),
            r.unary(Twin_V1_TwinService.Method.GetNotifyConfig.descriptor, Twin_V1_GetNotifyConfigRequest.self, Twin_V1_GetNotifyConfigResponse.self),
            r.unary(Twin_V1_TwinService.Method.SetNotifyConfig.descriptor, Twin_V1_SetNotifyConfigRequest.self, Twin_V1_SetNotifyConfigResponse.self),
            r.unary(Twin_V1_TwinService.Method.RecordEvent.descriptor, Twin_V1_RecordEventRequest.self, Twin_V1_RecordEventResponse.self),
            r.unary(Twin_V1_TwinService.Method.ListEvents.descriptor, Twin_V1_ListEventsRequest.self, Twin_V1_ListEventsResponse.self),
            r.unary(Twin_V1_TwinService.Method.ListGateways.descriptor, Twin_V1_ListGatewaysRequest.self, Twin_V1_ListGatewaysResponse.self),
            r.unary(
                Twin_V1_TwinService.Method.GetNotificationStatus.descriptor, Twin_V1_GetNotificationStatusRequest.self,
                Twin_V1_GetNotificationStatusResponse.self),
            r.unary(Twin_V1_TwinService.Method.TestNotification.descriptor, Twin_V1_TestNotificationRequest.self, Twin_V1_TestNotificationResponse.self),
        ]
    }
}
