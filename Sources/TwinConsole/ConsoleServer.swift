import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL

/// The operator's console over HTTP: the pages (embedded in the binary) on `GET`, and the
/// Connect bridge on `POST /<service>/<method>`.
///
/// Sessions: the page keeps the access token in memory. With `X-Twin-Session: cookie` on
/// `Login` and `Refresh`, the refresh token goes into a cookie instead of the answer
/// (`HttpOnly; Secure; SameSite=Strict`, path `/twin.v1.AuthService/Refresh` only), `Refresh`
/// reads it from there, and `Logout` clears it. CSRF-safe by construction: nothing changes on a
/// GET; every call is a POST with a JSON content type (which no cross-site form can send) and a
/// request with a foreign `Origin` is refused. Every answer carries a strict
/// Content-Security-Policy (no inline script, nothing from elsewhere), `nosniff` and frame denial.
public struct ConsoleServer<Transport: ClientTransport>: Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        /// The refresh cookie's lifetime (the refresh token's).
        public var refreshLifetime: Int = 7 * 86_400
        /// Largest request body (Ingest batches included).
        public var maxBody = 16 * 1024 * 1024
        /// Serve HTTPS with twind's gRPC certificate and key (PEM files); with `clientCA`,
        /// browsers must present a certificate it signed, as gRPC clients must.
        public var tls: (certificate: String, privateKey: String, clientCA: String?)?
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    let bridge: ConnectBridge<Transport>
    let options: Options
    let logger: Logger

    public init(client: GRPCClient<Transport>, options: Options, logger: Logger) {
        bridge = ConnectBridge(client: client)
        self.options = options
        self.logger = logger
    }

    /// Serves until cancelled; `bound` is told the address once listening.
    public func run(bound: @escaping @Sendable (String, Int) -> Void) async throws {
        let responder = ConsoleResponder(bridge: bridge, options: options)
        var server = HTTPServerBuilder.http1()
        if let tls = options.tls {
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(tls.certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.privateKey, format: .pem)))
            if let ca = tls.clientCA {
                configuration.certificateVerification = .noHostnameVerification
                configuration.trustRoots = .file(ca)
            }
            server = try .tls(.http1(), tlsConfiguration: configuration)
        }
        let app = Application(
            responder: responder,
            server: server,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: nil),
            onServerRunning: { channel in
                if let address = channel.localAddress { bound(address.ipAddress ?? options.host, address.port ?? options.port) }
            },
            logger: logger)
        try await app.run()
    }
}

/// Carries the peer's address to the bridge (for the login throttle and the audit log).
struct ConsoleContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let remote: String

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        if let address = source.channel.remoteAddress, let ip = address.ipAddress {
            remote = address.protocol == .inet6 ? "ipv6:[\(ip)]:\(address.port ?? 0)" : "ipv4:\(ip):\(address.port ?? 0)"
        } else {
            remote = "unknown"
        }
    }
}

struct ConsoleResponder<Transport: ClientTransport>: HTTPResponder {
    typealias Context = ConsoleContext
    let bridge: ConnectBridge<Transport>
    let options: ConsoleServer<Transport>.Options

    static var refreshPath: String { ConsolePaths.refresh }
    static var cookieName: String { ConsolePaths.cookie }

    func respond(to request: Request, context: ConsoleContext) async throws -> Response {
        var response: Response
        switch request.method {
        case .get, .head:
            response = asset(request.uri.path)
        case .post:
            response = await call(request, context: context)
        default:
            response = plain(.methodNotAllowed, "use GET for pages and POST for calls")
            response.headers[.allow] = "GET, HEAD, POST"
        }
        for field in ConsolePaths.securityHeaders { response.headers[field.name] = field.value }
        return response
    }

