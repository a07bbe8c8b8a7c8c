import ArgumentParser
import Foundation
import GRPCCore
import Proto
import GRPCNIOTransportHTTP2Posix
import TwinCore

/// `twin users …`: user management for admins.
struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage users (admins): add, list, disable, enable, set-role, set-email, passwd, delete, unlock.",
        subcommands: [List.self, Add.self, Disable.self, Enable.self, SetRole.self, SetEmail.self, Passwd.self, Delete.self, Unlock.self],
        defaultSubcommand: List.self)

    static let roles: [String: Twin_V1_Role] = ["viewer": .viewer, "operator": .operator, "admin": .admin]

    static func role(_ text: String) throws -> Twin_V1_Role {
        guard let role = roles[text] else { throw ValidationError("role must be viewer, operator or admin") }
        return role
    }

    /// A new password: from stdin with --password-stdin, else asked twice without echo.
    static func newPassword(stdin: Bool, for user: String) throws -> String {
        if stdin { return readLine(strippingNewline: true) ?? "" }
        guard let first = Login.askPassword("New password for \(user): "), let second = Login.askPassword("Again: ") else {
            throw ValidationError("no terminal to ask the password on; use --password-stdin")
        }
        guard first == second else { throw ValidationError("the two passwords differ") }
        return first
    }

    static func call<R: Sendable>(_ global: GlobalOptions, _ body: @escaping @Sendable (Twin_V1_AuthService.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await global.run { client in try await body(Twin_V1_AuthService.Client(wrapping: client)) }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users.")
        @OptionGroup var global: GlobalOptions
        func run() async throws {
            let users = try await call(global) { try await $0.listUsers(Twin_V1_ListUsersRequest()).users }
            if global.output == .json {
                for u in users { Terminal.out(Format.protoJSON(u)) }
                return
            }
            Terminal.out(Format.table(["USER", "ROLE", "STATE", "LAST LOGIN", "E-MAIL"], users.map { u in
                [u.username, Format.role(u.role), u.disabled ? "disabled" : "enabled", u.hasLastLoginAt ? Format.time(u.lastLoginAt) : "never", u.email]
            }))
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user (the password is asked, or read with --password-stdin).")
        @OptionGroup var global: GlobalOptions
        @Argument var username: String
        @Option(help: "viewer, operator or admin.") var role = "viewer"
        @Option var email = ""
        @Flag var passwordStdin = false
        func run() async throws {
            var request = Twin_V1_CreateUserRequest()
            request.username = username
            request.role = try Users.role(role)
            request.email = email
            request.password = try Users.newPassword(stdin: passwordStdin, for: username)
            let message = request
            _ = try await call(global) { try await $0.createUser(message) }
            Terminal.err("added \(username) (\(role))")
        }
    }

    /// Sends one request and says `done` on stderr.
    static func send<Request: Sendable, Response: Sendable>(
        _ global: GlobalOptions, _ request: Request, done: String,
        _ rpc: @escaping @Sendable (Twin_V1_AuthService.Client<HTTP2ClientTransport.Posix>, Request) async throws -> Response
    ) async throws {
        _ = try await call(global) { try await rpc($0, request) }
        Terminal.err(done)
    }

    static func update(_ global: GlobalOptions, _ username: String, _ change: (inout Twin_V1_UpdateUserRequest) -> Void) async throws {
        var request = Twin_V1_UpdateUserRequest()
        request.username = username
        change(&request)
        let message = request
        let user = try await call(global) { try await $0.updateUser(message).user }
        Terminal.err("\(user.username): \(Format.role(user.role)), \(user.disabled ? "disabled" : "enabled")")
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a user (their sessions end at once).")
        @OptionGroup var global: GlobalOptions
        @Argument var username: String
        func run() async throws { try await update(global, username) { $0.disabled = true } }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled user.")
        @OptionGroup var global: GlobalOptions
        @Argument var username: String
        func run() async throws { try await update(global, username) { $0.disabled = false } }
    }

    struct SetRole: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-role", abstract: "Change a user's role (their sessions end).")
        @OptionGroup var global: GlobalOptions
        @Argument var username: String
        @Argument(help: "viewer, operator or admin.") var role: String
        func run() async throws {
            let role = try Users.role(role)
            try await update(global, username) { $0.role = role }
        }
    }

    struct SetEmail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-email", abstract: "Change a user's e-mail address (where e-mail channels naming the user or their role write; '' clears it).")
        @OptionGroup var global: GlobalOptions
        @Argument var username: String
        @Argument var email: String
        func run() async throws { try await update(global, username) { [email] in $0.email = email } }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change your password, or (admins) another user's.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Whose password (default: yours).") var username: String?
        @Flag(help: "Read the old password (for your own) and then the new one from stdin, a line each.") var passwordStdin = false
        func run() async throws {
            var request = Twin_V1_ChangePasswordRequest()
            request.username = username ?? ""
            if username == nil {
                request.oldPassword = passwordStdin ? (readLine(strippingNewline: true) ?? "") : (Login.askPassword("Current password: ") ?? "")
            }
            request.newPassword = try Users.newPassword(stdin: passwordStdin, for: username ?? "you")
            let message = request
            _ = try await call(global) { try await $0.changePassword(message) }
            Terminal.err("password changed; sessions of \(username ?? "yours") ended — log in again where needed")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a user.")
        @OptionGroup var global: GlobalOptions
        @Argument var username: String
        func run() async throws {
            var request = Twin_V1_DeleteUserRequest()
            request.username = username
            try await send(global, request, done: "deleted \(username)") { try await $0.deleteUser($1) }
        }
    }

    struct Unlock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clear a user's failed-login lockout.")
        @OptionGroup var global: GlobalOptions
        @Argument var username: String
        func run() async throws {
            var request = Twin_V1_UnlockUserRequest()
            request.username = username
            try await send(global, request, done: "unlocked \(username)") { try await $0.unlockUser($1) }
        }
    }
}
