import GRPCCore
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