    func plain(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(string: text + "\n")))
    }

    func asset(_ path: String) -> Response {
        let name = path == "/" || path.isEmpty ? "index.html" : String(path.dropFirst())
        guard let file = ConsoleAssets.files[name] else { return plain(.notFound, "not found") }
        return Response(
            status: .ok, headers: [.contentType: file.type, .cacheControl: "no-cache"],
            body: .init(byteBuffer: ByteBuffer(bytes: file.bytes)))
    }

    func connectError(_ error: ConnectError, streaming: Bool) -> Response {
        if streaming {
            var body = ByteBuffer()
            Envelope.write(flags: Envelope.endStream, json: Array(#"{"error":"#.utf8) + error.json + Array("}".utf8), to: &body)
            return Response(status: .ok, headers: [.contentType: "application/connect+json", .cacheControl: "no-store"], body: .init(byteBuffer: body))
        }
        return Response(
            status: .init(code: error.httpStatus), headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: error.json)))
    }

    func call(_ request: Request, context: ConsoleContext) async -> Response {
        let path = request.uri.path
        guard let kind = bridge.kind(of: path) else {
            return connectError(ConnectError(code: "unimplemented", message: "no method \(path.prefix(200))"), streaming: false)
        }
        let contentType = (request.headers[.contentType] ?? "").split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        let enveloped = kind != .unary
        let expected = enveloped ? "application/connect+json" : "application/json"
        guard contentType == expected else {
            // 415 as Connect answers a codec it does not speak (and what keeps forms from other sites out).
            return Response(
                status: .unsupportedMediaType, headers: [.contentType: "text/plain; charset=utf-8", .accept: expected],
                body: .init(byteBuffer: ByteBuffer(string: "\(path) takes Content-Type: \(expected)\n")))
        }
        if let origin = request.headers[.origin], let host = request.head.authority, origin != "null" {
            let stripped = origin.replacingOccurrences(of: "http://", with: "").replacingOccurrences(of: "https://", with: "")
            guard stripped == host else { return plain(.forbidden, "cross-origin calls are refused (Origin \(origin.prefix(100)) is not \(host.prefix(100)))") }
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > options.maxBody {
            // Refused before reading: the client hears it at once and the connection closes.
            var response = connectError(
                ConnectError(code: "resource_exhausted", message: "the request body is \(length) bytes; at most \(options.maxBody) are taken (send Ingest in smaller batches)"),
                streaming: false)
            response.status = .contentTooLarge
            response.headers[.connection] = "close"
            return response
        }
        var body: ByteBuffer
        do {
            var r = request
            body = try await r.collectBody(upTo: options.maxBody)
        } catch {
            return connectError(ConnectError(code: "resource_exhausted", message: "the request body is larger than \(options.maxBody) bytes"), streaming: enveloped)
        }
        var inputs: [[UInt8]]
        if enveloped {
            switch Envelope.split(Array(body.readableBytesView)) {
            case .success(let messages): inputs = messages
            case .failure(let error): return connectError(error, streaming: true)
            }
        } else {
            inputs = [Array(body.readableBytesView)]
        }

        var metadata = Metadata()
        if let authorization = request.headers[.authorization] { metadata.addString(authorization, forKey: "authorization") }
        metadata.addString(context.remote, forKey: "x-twin-peer")
        let cookieMode = request.headers[HTTPField.Name("X-Twin-Session")!] == "cookie"
        var setCookie: String?
        if path == Self.refreshPath, cookieMode {
            // The page cannot read the token: it travels in the cookie.
            guard let token = Self.cookie(Self.cookieName, in: request.headers[.cookie] ?? ""), !token.isEmpty else {
                return connectError(ConnectError(code: "unauthenticated", message: "no session: log in"), streaming: false)
            }
            inputs = [Array(#"{"refreshToken":"#.utf8) + Self.jsonString(token) + Array("}".utf8)]
        }
        if path == "/twin.v1.AuthService/Logout" {
            setCookie = "\(Self.cookieName)=; Path=\(Self.refreshPath); Max-Age=0; HttpOnly; Secure; SameSite=Strict"
        }

        if kind == .serverStreaming {
            return stream(path: path, inputs: inputs, metadata: metadata)
        }
        let collected = Collected()
        do {
            try await bridge.call(path: path, inputs: inputs, metadata: metadata) { json in await collected.add(json) }
        } catch {
            var response = connectError(error, streaming: kind == .clientStreaming)
            if let setCookie { response.headers[.setCookie] = setCookie }
            return response
        }
        var answer = await collected.first ?? Array("{}".utf8)
        if cookieMode, path == "/twin.v1.AuthService/Login" || path == Self.refreshPath,
           var object = (try? JSONSerialization.jsonObject(with: Data(answer))) as? [String: Any],
           let token = object["refreshToken"] as? String {
            object["refreshToken"] = nil
            answer = Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data(answer))
            setCookie = "\(Self.cookieName)=\(token); Path=\(Self.refreshPath); Max-Age=\(options.refreshLifetime); HttpOnly; Secure; SameSite=Strict"
        }
        var headers: HTTPFields = [.contentType: kind == .unary ? "application/json" : "application/connect+json", .cacheControl: "no-store"]
        if let setCookie { headers[.setCookie] = setCookie }
        var out = ByteBuffer()
        if kind == .unary {
            out.writeBytes(answer)
        } else {
            Envelope.write(flags: 0, json: answer, to: &out)
            Envelope.write(flags: Envelope.endStream, json: Array("{}".utf8), to: &out)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: out))
    }

    /// A server stream: each message an envelope as it comes, then the end-of-stream envelope.
    func stream(path: String, inputs: [[UInt8]], metadata: Metadata) -> Response {
        let bridge = bridge
        return Response(
            status: .ok, headers: [.contentType: "application/connect+json", .cacheControl: "no-store"],
            body: .init { writer in
                let (messages, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(64))
                async let outcome: ConnectError? = {
                    defer { continuation.finish() }
                    do throws(ConnectError) {
                        try await bridge.call(path: path, inputs: inputs, metadata: metadata) { json in continuation.yield(json) }
                        return nil
                    } catch {
                        return error
                    }
                }()
                for await json in messages {
                    var buffer = ByteBuffer()
                    Envelope.write(flags: 0, json: json, to: &buffer)
                    try await writer.write(buffer)
                }
                var end = ByteBuffer()
                if let error = await outcome {
                    Envelope.write(flags: Envelope.endStream, json: Array(#"{"error":"#.utf8) + error.json + Array("}".utf8), to: &end)
                } else {
                    Envelope.write(flags: Envelope.endStream, json: Array("{}".utf8), to: &end)
                }
                try await writer.write(end)
                try await writer.finish(nil)
            })
    }

    static func cookie(_ name: String, in header: String) -> String? {
        for part in header.split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces)
            if pair.hasPrefix(name + "=") { return String(pair.dropFirst(name.count + 1)) }
        }
        return nil
    }

    static func jsonString(_ s: String) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed])).map { Array($0.dropFirst().dropLast()) } ?? Array("\"\"".utf8))
    }
}

