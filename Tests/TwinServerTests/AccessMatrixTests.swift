import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Proto
import Testing
import TwinClient
import TwinCore
@testable import TwinServer
import TwinStore

/// Every RPC of every service, called with no token and as each role: the access table decides,
/// and it covers every method there is.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct AccessMatrixTests {
    static let services: [[MethodDescriptor]] = [
        Twin_V1_TwinService.Method.descriptors, Twin_V1_AuthService.Method.descriptors,
        Twin_V1_ModelService.Method.descriptors, Grpc_Health_V1_Health.Method.descriptors,
    ]

    struct RawBytes: MessageSerializer, MessageDeserializer {
        func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
        func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
            serializedMessageBytes.withUnsafeBytes { Array($0) }
        }
    }

    /// Calls `method` with an empty message; nil if the call got past the access check, else the
    /// access error's code.
    func gate(_ method: MethodDescriptor, client: GRPCClient<HTTP2ClientTransport.Posix>) async throws -> RPCError.Code? {
        do {
            return try await client.bidirectionalStreaming(
                request: StreamingClientRequest(of: [UInt8].self) { writer in try await writer.write([]) },
                descriptor: method, serializer: RawBytes(), deserializer: RawBytes(), options: .defaults
            ) { response -> RPCError.Code? in
                switch response.accepted {
                case .success: return nil
                case .failure(let error): return Self.accessRefusal(error, method)
                }
            }
        } catch let error as RPCError {
            return Self.accessRefusal(error, method)
        }
    }

    /// The code of an error the access table raised for `method` (its reasons carry `method`).
    static func accessRefusal(_ error: RPCError, _ method: MethodDescriptor) -> RPCError.Code? {
        let gate: Set<TwinError.Reason> = [.tokenMissing, .roleInsufficient, .gatewayKeyLimited]
        guard let reason = error.twinReason, gate.contains(reason), error.twinMetadata["method"] == method.fullyQualifiedMethod else { return nil }
        return error.code
    }

    @Test func everyRPCIsInTheTableAndEachRoleGetsExactlyItsPart() async throws {
        let all = Self.services.flatMap { $0 }
        for method in all {
            #expect(AccessTable.rules[method.fullyQualifiedMethod] != nil, "\(method.fullyQualifiedMethod) is not in the access table")
        }
        let d = try await RunningDaemon.start { $0.simulator = false }
        // A viewer and an operator, made the way user management will make them.
        let ring = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: d.directory)
        let users = try UsersDatabase(path: d.directory + "/users.db", keys: ring)
        var tokens: [User.Role: String] = [.admin: try #require(d.token)]
        for role in [User.Role.viewer, .operator] {
            try users.createUser(username: role.rawValue + "1", role: role, passwordHash: try PasswordHasher.testing.hash("password-\(role)"))
            var login = Twin_V1_LoginRequest()
            login.username = role.rawValue + "1"
            login.password = "password-\(role)"
            tokens[role] = try await TwinConnection.with(d.address) { try await Twin_V1_AuthService.Client(wrapping: $0).login(login).accessToken }
        }
        users.close()
        // A gateway: an API key made through CreateApiKey.
        var create = Twin_V1_CreateApiKeyRequest()
        create.name = "matrix gateway"
        tokens[.gateway] = try await TwinConnection.with(d.address, bearer: d.token) { try await Twin_V1_AuthService.Client(wrapping: $0).createApiKey(create).secret }

        // Logout ends the caller's session at once: it goes last, so the tokens serve every other call.
        // One connection per caller (not one per call: CI's two cores are busy with other suites).
        let ordered = all.filter { $0.method != "Logout" } + all.filter { $0.method == "Logout" }
        var got: [String: RPCError.Code?] = [:]
        for role in [User.Role?.none] + User.Role.allCases.map(Optional.some) {
            let token = role.map { tokens[$0]! }
            let codes = try await TwinConnection.with(d.address, bearer: token) { client in
                var codes: [String: RPCError.Code?] = [:]
                for method in ordered { codes[method.fullyQualifiedMethod] = try await gate(method, client: client) }
                return codes
            }
            for (method, code) in codes { got["\(role?.rawValue ?? "-")/\(method)"] = code }
        }
        for method in ordered {
            let rule = AccessTable.rules[method.fullyQualifiedMethod]!
            let anonymous = got["-/\(method.fullyQualifiedMethod)"]!
            for role in User.Role.allCases {
                let code = got["\(role.rawValue)/\(method.fullyQualifiedMethod)"]!
                switch rule {
                case .open:
                    #expect(code == nil, "\(method.method) as \(role)")
                case .role where role == .gateway:
                    let allowed = method.fullyQualifiedMethod == "twin.v1.TwinService/Ingest"
                    #expect(code == (allowed ? nil : .permissionDenied), "\(method.method) as gateway")
                case .role(let least):
                    #expect(code == (role >= least ? nil : .permissionDenied), "\(method.method) as \(role)")
                }
            }
            #expect(anonymous == (rule == .open ? nil : .unauthenticated), "\(method.method) without a token")
        }
        try await d.stop()
    }
}
