import GRPCCore
import GRPCProtobuf
import SwiftProtobuf
import TwinApp
import TwinCore

/// The one table from domain errors to gRPC status codes.
extension TwinError: RPCErrorConvertible {
    public var rpcErrorCode: RPCError.Code {
        switch code {
        case .invalidArgument: .invalidArgument
        case .notFound: .notFound
        case .alreadyExists: .alreadyExists
        case .failedPrecondition: .failedPrecondition
        case .resourceExhausted: .resourceExhausted
        case .unauthenticated: .unauthenticated
        case .permissionDenied: .permissionDenied
        case .unavailable: .unavailable
        case .unimplemented: .unimplemented
        case .dataLoss: .dataLoss
        case .outOfRange: .outOfRange
        case .internal: .internalError
        }
    }

    public var rpcErrorMessage: String { message }

    /// The reason and details as `google.rpc.Status` in `grpc-status-details-bin`, the standard
    /// place (Python: `grpc_status.rpc_status.from_call`; Go: `status.FromError(...).Details()`).
    public var rpcErrorMetadata: Metadata { googleStatus.rpcErrorMetadata }

    /// The ErrorInfo domain of every twind reason.
    public static let domain = "twin.v1"

    var googleStatus: GoogleRPCStatus {
        var details: [ErrorDetails] = [.errorInfo(reason: reason.rawValue, domain: Self.domain, metadata: metadata)]
        if !violations.isEmpty {
            details.append(.badRequest(violations: violations.map { .init(field: $0.field, description: $0.description) }))
        }
        if let retryAfter {
            details.append(.retryInfo(delay: .nanoseconds(max(0, retryAfter))))
        }
        if let resource {
            details.append(.resourceInfo(type: resource.type, name: resource.name, errorDescription: message))
        }
        return GoogleRPCStatus(code: rpcErrorCode, message: message, details: details)
    }

    /// An RPCError raised outside the domain (the transport, grpc-swift) with a reason of its own.
    static func status(_ code: RPCError.Code, _ reason: Reason, _ message: String) -> RPCError {
        RPCError(GoogleRPCStatus(code: code, message: message, details: [.errorInfo(reason: reason.rawValue, domain: domain, metadata: [:])]))
    }
}


/// A unary method called with no request message or with several is the client's mistake, not
/// twind's: grpc-swift reports both as INTERNAL ("Empty stream.", "Too many messages."), and
/// this answers INVALID_ARGUMENT instead. Cancellation reaching a handler is CANCELLED.
/// It also holds every method but Ingest to `maxMessage` bytes a request message (the transport
/// allows Ingest's larger batches).
struct RequestShapeInterceptor: ServerInterceptor {
    var maxMessage = 1 << 20
    static let largeMessageMethods: Set<String> = ["twin.v1.TwinService/Ingest"]

    static let shapeErrors: [String: String] = [
        "Empty stream.": "the request has no message; a unary call takes exactly one",
        "Too many messages.": "the request has more than one message; a unary call takes exactly one",
    ]

    static func map(_ error: any Error, method: String) -> any Error {
        if let rpc = error as? RPCError, rpc.code == .internalError, let text = shapeErrors[rpc.message] {
            return TwinError.status(.invalidArgument, .requestInvalid, "\(method): \(text)")
        }
        if let rpc = error as? RPCError, rpc.code == .invalidArgument, rpc.message.hasPrefix("Can't deserialize"), (try? rpc.unpackGoogleRPCStatus()) ?? nil == nil {
            return TwinError.status(.invalidArgument, .requestInvalid, "\(method): the request message does not decode (\(rpc.message))")
        }
        if error is CancellationError { return RPCError(code: .cancelled, message: "the call was cancelled") }
        return error
    }

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let method = context.descriptor.method
        var request = request
        if !Self.largeMessageMethods.contains(context.descriptor.fullyQualifiedMethod) {
            let limit = maxMessage
            request.messages = RPCAsyncSequence(wrapping: request.messages.map { message in
                if let m = message as? any SwiftProtobuf.Message, let size = try? (m.serializedBytes() as [UInt8]).count, size > limit {
                    throw TwinError(.resourceExhausted, "\(method): the request is \(size) bytes; at most \(limit) are accepted (Ingest takes up to 16 MiB)", reason: .limitExceeded)
                }
                return message
            })
        }
        var response: StreamingServerResponse<Output>
        do {
            response = try await next(request, context)
        } catch {
            throw Self.map(error, method: method)
        }
        guard case .success(var contents) = response.accepted else { return response }
        let producer = contents.producer
        contents.producer = { writer in
            do { return try await producer(writer) } catch { throw Self.map(error, method: method) }
        }
        response.accepted = .success(contents)
        return response
    }
}