/// What the console's responder needs that a generic type cannot store.
enum ConsolePaths {
    static let refresh = "/twin.v1.AuthService/Refresh"
    static let cookie = "twin_refresh"

    /// On every answer.
    static let securityHeaders: HTTPFields = {
        var h = HTTPFields()
        h[.contentSecurityPolicy] =
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        h[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        h[HTTPField.Name("X-Frame-Options")!] = "DENY"
        h[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        h[HTTPField.Name("Cross-Origin-Opener-Policy")!] = "same-origin"
        return h
    }()
}

actor Collected {
    var messages: [[UInt8]] = []
    func add(_ m: [UInt8]) { messages.append(m) }
    var first: [UInt8]? { messages.first }
}

/// Connect's envelope: flags (1 byte), length (4 bytes, big-endian), message.
enum Envelope {
    static let endStream: UInt8 = 0x02
    static let compressed: UInt8 = 0x01
    static let maxMessages = 100_000

    static func write(flags: UInt8, json: [UInt8], to buffer: inout ByteBuffer) {
        buffer.writeInteger(flags)
        buffer.writeInteger(UInt32(json.count))
        buffer.writeBytes(json)
    }

    static func split(_ bytes: [UInt8]) -> Result<[[UInt8]], ConnectError> {
        var messages: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            guard bytes.count - i >= 5 else { return .failure(ConnectError(code: "invalid_argument", message: "a truncated envelope (fewer than 5 header bytes)")) }
            let flags = bytes[i]
            let length = Int(bytes[i + 1]) << 24 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 8 | Int(bytes[i + 4])
            i += 5
            guard length <= bytes.count - i else {
                return .failure(ConnectError(code: "invalid_argument", message: "an envelope says \(length) bytes but \(bytes.count - i) follow"))
            }
            if flags & compressed != 0 { return .failure(ConnectError(code: "unimplemented", message: "compressed messages are not accepted; send them uncompressed")) }
            if flags & endStream == 0 { messages.append(Array(bytes[i..<i + length])) }
            i += length
            if messages.count > maxMessages { return .failure(ConnectError(code: "resource_exhausted", message: "more than \(maxMessages) messages in one request")) }
        }
        return .success(messages)
    }
}
