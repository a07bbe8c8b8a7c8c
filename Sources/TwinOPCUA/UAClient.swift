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

    private let channel: any Channel
    private let handler: UAChannelHandler
    private struct State {
        var authenticationToken = NodeId.null
        var handle: UInt32 = 0
        var renewal: Task<Void, Never>?
        var closed = false
    }
    private let state = Mutex(State())

    /// The secure channel lifetime twin asks for; it renews at three quarters of what the server grants.
    static let requestedLifetime: UInt32 = 600_000

    private init(endpoint: EndpointURL, channel: any Channel, handler: UAChannelHandler, serverEndpoints: [EndpointDescription]) {
        self.endpoint = endpoint
        self.channel = channel
        self.handler = handler
        self.serverEndpoints = serverEndpoints
    }

    /// Connects, opens the secure channel and an activated session.
    public static func connect(
        _ url: String, identity: Identity = .anonymous, sessionName: String = "twin", timeout: Duration = .seconds(10),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> UAClient {
        let endpoint = try EndpointURL(url)
        let handler = UAChannelHandler()
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
            let provisional = UAClient(endpoint: endpoint, channel: channel, handler: handler, serverEndpoints: [])
            let lifetime = try await provisional.openSecureChannel(renew: false)
            let (endpoints, session) = try await provisional.createSession(name: sessionName)
            let client = UAClient(endpoint: endpoint, channel: channel, handler: handler, serverEndpoints: endpoints)
            client.state.withLock { $0.authenticationToken = session }
            try await client.activateSession(identity)
            client.scheduleRenewal(after: lifetime)
            return client
        } catch {
            channel.close(promise: nil)
            throw UAError.from(error)
        }
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
        var r = try await call(UAType.openSecureChannelRequest, expecting: UAType.openSecureChannelResponse, kind: "OPN") { w in
            w.uint32(0)  // client protocol version
            w.uint32(renew ? 1 : 0)  // Issue / Renew
            w.uint32(1)  // MessageSecurityMode None
            w.byteString([])  // client nonce
            w.uint32(Self.requestedLifetime)
        }
        _ = try r.uint32()  // server protocol version
        let channelId = try r.uint32()
        let tokenId = try r.uint32()
        _ = try r.dateTime()
        let lifetime = try r.uint32()
        let handler = self.handler
        try await channel.eventLoop.submit {
            handler.channelId = channelId
            handler.tokenId = tokenId
        }.get()
        return max(lifetime, 10_000)
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

    private func createSession(name: String) async throws -> ([EndpointDescription], NodeId) {
        var r = try await call(UAType.createSessionRequest, expecting: UAType.createSessionResponse) { w in
            // ApplicationDescription of twin.
            w.string("urn:twin:twind")
            w.string("urn:twin")
            w.localizedText(LocalizedText(text: "twin"))
            w.uint32(1)  // Client
            w.string(nil); w.string(nil)
            w.array([String]()) { $0.string($1) }
            w.string(nil)  // server uri
            w.string(endpoint.text)
            w.string(name)
            w.byteString((0..<32).map { _ in UInt8.random(in: 0...255) })
            w.byteString(nil)  // client certificate
            w.double(120_000)  // session timeout, ms
            w.uint32(UInt32(UAChannelHandler.maxMessage))
        }
        _ = try r.nodeId()  // session id
        let token = try r.nodeId()
        _ = try r.double()
        _ = try r.byteString()
        _ = try r.byteString()
        let endpoints = try r.array { (r: inout UAReader) throws(UAError) -> EndpointDescription in try r.endpointDescription() }
        return (endpoints, token)
    }

    /// The user token policy of the None endpoint for this kind of identity.
    func policy(for type: UserTokenPolicy.TokenType) throws(UAError) -> UserTokenPolicy {
        let none = serverEndpoints.filter { $0.securityPolicyURI == UAChannelHandler.securityPolicyNone }
        let candidates = (none.isEmpty ? serverEndpoints : none).flatMap(\.userTokenPolicies).filter { $0.tokenType == type.rawValue }
        if let plain = candidates.first(where: { ($0.securityPolicyURI ?? "").isEmpty || $0.securityPolicyURI == UAChannelHandler.securityPolicyNone }) {
            return plain
        }
        if candidates.isEmpty {
            throw UAError(.badIdentityTokenRejected, "the server offers no \(type == .anonymous ? "anonymous" : "user name") login on SecurityPolicy None")
        }
        throw UAError(.badSecurityPolicyRejected, "the server wants the password encrypted (\(candidates[0].securityPolicyURI ?? "")); twin sends passwords only on SecurityPolicy None so far")
    }

    private func activateSession(_ identity: Identity) async throws {
        let token: ExtensionObject
        switch identity {
        case .anonymous:
            let p = try policy(for: .anonymous)
            var w = UAWriter()
            w.string(p.policyId)
            token = ExtensionObject(typeId: NodeId(0, UAType.anonymousIdentityToken), encoding: 1, body: w.bytes)
        case .userName(let user, let password):
            let p = try policy(for: .userName)
            var w = UAWriter()
            w.string(p.policyId)
            w.string(user)
            w.byteString(Array(password.utf8))
            w.string(nil)  // no encryption algorithm
            token = ExtensionObject(typeId: NodeId(0, UAType.userNameIdentityToken), encoding: 1, body: w.bytes)
        }
        do {
            _ = try await call(UAType.activateSessionRequest, expecting: UAType.activateSessionResponse) { w in
                w.string(nil); w.byteString(nil)  // client signature
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
