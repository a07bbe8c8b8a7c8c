import Foundation
import TwinCore

/// User management on top of `Identity`: what the admin RPCs do, with their checks and audit.
extension Identity {
    public static let minimumPasswordLength = 12
    /// Longer passwords are refused before any hashing (Argon2 takes any length; the wire does not need to).
    public static let maximumPasswordBytes = 1024

    public static func validateUsername(_ name: String) throws(TwinError) {
        guard (1...64).contains(name.count), name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || "._-".contains($0)) }) else {
            throw TwinError.invalidArgument("username '\(name.prefix(64))' must be 1–64 characters: lowercase letters, digits, '.', '_' or '-'").field("username")
        }
    }

    public static func validatePassword(_ password: String) throws(TwinError) {
        guard password.count >= minimumPasswordLength else {
            throw TwinError.invalidArgument("the password must have at least \(minimumPasswordLength) characters", reason: .passwordRejected)
        }
        guard password.utf8.count <= maximumPasswordBytes else {
            throw TwinError.invalidArgument("the password must have at most \(maximumPasswordBytes) bytes", reason: .passwordRejected)
        }
    }

    public func existing(_ username: String) throws(TwinError) -> User {
        guard let user = try users.user(named: username) else { throw .missing(.userNotFound, type: "twin.v1.User", name: username, "user '\(username.prefix(64))' not found") }
        return user
    }

    /// Refuses a change that would leave no enabled admin.
    func keepAnAdmin(changing user: User, to role: User.Role?, disabled: Bool?, deleting: Bool = false) throws(TwinError) {
        guard user.role == .admin, !user.disabled else { return }
        let losesAdmin = deleting || (role.map { $0 != .admin } ?? false) || (disabled ?? false)
        guard losesAdmin else { return }
        let admins = try users.allUsers().filter { $0.role == .admin && !$0.disabled }
        if admins.count <= 1 {
            throw .failedPrecondition("\(user.username) is the last enabled admin; make another admin first", reason: .lastAdmin)
        }
    }

    /// `hasher.hash` in the bounded hashing pool.
    func hash(_ password: String) async throws(TwinError) -> String {
        let hasher = self.hasher
        return try await hashing.run { () throws(TwinError) -> String in try hasher.hash(password) }
    }

    public func createUser(username: String, password: String, role: User.Role, email: String, by actor: Principal?, peer: String) async throws(TwinError) -> User {
        try Self.validateUsername(username)
        try Self.validatePassword(password)
        guard email.utf8.count <= 254, !email.contains(where: \.isNewline) else { throw .invalidArgument("email must be at most 254 bytes on one line") }
        let user = try users.createUser(
            username: username, role: role, passwordHash: try await hash(password), email: email, now: clock.now(),
            audit: .init(time: clock.now(), action: .userCreated, actor: actor?.username ?? "", peer: peer, detail: "\(username) as \(role.rawValue)"))
        return user
    }

    public func updateUser(username: String, role: User.Role?, disabled: Bool?, email: String?, by actor: Principal?, peer: String) throws(TwinError) -> User {
        if let email, email.utf8.count > 254 || email.contains(where: \.isNewline) { throw .invalidArgument("email must be at most 254 bytes on one line") }
        let user = try existing(username)
        try keepAnAdmin(changing: user, to: role, disabled: disabled)
        var changes: [String] = []
        if let role, role != user.role { changes.append("role \(user.role.rawValue) → \(role.rawValue)") }
        if let disabled, disabled != user.disabled { changes.append(disabled ? "disabled" : "enabled") }
        if let email, email != user.email { changes.append("e-mail changed") }
        let updated = try users.updateUser(
            user, role: role, disabled: disabled, email: email,
            audit: .init(time: clock.now(), action: .userUpdated, actor: actor?.username ?? "", peer: peer, detail: "\(username): \(changes.joined(separator: ", "))"))
        if updated.role != user.role || updated.disabled != user.disabled {
            // Tokens carry the role: sessions end and the user logs in again.
            invalidateTokens(of: user)
            try users.revokeRefreshTokens(userID: user.id)
        }
        return updated
    }

    public func deleteUser(username: String, by actor: Principal?, peer: String) throws(TwinError) {
        let user = try existing(username)
        try keepAnAdmin(changing: user, to: nil, disabled: nil, deleting: true)
        try users.deleteUser(id: user.id, audit: .init(time: clock.now(), action: .userDeleted, actor: actor?.username ?? "", peer: peer, detail: username))
        invalidateTokens(of: user)
    }

    /// A user changes their own password (old one required, throttled as Login is), or an admin
    /// sets anyone's.
    public func changePassword(username: String, old: String, new: String, by actor: Principal, peer: String) async throws(TwinError) {
        let target = username.isEmpty ? actor.username : username
        try Self.validateUsername(target)
        let user = try existing(target)
        try Self.validatePassword(new)
        if target == actor.username {
            guard old.utf8.count <= Self.maximumPasswordBytes else { throw TwinError.invalidArgument("old_password does not match the current password", reason: .credentialsInvalid).field("old_password") }
            let address = Self.address(of: peer)
            try throttle.begin(username: target, address: address, now: clock.now())
            let encoded = user.passwordHash
            let hasher = self.hasher
            guard try await hashing.run({ hasher.verify(old, against: encoded) }) else {
                recordAudit(.init(time: clock.now(), action: .passwordChangeFailed, actor: actor.username, peer: peer, detail: "wrong old password"))
                throw TwinError.invalidArgument("old_password does not match the current password", reason: .credentialsInvalid).field("old_password")
            }
            throttle.succeeded(username: target, address: address)
        } else if actor.role != .admin {
            throw .permissionDenied(.roleInsufficient, "only an admin may change another user's password")
        }
        try users.setPasswordHash(
            userID: user.id, try await hash(new),
            audit: .init(time: clock.now(), action: .userPasswordChanged, actor: actor.username, peer: peer, detail: target))
        // Other sessions end; the caller logs in again with the new password.
        invalidateTokens(of: user)
        try users.revokeRefreshTokens(userID: user.id)
    }

    public func unlock(username: String, by actor: Principal?, peer: String) throws(TwinError) {
        _ = try existing(username)
        throttle.unlock(username: username)
        recordAudit(.init(time: clock.now(), action: .userUnlocked, actor: actor?.username ?? "", peer: peer, detail: username))
    }
}

