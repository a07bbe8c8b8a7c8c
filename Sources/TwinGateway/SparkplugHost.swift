import Foundation
import Logging
import Proto
import SwiftProtobuf
import Synchronization
import TwinCore

/// twind as a Sparkplug B 3.0 host application: it reads births, data and deaths from the edge
/// nodes, defines the devices they describe, feeds their readings to the plant, tracks each
/// node's sequence numbers and asks for a rebirth when it lost track.
///
/// Pure: messages in, messages to publish out, the plant behind a `GatewaySink`; the MQTT
/// connection (`SparkplugConnection`) drives it, and the tests drive it with a test clock.
public final class SparkplugHost: Sendable {
    public struct Options: Sendable {
        public var hostID: String
        /// Groups to serve; empty: every group.
        public var groups: [String] = []
        /// How long a sequence gap may stay open before twind asks for a rebirth.
        public var reorderTimeout: Nanos = 2 * Time.second
        public init(hostID: String) { self.hostID = hostID }
    }

    /// What `ListGateways` shows of one edge node.
    public struct NodeStatus: Sendable, Equatable {
        public var group: String
        public var node: String
        public var online = false
        public var lastBirth: Nanos = 0
        public var lastDeath: Nanos = 0
        public var messages: UInt64 = 0
        public var readings: UInt64 = 0
        public var rebirthsRequested: UInt64 = 0
        public var errors: UInt64 = 0
        public var ignoredMetrics: UInt64 = 0
        public var bdSeq: UInt64 = 0
        public var devices: [String] = []
    }

    public struct Outgoing: Sendable, Equatable {
        public var topic: String
        public var payload: [UInt8]
        public var qos: Int32
        public var retain: Bool
    }

    /// One metric of a defined device: the sensor it feeds and how to read its value.
    struct MetricBinding {
        var sensor: String
        var datatype: UInt32
    }

    struct DeviceEntry {
        var twinID: String
        var metrics: [String: MetricBinding] = [:]
        /// Birth names without their first path element (`DATA/current` → `current`), where that
        /// is unambiguous: mqtt-spb-wrapper births `DATA/x` and then sends `x` in its DATA.
        var shortNames: [String: String] = [:]
        var online = false
        var defined = false
    }

    struct Node {
        var status: NodeStatus
        var bdSeq: UInt64?
        /// The seq the next message should carry; nil before the first birth.
        var expected: UInt8?
        /// Sequence numbers skipped, with the time by which they must have come.
        var missing: [UInt8: Nanos] = [:]
        /// Alias → (device key: "" for the node itself, metric name); per node session.
        var aliases: [UInt64: (device: String, metric: String)] = [:]
        /// "" is the node-level device.
        var devices: [String: DeviceEntry] = [:]
        var lastRebirthRequest: Nanos = Int64.min / 2
    }

    struct State {
        var nodes: [String: Node] = [:]
        var pending = PendingReadings()
        /// Which pending readings belong to which node (for the counts after the commit).
        var pendingNodes: [(node: String, count: Int)] = []
        /// The timestamp of this session's STATE birth (and its will).
        var stateTimestamp: UInt64 = 0
        /// Set by `death`: the host is going; its own STATE offline is no longer contradicted.
        var stopping = false
        /// Readings stored and refused per node, counted at commit (apart from `nodes`, which a
        /// message holds while it is handled).
        var committed: [String: (readings: UInt64, errors: UInt64)] = [:]
    }

    public let options: Options
    let sink: any GatewaySink
    let logger: Logger
    private let state = Mutex(State())

    public init(options: Options, sink: any GatewaySink, logger: Logger) {
        self.options = options
        self.sink = sink
        self.logger = logger
    }

    public var stateTopic: String { "\(Sparkplug.namespace)/STATE/\(options.hostID)" }

    public var subscriptions: [String] {
        var filters = options.groups.isEmpty ? ["\(Sparkplug.namespace)/#"] : options.groups.map { "\(Sparkplug.namespace)/\($0)/#" }
        if !options.groups.isEmpty { filters.append(stateTopic) }
        return filters
    }

    /// The will for the next connection: STATE offline, with the timestamp its birth will carry.
    public func will(now: Nanos) -> Outgoing {
        let t = UInt64(max(0, now / 1_000_000))
        state.withLock {
            $0.stateTimestamp = t
            $0.stopping = false
        }
        return Outgoing(topic: stateTopic, payload: Sparkplug.statePayload(online: false, timestamp: t), qos: 1, retain: true)
    }

