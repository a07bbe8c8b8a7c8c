import Foundation
import Logging
import Synchronization
import TwinCore
import TwinOPCUA

/// twind as an OPC UA client of one server: connects, resolves the mapped nodes (browse paths
/// by TranslateBrowsePathsToNodeIds), reads their EngineeringUnits and EURange, registers the
/// devices, subscribes to every node and takes each DataChange as a reading through the
/// `GatewaySink` (the path `Ingest` takes). On any loss it marks its devices offline and comes
/// back with a backoff (1 s doubling to 30 s), re-creating the session and subscription. One
/// connector per endpoint: a slow or broken server holds up only itself.
public final class OPCUAConnector: Sendable {
    public struct Status: Sendable, Equatable {
        public var connected = false
        /// When the connection last came up or went down (Unix ns; 0: never).
        public var since: Nanos = 0
        public var notifications: UInt64 = 0
        public var readings: UInt64 = 0
        /// Values whose StatusCode was not Good: neither stored nor applied.
        public var badReadings: UInt64 = 0
        public var errors: UInt64 = 0
        public var reconnects: UInt64 = 0
        public var lastError = ""
        /// Items monitored now, and mapped nodes the server refused (unknown node, bad path).
        public var monitoredItems: UInt32 = 0
        public var failedItems: UInt32 = 0
    }

    public let endpoint: OPCUAConfig.Endpoint
    let security: ChannelSecurity
    let sink: any GatewaySink
    let logger: Logger
    let writes: BlockingPool
    private let state = Mutex(Status())
    private let runner = Mutex<Task<Void, Never>?>(nil)
    private let logged = Mutex(LogLimiter())
    /// Publish requests kept in flight (a server may answer fewer: BadTooManyPublishRequests).
    static let publishesInFlight = 3

    /// `writes` runs the blocking deliveries to the store (fsync), off the cooperative pool;
    /// `identity` and `trust` secure the channel when the endpoint asks for Basic256Sha256.
    public init(endpoint: OPCUAConfig.Endpoint, identity: ApplicationIdentity?, trust: TrustList?, sink: any GatewaySink, writes: BlockingPool, logger: Logger) {
        self.endpoint = endpoint
        self.security = ChannelSecurity(policy: endpoint.policy, mode: endpoint.mode, identity: identity, trust: trust)
        self.sink = sink
        self.writes = writes
        self.logger = logger
    }

    public var status: Status { state.withLock { $0 } }
    public var devices: [String] { Array(Set(endpoint.nodes.map(\.device))).sorted() }

    public func start() {
        let task = Task { await self.run() }
        runner.withLock { $0 = task }
    }

    /// Stops reading: closes the session and the connection, and waits for the loop to end.
    public func stop() async {
        let task = runner.withLock { t -> Task<Void, Never>? in
            defer { t = nil }
            return t
        }
        task?.cancel()
        await task?.value
    }

