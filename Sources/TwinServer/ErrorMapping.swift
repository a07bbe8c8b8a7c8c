import GRPCCore
import SwiftProtobuf
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
            return RPCError(code: .invalidArgument, message: "\(method): \(text)")
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
                    throw RPCError(code: .resourceExhausted, message: "\(method): the request is \(size) bytes; at most \(limit) are accepted (Ingest takes up to 16 MiB)")
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
