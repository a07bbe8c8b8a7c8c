/// The services the client uses, encoded and decoded per OPC 10000-4 (services) and 10000-6
/// (their binary encoding). Each request is identified on the wire by the NodeId of its
/// DefaultBinary encoding in namespace 0.
public enum UAType {
    public static let serviceFault: UInt32 = 397
    public static let getEndpointsRequest: UInt32 = 428
    public static let getEndpointsResponse: UInt32 = 431
    public static let openSecureChannelRequest: UInt32 = 446
    public static let openSecureChannelResponse: UInt32 = 449
    public static let closeSecureChannelRequest: UInt32 = 452
    public static let createSessionRequest: UInt32 = 461
    public static let createSessionResponse: UInt32 = 464
    public static let activateSessionRequest: UInt32 = 467
    public static let activateSessionResponse: UInt32 = 470
    public static let closeSessionRequest: UInt32 = 473
    public static let closeSessionResponse: UInt32 = 476
    public static let browseRequest: UInt32 = 527
    public static let browseResponse: UInt32 = 530
    public static let browseNextRequest: UInt32 = 533
    public static let browseNextResponse: UInt32 = 536
    public static let translateBrowsePathsRequest: UInt32 = 554
    public static let translateBrowsePathsResponse: UInt32 = 557
    public static let readRequest: UInt32 = 631
    public static let readResponse: UInt32 = 634
    public static let createMonitoredItemsRequest: UInt32 = 751
    public static let createMonitoredItemsResponse: UInt32 = 754
    public static let createSubscriptionRequest: UInt32 = 787
    public static let createSubscriptionResponse: UInt32 = 790
    public static let publishRequest: UInt32 = 826
    public static let publishResponse: UInt32 = 829
    public static let deleteSubscriptionsRequest: UInt32 = 847
    public static let deleteSubscriptionsResponse: UInt32 = 850

    public static let anonymousIdentityToken: UInt32 = 321
    public static let userNameIdentityToken: UInt32 = 324
    public static let dataChangeNotification: UInt32 = 811
    public static let statusChangeNotification: UInt32 = 820
    public static let range: UInt32 = 886
    public static let euInformation: UInt32 = 889
}

/// Well-known nodes of namespace 0.
public enum UANode {
    public static let root = NodeId(0, 84)
    public static let objects = NodeId(0, 85)
    public static let server = NodeId(0, 2253)
    public static let hierarchicalReferences = NodeId(0, 33)
    public static let hasProperty = NodeId(0, 46)
}

/// Attribute ids (OPC 10000-4 §5 / 10000-6 Annex A).
public enum UAAttribute {
    public static let nodeClass: UInt32 = 2
    public static let browseName: UInt32 = 3
    public static let displayName: UInt32 = 4
    public static let value: UInt32 = 13
    public static let dataType: UInt32 = 14
}

public struct ResponseHeader: Sendable {
    public var timestamp: Int64
    public var requestHandle: UInt32
    public var serviceResult: StatusCode
}

extension UAReader {
    public mutating func responseHeader() throws(UAError) -> ResponseHeader {
        let timestamp = try dateTime()
        let handle = try uint32()
        let result = try statusCode()
        try skipDiagnosticInfo()
        _ = try array { (r: inout UAReader) throws(UAError) -> String? in try r.string() }
        _ = try extensionObject()
        return ResponseHeader(timestamp: timestamp, requestHandle: handle, serviceResult: result)
    }

    /// Skips an array of DiagnosticInfo.
    mutating func skipDiagnosticInfos() throws(UAError) {
        _ = try array { (r: inout UAReader) throws(UAError) -> Void in try r.skipDiagnosticInfo() }
    }
}

extension UAWriter {
    /// The RequestHeader every service request starts with.
    mutating func requestHeader(authenticationToken: NodeId, handle: UInt32, timeoutMilliseconds: UInt32, now: Int64) {
        nodeId(authenticationToken)
        dateTime(now)
        uint32(handle)
        uint32(0)  // return no diagnostics
        string(nil)  // audit entry id
        uint32(timeoutMilliseconds)
        extensionObject(.empty)
    }
}

// MARK: - Results

/// One of a server's endpoints, as CreateSession lists them: enough to choose a user token policy.
public struct EndpointDescription: Sendable {
    public var url: String
    public var securityMode: UInt32
    public var securityPolicyURI: String
    public var serverCertificate: [UInt8]
    public var userTokenPolicies: [UserTokenPolicy]
}

public struct UserTokenPolicy: Sendable, Equatable {
    public enum TokenType: UInt32, Sendable { case anonymous = 0, userName = 1, certificate = 2, issuedToken = 3 }
    public var policyId: String
    public var tokenType: UInt32
    public var securityPolicyURI: String?
}

extension UAReader {
    mutating func applicationDescription() throws(UAError) {
        _ = try string(); _ = try string()
        _ = try localizedText()
        _ = try uint32()
        _ = try string(); _ = try string()
        _ = try array { (r: inout UAReader) throws(UAError) -> String? in try r.string() }
    }

