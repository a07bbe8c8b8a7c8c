/// An error the domain reports to whoever called it. `TwinServer` maps `code` to a gRPC status
/// in one place; `message` is written for the person who will read it.
public struct TwinError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidArgument, notFound, alreadyExists, failedPrecondition, resourceExhausted
        case unauthenticated, permissionDenied, unavailable, unimplemented, dataLoss, outOfRange, `internal`
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static func invalidArgument(_ message: String) -> TwinError { .init(.invalidArgument, message) }
    public static func notFound(_ message: String) -> TwinError { .init(.notFound, message) }
    public static func failedPrecondition(_ message: String) -> TwinError { .init(.failedPrecondition, message) }
    public static func unavailable(_ message: String) -> TwinError { .init(.unavailable, message) }
    public static func internalError(_ message: String) -> TwinError { .init(.internal, message) }
}
