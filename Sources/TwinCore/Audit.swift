/// One entry of the sealed audit log: who did what, from where. `users.db` keeps the entries
/// of identity changes, `health_data.db` those of plant changes (alerts), each written in the
/// transaction of its change.
public struct AuditEntry: Sendable, Codable, Equatable {
    /// What an audit entry records; the raw value is what users.db and ListAuditEvents carry.
    public enum Action: String, Sendable, CaseIterable {
        case alertAcked = "alert.acked"
        case alertResolved = "alert.resolved"
        case alertRulesChanged = "alert_rules.changed"
        case alertShelved = "alert.shelved"
        case alertUnshelved = "alert.unshelved"
        case apiKeyCreated = "apikey.created"
        case apiKeyRevoked = "apikey.revoked"
        case keysRotated = "keys.rotated"
        case loginFailed = "login.failed"
        case loginOK = "login.ok"
        case modelActivated = "model.activated"
        case modelRetrain = "model.retrain"
        case notificationTested = "notification.tested"
        case notifyConfigChanged = "notify_config.changed"
        case passwordChangeFailed = "password_change.failed"
        case tokenFamilyRevoked = "token.family_revoked"
        case userCreated = "user.created"
        case userDeleted = "user.deleted"
        case userPasswordChanged = "user.password_changed"
        case userUnlocked = "user.unlocked"
        case userUpdated = "user.updated"
    }

    public var id: Int64 = 0
    public var time: Nanos
    /// e.g. "login.ok", "login.failed", "keys.rotated".
    public var kind: String
    public var actor: String
    public var peer: String
    public var detail: String

    public init(time: Nanos, action: Action, actor: String, peer: String, detail: String) {
        self.init(time: time, kind: action.rawValue, actor: actor, peer: peer, detail: detail)
    }

    public init(time: Nanos, kind: String, actor: String, peer: String, detail: String) {
        self.time = time
        self.kind = kind
        self.actor = actor
        self.peer = peer
        self.detail = detail
    }
}

