import Foundation
import GRPCCore
import Logging
import Proto
import TwinCore
import TwinApp
import TwinStore

/// Every call: reads `authorization: Bearer <token>`, verifies it, applies the access table,
/// and makes the caller known to the handler (`Principal.current`). A stream ends with
/// UNAUTHENTICATED when its token expires.
struct AuthInterceptor: ServerInterceptor {
    let identity: Identity

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        var principal: Principal?
        if let value = request.metadata[stringValues: "authorization"].first(where: { _ in true }) {
            guard value.lowercased().hasPrefix("bearer ") else {
                throw TwinError.unauthenticated(.tokenInvalid, "the authorization header must be 'Bearer <token>'")
            }
            principal = try await identity.authenticate(bearer: String(value.dropFirst(7)).trimmingCharacters(in: .whitespaces))
        }
        if let principal { CallerSlot.current?.set(principal.username) }
        try AccessTable.check(context.descriptor, principal: principal)
        guard let principal else { return try await next(request, context) }
        var response = try await Principal.$current.withValue(principal) { try await next(request, context) }
        guard case .success(var contents) = response.accepted else { return response }
        // The handler's body runs after this returns: it sees the caller too, and a stream is
        // cut off when the token expires.
        let producer = contents.producer
        if !AccessTable.longLived.contains(context.descriptor.fullyQualifiedMethod) {
            contents.producer = { writer in try await Principal.$current.withValue(principal) { try await producer(writer) } }
        } else {
            contents.producer = { writer in
                try await Principal.$current.withValue(principal) {
                    try await withThrowingTaskGroup(of: Metadata.self) { group in
                        group.addTask { try await producer(writer) }
                        // API keys do not expire: their streams run until revoked or ended.
                        if principal.apiKeyID == nil {
                            group.addTask {
                                let remaining = principal.expiresAt - identity.clock.now()
                                if remaining > 0 { try await Task.sleep(for: .nanoseconds(remaining)) }
                                throw TwinError.unauthenticated(.tokenExpired, "the access token expired; refresh it (twin does so by itself) and call again")
                            }
                        }
                        // Access taken away (logout, account change, key revoked) ends the stream at once.
                        let changes = identity.accessChanged.subscribe()
                        group.addTask {
                            for await _ in changes { try identity.recheck(principal) }
                            try await Task.sleep(for: .seconds(365 * 86_400 * 100))
                            return [:]
                        }
                        defer { group.cancelAll() }
                        return try await group.next()!
                    }
                }
            }
        }
        response.accepted = .success(contents)
        return response
    }
}

/// For `twin-bench auth`: the in-process cost of checking a token on a call, first time and cached.
@_spi(Benchmarks)
public enum TokenVerificationBenchmark {
    public static func run(directory: String, iterations: Int) async throws -> (login: Duration, firstCheck: Duration, cachedCheck: Duration) {
        let ring = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: directory)
        let users = try UsersDatabase(path: directory + "/users.db", keys: ring, durability: .normal)
        defer { users.close() }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let identity = try await Identity(users: users, hasher: PasswordHasher.standard, accessTTL: 15 * Time.minute, refreshTTL: Time.day, logger: logger)
        try users.createUser(username: "bench", role: .viewer, passwordHash: try PasswordHasher.standard.hash("bench-password-1"))
        var began = ContinuousClock.now
        let session = try await identity.login(username: "bench", password: "bench-password-1", peer: "ipv4:127.0.0.1:1")
        let login = ContinuousClock.now - began
        // Each first check: a token the cache has not seen.
        var tokens: [String] = []
        for _ in 0..<iterations { tokens.append(try await identity.issue(for: session.user, family: "bench", now: Time.now()).accessToken) }
        began = ContinuousClock.now
        for t in tokens { _ = try await identity.authenticate(bearer: t) }
        let first = (ContinuousClock.now - began) / iterations
        let method = Twin_V1_TwinService.Method.ListDevices.descriptor
        began = ContinuousClock.now
        for _ in 0..<iterations {
            let principal = try await identity.authenticate(bearer: session.accessToken)
            try AccessTable.check(method, principal: principal)
        }
        let cached = (ContinuousClock.now - began) / iterations
        return (login, first, cached)
    }
}
