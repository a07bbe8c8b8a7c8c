import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Proto
import SwiftProtobuf
import Testing
import TwinClient
import TwinCore
import TwinServer
import TwinStore

/// Login, tokens and their checks, through gRPC against a real daemon.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct AuthTests {
    func withAuth<R: Sendable>(_ d: RunningDaemon, _ body: (Twin_V1_AuthService.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await TwinConnection.with(d.address) { try await body(Twin_V1_AuthService.Client(wrapping: $0)) }
    }

    func login(_ auth: Twin_V1_AuthService.Client<HTTP2ClientTransport.Posix>, _ user: String, _ password: String) async throws -> Twin_V1_LoginResponse {
        var request = Twin_V1_LoginRequest()
        request.username = user
        request.password = password
        return try await auth.login(request)
    }

    func bearer(_ token: String) -> Metadata { ["authorization": "Bearer \(token)"] }

    @Test func firstStartCreatesAnAdminWhosePasswordIsInAPrivateFile() async throws {
        let d = try await RunningDaemon.start { $0.environment["TWIND_ADMIN_PASSWORD"] = nil }
        let file = d.directory + "/initial-admin-password"
        let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let password = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(password.count >= 16)
        try await withAuth(d) { auth in
            let session = try await login(auth, "admin", password)
            #expect(session.user.role == .admin)
            #expect(session.accessToken.split(separator: ".").count == 3)
            let expires = session.accessTokenExpiresAt.seconds - Int64(Date().timeIntervalSince1970)
            #expect(expires > 14 * 60 && expires <= 15 * 60)
            let me = try await auth.whoAmI(Twin_V1_WhoAmIRequest(), metadata: bearer(session.accessToken))
            #expect(me.user.username == "admin")
            #expect(me.user.hasLastLoginAt)

            // Unknown user and wrong password: the same status and words.
            let wrong = await expectRPCError(.unauthenticated) { _ = try await login(auth, "admin", password + "x") }
            let unknown = await expectRPCError(.unauthenticated) { _ = try await login(auth, "nobody", password) }
            #expect(wrong == "wrong username or password" && unknown == wrong)
            #expect(await expectRPCError(.unauthenticated) { _ = try await auth.whoAmI(Twin_V1_WhoAmIRequest()) }?.contains("log in") == true)
        }
        // A restart keeps the admin and does not write a new password.
        try await d.stop(removing: false)
        let again = try await RunningDaemon.start {
            $0.dataDirectory = d.directory
            $0.environment["TWIND_ADMIN_PASSWORD"] = nil
        }
        #expect(try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == password)
        try await again.stop()
    }

    @Test func refreshRotatesAndAReusedTokenRevokesItsSession() async throws {
        let d = try await RunningDaemon.start { $0.environment = ["TWIND_ADMIN_PASSWORD": "automation-secret-123"] }
        #expect(!FileManager.default.fileExists(atPath: d.directory + "/initial-admin-password"))
        try await withAuth(d) { auth in
            let first = try await login(auth, "admin", "automation-secret-123")
            var refresh = Twin_V1_RefreshRequest()
            refresh.refreshToken = first.refreshToken
            let second = try await auth.refresh(refresh)
            #expect(second.refreshToken != first.refreshToken)
            _ = try await auth.whoAmI(Twin_V1_WhoAmIRequest(), metadata: bearer(second.accessToken))
            // The first refresh token again: refused, and the rotated one dies with it.
            #expect(await expectRPCError(.unauthenticated) { _ = try await auth.refresh(refresh) }?.contains("already used") == true)
            refresh.refreshToken = second.refreshToken
            #expect(await expectRPCError(.unauthenticated) { _ = try await auth.refresh(refresh) } != nil)
            // Logout revokes a session's refresh token.
            let third = try await login(auth, "admin", "automation-secret-123")
            var logout = Twin_V1_LogoutRequest()
            logout.refreshToken = third.refreshToken
            _ = try await auth.logout(logout)
            refresh.refreshToken = third.refreshToken
            #expect(await expectRPCError(.unauthenticated) { _ = try await auth.refresh(refresh) } != nil)
        }
        try await d.stop()
    }

    /// base64url without padding.
    static func b64(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func token(header: [String: Any], claims: [String: Any], key: [UInt8]?) throws -> String {
        let h = b64(try JSONSerialization.data(withJSONObject: header))
        let c = b64(try JSONSerialization.data(withJSONObject: claims))
        guard let key else { return "\(h).\(c)." }
        let mac = HMAC<SHA256>.authenticationCode(for: Array("\(h).\(c)".utf8), using: SymmetricKey(data: key))
        return "\(h).\(c).\(b64(Data(mac)))"
    }

    @Test func forgedExpiredAndMisdirectedTokensAreRefused() async throws {
        let d = try await RunningDaemon.start()
        // The real signing key, read the way only someone holding the master key could.
        let ring = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: d.directory)
        let users = try UsersDatabase(path: d.directory + "/users.db", keys: ring)
        let key = try users.signingKeys()[0].key
        users.close()
        let now = Int(Date().timeIntervalSince1970)
        let good: [String: Any] = ["sub": "admin", "role": "admin", "exp": now + 600, "iat": now, "jti": "t1", "iss": "twind", "aud": ["twin"]]
        let header: [String: Any] = ["alg": "HS256", "typ": "JWT", "kid": "k1"]
        var cases: [(String, String)] = [
            ("forged signature", try Self.token(header: header, claims: good, key: Array(repeating: 7, count: 32))),
            ("alg none", try Self.token(header: ["alg": "none", "typ": "JWT", "kid": "k1"], claims: good, key: nil)),
            ("garbage", "not.a.token"),
        ]
        var expired = good
        expired["exp"] = now - 10
        cases.append(("expired", try Self.token(header: header, claims: expired, key: key)))
        var audience = good
        audience["aud"] = ["someone-else"]
        cases.append(("wrong audience", try Self.token(header: header, claims: audience, key: key)))
        var issuer = good
        issuer["iss"] = "evil"
        cases.append(("wrong issuer", try Self.token(header: header, claims: issuer, key: key)))
        try await withAuth(d) { auth in
            // The control: a token made the same way with everything right is accepted.
            let me = try await auth.whoAmI(Twin_V1_WhoAmIRequest(), metadata: bearer(try Self.token(header: header, claims: good, key: key)))
            #expect(me.user.username == "admin")
            for (name, token) in cases {
                let expected: TwinError.Reason = name == "expired" ? .tokenExpired : .tokenInvalid
                let error = await expectReason(.unauthenticated, expected) { _ = try await auth.whoAmI(Twin_V1_WhoAmIRequest(), metadata: bearer(token)) }
                #expect(error != nil, "\(name): not \(expected.rawValue)")
            }
        }
        // A bad token is refused on any RPC, not only WhoAmI.
        let forged = cases[0].1
        try await TwinConnection.with(d.address) { client in
            let twin = Twin_V1_TwinService.Client(wrapping: client)
            #expect(await expectRPCError(.unauthenticated) {
                _ = try await twin.listDevices(Twin_V1_ListDevicesRequest(), metadata: bearer(forged))
            } != nil)
        }
        try await d.stop()
    }

    @Test func repeatedFailuresAreThrottledWithTheTimeToWait() async throws {
        // A minute's lockout, so a loaded machine cannot outwait it between the calls.
        let d = try await RunningDaemon.start {
            $0.environment = ["TWIND_ADMIN_PASSWORD": "automation-secret-123"]
            $0.firstLoginLockout = Time.minute
        }
        try await withAuth(d) { auth in
            for _ in 0..<5 {
                #expect(await expectRPCError(.unauthenticated) { _ = try await login(auth, "admin", "guess") } != nil)
            }
            let throttled = await expectRPCError(.resourceExhausted) { _ = try await login(auth, "admin", "automation-secret-123") }
            #expect(throttled?.contains("try again in") == true)
        }
        // A restart (a crash under systemd, or an attacker's doing) does not clear the count.
        try await d.stop(removing: false)
        let again = try await RunningDaemon.start {
            $0.dataDirectory = d.directory
            $0.environment = [:]
            $0.firstLoginLockout = Time.minute
        }
        try await withAuth(again) { auth in
            #expect(await expectRPCError(.resourceExhausted) { _ = try await login(auth, "admin", "automation-secret-123") } != nil)
        }
        try await again.stop()
    }
}
