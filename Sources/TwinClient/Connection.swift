import GRPCCore
import GRPCNIOTransportHTTP2Posix
import TwinCore

#if canImport(Glibc)
import Glibc
#endif

/// How a client finds and talks to twind.
public enum TwinConnection {
    /// `--server`, else `TWIN_SERVER`, else the local socket of a per-user or system daemon if one
    /// exists, else the default TCP address.
    public static func resolve(flag: String?, environment: [String: String]) throws(TwinError) -> NetworkAddress {
        if let flag, !flag.isEmpty { return try NetworkAddress.parse(flag) }
        if let env = environment["TWIN_SERVER"], !env.isEmpty { return try NetworkAddress.parse(env) }
        for dir in [Paths.defaultDataDirectory(environment: environment), Paths.systemDataDirectory] {
            let socket = dir + "/twind.sock"
            if access(socket, F_OK) == 0 { return .unix(path: socket) }
        }
        return .defaultTCP
    }

    /// The transport for an address: TLS when `tls` is given (TCP only; a Unix socket is local).
    public static func transport(for address: NetworkAddress, tls: ClientTLS? = nil) throws -> HTTP2ClientTransport.Posix {
        let target: any ResolvableTarget
        switch address {
        case .unix(let path):
            target = .unixDomainSocket(path: path)
        case .tcp(let host, let port):
            if host.contains(":") { target = .ipv6(address: host, port: port) }
            else if host.split(separator: ".").count == 4 && host.allSatisfy({ $0.isNumber || $0 == "." }) {
                target = .ipv4(address: host, port: port)
            } else {
                target = .dns(host: host, port: port)
            }
        }
        // Large frames: a live-update batch arrives in a few frames instead of dozens.
        let config = HTTP2ClientTransport.Posix.Config.defaults { $0.http2.maxFrameSize = 1 << 20 }
        var security = HTTP2ClientTransport.Posix.TransportSecurity.plaintext
        if let tls, case .tcp = address {
            security = .tls { config in
                if let ca = tls.ca { config.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
                if let cert = tls.certificate { config.certificateChain = [.file(path: cert, format: .pem)] }
                if let key = tls.privateKey { config.privateKey = .file(path: key, format: .pem) }
            }
        }
        return try HTTP2ClientTransport.Posix(target: target, transportSecurity: security, config: config)
    }

    /// Runs `body` with a connected client and closes it afterwards. With `credentials`, every
    /// call carries the session's access token (refreshed when due).
    /// `bearer` sends one fixed access token instead (programs that log in themselves).
    public static func with<R: Sendable>(
        _ address: NetworkAddress, tls: ClientTLS? = nil, credentials: Credentials? = nil, bearer: String? = nil,
        _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> R
    ) async throws -> R {
        var interceptors: [any ClientInterceptor] = credentials.map { [BearerInterceptor(credentials: $0)] } ?? []
        if let bearer { interceptors.append(BearerInterceptor(token: bearer)) }
        return try await withGRPCClient(transport: try transport(for: address, tls: tls), interceptors: interceptors) { client in
            try await body(client)
        }
    }
}

/// How a client secures a TCP connection: the CA that signed twind's certificate (nil: the
/// system's trust store), and a client certificate + key when twind asks for one.
public struct ClientTLS: Sendable, Equatable {
    public var ca: String?
    public var certificate: String?
    public var privateKey: String?

    public init(ca: String? = nil, certificate: String? = nil, privateKey: String? = nil) {
        self.ca = ca
        self.certificate = certificate
        self.privateKey = privateKey
    }
}

/// The CLI's exit codes, one per class of failure; documented in the README.
public enum TwinExitCode {
    public static let ok: Int32 = 0
    public static let failure: Int32 = 1
    public static let unavailable: Int32 = 3
    public static let invalidArgument: Int32 = 4
    public static let notFound: Int32 = 5
    public static let unauthenticated: Int32 = 6
    public static let permissionDenied: Int32 = 7
    public static let unimplemented: Int32 = 8
    public static let rejected: Int32 = 9
    public static let usage: Int32 = 64

    /// The exit code for an RPC status.
    public static func code(for status: RPCError.Code) -> Int32 {
        switch status {
        case .unavailable, .deadlineExceeded: unavailable
        case .invalidArgument, .outOfRange: invalidArgument
        case .notFound: notFound
        case .unauthenticated: unauthenticated
        case .permissionDenied: permissionDenied
        case .unimplemented: unimplemented
        case .failedPrecondition, .resourceExhausted, .alreadyExists, .aborted: rejected
        default: failure
        }
    }

    /// The gist of a TLS failure from its error's description.
    static func tlsReason(_ cause: String) -> String {
        for hint in ["CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "unknown ca", "certificate required", "bad certificate", "handshake"] {
            if cause.range(of: hint, options: .caseInsensitive) != nil { return hint.lowercased() }
        }
        return "handshake failed"
    }

    /// One line a person can act on, for any error a command meets.
    public static func describe(_ error: any Error, server: NetworkAddress) -> (code: Int32, message: String) {
        if let rpc = error as? RPCError {
            if rpc.code == .unavailable && (rpc.message.contains("connect") || rpc.message.contains("Connect") || rpc.cause != nil) {
                let cause = rpc.cause.map { String(reflecting: $0) } ?? ""
                if ["SSL", "handshake", "certificate", "Certificate"].contains(where: cause.contains) {
                    return (unavailable, "no TLS connection with twind at \(server): its certificate or ours was refused (\(Self.tlsReason(cause))); check --ca (the CA that signed twind's certificate) and --cert/--key")
                }
                return (unavailable, "cannot reach twind at \(server): is it running? (start it with `twind`, or pass --server; if it serves TLS, pass --ca)")
            }
            if rpc.code == .unauthenticated && rpc.twinReason != .credentialsInvalid && !rpc.message.contains("twin login") {
                return (unauthenticated, "\(rpc.message) (run twin login)")
            }
            return (code(for: rpc.code), "\(rpc.code): \(rpc.message)")
        }
        if let e = error as? TwinError {
            return (e.code == .invalidArgument ? usage : e.code == .unauthenticated ? unauthenticated : failure, e.message)
        }
        if let e = error as? RuntimeError { return (failure, e.message) }
        return (failure, "\(error)")
    }
}
