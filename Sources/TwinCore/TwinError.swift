/// An error the domain reports to whoever called it. `TwinServer` maps it to a gRPC status in
/// one place: `code` to the status code, `message` (written for the person who will read it) to
/// the status message, and `reason` with its details to `google.rpc.Status` details on the wire
/// (`ErrorInfo`, `BadRequest`, `RetryInfo`, `ResourceInfo`). Programs branch on `reason`, never
/// on `message`.
public struct TwinError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidArgument, notFound, alreadyExists, failedPrecondition, resourceExhausted
        case unauthenticated, permissionDenied, unavailable, unimplemented, dataLoss, outOfRange, `internal`
    }

    /// Why a call failed, for programs. The raw values are the `ErrorInfo.reason` strings and the
    /// value names of `twin.v1.ErrorReason` in `types.proto`, which documents each one and the
    /// metadata it carries (a test holds the two lists equal).
    public enum Reason: String, Sendable, CaseIterable {
        // INVALID_ARGUMENT
        case requestInvalid = "REQUEST_INVALID"
        case readingInvalid = "READING_INVALID"
        case timeOutOfRange = "TIME_OUT_OF_RANGE"
        case sensorNotFound = "SENSOR_NOT_FOUND"
        case pageTokenInvalid = "PAGE_TOKEN_INVALID"
        case passwordRejected = "PASSWORD_REJECTED"
        case alertRulesInvalid = "ALERT_RULES_INVALID"
        case notifyConfigInvalid = "NOTIFY_CONFIG_INVALID"
        // NOT_FOUND
        case deviceNotFound = "DEVICE_NOT_FOUND"
        case alertNotFound = "ALERT_NOT_FOUND"
        case modelNotFound = "MODEL_NOT_FOUND"
        case trainingJobNotFound = "TRAINING_JOB_NOT_FOUND"
        case userNotFound = "USER_NOT_FOUND"
        case apiKeyNotFound = "API_KEY_NOT_FOUND"
        case notFound = "NOT_FOUND"
        case channelNotFound = "CHANNEL_NOT_FOUND"
        // ALREADY_EXISTS
        case alreadyExists = "ALREADY_EXISTS"
        // FAILED_PRECONDITION
        case alertStateConflict = "ALERT_STATE_CONFLICT"
        case trainingInProgress = "TRAINING_IN_PROGRESS"
        case notEnoughData = "NOT_ENOUGH_DATA"
        case lastAdmin = "LAST_ADMIN"
        case deviceConflict = "DEVICE_CONFLICT"
        case preconditionFailed = "PRECONDITION_FAILED"
        case alertRulesChanged = "ALERT_RULES_CHANGED"
        case notifyConfigChanged = "NOTIFY_CONFIG_CHANGED"
        // RESOURCE_EXHAUSTED
        case loginThrottled = "LOGIN_THROTTLED"
        case serverBusy = "SERVER_BUSY"
        case limitExceeded = "LIMIT_EXCEEDED"
        // UNAUTHENTICATED
        case credentialsInvalid = "CREDENTIALS_INVALID"
        case tokenMissing = "TOKEN_MISSING"
        case tokenInvalid = "TOKEN_INVALID"
        case tokenExpired = "TOKEN_EXPIRED"
        case refreshTokenInvalid = "REFRESH_TOKEN_INVALID"
        case sessionEnded = "SESSION_ENDED"
        // PERMISSION_DENIED
        case roleInsufficient = "ROLE_INSUFFICIENT"
        case gatewayKeyLimited = "GATEWAY_KEY_LIMITED"
        case outOfScope = "OUT_OF_SCOPE"
        // UNAVAILABLE, DATA_LOSS, INTERNAL, UNIMPLEMENTED
        case shuttingDown = "SHUTTING_DOWN"
        case storeUnavailable = "STORE_UNAVAILABLE"
        case dataLoss = "DATA_LOSS"
        case unimplemented = "UNIMPLEMENTED"
        case `internal` = "INTERNAL"

        /// The reason an error of `code` has when its site names none.
        public static func generic(_ code: Code) -> Reason {
            switch code {
            case .invalidArgument, .outOfRange: .requestInvalid
            case .notFound: .notFound
            case .alreadyExists: .alreadyExists
            case .failedPrecondition: .preconditionFailed
            case .resourceExhausted: .limitExceeded
            case .unauthenticated: .tokenInvalid
            case .permissionDenied: .roleInsufficient
            case .unavailable: .storeUnavailable
            case .unimplemented: .unimplemented
            case .dataLoss: .dataLoss
            case .internal: .internal
            }
        }
    }

    /// A request field that was wrong (`BadRequest.FieldViolation`): a path such as
    /// `readings[17].time` or `from`, and what was wrong with it.
    public struct FieldViolation: Sendable, Equatable {
        public var field: String
        public var description: String
        public init(field: String, description: String) {
            self.field = field
            self.description = description
        }
    }

    /// What was not found (`ResourceInfo`): a type such as `twin.v1.Device` and its name.
    public struct Resource: Sendable, Equatable {
        public var type: String
        public var name: String
        public init(type: String, name: String) {
            self.type = type
            self.name = name
        }
    }

    public var code: Code
    public var message: String
    public var reason: Reason
    /// `ErrorInfo.metadata`: short values programs use (`batch`, `reading`, `device`, …).
    public var metadata: [String: String]
    public var violations: [FieldViolation]
    /// `RetryInfo.retry_delay`: when trying again makes sense (throttling, a full queue).
    public var retryAfter: Nanos?
    public var resource: Resource?

    public init(_ code: Code, _ message: String, reason: Reason? = nil, metadata: [String: String] = [:]) {
        self.code = code
        self.message = message
        self.reason = reason ?? .generic(code)
        self.metadata = metadata
        self.violations = []
        self.retryAfter = nil
        self.resource = nil
    }

    public var description: String { message }

    public static func invalidArgument(_ message: String, reason: Reason = .requestInvalid) -> TwinError {
        .init(.invalidArgument, message, reason: reason)
    }
    public static func notFound(_ message: String, reason: Reason = .notFound) -> TwinError { .init(.notFound, message, reason: reason) }
    public static func failedPrecondition(_ message: String, reason: Reason = .preconditionFailed) -> TwinError {
        .init(.failedPrecondition, message, reason: reason)
    }
    public static func unavailable(_ message: String) -> TwinError { .init(.unavailable, message) }
    public static func internalError(_ message: String) -> TwinError { .init(.internal, message) }
    public static func unauthenticated(_ reason: Reason, _ message: String) -> TwinError { .init(.unauthenticated, message, reason: reason) }
    public static func permissionDenied(_ reason: Reason, _ message: String) -> TwinError { .init(.permissionDenied, message, reason: reason) }

    /// NOT_FOUND for a resource a request named: `ResourceInfo` and the reason say which.
    public static func missing(_ reason: Reason, type: String, name: String, _ message: String) -> TwinError {
        var e = TwinError(.notFound, message, reason: reason)
        e.resource = Resource(type: type, name: String(name.prefix(200)))
        return e
    }

    /// The one "device not found" error, for every method that takes a device id.
    public static func deviceNotFound(_ id: String, field: String? = nil) -> TwinError {
        var e = missing(.deviceNotFound, type: "twin.v1.Device", name: id, "device '\(id.prefix(80))' not found")
        e.metadata["device"] = String(id.prefix(200))
        if let field { e.violations = [FieldViolation(field: field, description: e.message)] }
        return e
    }

    /// The same error naming a request field (`BadRequest`).
    public func field(_ path: String) -> TwinError {
        var e = self
        e.violations.append(FieldViolation(field: path, description: message))
        return e
    }

    public func adding(_ metadata: [String: String]) -> TwinError {
        var e = self
        e.metadata.merge(metadata) { _, new in new }
        return e
    }

    public func retry(after delay: Nanos) -> TwinError {
        var e = self
        e.retryAfter = delay
        return e
    }

    /// The same error with `prefix` before its message (what and where, for the reader).
    public func prefixed(_ prefix: String, suffix: String = "") -> TwinError {
        var e = self
        e.message = prefix + message + suffix
        return e
    }
}
