import Foundation
import GRPCCore
import GRPCProtobuf
import SwiftProtobuf

/// The Connect protocol (connectrpc.com/docs/protocol), JSON codec, in front of twind's gRPC
/// services: a browser or `curl` calls `POST /twin.v1.TwinService/ListDevices` with a JSON body
/// and gets the JSON answer; errors come back with the HTTP status Connect assigns to the gRPC
/// code and a JSON body `{"code", "message", "details"}` carrying the same `google.rpc` details
/// as gRPC (ErrorInfo reason, RetryInfo, ResourceInfo, BadRequest), each with a readable `debug`.
///
/// Every call goes to the in-process gRPC client: the same services, the same authentication
/// interceptor and access table as a gRPC caller meets; nothing is decided here.
///
/// - unary: `Content-Type: application/json`, the body is the request;
/// - server streaming (`StreamUpdates`) and client streaming (`Ingest`):
///   `Content-Type: application/connect+json`, bodies of enveloped messages (a flags byte, a
///   4-byte big-endian length, the JSON); a stream's answer ends with an end-of-stream envelope
///   (flags 0x02) holding `{}` or `{"error": …}`.
public struct ConnectBridge<Transport: ClientTransport>: Sendable {
    public enum Kind: Sendable { case unary, serverStreaming, clientStreaming }

    /// One method: how to turn JSON messages into a call and its answers back into JSON.
    struct Route: Sendable {
        let path: String
        let kind: Kind
        /// Calls the method with the JSON request messages; hands each JSON answer to `emit`.
        let call: @Sendable (_ inputs: [[UInt8]], _ metadata: Metadata, _ emit: @escaping @Sendable ([UInt8]) async throws -> Void) async throws -> Void
    }

    let routes: [String: Route]

    public init(client: GRPCClient<Transport>) {
        var routes: [String: Route] = [:]
        for route in Self.contractRoutes(client) { routes[route.path] = route }
        self.routes = routes
    }

    /// The methods served, as `/package.Service/Method` paths.
    public var paths: [String] { routes.keys.sorted() }

    public func kind(of path: String) -> Kind? { routes[path]?.kind }

    /// Calls the method at `path`. Throws `ConnectError` for anything that went wrong.
    public func call(path: String, inputs: [[UInt8]], metadata: Metadata, emit: @escaping @Sendable ([UInt8]) async throws -> Void) async throws(ConnectError) {
        guard let route = routes[path] else {
            throw ConnectError(code: "unimplemented", message: "no method \(path.prefix(200)) (the methods are those of proto/twin/v1/*.proto)")
        }
        do {
            try await route.call(inputs, metadata, emit)
        } catch let error as ConnectError {
            throw error
        } catch let error as RPCError {
            throw ConnectError(error)
        } catch {
            throw ConnectError(code: "unavailable", message: "the call did not complete: \(error)")
        }
    }
}

/// Builds routes for the methods of one client.
struct RouteBuilder<Transport: ClientTransport>: Sendable {
    let client: GRPCClient<Transport>

    static var decoding: JSONDecodingOptions {
        var options = JSONDecodingOptions()
        options.messageDepthLimit = 64
        return options
    }

    static func decode<M: SwiftProtobuf.Message>(_ json: [UInt8], as: M.Type) throws(ConnectError) -> M {
        // An empty body is the empty message.
        if json.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return M() }
        do {
            return try M(jsonUTF8Bytes: json, options: decoding)
        } catch {
            throw ConnectError(code: "invalid_argument", message: "the request is not a valid JSON \(M.protoMessageName): \(error)")
        }
    }

    static func encode<M: SwiftProtobuf.Message>(_ message: M) throws -> [UInt8] {
        try message.jsonUTF8Bytes()
    }

    func unary<I: SwiftProtobuf.Message, O: SwiftProtobuf.Message>(_ d: MethodDescriptor, _: I.Type, _: O.Type) -> ConnectBridge<Transport>.Route {
        let client = client
        return .init(path: "/" + d.fullyQualifiedMethod, kind: .unary) { inputs, metadata, emit in
            guard inputs.count == 1 else { throw ConnectError(code: "invalid_argument", message: "\(d.method) takes exactly one request message, got \(inputs.count)") }
            let input = try Self.decode(inputs[0], as: I.self)
            let output = try await client.unary(
                request: ClientRequest(message: input, metadata: metadata), descriptor: d,
                serializer: ProtobufSerializer<I>(), deserializer: ProtobufDeserializer<O>(), options: .defaults
            ) { try $0.message }
            try await emit(try Self.encode(output))
        }
    }

    func serverStreaming<I: SwiftProtobuf.Message, O: SwiftProtobuf.Message>(_ d: MethodDescriptor, _: I.Type, _: O.Type) -> ConnectBridge<Transport>.Route {
        let client = client
        return .init(path: "/" + d.fullyQualifiedMethod, kind: .serverStreaming) { inputs, metadata, emit in
            guard inputs.count == 1 else { throw ConnectError(code: "invalid_argument", message: "\(d.method) takes exactly one request message, got \(inputs.count)") }
            let input = try Self.decode(inputs[0], as: I.self)
            try await client.serverStreaming(
                request: ClientRequest(message: input, metadata: metadata), descriptor: d,
                serializer: ProtobufSerializer<I>(), deserializer: ProtobufDeserializer<O>(), options: .defaults
            ) { response in
                for try await message in response.messages { try await emit(try Self.encode(message)) }
            }
        }
    }

    func clientStreaming<I: SwiftProtobuf.Message, O: SwiftProtobuf.Message>(_ d: MethodDescriptor, _: I.Type, _: O.Type) -> ConnectBridge<Transport>.Route {
        let client = client
        return .init(path: "/" + d.fullyQualifiedMethod, kind: .clientStreaming) { inputs, metadata, emit in
            var messages: [I] = []
            for json in inputs { messages.append(try Self.decode(json, as: I.self)) }
            let prepared = messages
            let output = try await client.clientStreaming(
                request: StreamingClientRequest(metadata: metadata) { writer in try await writer.write(contentsOf: prepared) }, descriptor: d,
                serializer: ProtobufSerializer<I>(), deserializer: ProtobufDeserializer<O>(), options: .defaults
            ) { try $0.message }
            try await emit(try Self.encode(output))
        }
    }
}

