import Foundation
import GRPCCore
import Logging
import Proto
import Synchronization
import TwinApp
import TwinCore
import TwinEngines
import TwinGateway
import TwinOPCUA

/// The gateways twind runs (`--mqtt-broker`, `--sparkplug-host-id`).
public struct GatewayConfiguration: Sendable {
    public var mqtt: MQTTSettings
    /// Sparkplug B host application on that connection; nil: off.
    public var sparkplug: SparkplugHost.Options?
    /// Plain topics with JSON payloads (`--mqtt-mapping`); nil: none.
    public var mapping: TopicMapping?
    public init(mqtt: MQTTSettings, sparkplug: SparkplugHost.Options? = nil, mapping: TopicMapping? = nil) {
        self.mqtt = mqtt
        self.sparkplug = sparkplug
        self.mapping = mapping
    }
}

/// The plant as the gateways see it: the same validation, store, health and bus as `Ingest`.
struct PlantGatewaySink: GatewaySink {
    let plant: Plant

    func define(_ device: Device, now: Nanos) throws(TwinError) {
        if let existing = plant.live.device(device.id) {
            if existing.simulated {
                throw .failedPrecondition("device '\(device.id)' is simulated; a gateway cannot define it", reason: .deviceConflict)
            }
            var same = device
            (same.createdAt, same.updatedAt, same.simulated) = (existing.createdAt, existing.updatedAt, existing.simulated)
            if same == existing { return }
        }
        try plant.upsert(device, now: now)
    }

    func extend(_ device: Device, now: Nanos) throws(TwinError) -> Device {
        guard var existing = plant.live.device(device.id) else {
            return try plant.upsert(device, now: now).device
        }
        let have = Set(existing.sensors.map(\.name))
        let missing = device.sensors.filter { !have.contains($0.name) }
        if missing.isEmpty { return existing }
        if existing.simulated {
            throw .failedPrecondition("device '\(device.id)' is simulated; a gateway cannot add sensors to it", reason: .deviceConflict)
        }
        existing.sensors += missing
        return try plant.upsert(existing, now: now).device
    }

    func deliver(_ readings: [GatewayReading], now: Nanos) throws(TwinError) -> GatewayDelivery {
        var samples: [Sample] = []
        var refused: [(index: Int, error: TwinError)] = []
        var kinds: [(historical: Bool, transient: Bool)] = []
        // The whole batch in one go; when something in it is refused, reading by reading.
        do {
            try plant.live.resolve(readings, now: now, into: &samples)
            kinds = readings.map { ($0.historical, $0.transient) }
        } catch {
            samples = []
            var one: [Sample] = []
            for (n, r) in readings.enumerated() {
                do {
                    try plant.live.resolve(CollectionOfOne(r), now: now, into: &one)
                    samples.append(one[0])
                    kinds.append((r.historical, r.transient))
                } catch {
                    refused.append((n, error))
                }
            }
        }
        if samples.isEmpty { return GatewayDelivery(accepted: 0, refused: refused) }
        let stored = zip(samples, kinds).filter { !$0.1.transient }.map(\.0)
        let live = zip(samples, kinds).filter { !$0.1.historical }.map(\.0)
        try plant.history.append(stored)
        if !live.isEmpty { plant.apply(live, now: now) }
        Telemetry.ingest(readings: samples.count, accepted: true)
        return GatewayDelivery(accepted: samples.count, refused: refused)
    }

    func markOffline(_ devices: [String], at: Nanos) {
        plant.markDead(devices.compactMap { plant.live.index(of: $0) }, now: at)
    }
}

extension GatewayReading: ReadingConvertible {
    public var readingDeviceID: String { device }
    public var readingSensor: String { sensor }
    public var readingTime: Nanos? { time }
    public var readingValue: Double { value }
}

/// The running gateways: one MQTT connection, and the Sparkplug host on it if enabled.
final class Gateways: Sendable {
    let client: MQTTClient
    let connection: GatewayConnection
    /// The totals last given to the metrics.
    private let recorded = Mutex((messages: UInt64(0), readings: UInt64(0), errors: UInt64(0), reconnects: UInt64(0), rebirths: UInt64(0)))

    init(configuration: GatewayConfiguration, plant: Plant, logger: Logger) {
        client = MQTTClient(settings: configuration.mqtt, logger: logger)
        let sink = PlantGatewaySink(plant: plant)
        connection = GatewayConnection(
            sparkplug: configuration.sparkplug.map { SparkplugHost(options: $0, sink: sink, logger: logger) },
            topics: configuration.mapping.map { TopicConsumer(mapping: $0, sink: sink, logger: logger) })
    }

    func start() {
        client.start(handler: connection)
    }

    func stop() async {
        await client.stop()
    }

    /// Errors of everything on the connection: refused payloads and readings, bad births.
    func errors(_ nodes: [SparkplugHost.NodeStatus]) -> UInt64 {
        nodes.reduce(0) { $0 + $1.errors } + (connection.topics?.status.errors ?? 0)
    }

