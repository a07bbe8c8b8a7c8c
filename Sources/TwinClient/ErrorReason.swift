import GRPCCore
import GRPCProtobuf
import TwinCore

/// What twind says about a failed call beyond its code: the `google.rpc.Status` details in the
/// `grpc-status-details-bin` trailer. Clients branch on `twinReason`, never on message text.
extension RPCError {
    /// The details twind attached, or nil (an error from the transport, or from another server).
    public var googleStatus: GoogleRPCStatus? { (try? unpackGoogleRPCStatus()) ?? nil }

    /// The twin.v1 ErrorInfo: its reason (nil when twind named none this client knows) and metadata.
    public var twinErrorInfo: (reason: TwinError.Reason?, metadata: [String: String])? {
        for detail in googleStatus?.details ?? [] {
            if let info = detail.errorInfo, info.domain == "twin.v1" { return (TwinError.Reason(rawValue: info.reason), info.metadata) }
        }
        return nil
    }

    public var twinReason: TwinError.Reason? { twinErrorInfo?.reason }
    public var twinMetadata: [String: String] { twinErrorInfo?.metadata ?? [:] }

    /// RetryInfo's delay, when twind said when to try again.
    public var retryDelay: Duration? {
        for detail in googleStatus?.details ?? [] { if let retry = detail.retryInfo { return retry.delay } }
        return nil
    }

    /// BadRequest's field violations (field path, description).
    public var fieldViolations: [(field: String, description: String)] {
        (googleStatus?.details ?? []).flatMap { $0.badRequest?.violations.map { ($0.field, $0.violationDescription) } ?? [] }
    }
}