    func run() async {
        var backoff = Duration.seconds(1)
        var attempts = 0
        while !Task.isCancelled {
            attempts += 1
            var wasUp = false
            do {
                try await session(reconnect: attempts > 1) { wasUp = true; backoff = .seconds(1) }
            } catch {
                if Task.isCancelled { break }
                let e = UAError.from(error)
                note(error: e.description)
                logger.warning("OPC UA connection lost or refused; retrying", metadata: [
                    "endpoint": "\(endpoint.name)", "status": "\(e.status.name)", "problem": "\(e.message.prefix(300))", "retry_in": "\(backoff)"])
            }
            let now = Time.now()
            let flipped = state.withLock { s -> Bool in
                defer { s.connected = false; s.monitoredItems = 0 }
                if s.connected { s.since = now }
                return s.connected || attempts == 1
            }
            if flipped || wasUp { sink.markOffline(devices, at: now) }
            if Task.isCancelled { break }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(30))
        }
    }

    private func note(error: String) {
        state.withLock { s in
            s.errors &+= 1
            s.lastError = String(error.prefix(500))
        }
    }

    /// One session from connect to loss: throws why it ended (never returns but by cancellation).
    private func session(reconnect: Bool, up: () -> Void) async throws {
        let client = try await UAClient.connect(endpoint.url, identity: endpoint.identity, security: security, sessionName: "twind")
        try await withTaskCancellationHandler {
            defer { Task { await client.close() } }
            let nodes = try await resolve(client)
            try await register(client, nodes)
            let subscription = try await client.createSubscription(publishingInterval: Double(endpoint.publishingInterval) / 1e6)
            let items = nodes.enumerated().compactMap { i, n in
                n.map { UAClient.MonitoredItem(node: $0, handle: UInt32(i), samplingInterval: Double(endpoint.nodes[i].samplingInterval) / 1e6) }
            }
            let statuses = try await client.createMonitoredItems(subscription: subscription.id, items)
            var failed = nodes.filter { $0 == nil }.count
            for (item, status) in zip(items, statuses) where status.isBad {
                failed += 1
                let n = endpoint.nodes[Int(item.handle)]
                logger.warning("OPC UA node not monitored", metadata: ["endpoint": "\(endpoint.name)", "node": "\(n.addressText)", "status": "\(status.name)"])
                note(error: "\(n.addressText) (\(n.device)/\(n.sensor)): CreateMonitoredItems answered \(status)")
            }
            let now = Time.now()
            let monitored = UInt32(items.count - statuses.filter(\.isBad).count)
            state.withLock { s in
                s.connected = true
                s.since = now
                s.monitoredItems = monitored
                s.failedItems = UInt32(failed)
                if reconnect { s.reconnects &+= 1 }
            }
            up()
            logger.info("OPC UA connected", metadata: ["endpoint": "\(endpoint.name)", "items": "\(monitored)", "failed": "\(failed)",
                                                        "publishing_interval_ms": "\(subscription.publishingInterval)"])
            try await publishLoop(client, subscription)
        } onCancel: {
            client.abort()
        }
    }

    /// Each mapped node's NodeId, or nil where the server has no node at its path.
    private func resolve(_ client: UAClient) async throws -> [NodeId?] {
        var out = [NodeId?](repeating: nil, count: endpoint.nodes.count)
        var paths: [(index: Int, start: NodeId, path: [QualifiedName])] = []
        for (i, n) in endpoint.nodes.enumerated() {
            switch n.address {
            case .nodeId(let id): out[i] = id
            case .path(let root, let names): paths.append((i, root, names))
            }
        }
        // NodeIds from the file: checked by reading their NodeClass, so a node the server does
        // not have is not registered as a sensor.
        let direct = out.indices.filter { out[$0] != nil }
        for part in stride(from: 0, to: direct.count, by: 500) {
            let slice = Array(direct[part..<min(direct.count, part + 500)])
            let classes = try await client.read(slice.map { out[$0]! }, attribute: UAAttribute.nodeClass)
            for (i, v) in zip(slice, classes) where v.status.isBad {
                let n = endpoint.nodes[i]
                logger.warning("OPC UA node not found", metadata: ["endpoint": "\(endpoint.name)", "node": "\(n.addressText)", "status": "\(v.status.name)"])
                note(error: "\(n.addressText) (\(n.device)/\(n.sensor)): \(v.status)")
                out[i] = nil
            }
        }
        for part in stride(from: 0, to: paths.count, by: 500) {
            let slice = Array(paths[part..<min(paths.count, part + 500)])
            let results = try await client.translate(slice.map { ($0.start, $0.path) })
            for (p, result) in zip(slice, results) {
                switch result {
                case .success(let id): out[p.index] = id
                case .failure(let e):
                    let n = endpoint.nodes[p.index]
                    logger.warning("OPC UA browse path not found", metadata: ["endpoint": "\(endpoint.name)", "path": "\(n.addressText)", "status": "\(e.status.name)"])
                    note(error: "\(n.addressText) (\(n.device)/\(n.sensor)): \(e)")
                }
            }
        }
        return out
    }

    /// Registers the devices (or adds the sensors they lack) with units and ranges from the file,
    /// else from the server's EngineeringUnits and EURange properties.
    private func register(_ client: UAClient, _ nodes: [NodeId?]) async throws {
        var wanted: [(index: Int, node: NodeId, property: String)] = []
        for (i, n) in endpoint.nodes.enumerated() {
            guard let id = nodes[i] else { continue }
            if n.unit == nil { wanted.append((i, id, "EngineeringUnits")) }
            if n.nominal == nil { wanted.append((i, id, "EURange")) }
        }
        var units: [Int: String] = [:]
        var ranges: [Int: (Double, Double)] = [:]
        for part in stride(from: 0, to: wanted.count, by: 500) {
            let slice = Array(wanted[part..<min(wanted.count, part + 500)])
            let found = try await client.translate(slice.map { ($0.node, [QualifiedName(0, $0.property)]) }, reference: UANode.hasProperty)
            let present = zip(slice, found).compactMap { w, r -> (Int, String, NodeId)? in
                guard case .success(let id) = r else { return nil }
                return (w.index, w.property, id)
            }
            let values = try await client.read(present.map(\.2))
            for (p, v) in zip(present, values) where v.status.isGood {
                if p.1 == "EngineeringUnits", let u = EngineeringInfo.unit(v.value) { units[p.0] = String(u.prefix(32)) }
                if p.1 == "EURange", let r = EngineeringInfo.range(v.value) { ranges[p.0] = r }
            }
        }
        var devices: [String: Device] = [:]
        var order: [String] = []
        for (i, n) in endpoint.nodes.enumerated() where nodes[i] != nil {
            if devices[n.device] == nil {
                order.append(n.device)
                devices[n.device] = Device(id: n.device, name: n.device, type: n.type ?? endpoint.type, site: endpoint.site, line: endpoint.line,
                                           sensors: [], labels: ["source": "opcua", "opcua_endpoint": String(endpoint.name.prefix(128))])
            }
            let range = n.nominal ?? ranges[i]
            devices[n.device]!.sensors.append(SensorSpec(
                name: n.sensor, unit: n.unit ?? units[i] ?? "",
                nominalMin: range?.0 ?? -Double.greatestFiniteMagnitude, nominalMax: range?.1 ?? Double.greatestFiniteMagnitude,
                description: n.addressText))
        }
        let sink = self.sink
        let defined = order.compactMap { devices[$0] }
        let now = Time.now()
        for device in defined {
            do {
                _ = try await writes.run { () throws(TwinError) -> Device in try sink.extend(device, now: now) }
            } catch {
                note(error: "device \(device.id): \(error.message)")
                logger.warning("OPC UA device not registered", metadata: ["endpoint": "\(endpoint.name)", "device": "\(device.id)", "problem": "\(error.message)"])
            }
        }
    }

    private final class Acks: Sendable {
        let pending = Mutex<[(subscription: UInt32, sequence: UInt32)]>([])
        func take() -> [(subscription: UInt32, sequence: UInt32)] { pending.withLock { p in defer { p = [] }; return p } }
        func add(_ s: UInt32, _ n: UInt32) { pending.withLock { $0.append((s, n)) } }
    }

    /// Keeps several Publish requests in flight and takes each answer in turn.
    private func publishLoop(_ client: UAClient, _ subscription: UAClient.Subscription) async throws {
        let acks = Acks()
        // A Publish waits at most the keep-alive period; give it that three times over.
        let wait = Duration.milliseconds(Int(min(subscription.publishingInterval * Double(subscription.keepAliveCount) * 3, 600_000)) + 5_000)
        try await withThrowingTaskGroup(of: PublishResult?.self) { group in
            func publish() {
                group.addTask {
                    do {
                        return try await client.publish(acknowledging: acks.take(), timeout: wait)
                    } catch let e as UAError where e.status == .badTooManyPublishRequests {
                        return nil  // the server keeps fewer in flight: one less
                    }
                }
            }
            for _ in 0..<Self.publishesInFlight { publish() }
            var inFlight = Self.publishesInFlight
            while let answer = try await group.next() {
                inFlight -= 1
                if let result = answer {
                    if result.hasData { acks.add(result.subscriptionId, result.sequenceNumber) }
                    if let status = result.statusChange, status.isBad { throw UAError(status, "the server ended the subscription") }
                    try await take(result)
                    publish()
                    inFlight += 1
                } else if inFlight == 0 {
                    publish()
                    inFlight += 1
                }
            }
        }
    }

    /// A Publish answer's value changes as readings: Good values stored and applied; others
    /// counted as bad and dropped (not scored, not alerted on).
    private func take(_ result: PublishResult) async throws {
        if result.changes.isEmpty { return }
        let now = Time.now()
        var readings: [GatewayReading] = []
        readings.reserveCapacity(result.changes.count)
        var bad: UInt64 = 0
        var errors: [String] = []
        for change in result.changes {
            guard Int(change.clientHandle) < endpoint.nodes.count else { continue }
            let n = endpoint.nodes[Int(change.clientHandle)]
            guard change.value.status.isGood else {
                bad += 1
                if shouldLog("bad \(change.clientHandle)", now: now) {
                    logger.notice("OPC UA value not Good: not stored (logged once a minute per node)", metadata: [
                        "endpoint": "\(endpoint.name)", "device": "\(n.device)", "sensor": "\(n.sensor)", "status": "\(change.value.status.name)"])
                }
                continue
            }
            guard let value = change.value.value?.number, value.isFinite else {
                errors.append("\(n.device)/\(n.sensor): value is not a finite number")
                continue
            }
            let time = change.value.sourceTimestamp.flatMap(UADateTime.unixNanos) ?? change.value.serverTimestamp.flatMap(UADateTime.unixNanos) ?? now
            readings.append(GatewayReading(device: n.device, sensor: n.sensor, time: time, value: value))
        }
        let sink = self.sink
        let batch = readings
        var accepted = 0
        var refused: [(index: Int, error: TwinError)] = []
        if !batch.isEmpty {
            let delivery = try await writes.run { () throws(TwinError) -> GatewayDelivery in try sink.deliver(batch, now: now) }
            accepted = delivery.accepted
            refused = delivery.refused
        }
        if let first = refused.first {
            errors.append("\(refused.count) reading(s) refused, first \(batch[first.index].device)/\(batch[first.index].sensor): \(first.error.message)")
        }
        state.withLock { s in
            s.notifications &+= UInt64(result.changes.count)
            s.readings &+= UInt64(accepted)
            s.badReadings &+= bad
            if !errors.isEmpty {
                s.errors &+= UInt64(errors.count)
                s.lastError = String(errors[0].prefix(500))
            }
        }
        if let e = errors.first, shouldLog("errors", now: now) {
            logger.warning("OPC UA values refused (logged once a minute)", metadata: ["endpoint": "\(endpoint.name)", "problem": "\(e)"])
        }
    }

    private func shouldLog(_ key: String, now: Nanos) -> Bool {
        logged.withLock { $0.shouldLog(key, now: now) }
    }
}
