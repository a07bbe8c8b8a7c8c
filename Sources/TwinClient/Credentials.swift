import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Proto
import SwiftProtobuf
import TwinCore

#if canImport(Glibc)
import Glibc
#endif

/// A logged-in session with one twind, as `twin login` saved it.
public struct SavedSession: Codable, Sendable, Equatable {
    public var username: String
    public var role: String
    public var accessToken: String
    public var accessExpiresAt: Double  // Unix seconds
    public var refreshToken: String
    public var refreshExpiresAt: Double

    public init(username: String, role: String, accessToken: String, accessExpiresAt: Double, refreshToken: String, refreshExpiresAt: Double) {
        self.username = username
        self.role = role
        self.accessToken = accessToken
        self.accessExpiresAt = accessExpiresAt
        self.refreshToken = refreshToken
        self.refreshExpiresAt = refreshExpiresAt
    }
}

/// The sessions file: `$XDG_CONFIG_HOME/twin/sessions.json` (else `~/.config/twin/`), one
/// session per server address, readable by the user only (0600 in a 0700 directory).
public enum SessionFile {
    public static func path(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let base = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (Paths.home(environment: environment) + "/.config")
        return base + "/twin/sessions.json"
    }

    public static func load(_ path: String = path()) -> [String: SavedSession] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        return (try? JSONDecoder().decode([String: SavedSession].self, from: data)) ?? [:]
    }

    /// Runs `body` holding an exclusive lock on `<path>.lock` (waiting up to 10 s for another
    /// twin process to let go), so two processes refreshing at once do not both spend the same
    /// refresh token (the second spend would revoke the session).
    public static func locked<R>(_ path: String, isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> R) async throws -> R {
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let fd = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TwinError(.unavailable, "cannot open \(path).lock (errno \(errno))") }
        defer { close(fd) }
        let deadline = ContinuousClock.now + .seconds(10)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard ContinuousClock.now < deadline else { throw TwinError(.unavailable, "another twin process holds \(path).lock for more than 10 s") }
            try await Task.sleep(for: .milliseconds(20))
        }
        defer { flock(fd, LOCK_UN) }
        return try await body()
    }

    /// Writes atomically with mode 0600.
    public static func save(_ sessions: [String: SavedSession], _ path: String = path()) throws {
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try PrivateFile.replace(path, with: Array(try JSONEncoder().encode(sessions)))
    }
}

/// The session `twin` uses for one server: hands out a valid access token, refreshing it
/// (and saving the rotated refresh token) shortly before it expires.
public actor Credentials {
    public let server: NetworkAddress
    let tls: ClientTLS?
    let path: String
    public private(set) var session: SavedSession?

    public init(server: NetworkAddress, tls: ClientTLS? = nil, path: String = SessionFile.path()) {
        self.server = server
        self.tls = tls
        self.path = path
        session = SessionFile.load(path)[server.description]
    }

    public func store(_ session: SavedSession?) throws {
        self.session = session
        var all = SessionFile.load(path)
        all[server.description] = session
        try SessionFile.save(all, path)
    }

    /// A token good for at least 30 more seconds, or nil when not logged in.
    public func accessToken() async throws -> String? {
        guard let current = session else { return nil }
        if current.accessExpiresAt - Date().timeIntervalSince1970 > 30 { return current.accessToken }
        return try await SessionFile.locked(path) { try await refreshLocked() }
    }

    /// Under the sessions lock: another process may have refreshed already (take its tokens),
    /// else refresh and save before letting go.
    func refreshLocked() async throws -> String? {
        session = SessionFile.load(path)[server.description]
        guard var current = session else { return nil }
        let now = Date().timeIntervalSince1970
        if current.accessExpiresAt - now > 30 { return current.accessToken }
        guard current.refreshExpiresAt > now else {
            throw TwinError(.unauthenticated, "your session with \(server) has expired; run twin login")
        }
        var request = Twin_V1_RefreshRequest()
        request.refreshToken = current.refreshToken
        let response: Twin_V1_RefreshResponse
        do {
            response = try await TwinConnection.with(server, tls: tls) { try await Twin_V1_AuthService.Client(wrapping: $0).refresh(request) }
        } catch let error as RPCError where error.code == .unauthenticated {
            try? store(nil)
            throw TwinError(.unauthenticated, "your session with \(server) ended (\(error.message)); run twin login")
        }
        current.accessToken = response.accessToken
        current.accessExpiresAt = Double(response.accessTokenExpiresAt.seconds)
        current.refreshToken = response.refreshToken
        current.refreshExpiresAt = Double(response.refreshTokenExpiresAt.seconds)
        try store(current)
        return current.accessToken
    }
}

/// Sends `authorization: Bearer <token>` on every call when logged in.
public struct BearerInterceptor: ClientInterceptor {
    let credentials: Credentials?
    let token: String?

    public init(credentials: Credentials) {
        self.credentials = credentials
        token = nil
    }

    /// A fixed token.
    public init(token: String) {
        credentials = nil
        self.token = token
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingClientRequest<Input>, context: ClientContext,
        next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
    ) async throws -> StreamingClientResponse<Output> {
        var request = request
        var token = self.token
        if token == nil, let credentials { token = try await credentials.accessToken() }
        if let token {
            request.metadata.replaceOrAddString("Bearer \(token)", forKey: "authorization")
        }
        return try await next(request, context)
    }
}
