import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// An OPC UA client session on one server (OPC 10000-4): UA-TCP, a secure channel with
/// SecurityPolicy None renewed before its token expires, a session activated anonymously or with
/// a user name and password, and the services twin uses (Browse, TranslateBrowsePathsToNodeIds,
/// Read, CreateSubscription, CreateMonitoredItems, Publish). Every failure is a `UAError` that
/// names the server's StatusCode.
public final class UAClient: Sendable {
    /// How the session is activated.
    public enum Identity: Sendable, Equatable {
        case anonymous
        case userName(String, password: String)
    }

    public let endpoint: EndpointURL
    /// The endpoints the server listed in CreateSession.
    public let serverEndpoints: [EndpointDescription]
    /// The channel's security.
    public let security: ChannelSecurity

    private let channel: any Channel
    private let handler: UAChannelHandler
    private struct State {
        var authenticationToken = NodeId.null
        var handle: UInt32 = 0
        var renewal: Task<Void, Never>?
        var closed = false
    }
    private let state = Mutex(State())

    /// The secure channel lifetime asked for (ms); twin renews at three quarters of what the server grants.
    private let requestedLifetime: UInt32

    private init(endpoint: EndpointURL, channel: any Channel, handler: UAChannelHandler, serverEndpoints: [EndpointDescription], security: ChannelSecurity,
                 lifetime: UInt32 = 600_000) {
        self.requestedLifetime = lifetime
        self.endpoint = endpoint
        self.channel = channel
        self.handler = handler
        self.serverEndpoints = serverEndpoints
        self.security = security
    }