    public mutating func endpointDescription() throws(UAError) -> EndpointDescription {
        let url = try string() ?? ""
        try applicationDescription()
        let certificate = try byteString() ?? []
        let mode = try uint32()
        let policy = try string() ?? ""
        let tokens = try array { (r: inout UAReader) throws(UAError) -> UserTokenPolicy in
            let id = try r.string() ?? ""
            let type = try r.uint32()
            _ = try r.string(); _ = try r.string()
            let uri = try r.string()
            return UserTokenPolicy(policyId: id, tokenType: type, securityPolicyURI: uri)
        }
        _ = try string()
        _ = try byte()
        return EndpointDescription(url: url, securityMode: mode, securityPolicyURI: policy, serverCertificate: certificate, userTokenPolicies: tokens)
    }
}

/// A reference Browse returned: where it leads and what is there.
public struct ReferenceDescription: Sendable, Equatable {
    public var referenceType: NodeId
    public var isForward: Bool
    public var nodeId: ExpandedNodeId
    public var browseName: QualifiedName
    public var displayName: String
    public var nodeClass: UInt32
    public var typeDefinition: ExpandedNodeId

    /// Object, Variable, Method, … (OPC 10000-3 NodeClass).
    public var nodeClassName: String {
        switch nodeClass {
        case 1: return "Object"
        case 2: return "Variable"
        case 4: return "Method"
        case 8: return "ObjectType"
        case 16: return "VariableType"
        case 32: return "ReferenceType"
        case 64: return "DataType"
        case 128: return "View"
        default: return "NodeClass\(nodeClass)"
        }
    }
}

extension UAReader {
    public mutating func referenceDescription() throws(UAError) -> ReferenceDescription {
        let type = try nodeId()
        let forward = try boolean()
        let node = try expandedNodeId()
        let name = try qualifiedName()
        let display = try localizedText()
        let nodeClass = try uint32()
        let typeDefinition = try expandedNodeId()
        return ReferenceDescription(referenceType: type, isForward: forward, nodeId: node, browseName: name,
                                    displayName: display.text ?? name.name, nodeClass: nodeClass, typeDefinition: typeDefinition)
    }
}

/// One value change a subscription delivered.
public struct MonitoredItemNotification: Sendable, Equatable {
    public var clientHandle: UInt32
    public var value: DataValue
}

/// What one Publish answered.
public struct PublishResult: Sendable {
    public var subscriptionId: UInt32
    public var sequenceNumber: UInt32
    /// False for a keep-alive (nothing to acknowledge).
    public var hasData: Bool
    public var moreNotifications: Bool
    public var changes: [MonitoredItemNotification]
    /// A StatusChangeNotification's status (the subscription ended or timed out), if one came.
    public var statusChange: StatusCode?
    public var publishTime: Int64
}

extension UAReader {
    /// The body of a PublishResponse after its header.
    public mutating func publishResult() throws(UAError) -> PublishResult {
        let subscription = try uint32()
        _ = try array { (r: inout UAReader) throws(UAError) -> UInt32 in try r.uint32() }
        let more = try boolean()
        let sequence = try uint32()
        let publishTime = try dateTime()
        let data = try array { (r: inout UAReader) throws(UAError) -> ExtensionObject in try r.extensionObject() }
        _ = try array { (r: inout UAReader) throws(UAError) -> StatusCode in try r.statusCode() }
        try skipDiagnosticInfos()
        var changes: [MonitoredItemNotification] = []
        var statusChange: StatusCode?
        for object in data where object.encoding == 1 {
            var body = UAReader(object.body)
            switch object.typeId {
            case NodeId(0, UAType.dataChangeNotification):
                changes += try body.array { (r: inout UAReader) throws(UAError) -> MonitoredItemNotification in
                    let handle = try r.uint32()
                    return MonitoredItemNotification(clientHandle: handle, value: try r.dataValue())
                }
            case NodeId(0, UAType.statusChangeNotification):
                statusChange = try body.statusCode()
            default:
                continue  // events: not taken
            }
        }
        return PublishResult(subscriptionId: subscription, sequenceNumber: sequence, hasData: !data.isEmpty, moreNotifications: more,
                             changes: changes, statusChange: statusChange, publishTime: publishTime)
    }
}

/// A variable's engineering information: `EngineeringUnits` (EUInformation) and `EURange` (Range).
public enum EngineeringInfo {
    /// The unit's display name from an EUInformation ExtensionObject.
    public static func unit(_ value: Variant?) -> String? {
        guard case .extensionObject(let e)? = value, e.typeId == NodeId(0, UAType.euInformation), e.encoding == 1 else { return nil }
        var r = UAReader(e.body)
        guard (try? r.string()) != nil, (try? r.int32()) != nil, let display = try? r.localizedText() else { return nil }
        return display.text
    }

    /// Low and high of a Range ExtensionObject, when both are finite and in order.
    public static func range(_ value: Variant?) -> (low: Double, high: Double)? {
        guard case .extensionObject(let e)? = value, e.typeId == NodeId(0, UAType.range), e.encoding == 1 else { return nil }
        var r = UAReader(e.body)
        guard let low = try? r.double(), let high = try? r.double(), low.isFinite, high.isFinite, low <= high else { return nil }
        return (low, high)
    }
}
