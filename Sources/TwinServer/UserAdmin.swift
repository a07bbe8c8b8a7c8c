import Proto
import TwinCore
import TwinStore

/// User management on top of `Identity`: what the admin RPCs do, with their checks and audit.
extension Identity {
    static let minimumPasswordLength = 12

    static func validateUsername(_ name: String) throws(TwinError) {
        guard (1...64).contains(name.count), name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || "._-".contains($0)) }) else {
            throw .invalidArgument("username '\(name.prefix(64))' must be 1–64 characters: lowercase letters, digits, '.', '_' or '-'")
        }
    }

    static func validatePassword(_ password: String) throws(TwinError) {
        guard password.count >= minimumPasswordLength else {
            throw .invalidArgument("the password must have at least \(minimumPasswordLength) characters")
        }
    }

    func existing(_ username: String) throws(TwinError) -> User {
        guard let user = try users.user(named: username) else { throw .notFound("user '\(username.prefix(64))' not found") }
        return user
    }

    /// Refuses a change that would leave no enabled admin.
    func keepAnAdmin(changing user: User, to role: User.Role?, disabled: Bool?, deleting: Bool = false) throws(TwinError) {
        guard user.role == .admin, !user.disabled else { return }
        let losesAdmin = deleting || (role.map { $0 != .admin } ?? false) || (disabled ?? false)
        guard losesAdmin else { return }
        let admins = try users.allUsers().filter { $0.role == .admin && !$0.disabled }
        if admins.count <= 1 {
            throw .failedPrecondition("\(user.username) is the last enabled admin; make another admin first")
        }
    }

    func createUser(username: String, password: String, role: User.Role, email: String, by actor: Principal?, peer: String) throws(TwinError) -> User {
        try Self.validateUsername(username)
        try Self.validatePassword(password)
        let user = try users.createUser(username: username, role: role, passwordHash: try hasher.hash(password), email: email)
        try? users.audit(.init(time: Time.now(), kind: "user.created", actor: actor?.username ?? "", peer: peer, detail: "\(username) as \(role.rawValue)"))
        return user
    }

    func updateUser(username: String, role: User.Role?, disabled: Bool?, email: String?, by actor: Principal?, peer: String) throws(TwinError) -> User {
        let user = try existing(username)
        try keepAnAdmin(changing: user, to: role, disabled: disabled)
        let updated = try users.updateUser(user, role: role, disabled: disabled, email: email)
        if updated.role != user.role || updated.disabled != user.disabled {
            // Tokens carry the role: sessions end and the user logs in again.
            invalidateTokens(of: user)
            try users.revokeRefreshTokens(userID: user.id)
        }
        var changes: [String] = []
        if updated.role != user.role { changes.append("role \(user.role.rawValue) → \(updated.role.rawValue)") }
        if updated.disabled != user.disabled { changes.append(updated.disabled ? "disabled" : "enabled") }
        if updated.email != user.email { changes.append("e-mail changed") }
        try? users.audit(.init(time: Time.now(), kind: "user.updated", actor: actor?.username ?? "", peer: peer, detail: "\(username): \(changes.joined(separator: ", "))"))
        return updated
    }

    func deleteUser(username: String, by actor: Principal?, peer: String) throws(TwinError) {
        let user = try existing(username)
        try keepAnAdmin(changing: user, to: nil, disabled: nil, deleting: true)
        try users.deleteUser(id: user.id)
        invalidateTokens(of: user)
        try? users.audit(.init(time: Time.now(), kind: "user.deleted", actor: actor?.username ?? "", peer: peer, detail: username))
    }

    /// A user changes their own password (old one required), or an admin sets anyone's.
    func changePassword(username: String, old: String, new: String, by actor: Principal, peer: String) throws(TwinError) {
        let target = username.isEmpty ? actor.username : username
        let user = try existing(target)
        if target == actor.username {
            guard PasswordHasher.verify(old, against: user.passwordHash) else {
                throw .invalidArgument("old_password does not match the current password")
            }
        } else if actor.role != .admin {
            throw .init(.permissionDenied, "only an admin may change another user's password")
        }
        try Self.validatePassword(new)
        try users.setPasswordHash(userID: user.id, try hasher.hash(new))
        // Other sessions end; the caller logs in again with the new password.
        invalidateTokens(of: user)
        try users.revokeRefreshTokens(userID: user.id)
        try? users.audit(.init(time: Time.now(), kind: "user.password_changed", actor: actor.username, peer: peer, detail: target))
    }

    func unlock(username: String, by actor: Principal?, peer: String) throws(TwinError) {
        _ = try existing(username)
        throttle.unlock(username: username)
        try? users.audit(.init(time: Time.now(), kind: "user.unlocked", actor: actor?.username ?? "", peer: peer, detail: username))
    }
}

extension LoginThrottle {
    /// Clears an account's failures (an admin's unlock).
    func unlock(username: String) {
        succeeded(username: username, address: "")
    }
}

extension User.Role {
    init?(proto: Twin_V1_Role) {
        switch proto {
        case .viewer: self = .viewer
        case .operator: self = .operator
        case .admin: self = .admin
        case .gateway: self = .gateway
        default: return nil
        }
    }

    var proto: Twin_V1_Role {
        switch self {
        case .viewer: .viewer
        case .operator: .operator
        case .admin: .admin
        case .gateway: .gateway
        }
    }
}