/// An error as Connect sends it: a code name, a message, and the `google.rpc` details.
public struct ConnectError: Error, Sendable {
    public var code: String
    public var message: String
    /// Each detail's type (`google.rpc.ErrorInfo`), its bytes, and a readable form.
    public var details: [(type: String, value: [UInt8], debug: [String: Any & Sendable]?)] = []

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    init(_ error: RPCError) {
        code = Self.names[error.code] ?? "unknown"
        message = error.message
        if let bytes = error.metadata[binaryValues: "grpc-status-details-bin"].first(where: { _ in true }) {
            let status = try? GoogleRPCStatus(serializedBytes: bytes)
            let readable = status?.details ?? []
            for (n, any) in StatusDetails.parse(bytes).enumerated() {
                let type = any.typeURL.split(separator: "/").last.map(String.init) ?? any.typeURL
                details.append((type, any.value, n < readable.count ? Self.debug(readable[n]) : nil))
            }
        }
    }

    static let names: [RPCError.Code: String] = [
        .cancelled: "canceled", .unknown: "unknown", .invalidArgument: "invalid_argument", .deadlineExceeded: "deadline_exceeded",
        .notFound: "not_found", .alreadyExists: "already_exists", .permissionDenied: "permission_denied",
        .resourceExhausted: "resource_exhausted", .failedPrecondition: "failed_precondition", .aborted: "aborted",
        .outOfRange: "out_of_range", .unimplemented: "unimplemented", .internalError: "internal", .unavailable: "unavailable",
        .dataLoss: "data_loss", .unauthenticated: "unauthenticated",
    ]

    /// The HTTP status Connect gives each code.
    public var httpStatus: Int {
        switch code {
        case "canceled": 499
        case "invalid_argument", "failed_precondition", "out_of_range": 400
        case "deadline_exceeded": 504
        case "not_found": 404
        case "already_exists", "aborted": 409
        case "permission_denied": 403
        case "resource_exhausted": 429
        case "unimplemented": 501
        case "unavailable": 503
        case "unauthenticated": 401
        default: 500
        }
    }

    static func debug(_ detail: ErrorDetails) -> [String: Any & Sendable]? {
        if let info = detail.errorInfo { return ["reason": info.reason, "domain": info.domain, "metadata": info.metadata] }
        if let retry = detail.retryInfo {
            let (seconds, attoseconds) = retry.delay.components
            return ["retryDelay": String(format: "%.3fs", Double(seconds) + Double(attoseconds) / 1e18)]
        }
        if let resource = detail.resourceInfo {
            return ["resourceType": resource.type, "resourceName": resource.name, "description": resource.errorDescription]
        }
        if let bad = detail.badRequest {
            return ["fieldViolations": bad.violations.map { ["field": $0.field, "description": $0.violationDescription] }]
        }
        return nil
    }

    /// `{"code": …, "message": …, "details": [{"type", "value" (base64), "debug"}]}`.
    public var json: [UInt8] {
        var object: [String: Any] = ["code": code, "message": message]
        if !details.isEmpty {
            object["details"] = details.map { d -> [String: Any] in
                var entry: [String: Any] = ["type": d.type, "value": Data(d.value).base64EncodedString().replacingOccurrences(of: "=", with: "")]
                if let debug = d.debug { entry["debug"] = debug }
                return entry
            }
        }
        return Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(#"{"code":"internal"}"#.utf8))
    }
}

/// `google.rpc.Status`'s details read off the wire (field 3, repeated `google.protobuf.Any`).
enum StatusDetails {
    struct AnyValue { var typeURL = ""; var value: [UInt8] = [] }

    static func parse(_ bytes: [UInt8]) -> [AnyValue] {
        var result: [AnyValue] = []
        for (field, payload) in fields(bytes[...]) where field == 3 {
            var any = AnyValue()
            for (f, p) in fields(payload) {
                if f == 1 { any.typeURL = String(decoding: p, as: UTF8.self) }
                if f == 2 { any.value = Array(p) }
            }
            result.append(any)
        }
        return result
    }

    /// The length-delimited fields of a message (others are skipped); stops at anything malformed.
    static func fields(_ bytes: ArraySlice<UInt8>) -> [(Int, ArraySlice<UInt8>)] {
        var result: [(Int, ArraySlice<UInt8>)] = []
        var i = bytes.startIndex
        func varint() -> UInt64? {
            var value: UInt64 = 0, shift: UInt64 = 0
            while i < bytes.endIndex, shift < 64 {
                let b = bytes[i]
                i += 1
                value |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while i < bytes.endIndex {
            guard let key = varint() else { break }
            switch key & 7 {
            case 0: guard varint() != nil else { return result }
            case 1: i += 8
            case 5: i += 4
            case 2:
                guard let length = varint(), length <= UInt64(bytes.endIndex - i) else { return result }
                result.append((Int(key >> 3), bytes[i..<i + Int(length)]))
                i += Int(length)
            default: return result
            }
        }
        return result
    }
}