    public func birth() -> Outgoing {
        let t = state.withLock { $0.stateTimestamp }
        return Outgoing(topic: stateTopic, payload: Sparkplug.statePayload(online: true, timestamp: t), qos: 1, retain: true)
    }

    /// The STATE death published before a clean disconnect.
    public func death(now: Nanos) -> Outgoing {
        state.withLock { $0.stopping = true }
        return Outgoing(topic: stateTopic, payload: Sparkplug.statePayload(online: false, timestamp: UInt64(max(0, now / 1_000_000))), qos: 1, retain: true)
    }

    public var nodes: [NodeStatus] {
        state.withLock { s in
            s.nodes.map { k, node in
                var status = node.status
                status.readings = s.committed[k]?.readings ?? 0
                status.errors &+= s.committed[k]?.errors ?? 0
                return status
            }
        }.sorted { ($0.group, $0.node) < ($1.group, $1.node) }
    }

    // MARK: Messages

    /// One message from the broker. Returns what to publish (a rebirth request, a STATE birth).
    public func handle(topic: String, payload: UnsafeRawBufferPointer, now: Nanos) -> [Outgoing] {
        guard let parsed = Sparkplug.Topic(topic) else { return [] }
        switch parsed {
        case .state(let host):
            // Someone (or a stale retained message) says this host is offline: say otherwise.
            if host == options.hostID, Sparkplug.stateOnline(payload) == false, !state.withLock({ $0.stopping }) {
                logger.notice("saw this host's STATE offline; publishing it online again", metadata: ["host_id": "\(host)"])
                return [birth()]
            }
            return []
        case .node(let group, let type, let nodeID, let device):
            if !options.groups.isEmpty && !options.groups.contains(group) { return [] }
            if type == .ncmd || type == .dcmd { return [] }
            let decoded: SparkplugPayload
            do {
                decoded = try SparkplugPayload(serializedBytes: Array(payload))
            } catch {
                return state.withLock { s in
                    var node = s.nodes[key(group, nodeID)] ?? Node(status: NodeStatus(group: group, node: nodeID))
                    node.status.messages &+= 1
                    node.status.errors &+= 1
                    s.nodes[key(group, nodeID)] = node
                    logRefusal(&s, topic: topic, now: now, "a \(type.rawValue) payload that is not a Sparkplug B payload (\(payload.count) bytes)")
                    return []
                }
            }
            return process(group: group, nodeID: nodeID, type: type, device: device, payload: decoded, topic: topic, now: now)
        }
    }

    private func key(_ group: String, _ node: String) -> String { group + "/" + node }

