import GRPCCore
import Proto
import TwinApp
import TwinCore
import TwinStore

/// Who may call what: the least role for each RPC. Anything not listed is refused (fail closed);
/// a test checks that every method of every service is listed.
enum AccessTable {
    enum Rule: Equatable {
        /// No token needed (health checks, logging in).
        case open
        case role(User.Role)
    }

    static let rules: [String: Rule] = {
        var r: [String: Rule] = [:]
        func set(_ service: String, _ rule: Rule, _ methods: String...) {
            for m in methods { r["\(service)/\(m)"] = rule }
        }
        set("grpc.health.v1.Health", .open, "Check", "Watch", "List")
        set("twin.v1.AuthService", .open, "Login", "Refresh", "Logout")
        set("twin.v1.AuthService", .role(.viewer), "WhoAmI", "ChangePassword")
        set("twin.v1.AuthService", .role(.admin),
            "CreateUser", "ListUsers", "UpdateUser", "DeleteUser", "UnlockUser", "CreateApiKey", "ListApiKeys", "RevokeApiKey",
            "ListAuditEvents")
        set("twin.v1.TwinService", .role(.viewer),
            "ListDevices", "GetDevice", "StreamUpdates", "GetHistory", "GetHealth", "GetPatterns", "GetPrediction",
            "GetRecommendations", "ListAlerts", "ListEvents", "ListGateways", "GetAlertRules", "GetAlertReport")
        set("twin.v1.TwinService", .role(.operator), "Ingest", "AckAlert", "ResolveAlert", "ShelveAlert", "UnshelveAlert", "RecordEvent",
            "GetNotificationStatus")
        set("twin.v1.TwinService", .role(.admin), "UpsertDevice", "SetAlertRules", "TestNotification", "GetNotifyConfig", "SetNotifyConfig")
        set("twin.v1.ModelService", .role(.viewer), "GetTrainingJob", "ListModels")
        set("twin.v1.ModelService", .role(.admin), "Retrain", "ActivateModel")
        return r
    }()

    /// What an API key (role gateway) may call besides the open calls: pushing data, nothing else.
    static let gatewayMethods: Set<String> = ["twin.v1.TwinService/Ingest"]

    /// Streams that may outlive a token: they are ended when it expires.
    static let longLived: Set<String> = ["twin.v1.TwinService/StreamUpdates", "twin.v1.TwinService/Ingest"]

    /// Refuses a call its caller may not make: UNAUTHENTICATED without a (valid) token,
    /// PERMISSION_DENIED with too little role. Its errors carry metadata `method` (the full name).
    static func check(_ method: MethodDescriptor, principal: Principal?) throws(TwinError) {
        let name = method.fullyQualifiedMethod
        guard let rule = rules[name] else {
            throw TwinError.permissionDenied(.roleInsufficient, "\(name) is not in twind's access table").adding(["method": name])
        }
        guard case .role(let least) = rule else { return }
        guard let principal else {
            throw TwinError.unauthenticated(.tokenMissing, "\(method.method) needs you to log in: send 'authorization: Bearer <access token>' (twin login)")
                .adding(["method": name])
        }
        if principal.role == .gateway {
            guard gatewayMethods.contains(name) else {
                throw TwinError.permissionDenied(.gatewayKeyLimited, "\(method.method) needs a person's login: a gateway API key may only call Ingest")
                    .adding(["method": name])
            }
            return
        }
        guard principal.role >= least else {
            throw TwinError.permissionDenied(.roleInsufficient, "\(method.method) needs the \(least.rawValue) role; \(principal.username) is \(principal.role.rawValue)")
                .adding(["required_role": least.rawValue, "role": principal.role.rawValue, "method": name])
        }
    }
}
