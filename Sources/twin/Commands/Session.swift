import ArgumentParser
import Foundation
import GRPCCore
import Proto
import TwinClient
import TwinCore

#if canImport(Glibc)
import Glibc
#endif

/// `twin login`: asks for the password (without echo) and keeps the session for this server.
struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Log in to twind (Login) and keep the session for later commands.",
        discussion: """
            The session (a 15-minute access token, refreshed silently, and a refresh token) is kept \
            per server in ~/.config/twin/sessions.json (mode 0600). A fresh twind has one user, \
            admin, whose password is in <data-dir>/initial-admin-password.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "User name (default: $USER).") var user: String?
    @Flag(help: "Read the password from the first line of stdin (for scripts).") var passwordStdin = false

    func run() async throws {
        let username = user ?? ProcessInfo.processInfo.environment["USER"] ?? "admin"
        let password: String
        if passwordStdin {
            password = readLine(strippingNewline: true) ?? ""
        } else {
            guard let typed = Self.askPassword("Password for \(username): ") else {
                throw ValidationError("no terminal to ask the password on; use --password-stdin")
            }
            password = typed
        }
        if password.isEmpty { throw ValidationError("the password is empty") }
        let address = try global.address()
        var request = Twin_V1_LoginRequest()
        request.username = username
        request.password = password
        let response = try await global.run { client in try await Twin_V1_AuthService.Client(wrapping: client).login(request) }
        let credentials = Credentials(server: address, tls: try global.clientTLS())
        try await credentials.store(SavedSession(
            username: response.user.username, role: Format.role(response.user.role), accessToken: response.accessToken,
            accessExpiresAt: Double(response.accessTokenExpiresAt.seconds), refreshToken: response.refreshToken,
            refreshExpiresAt: Double(response.refreshTokenExpiresAt.seconds)))
        Terminal.err("logged in to \(address) as \(response.user.username) (\(Format.role(response.user.role))) until \(Format.time(response.refreshTokenExpiresAt)) unless you log out")
    }

    /// Reads a line from the terminal with echo off; nil without a terminal.
    static func askPassword(_ prompt: String) -> String? {
        let fd = open("/dev/tty", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var saved = termios()
        guard tcgetattr(fd, &saved) == 0 else { return nil }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        _ = prompt.withCString { write(fd, $0, strlen($0)) }
        tcsetattr(fd, TCSAFLUSH, &quiet)
        defer {
            tcsetattr(fd, TCSAFLUSH, &saved)
            _ = write(fd, "\n", 1)
        }
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while read(fd, &byte, 1) == 1 && byte != 10 && byte != 13 { bytes.append(byte) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// `twin logout`: revokes the session's refresh token and forgets it.
struct Logout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Log out: revoke this session (Logout) and forget its tokens.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let address = try global.address()
        let credentials = Credentials(server: address, tls: try global.clientTLS())
        guard let session = await credentials.session else {
            Terminal.err("not logged in to \(address)")
            return
        }
        var request = Twin_V1_LogoutRequest()
        request.refreshToken = session.refreshToken
        // Forgotten locally whatever the server says (it may be gone, or the token already revoked).
        _ = try? await global.connect(address, credentials: nil) { try await Twin_V1_AuthService.Client(wrapping: $0).logout(request) }
        try await credentials.store(nil)
        Terminal.err("logged out of \(address)")
    }
}

/// `twin whoami`: who the saved session is, as twind sees it.
struct WhoAmI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Show who you are logged in as (WhoAmI).")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let response = try await global.run { client in try await Twin_V1_AuthService.Client(wrapping: client).whoAmI(Twin_V1_WhoAmIRequest()) }
        if global.output == .json {
            Terminal.out(Format.protoJSON(response))
            return
        }
        Terminal.out("\(response.user.username) (\(Format.role(response.user.role))), token valid until \(Format.time(response.tokenExpiresAt))")
    }
}