    private func process(group: String, nodeID: String, type: Sparkplug.MessageType, device: String?, payload: SparkplugPayload, topic: String, now: Nanos) -> [Outgoing] {
        var out: [Outgoing] = []
        let k = key(group, nodeID)
        state.withLock { s in
            var node = s.nodes[k] ?? Node(status: NodeStatus(group: group, node: nodeID))
            node.status.messages &+= 1
            defer { s.nodes[k] = node }
            switch type {
            case .nbirth:
                // A new session: aliases, sequence and devices start again.
                flushPending(&s, now: now)
                node.aliases = [:]
                node.missing = [:]
                node.expected = payload.hasSeq ? UInt8(truncatingIfNeeded: payload.seq &+ 1) : 1
                node.bdSeq = Sparkplug.bdSeq(payload)
                node.status.bdSeq = node.bdSeq ?? 0
                node.status.online = true
                node.status.lastBirth = now
                for d in node.devices.keys where !d.isEmpty { node.devices[d]?.online = false }
                define(&s, &node, deviceKey: "", sparkplugDevice: nil, payload: payload, now: now, topic: topic)
            case .dbirth:
                guard node.status.online, node.expected != nil else {
                    out += rebirth(&node, reason: "a DBIRTH before its node's NBIRTH", now: now)
                    return
                }
                checkSequence(&node, payload: payload, now: now)
                flushPending(&s, now: now)
                define(&s, &node, deviceKey: device ?? "", sparkplugDevice: device, payload: payload, now: now, topic: topic)
            case .ndata, .ddata:
                guard node.status.online, node.expected != nil else {
                    out += rebirth(&node, reason: "\(type.rawValue) before the node's NBIRTH", now: now)
                    return
                }
                checkSequence(&node, payload: payload, now: now)
                let deviceKey = device ?? ""
                guard let entry = node.devices[deviceKey], entry.defined else {
                    out += rebirth(&node, reason: "DDATA from device '\(deviceKey)' before its DBIRTH", now: now)
                    return
                }
                var unknown = false
                let start = s.pending.readings.count
                for metric in payload.metrics {
                    var name = metric.hasName ? metric.name : nil
                    if name == nil, metric.hasAlias {
                        guard let target = node.aliases[metric.alias], target.device == deviceKey else {
                            unknown = true
                            continue
                        }
                        name = target.metric
                    }
                    guard let name else { node.status.errors &+= 1; continue }
                    guard let binding = entry.metrics[name] ?? entry.shortNames[name].flatMap({ entry.metrics[$0] }) else {
                        if !Sparkplug.isControl(name) { node.status.ignoredMetrics &+= 1 }
                        continue
                    }
                    append(&s, metric: metric, binding: binding, device: entry.twinID, payloadTime: payload.hasTimestamp ? payload.timestamp : nil, now: now)
                }
                let added = s.pending.readings.count - start
                if added > 0 { s.pendingNodes.append((k, added)) }
                if unknown {
                    node.status.errors &+= 1
                    out += rebirth(&node, reason: "\(type.rawValue) with an alias its birth did not define", now: now)
                }
                if entry.online == false {
                    node.devices[deviceKey]?.online = true
                }
            case .ddeath:
                checkSequence(&node, payload: payload, now: now)
                guard let d = device, let entry = node.devices[d] else { return }
                flushPending(&s, now: now)
                node.devices[d]?.online = false
                if entry.defined { sink.markOffline([entry.twinID], at: now) }
            case .ndeath:
                // Only the death of the current session counts (a late will of an older one does not).
                let bd = Sparkplug.bdSeq(payload)
                if let bd, let current = node.bdSeq, bd != current {
                    logger.info("ignored an NDEATH of an earlier session", metadata: ["node": "\(k)", "bdSeq": "\(bd)", "current_bdSeq": "\(current)"])
                    return
                }
                flushPending(&s, now: now)
                node.status.online = false
                node.status.lastDeath = now
                node.expected = nil
                node.missing = [:]
                let ids = node.devices.values.filter(\.defined).map(\.twinID)
                for d in node.devices.keys { node.devices[d]?.online = false }
                if !ids.isEmpty { sink.markOffline(ids, at: now) }
                logger.notice("Sparkplug edge node offline", metadata: ["node": "\(k)", "devices": "\(ids.count)"])
            case .ncmd, .dcmd:
                return
            }
        }
        return out
    }