    func recordMetrics() {
        let status = client.snapshot
        let nodes = connection.sparkplug?.nodes ?? []
        let now = (messages: status.messages, readings: status.readings, errors: errors(nodes), reconnects: status.reconnects,
                   rebirths: nodes.reduce(0) { $0 + $1.rebirthsRequested })
        let before = recorded.withLock { r in
            defer { r = now }
            return r
        }
        Telemetry.gateways(
            connected: status.connected,
            grown: (now.messages &- before.messages, now.readings &- before.readings, now.errors &- before.errors,
                    now.reconnects &- before.reconnects, now.rebirths &- before.rebirths),
            online: nodes.filter(\.online).count, offline: nodes.filter { !$0.online }.count)
    }

    func proto() -> Twin_V1_ListGatewaysResponse {
        var response = Twin_V1_ListGatewaysResponse()
        let status = client.snapshot
        let nodes = connection.sparkplug?.nodes ?? []
        var c = Twin_V1_MqttConnection()
        c.broker = client.settings.brokerURL
        c.clientID = client.settings.clientID
        c.connected = status.connected
        if status.since != 0 { c.since = .init(nanos: status.since) }
        c.messages = status.messages
        c.readings = status.readings
        c.errors = errors(nodes)
        c.reconnects = status.reconnects
        c.lastError = status.lastError
        c.sparkplugHostID = connection.sparkplug?.options.hostID ?? ""
        response.connections = [c]
        for n in nodes {
            var e = Twin_V1_EdgeNode()
            e.groupID = n.group
            e.edgeNodeID = n.node
            e.online = n.online
            if n.lastBirth != 0 { e.lastBirth = .init(nanos: n.lastBirth) }
            if n.lastDeath != 0 { e.lastDeath = .init(nanos: n.lastDeath) }
            e.messages = n.messages
            e.readings = n.readings
            e.rebirthsRequested = n.rebirthsRequested
            e.errors = n.errors
            e.devices = n.devices
            e.bdSeq = n.bdSeq
            e.ignoredMetrics = n.ignoredMetrics
            response.edgeNodes.append(e)
        }
        return response
    }
}

/// The OPC UA servers twind reads (`--opcua-config`): one connector each, on the same plant path.
final class OPCUAGateways: Sendable {
    let connectors: [OPCUAConnector]
    private let recorded = Mutex([String: (notifications: UInt64, readings: UInt64, bad: UInt64, errors: UInt64, reconnects: UInt64)]())

    /// Makes (or loads) twind's application certificate under the PKI directory when an endpoint
    /// is secured; its path and thumbprint are logged for the server's administrators to trust it.
    init(configuration: OPCUAConfig, dataDirectory: String, plant: Plant, logger: Logger) throws(TwinError) {
        let sink = PlantGatewaySink(plant: plant)
        let pki = configuration.pki ?? dataDirectory + "/opcua/pki"
        var identity: ApplicationIdentity?
        if configuration.endpoints.contains(where: { $0.policy != .none }) {
            do {
                identity = try ApplicationIdentity.loadOrCreate(directory: pki, hostname: ProcessInfo.processInfo.hostName)
            } catch {
                throw .unavailable("OPC UA: \(error.message)")
            }
            logger.notice("OPC UA application certificate", metadata: [
                "certificate": "\(pki)/own/cert.der", "sha1": "\(identity!.thumbprint.map { String(format: "%02x", $0) }.joined())",
                "trusted_servers": "\(pki)/trusted"])
        }
        let trust = TrustList(directory: pki)
        connectors = configuration.endpoints.map {
            OPCUAConnector(endpoint: $0, identity: identity, trust: trust, sink: sink, writes: plant.writes, logger: logger)
        }
    }

    func start() { for c in connectors { c.start() } }

    func stop() async {
        await withTaskGroup(of: Void.self) { g in
            for c in connectors { g.addTask { await c.stop() } }
        }
    }

    func recordMetrics() {
        for c in connectors {
            let s = c.status
            let now = (notifications: s.notifications, readings: s.readings, bad: s.badReadings, errors: s.errors, reconnects: s.reconnects)
            let before = recorded.withLock { r in
                defer { r[c.endpoint.name] = now }
                return r[c.endpoint.name] ?? (0, 0, 0, 0, 0)
            }
            Telemetry.opcua(endpoint: c.endpoint.name, connected: s.connected, items: Int(s.monitoredItems),
                            grown: (now.notifications &- before.notifications, now.readings &- before.readings, now.bad &- before.bad,
                                    now.errors &- before.errors, now.reconnects &- before.reconnects))
        }
    }

    func proto() -> [Twin_V1_OpcUaConnection] {
        connectors.map { c in
            let s = c.status
            var p = Twin_V1_OpcUaConnection()
            p.name = c.endpoint.name
            p.endpoint = c.endpoint.url
            p.securityPolicy = OPCUAConfig.securityText(c.endpoint.policy, c.endpoint.mode)
            p.identity = c.endpoint.identityText
            p.connected = s.connected
            if s.since != 0 { p.since = .init(nanos: s.since) }
            p.notifications = s.notifications
            p.readings = s.readings
            p.badReadings = s.badReadings
            p.errors = s.errors
            p.reconnects = s.reconnects
            p.lastError = s.lastError
            p.monitoredItems = s.monitoredItems
            p.failedItems = s.failedItems
            p.devices = c.devices
            return p
        }
    }
}