    /// Connects, opens the secure channel and an activated session. With a security policy other
    /// than None, the server's endpoints are first asked for over a None channel (GetEndpoints,
    /// as discovery does), the server certificate of the endpoint with that policy and mode is
    /// checked against the trust list, and the session's channel is signed (and encrypted) with it.
    public static func connect(
        _ url: String, identity: Identity = .anonymous, security: ChannelSecurity = .none, sessionName: String = "twin",
        timeout: Duration = .seconds(10), channelLifetime: Duration = .seconds(600), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> UAClient {
        let lifetime = UInt32(clamping: max(10, channelLifetime.components.seconds) * 1000)
        let endpoint = try EndpointURL(url)
        var server: PeerCertificate?
        if !security.isNone {
            guard security.identity != nil else { throw UAError(.badSecurityChecksFailed, "\(security.policy.name) needs an application certificate") }
            let endpoints = try await getEndpoints(endpoint, timeout: timeout, group: group)
            guard let chosen = endpoints.first(where: { $0.securityPolicyURI == security.policy.rawValue && $0.securityMode == security.mode.rawValue }) else {
                let offered = endpoints.map { "\(SecurityPolicy(rawValue: $0.securityPolicyURI)?.name ?? $0.securityPolicyURI) \(MessageSecurityMode(rawValue: $0.securityMode)?.name ?? "\($0.securityMode)")" }
                throw UAError(.badSecurityPolicyRejected, "the server offers no \(security.policy.name) \(security.mode.name) endpoint (it offers: \(Set(offered).sorted().joined(separator: ", ")))")
            }
            let certificate = try PeerCertificate(der: chosen.serverCertificate)
            try security.trust?.check(certificate)
            server = certificate
        }
        let (channel, handler) = try await open(endpoint, timeout: timeout, group: group, secure: SecureChannelState(security: security, server: server))
        do {
            let provisional = UAClient(endpoint: endpoint, channel: channel, handler: handler, serverEndpoints: [], security: security, lifetime: lifetime)
            let granted = try await provisional.openSecureChannel(renew: false)
            let session = try await provisional.createSession(name: sessionName, server: server)
            let client = UAClient(endpoint: endpoint, channel: channel, handler: handler, serverEndpoints: session.endpoints, security: security, lifetime: lifetime)
            client.state.withLock { $0.authenticationToken = session.token }
            try await client.activateSession(identity, serverCertificate: session.certificate, serverNonce: session.nonce)
            client.scheduleRenewal(after: granted)
            return client
        } catch {
            channel.close(promise: nil)
            throw UAError.from(error)
        }
    }

    /// The server's endpoints, asked over a channel of its own with SecurityPolicy None.
    public static func getEndpoints(_ endpoint: EndpointURL, timeout: Duration = .seconds(10), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> [EndpointDescription] {
        let (channel, handler) = try await open(endpoint, timeout: timeout, group: group, secure: SecureChannelState(security: .none, server: nil))
        let client = UAClient(endpoint: endpoint, channel: channel, handler: handler, serverEndpoints: [], security: .none)
        defer { channel.close(promise: nil) }
        do {
            _ = try await client.openSecureChannel(renew: false)
            var r = try await client.call(UAType.getEndpointsRequest, expecting: UAType.getEndpointsResponse) { w in
                w.string(endpoint.text)
                w.array([String]()) { $0.string($1) }
                w.array([String]()) { $0.string($1) }
            }
            return try r.array { (r: inout UAReader) throws(UAError) -> EndpointDescription in try r.endpointDescription() }
        } catch {
            throw UAError.from(error)
        }
    }

    /// TCP, Hello/Acknowledge: a connection ready for OpenSecureChannel.
    private static func open(_ endpoint: EndpointURL, timeout: Duration, group: any EventLoopGroup, secure: SecureChannelState) async throws -> (any Channel, UAChannelHandler) {
        let handler = UAChannelHandler()
        handler.secure = secure
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(UAFrameDecoder(maxChunk: Int(UAChannelHandler.receiveChunk))))
                        try ch.pipeline.syncOperations.addHandler(handler)
                    }
                }
                .connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            let why = "\(error)".contains("Connection refused") ? "connection refused" : "\(error)"
            throw UAError(.badNotConnected, "cannot connect to \(endpoint.host):\(endpoint.port): \(why)")
        }
        do {
            let hello = channel.eventLoop.makePromise(of: UALimits.self)
            channel.eventLoop.execute { handler.sayHello(endpoint: endpoint.text, promise: hello) }
            let helloTimeout = channel.eventLoop.scheduleTask(in: .seconds(Int64(timeout.components.seconds))) {
                hello.fail(UAError(.badTimeout, "no Acknowledge to Hello within \(timeout)"))
            }
            _ = try await hello.futureResult.get()
            helloTimeout.cancel()
            return (channel, handler)
        } catch {
            channel.close(promise: nil)
            throw UAError.from(error)
        }
    }

    /// The secure channel token in use (a renewal brings a new one).
    public var tokenId: UInt32 {
        get async { (try? await channel.eventLoop.submit { self.handler.tokenId }.get()) ?? 0 }
    }

    /// True while the connection is up.
    public var isOpen: Bool {
        get async {
            (try? await channel.eventLoop.submit { self.handler.isOpen }.get()) ?? false
        }
    }

    /// Resolves when the connection is gone, with why.
    public func closed() async -> UAError {
        try? await channel.closeFuture.get()
        return (try? await channel.eventLoop.submit { self.handler.closedReason }.get()) ?? nil
            ?? UAError(.badConnectionClosed, "connection closed")
    }

    // MARK: Requests

    /// Sends one request and returns a reader positioned after the response header. A
    /// ServiceFault or a bad ServiceResult throws with its StatusCode.
    public func call(
        _ request: UInt32, expecting response: UInt32, timeout: Duration = .seconds(10), kind: String = "MSG",
        _ body: (inout UAWriter) -> Void
    ) async throws -> UAReader {
        let (token, handle) = state.withLock { s -> (NodeId, UInt32) in
            s.handle = s.handle == UInt32.max ? 1 : s.handle + 1
            return (s.authenticationToken, s.handle)
        }
        var w = UAWriter()
        w.nodeId(NodeId(0, request))
        let ms = UInt32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        w.requestHeader(authenticationToken: token, handle: handle, timeoutMilliseconds: ms, now: UADateTime.ticks(unixNanos: Self.nowNanos()))
        body(&w)
        let bytes = w.bytes
        let promise = channel.eventLoop.makePromise(of: [UInt8].self)
        let handler = self.handler
        let amount = TimeAmount.milliseconds(Int64(ms) + 2_000)
        channel.eventLoop.execute { handler.send(type: kind, body: bytes, timeout: amount, promise: promise) }
        let answer: [UInt8]
        do { answer = try await promise.futureResult.get() } catch { throw UAError.from(error) }
        var r = UAReader(answer)
        let type = try r.nodeId()
        if type == NodeId(0, UAType.serviceFault) {
            let header = try r.responseHeader()
            throw UAError(header.serviceResult, "the server refused \(Self.serviceName(request))")
        }
        guard type == NodeId(0, response) else {
            throw UAError(.badUnknownResponse, "\(Self.serviceName(request)) answered with \(type), not i=\(response)")
        }
        let header = try r.responseHeader()
        if header.serviceResult.isBad { throw UAError(header.serviceResult, "the server refused \(Self.serviceName(request))") }
        return r
    }

    static func serviceName(_ request: UInt32) -> String {
        switch request {
        case UAType.openSecureChannelRequest: return "OpenSecureChannel"
        case UAType.createSessionRequest: return "CreateSession"
        case UAType.activateSessionRequest: return "ActivateSession"
        case UAType.closeSessionRequest: return "CloseSession"
        case UAType.browseRequest: return "Browse"
        case UAType.browseNextRequest: return "BrowseNext"
        case UAType.translateBrowsePathsRequest: return "TranslateBrowsePathsToNodeIds"
        case UAType.readRequest: return "Read"
        case UAType.createSubscriptionRequest: return "CreateSubscription"
        case UAType.createMonitoredItemsRequest: return "CreateMonitoredItems"
        case UAType.publishRequest: return "Publish"
        case UAType.deleteSubscriptionsRequest: return "DeleteSubscriptions"
        default: return "request i=\(request)"
        }
    }

    static func nowNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    // MARK: Secure channel and session

    /// Opens (or renews) the secure channel; returns the lifetime granted, in milliseconds.
    private func openSecureChannel(renew: Bool) async throws -> UInt32 {
        let secured = !security.isNone
        let clientNonce: [UInt8] = secured ? Self.nonce() : []
        var r = try await call(UAType.openSecureChannelRequest, expecting: UAType.openSecureChannelResponse, kind: "OPN") { w in
            w.uint32(0)  // client protocol version
            w.uint32(renew ? 1 : 0)  // Issue / Renew
            w.uint32(security.mode.rawValue)
            w.byteString(clientNonce)
            w.uint32(requestedLifetime)
        }
        _ = try r.uint32()  // server protocol version
        let channelId = try r.uint32()
        let tokenId = try r.uint32()
        _ = try r.dateTime()
        let lifetime = try r.uint32()
        let serverNonce = try r.byteString() ?? []
        if secured && serverNonce.count < 32 { throw UAError(.badNonceInvalid, "the server's nonce has \(serverNonce.count) bytes (at least 32)") }
        let handler = self.handler
        try await channel.eventLoop.submit {
            if secured { handler.secure.install(token: tokenId, clientNonce: clientNonce, serverNonce: serverNonce) }
            handler.channelId = channelId
            handler.tokenId = tokenId
        }.get()
        return max(lifetime, 10_000)
    }

    static func nonce() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    private func scheduleRenewal(after lifetime: UInt32) {
        let task = Task { [weak self] in
            var lifetime = lifetime
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(Int(lifetime) * 3 / 4))
                guard !Task.isCancelled, let self else { return }
                do { lifetime = try await self.openSecureChannel(renew: true) } catch {
                    self.channel.close(promise: nil)
                    return
                }
            }
        }
        state.withLock { $0.renewal = task }
    }

    private struct Session {
        var endpoints: [EndpointDescription]
        var token: NodeId
        var certificate: [UInt8]
        var nonce: [UInt8]
    }

    private func createSession(name: String, server: PeerCertificate?) async throws -> Session {
        let clientNonce = Self.nonce()
        let ownCertificate = security.isNone ? nil : security.identity?.certificate
        var r = try await call(UAType.createSessionRequest, expecting: UAType.createSessionResponse) { w in
            // ApplicationDescription of twin.
            w.string(ApplicationIdentity.applicationURI)
            w.string("urn:twin")
            w.localizedText(LocalizedText(text: "twin"))
            w.uint32(1)  // Client
            w.string(nil); w.string(nil)
            w.array([String]()) { $0.string($1) }
            w.string(nil)  // server uri
            w.string(endpoint.text)
            w.string(name)
            w.byteString(clientNonce)
            w.byteString(ownCertificate)
            w.double(120_000)  // session timeout, ms
            w.uint32(UInt32(UAChannelHandler.maxMessage))
        }
        _ = try r.nodeId()  // session id
        let token = try r.nodeId()
        _ = try r.double()
        let serverNonce = try r.byteString() ?? []
        let serverCertificate = try r.byteString() ?? []
        let endpoints = try r.array { (r: inout UAReader) throws(UAError) -> EndpointDescription in try r.endpointDescription() }
        _ = try r.array { (r: inout UAReader) throws(UAError) -> Void in _ = try r.byteString(); _ = try r.byteString() }
        _ = try r.string()  // signature algorithm
        let signature = try r.byteString() ?? []
        if let server, let ownCertificate {
            // The server proves it holds its key: its signature over our certificate and nonce.
            guard server.verify(signature[...], for: ownCertificate + clientNonce) else {
                throw UAError(.badApplicationSignatureInvalid, "the server's CreateSession signature does not verify with its certificate")
            }
        }
        return Session(endpoints: endpoints, token: token, certificate: serverCertificate, nonce: serverNonce)
    }

    /// The user token policy for this kind of identity on the endpoint of the channel's policy and mode.
    func policy(for type: UserTokenPolicy.TokenType) throws(UAError) -> UserTokenPolicy {
        let same = serverEndpoints.filter { $0.securityPolicyURI == security.policy.rawValue && $0.securityMode == security.mode.rawValue }
        let candidates = (same.isEmpty ? serverEndpoints : same).flatMap(\.userTokenPolicies).filter { $0.tokenType == type.rawValue }
        let usable = candidates.filter { SecurityPolicy(rawValue: $0.securityPolicyURI ?? "") != nil || ($0.securityPolicyURI ?? "").isEmpty }
        if let first = usable.first { return first }
        if candidates.isEmpty {
            throw UAError(.badIdentityTokenRejected, "the server offers no \(type == .anonymous ? "anonymous" : "user name") login on \(security.policy.name) \(security.mode.name)")
        }
        throw UAError(.badSecurityPolicyRejected, "the server wants the password protected with \(candidates[0].securityPolicyURI ?? ""), which twin does not speak")
    }

    private func activateSession(_ identity: Identity, serverCertificate: [UInt8], serverNonce: [UInt8]) async throws {
        let token: ExtensionObject
        switch identity {
        case .anonymous:
            let p = try policy(for: .anonymous)
            var w = UAWriter()
            w.string(p.policyId)
            token = ExtensionObject(typeId: NodeId(0, UAType.anonymousIdentityToken), encoding: 1, body: w.bytes)
        case .userName(let user, let password):
            let p = try policy(for: .userName)
            // The token's own policy, else the channel's, says how the password travels.
            let tokenPolicy = (p.securityPolicyURI ?? "").isEmpty ? security.policy : SecurityPolicy(rawValue: p.securityPolicyURI ?? "") ?? security.policy
            var w = UAWriter()
            w.string(p.policyId)
            w.string(user)
            if tokenPolicy == .none {
                w.byteString(Array(password.utf8))
                w.string(nil)
            } else {
                let certificate = try PeerCertificate(der: serverCertificate)
                var plain = UAWriter()
                plain.uint32(UInt32(password.utf8.count + serverNonce.count))
                plain.raw(Array(password.utf8))
                plain.raw(serverNonce)
                w.byteString(try certificate.encrypt(plain.bytes))
                w.string("http://www.w3.org/2001/04/xmlenc#rsa-oaep")
            }
            token = ExtensionObject(typeId: NodeId(0, UAType.userNameIdentityToken), encoding: 1, body: w.bytes)
        }
        var clientSignature: [UInt8]?
        if !security.isNone, let own = security.identity {
            clientSignature = try own.sign(serverCertificate + serverNonce)
        }
        do {
            _ = try await call(UAType.activateSessionRequest, expecting: UAType.activateSessionResponse) { w in
                w.string(clientSignature == nil ? nil : "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
                w.byteString(clientSignature)
                w.array([Int]()) { _, _ in }  // client software certificates
                w.array(["en"]) { $0.string($1) }
                w.extensionObject(token)
                w.string(nil); w.byteString(nil)  // user token signature
            }
        } catch let error as UAError {
            if case .userName(let user, _) = identity {
                throw UAError(error.status, "the server refused the login of '\(user.prefix(64))'")
            }
            throw UAError(error.status, "the server refused the anonymous login")
        }
    }

    /// Drops the connection at once (what a cancelled reader does); waiting requests fail.
    public func abort() {
        channel.close(promise: nil)
    }

    /// Closes the session and the secure channel, then the connection.
    public func close() async {
        let renewal = state.withLock { s -> Task<Void, Never>? in
            defer { s.closed = true; s.renewal = nil }
            return s.closed ? nil : s.renewal
        }
        renewal?.cancel()
        if await isOpen {
            _ = try? await call(UAType.closeSessionRequest, expecting: UAType.closeSessionResponse, timeout: .seconds(2)) { $0.boolean(true) }
            let handler = self.handler
            var w = UAWriter()
            w.nodeId(NodeId(0, UAType.closeSecureChannelRequest))
            w.requestHeader(authenticationToken: .null, handle: 0, timeoutMilliseconds: 1000, now: UADateTime.ticks(unixNanos: Self.nowNanos()))
            let body = w.bytes
            let ignored = channel.eventLoop.makePromise(of: [UInt8].self)
            ignored.futureResult.whenComplete { _ in }
            channel.eventLoop.execute { handler.send(type: "CLO", body: body, timeout: .milliseconds(100), promise: ignored) }
        }
        try? await channel.close()
    }

    // MARK: Services

    /// The forward hierarchical references of a node (BrowseNext followed to the end).
    public func browse(_ node: NodeId, maxReferences: Int = 10_000) async throws -> [ReferenceDescription] {
        var r = try await call(UAType.browseRequest, expecting: UAType.browseResponse) { w in
            w.nodeId(.null); w.dateTime(0); w.uint32(0)  // view
            w.uint32(1000)  // max references per node
            w.array([node]) { w, n in
                w.nodeId(n)
                w.uint32(0)  // forward
                w.nodeId(UANode.hierarchicalReferences)
                w.boolean(true)
                w.uint32(0)  // all node classes
                w.uint32(63)  // all result fields
            }
        }
        var (status, continuation, references) = try Self.browseResult(&r)
        if status.isBad { throw UAError(status, "Browse of \(node) failed") }
        while let point = continuation, !point.isEmpty, references.count < maxReferences {
            var next = try await call(UAType.browseNextRequest, expecting: UAType.browseNextResponse) { w in
                w.boolean(false)
                w.array([point]) { $0.byteString($1) }
            }
            let more = try Self.browseResult(&next)
            if more.0.isBad { throw UAError(more.0, "BrowseNext of \(node) failed") }
            references += more.2
            continuation = more.1
        }
        return Array(references.prefix(maxReferences))
    }

    private static func browseResult(_ r: inout UAReader) throws(UAError) -> (StatusCode, [UInt8]?, [ReferenceDescription]) {
        let results = try r.array { (r: inout UAReader) throws(UAError) -> (StatusCode, [UInt8]?, [ReferenceDescription]) in
            let status = try r.statusCode()
            let point = try r.byteString()
            let refs = try r.array { (r: inout UAReader) throws(UAError) -> ReferenceDescription in try r.referenceDescription() }
            return (status, point, refs)
        }
        guard let first = results.first else { throw UAError(.badUnknownResponse, "Browse answered no result") }
        return first
    }

    /// The node at the end of a path of BrowseNames from `start`, following hierarchical references.
    public func translate(_ path: [QualifiedName], from start: NodeId = UANode.objects) async throws -> NodeId {
        try await translate([(start, path)])[0].get()
    }

    /// Several paths at once; each answers its node or the StatusCode that refused it.
    public func translate(_ paths: [(start: NodeId, path: [QualifiedName])], reference: NodeId = UANode.hierarchicalReferences) async throws -> [Result<NodeId, UAError>] {
        if paths.isEmpty { return [] }
        var r = try await call(UAType.translateBrowsePathsRequest, expecting: UAType.translateBrowsePathsResponse) { w in
            w.array(paths) { w, p in
                w.nodeId(p.start)
                w.array(p.path) { w, name in
                    w.nodeId(reference)
                    w.boolean(false)
                    w.boolean(true)
                    w.qualifiedName(name)
                }
            }
        }
        let results = try r.array { (r: inout UAReader) throws(UAError) -> (StatusCode, [ExpandedNodeId]) in
            let status = try r.statusCode()
            let targets = try r.array { (r: inout UAReader) throws(UAError) -> ExpandedNodeId in
                let id = try r.expandedNodeId()
                _ = try r.uint32()
                return id
            }
            return (status, targets)
        }
        guard results.count == paths.count else { throw UAError(.badUnknownResponse, "TranslateBrowsePathsToNodeIds answered \(results.count) results for \(paths.count) paths") }
        return zip(paths, results).map { p, result in
            let text = p.path.map(\.description).joined(separator: "/")
            if result.0.isBad { return .failure(UAError(result.0, "no node at \(text) from \(p.start)")) }
            guard let target = result.1.first(where: { $0.serverIndex == 0 }) else { return .failure(UAError(.badNoMatch, "no node at \(text) from \(p.start)")) }
            return .success(target.nodeId)
        }
    }

    /// Reads one attribute of several nodes (the Value by default).
    public func read(_ nodes: [NodeId], attribute: UInt32 = UAAttribute.value) async throws -> [DataValue] {
        if nodes.isEmpty { return [] }
        var r = try await call(UAType.readRequest, expecting: UAType.readResponse) { w in
            w.double(0)
            w.uint32(0)  // source timestamps
            w.array(nodes) { w, n in
                w.nodeId(n)
                w.uint32(attribute)
                w.string(nil)
                w.qualifiedName(QualifiedName(0, ""))
            }
        }
        let values = try r.array { (r: inout UAReader) throws(UAError) -> DataValue in try r.dataValue() }
        guard values.count == nodes.count else { throw UAError(.badUnknownResponse, "Read answered \(values.count) values for \(nodes.count) nodes") }
        return values
    }

    /// A subscription: its id and the publishing interval and keep-alive count the server granted.
    public struct Subscription: Sendable {
        public var id: UInt32
        public var publishingInterval: Double
        public var keepAliveCount: UInt32
    }

    public func createSubscription(publishingInterval: Double, keepAliveCount: UInt32 = 10, lifetimeCount: UInt32 = 60) async throws -> Subscription {
        var r = try await call(UAType.createSubscriptionRequest, expecting: UAType.createSubscriptionResponse) { w in
            w.double(publishingInterval)
            w.uint32(max(lifetimeCount, keepAliveCount * 3))
            w.uint32(keepAliveCount)
            w.uint32(0)  // no limit per publish
            w.boolean(true)
            w.byte(0)
        }
        let id = try r.uint32()
        let interval = try r.double()
        _ = try r.uint32()
        let keepAlive = try r.uint32()
        return Subscription(id: id, publishingInterval: interval.isFinite && interval > 0 ? interval : publishingInterval, keepAliveCount: max(keepAlive, 1))
    }

    /// One item to monitor: a node's Value, reported under `handle`.
    public struct MonitoredItem: Sendable {
        public var node: NodeId
        public var handle: UInt32
        public var samplingInterval: Double
        public init(node: NodeId, handle: UInt32, samplingInterval: Double) {
            self.node = node
            self.handle = handle
            self.samplingInterval = samplingInterval
        }
    }

    /// Creates the items in requests of at most `perRequest`; answers each item's StatusCode.
    public func createMonitoredItems(subscription: UInt32, _ items: [MonitoredItem], perRequest: Int = 500) async throws -> [StatusCode] {
        var statuses: [StatusCode] = []
        var start = 0
        while start < items.count {
            let part = Array(items[start..<min(items.count, start + perRequest)])
            var r = try await call(UAType.createMonitoredItemsRequest, expecting: UAType.createMonitoredItemsResponse, timeout: .seconds(30)) { w in
                w.uint32(subscription)
                w.uint32(0)  // source timestamps
                w.array(part) { w, item in
                    w.nodeId(item.node)
                    w.uint32(UAAttribute.value)
                    w.string(nil)
                    w.qualifiedName(QualifiedName(0, ""))
                    w.uint32(2)  // Reporting
                    w.uint32(item.handle)
                    w.double(item.samplingInterval)
                    w.extensionObject(.empty)
                    w.uint32(10)  // queue size: a burst between publishes is kept
                    w.boolean(true)
                }
            }
            let results = try r.array { (r: inout UAReader) throws(UAError) -> StatusCode in
                let status = try r.statusCode()
                _ = try r.uint32(); _ = try r.double(); _ = try r.uint32()
                _ = try r.extensionObject()
                return status
            }
            guard results.count == part.count else { throw UAError(.badUnknownResponse, "CreateMonitoredItems answered \(results.count) results for \(part.count) items") }
            statuses += results
            start += part.count
        }
        return statuses
    }

    /// One Publish: acknowledges what was taken, waits for notifications or a keep-alive.
    public func publish(acknowledging acks: [(subscription: UInt32, sequence: UInt32)], timeout: Duration) async throws -> PublishResult {
        var r = try await call(UAType.publishRequest, expecting: UAType.publishResponse, timeout: timeout) { w in
            w.array(acks) { w, a in
                w.uint32(a.subscription)
                w.uint32(a.sequence)
            }
        }
        return try r.publishResult()
    }
}

extension UAError {
    /// Any error as a UAError (NIO's connection errors become BadCommunicationError).
    public static func from(_ error: any Error) -> UAError {
        if let e = error as? UAError { return e }
        if error is ChannelError { return UAError(.badConnectionClosed, "the connection closed (\(error))") }
        return UAError(.badCommunicationError, "\(error)")
    }
}