    /// Defines (or redefines) a device from a birth and takes the birth's values as readings.
    private func define(_ s: inout State, _ node: inout Node, deviceKey: String, sparkplugDevice: String?, payload: SparkplugPayload, now: Nanos, topic: String) {
        let twinID = Sparkplug.deviceID(group: node.status.group, node: node.status.node, device: sparkplugDevice)
        var entry = DeviceEntry(twinID: twinID)
        var sensors: [SensorSpec] = []
        var taken = Set<String>()
        var ignored: UInt64 = 0
        for metric in payload.metrics {
            guard metric.hasName else { continue }
            let name = metric.name
            if metric.hasAlias { node.aliases[metric.alias] = (deviceKey, name) }
            if Sparkplug.isControl(name) { continue }
            let datatype = metric.datatype
            guard Sparkplug.isNumeric(datatype) else {
                ignored += 1
                continue
            }
            if entry.metrics[name] != nil { continue }
            var sensor = Sparkplug.sensorName(name)
            var n = 2
            while taken.contains(sensor) {
                sensor = Sparkplug.shortened(Sparkplug.sensorName(name) + "_\(n)", limit: 64, separator: "_")
                n += 1
            }
            taken.insert(sensor)
            var unit = ""
            var low = -Double.greatestFiniteMagnitude, high = Double.greatestFiniteMagnitude
            if metric.hasProperties {
                if let u = Sparkplug.property(metric.properties, "engUnit").flatMap(Sparkplug.text) { unit = String(u.prefix(32)) }
                let l = Sparkplug.property(metric.properties, "engLow").flatMap(Sparkplug.number)
                let h = Sparkplug.property(metric.properties, "engHigh").flatMap(Sparkplug.number)
                if let l, let h, l.isFinite, h.isFinite, l <= h {
                    low = l
                    high = h
                }
            }
            sensors.append(SensorSpec(name: sensor, unit: unit, nominalMin: low, nominalMax: high, description: String(name.prefix(256))))
            entry.metrics[name] = MetricBinding(sensor: sensor, datatype: datatype)
            if sensors.count == 256 { break }
        }
        node.status.ignoredMetrics &+= ignored
        var shortCounts: [String: Int] = [:]
        for name in entry.metrics.keys {
            if let slash = name.firstIndex(of: "/") { shortCounts[String(name[name.index(after: slash)...]), default: 0] += 1 }
        }
        for name in entry.metrics.keys {
            guard let slash = name.firstIndex(of: "/") else { continue }
            let short = String(name[name.index(after: slash)...])
            if shortCounts[short] == 1, entry.metrics[short] == nil { entry.shortNames[short] = name }
        }
        if sensors.isEmpty {
            node.devices[deviceKey] = entry  // known, nothing to measure
            return
        }
        var labels = ["sparkplug_group": node.status.group, "sparkplug_node": node.status.node]
        if let sparkplugDevice { labels["sparkplug_device"] = sparkplugDevice }
        let device = Device(
            id: twinID, name: String(([node.status.group, node.status.node] + (sparkplugDevice.map { [$0] } ?? [])).joined(separator: "/").prefix(200)),
            type: sparkplugDevice == nil ? "sparkplug_node" : "sparkplug_device", site: String(node.status.group.prefix(64)), line: String(node.status.node.prefix(64)),
            sensors: sensors, labels: labels)
        do {
            try sink.define(device, now: now)
            entry.defined = true
            entry.online = true
            if !node.status.devices.contains(twinID) {
                node.status.devices.append(twinID)
                node.status.devices.sort()
            }
        } catch {
            node.status.errors &+= 1
            logRefusal(&s, topic: topic, now: now, "cannot define device '\(twinID)': \(error.message)")
        }
        node.devices[deviceKey] = entry
        guard entry.defined else { return }
        let start = s.pending.readings.count
        for metric in payload.metrics where metric.hasName {
            if let binding = entry.metrics[metric.name] {
                append(&s, metric: metric, binding: binding, device: twinID, payloadTime: payload.hasTimestamp ? payload.timestamp : nil, now: now)
            }
        }
        let added = s.pending.readings.count - start
        if added > 0 { s.pendingNodes.append((key(node.status.group, node.status.node), added)) }
    }

    private func append(_ s: inout State, metric: SparkplugPayload.Metric, binding: MetricBinding, device: String, payloadTime: UInt64?, now: Nanos) {
        guard let value = Sparkplug.number(metric, datatype: metric.hasDatatype ? metric.datatype : binding.datatype) else { return }
        let time = (metric.hasTimestamp ? Sparkplug.time(milliseconds: metric.timestamp) : nil)
            ?? payloadTime.flatMap(Sparkplug.time(milliseconds:)) ?? now
        var bad = false
        if metric.hasProperties, let q = Sparkplug.property(metric.properties, "Quality").flatMap(Sparkplug.number), q != 192 { bad = true }
        let historical = (metric.hasIsHistorical && metric.isHistorical) || bad
        let transient = metric.hasIsTransient && metric.isTransient
        s.pending.readings.append(GatewayReading(device: device, sensor: binding.sensor, time: time, value: value, historical: historical, transient: transient))
    }

    private func checkSequence(_ node: inout Node, payload: SparkplugPayload, now: Nanos) {
        guard payload.hasSeq, let expected = node.expected else { return }
        let seq = UInt8(truncatingIfNeeded: payload.seq)
        if seq == expected {
            node.expected = seq &+ 1
        } else if node.missing.removeValue(forKey: seq) != nil {
            // A late message filled its gap.
        } else {
            let ahead = seq &- expected
            if ahead < 128 {
                for k in 0..<ahead { node.missing[expected &+ k] = now + options.reorderTimeout }
                node.expected = seq &+ 1
            }
        }
    }

    private func rebirth(_ node: inout Node, reason: String, now: Nanos) -> [Outgoing] {
        // One request per node per reorder timeout: a node that is slow to answer is not flooded.
        guard now - node.lastRebirthRequest >= options.reorderTimeout else { return [] }
        node.lastRebirthRequest = now
        node.status.rebirthsRequested &+= 1
        node.missing = [:]
        logger.notice("asking a Sparkplug edge node to rebirth", metadata: ["node": "\(node.status.group)/\(node.status.node)", "reason": "\(reason)"])
        return [Outgoing(topic: "\(Sparkplug.namespace)/\(node.status.group)/NCMD/\(node.status.node)", payload: Sparkplug.rebirthCommand(now: now), qos: 0, retain: false)]
    }

    /// Sequence gaps left open past the reorder timeout become rebirth requests.
    public func tick(now: Nanos) -> [Outgoing] {
        state.withLock { s in
            var out: [Outgoing] = []
            for k in s.nodes.keys {
                guard let deadline = s.nodes[k]!.missing.values.min(), deadline <= now else { continue }
                let gap = s.nodes[k]!.missing.count
                out += rebirth(&s.nodes[k]!, reason: "\(gap) sequence number(s) missing for \(DurationText.format(options.reorderTimeout))", now: now)
                s.nodes[k]!.missing = [:]
            }
            return out
        }
    }

    // MARK: Commit

    /// Stores what the messages since the last flush carried. Throws when the store cannot.
    public func flush(now: Nanos) throws(TwinError) -> Int {
        try state.withLock { s throws(TwinError) -> Int in
            flushPending(&s, now: now)
            return try s.pending.commit()
        }
    }

    private func flushPending(_ s: inout State, now: Nanos) {
        let owners = s.pendingNodes
        s.pendingNodes.removeAll(keepingCapacity: true)
        guard let (_, result) = s.pending.deliver(to: sink, now: now) else { return }
        let refusedAt = Set(result.refused.map(\.index))
        var offset = 0
        for (k, count) in owners {
            let refused = (offset..<(offset + count)).filter { refusedAt.contains($0) }.count
            s.committed[k, default: (0, 0)].readings &+= UInt64(count - refused)
            s.committed[k, default: (0, 0)].errors &+= UInt64(refused > 0 ? 1 : 0)
            offset += count
        }
        if let first = result.refused.first {
            logRefusal(&s, topic: "readings", now: now, "\(result.refused.count) reading(s) refused, first: \(first.error.message)")
        }
    }

    /// Logged once per topic a minute; always counted.
    private func logRefusal(_ s: inout State, topic: String, now: Nanos, _ text: String) {
        guard s.pending.shouldLog(topic, now: now) else { return }
        logger.warning("Sparkplug message refused", metadata: ["topic": "\(topic.prefix(200))", "problem": "\(text)"])
    }
}

/// Drives the gateways on one MQTT connection: the Sparkplug B host (STATE will and birth,
/// the namespace, rebirth requests, the STATE death before a clean disconnect) and the mapped
/// plain topics; messages in, one commit per read round, timers.
public final class GatewayConnection: MQTTHandler {
    public let sparkplug: SparkplugHost?
    public let topics: TopicConsumer?

    public init(sparkplug: SparkplugHost?, topics: TopicConsumer?) {
        self.sparkplug = sparkplug
        self.topics = topics
    }

    public func will(for client: MQTTClient) -> MQTTClient.Message? {
        guard let w = sparkplug?.will(now: Time.now()) else { return nil }
        return .init(topic: w.topic, payload: w.payload, qos: w.qos, retain: w.retain)
    }

    public func connected(_ client: MQTTClient, sessionPresent: Bool) {
        // Subscribe first, then say online (Sparkplug 3.0 host birth order).
        for (filter, qos) in topics?.subscriptions ?? [] { client.subscribe([filter], qos: qos) }
        if let sparkplug {
            client.subscribe(sparkplug.subscriptions, qos: 1)
            send(client, [sparkplug.birth()])
        }
    }

    public func received(_ client: MQTTClient, topic: String, payload: UnsafeRawBufferPointer, retained: Bool, now: Nanos) {
        if let sparkplug, topic.hasPrefix(Sparkplug.topicPrefix) {
            send(client, sparkplug.handle(topic: topic, payload: payload, now: now))
        } else if let topics {
            topics.handle(topic: topic, payload: payload, now: now)
        }
    }

    public func flush(_ client: MQTTClient, now: Nanos) throws {
        var n = 0
        if let sparkplug { n += try sparkplug.flush(now: now) }
        if let topics { n += try topics.flush(now: now) }
        if n > 0 { client.count(readings: n) }
    }

    public func disconnected(_ client: MQTTClient, error: String?) {}

    public func tick(_ client: MQTTClient, now: Nanos) {
        if let sparkplug { send(client, sparkplug.tick(now: now)) }
    }

    public func stopping(_ client: MQTTClient) {
        if let sparkplug { send(client, [sparkplug.death(now: Time.now())]) }
    }

    private func send(_ client: MQTTClient, _ messages: [SparkplugHost.Outgoing]) {
        for m in messages { client.publish(.init(topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain)) }
    }
}
