import Foundation
import Logging
import Proto
import SwiftProtobuf
import Synchronization
import Testing
import TwinCore
@testable import TwinGateway

/// The plant side of the seam, in memory: what the host defined, delivered and marked offline.
final class RecordingSink: GatewaySink {
    struct State {
        var devices: [String: Device] = [:]
        var readings: [GatewayReading] = []
        var offline: [(ids: [String], at: Nanos)] = []
        var failStore = false
    }
    let state = Mutex(State())

    func define(_ device: Device, now: Nanos) throws(TwinError) {
        try device.validate()
        state.withLock { $0.devices[device.id] = device }
    }

    func extend(_ device: Device, now: Nanos) throws(TwinError) -> Device {
        try state.withLock { s throws(TwinError) -> Device in
            var d = s.devices[device.id] ?? Device(id: device.id, name: device.name, type: device.type, sensors: [])
            let have = Set(d.sensors.map(\.name))
            d.sensors += device.sensors.filter { !have.contains($0.name) }
            try d.validate()
            s.devices[d.id] = d
            return d
        }
    }

    func deliver(_ readings: [GatewayReading], now: Nanos) throws(TwinError) -> GatewayDelivery {
        try state.withLock { s throws(TwinError) in
            if s.failStore { throw TwinError.unavailable("disk full") }
            var refused: [(index: Int, error: TwinError)] = []
            for (n, r) in readings.enumerated() {
                if s.devices[r.device]?.sensors.contains(where: { $0.name == r.sensor }) == true { s.readings.append(r) }
                else { refused.append((n, .invalidArgument("unknown sensor \(r.sensor)"))) }
            }
            return GatewayDelivery(accepted: readings.count - refused.count, refused: refused)
        }
    }

    func markOffline(_ devices: [String], at: Nanos) {
        state.withLock { $0.offline.append((devices, at)) }
    }

    var devices: [String: Device] { state.withLock { $0.devices } }
    var readings: [GatewayReading] { state.withLock { $0.readings } }
    var offline: [(ids: [String], at: Nanos)] { state.withLock { $0.offline } }
}

typealias Metric = SparkplugPayload.Metric

func metric(_ name: String?, alias: UInt64? = nil, datatype: UInt32? = nil, double: Double? = nil, bool: Bool? = nil, int: UInt32? = nil,
            long: UInt64? = nil, string: String? = nil, timestamp: UInt64? = nil, properties: [(String, SparkplugPayload.PropertyValue)] = [],
            historical: Bool = false, transient: Bool = false) -> Metric {
    var m = Metric()
    if let name { m.name = name }
    if let alias { m.alias = alias }
    if let datatype { m.datatype = datatype }
    if let double { m.doubleValue = double }
    if let bool { m.booleanValue = bool }
    if let int { m.intValue = int }
    if let long { m.longValue = long }
    if let string { m.stringValue = string }
    if let timestamp { m.timestamp = timestamp }
    if historical { m.isHistorical = true }
    if transient { m.isTransient = true }
    if !properties.isEmpty {
        var set = SparkplugPayload.PropertySet()
        set.keys = properties.map(\.0)
        set.values = properties.map(\.1)
        m.properties = set
    }
    return m
}

/// A property value of Sparkplug datatype `type` (String 12, Double 10, Int32 3).
func property(_ type: UInt32, _ value: SparkplugPayload.PropertyValue.OneOf_Value) -> SparkplugPayload.PropertyValue {
    var p = SparkplugPayload.PropertyValue()
    p.type = type
    p.value = value
    return p
}

func property(string: String) -> SparkplugPayload.PropertyValue { property(12, .stringValue(string)) }
func property(double: Double) -> SparkplugPayload.PropertyValue { property(10, .doubleValue(double)) }
func property(int: UInt32) -> SparkplugPayload.PropertyValue { property(3, .intValue(int)) }

/// A host under test with a manual clock.
struct Harness {
    let sink = RecordingSink()
    let host: SparkplugHost
    var now: Nanos = 1_800_000_000 * Time.second

    init(groups: [String] = []) {
        var options = SparkplugHost.Options(hostID: "twin")
        options.groups = groups
        options.reorderTimeout = 2 * Time.second
        host = SparkplugHost(options: options, sink: sink, logger: Logger(label: "test"))
    }

    var ms: UInt64 { UInt64(now / 1_000_000) }

    @discardableResult
    func send(_ topic: String, seq: UInt64? = nil, _ metrics: [Metric], flush: Bool = true) throws -> [SparkplugHost.Outgoing] {
        var p = SparkplugPayload()
        p.timestamp = ms
        if let seq { p.seq = seq }
        p.metrics = metrics
        let bytes: [UInt8] = try p.serializedBytes()
        let out = bytes.withUnsafeBytes { host.handle(topic: topic, payload: $0, now: now) }
        if flush { _ = try host.flush(now: now) }
        return out
    }

    func birth(bdSeq: UInt64 = 0) throws {
        try send("spBv1.0/Plant 1/NBIRTH/edge-a", seq: 0, [
            metric("bdSeq", datatype: 8, long: bdSeq),
            metric("Node Control/Rebirth", datatype: 11, bool: false),
            metric("Uptime", alias: 1, datatype: 4, long: 7),
        ])
        try send("spBv1.0/Plant 1/DBIRTH/edge-a/Pump#1", seq: 1, [
            metric("Motor/Temperature", alias: 10, datatype: 10, double: 40,
                   properties: [("engUnit", property(string: "°C")), ("engLow", property(double: 10)), ("engHigh", property(double: 80))]),
            metric("Running", alias: 11, datatype: 11, bool: true),
            metric("Serial", alias: 12, datatype: 12, string: "SN-1"),
            metric("Offset", alias: 13, datatype: 3, int: UInt32(bitPattern: -5)),
        ])
    }

    static func isRebirth(_ out: SparkplugHost.Outgoing, node: String = "edge-a") -> Bool {
        guard out.topic == "spBv1.0/Plant 1/NCMD/\(node)", let p = try? SparkplugPayload(serializedBytes: out.payload) else { return false }
        return p.metrics.contains { $0.name == "Node Control/Rebirth" && $0.booleanValue }
    }
}

@Suite struct SparkplugNamingTests {
    @Test func deviceIDsUseTwindsAlphabetAndStayDistinctWhenShortened() {
        #expect(Sparkplug.deviceID(group: "Plant 1", node: "edge/a", device: "Pump#1") == "Plant_1.edge_a.Pump_1")
        #expect(Sparkplug.deviceID(group: "G", node: "N") == "G.N")
        let long1 = Sparkplug.deviceID(group: String(repeating: "g", count: 60), node: "node-1")
        let long2 = Sparkplug.deviceID(group: String(repeating: "g", count: 60), node: "node-2")
        #expect(long1.utf8.count == 64 && long2.utf8.count == 64 && long1 != long2)
        #expect((try? Identifier.validateDeviceID(long1)) != nil)
        #expect(Sparkplug.deviceID(group: "Ünïcode", node: "n") == "_n_code.n")
    }

    @Test func sensorNamesAreLowerCaseWithDotsForSlashes() {
        #expect(Sparkplug.sensorName("Motor/Temperature") == "motor.temperature")
        #expect(Sparkplug.sensorName("Flow Rate (m3/h)") == "flow_rate__m3.h_")
        #expect(Sparkplug.sensorName("") == "_")
        let long = Sparkplug.sensorName(String(repeating: "A", count: 100))
        #expect(long.utf8.count == 64)
        #expect((try? Identifier.validateSensorName(long, device: "d")) != nil)
    }

    @Test func topicsParseOnlyWhenWellFormed() {
        #expect(Sparkplug.Topic("spBv1.0/G/DDATA/N/D") == .node(group: "G", type: .ddata, node: "N", device: "D"))
        #expect(Sparkplug.Topic("spBv1.0/G/NBIRTH/N") == .node(group: "G", type: .nbirth, node: "N", device: nil))
        #expect(Sparkplug.Topic("spBv1.0/STATE/host") == .state(host: "host"))
        for bad in ["spBv1.0/G/DDATA/N", "spBv1.0/G/NDATA/N/D", "spBv1.0/G/XDATA/N", "spBv1.0//NDATA/N", "spAv1.0/G/NDATA/N", "spBv1.0", ""] {
            #expect(Sparkplug.Topic(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct SparkplugHostTests {
    @Test func birthsDefineDevicesWithUnitsRangesAndDescriptions() throws {
        let h = Harness()
        try h.birth()
        let node = try #require(h.sink.devices["Plant_1.edge-a"])
        #expect(node.sensors.map(\.name) == ["uptime"])
        #expect(node.type == "sparkplug_node" && node.site == "Plant 1" && node.line == "edge-a")
        let pump = try #require(h.sink.devices["Plant_1.edge-a.Pump_1"])
        #expect(pump.sensors.map(\.name) == ["motor.temperature", "running", "offset"])
        let t = pump.sensors[0]
        #expect(t.unit == "°C" && t.nominalMin == 10 && t.nominalMax == 80 && t.description == "Motor/Temperature")
        #expect(pump.labels["sparkplug_device"] == "Pump#1")
        // Birth values are readings; signed Int32 read as signed; the string metric is ignored.
        let values = Dictionary(h.sink.readings.map { ("\($0.device)/\($0.sensor)", $0.value) }, uniquingKeysWith: { $1 })
        #expect(values["Plant_1.edge-a.Pump_1/motor.temperature"] == 40)
        #expect(values["Plant_1.edge-a.Pump_1/running"] == 1)
        #expect(values["Plant_1.edge-a.Pump_1/offset"] == -5)
        #expect(values["Plant_1.edge-a/uptime"] == 7)
        let status = try #require(h.host.nodes.first)
        #expect(status.online && status.ignoredMetrics == 1 && status.devices == ["Plant_1.edge-a", "Plant_1.edge-a.Pump_1"])
        #expect(status.readings == 4)
    }

    @Test func dataByNameOrAliasWithMetricTimestamps() throws {
        var h = Harness()
        try h.birth()
        h.now += Time.second
        let acquired = h.ms - 500
        try h.send("spBv1.0/Plant 1/DDATA/edge-a/Pump#1", seq: 2, [metric(nil, alias: 10, double: 41.5, timestamp: acquired)])
        try h.send("spBv1.0/Plant 1/NDATA/edge-a", seq: 3, [metric("Uptime", long: 8)])
        let last = h.sink.readings.suffix(2)
        #expect(last.first == GatewayReading(device: "Plant_1.edge-a.Pump_1", sensor: "motor.temperature", time: Nanos(acquired) * 1_000_000, value: 41.5))
        #expect(last.last?.sensor == "uptime" && last.last?.value == 8 && last.last?.time == h.now)
    }

    @Test func historicalTransientAndBadQualityAreFlagged() throws {
        let h = Harness()
        try h.birth()
        try h.send("spBv1.0/Plant 1/DDATA/edge-a/Pump#1", seq: 2, [
            metric(nil, alias: 10, double: 1, historical: true),
            metric(nil, alias: 10, double: 2, transient: true),
            metric(nil, alias: 10, double: 3, properties: [("Quality", property(int: 0))]),
            metric(nil, alias: 10, double: 4, properties: [("Quality", property(int: 192))]),
        ])
        let r = h.sink.readings.suffix(4).map { ($0.value, $0.historical, $0.transient) }
        #expect(r.map(\.0) == [1, 2, 3, 4])
        #expect(r.map(\.1) == [true, false, true, false])
        #expect(r.map(\.2) == [false, true, false, false])
    }

    @Test func dataBeforeBirthOrAnUnknownAliasAsksForARebirthOncePerTimeout() throws {
        var h = Harness()
        let early = try h.send("spBv1.0/Plant 1/NDATA/edge-a", seq: 5, [metric("Uptime", long: 1)])
        #expect(early.count == 1 && Harness.isRebirth(early[0]))
        #expect(h.sink.readings.isEmpty)
        // Asked once; the node gets the reorder timeout to answer before it is asked again.
        #expect(try h.send("spBv1.0/Plant 1/NDATA/edge-a", seq: 6, [metric("Uptime", long: 1)]).isEmpty)
        h.now += 3 * Time.second
        try h.birth()
        let unknown = try h.send("spBv1.0/Plant 1/DDATA/edge-a/Pump#1", seq: 2, [metric(nil, alias: 99, double: 1)])
        #expect(unknown.count == 1 && Harness.isRebirth(unknown[0]))
        #expect(h.host.nodes.first?.rebirthsRequested == 2)
    }

    @Test func aSequenceGapFilledInTimeIsFineOneLeftOpenAsksForARebirth() throws {
        var h = Harness()
        try h.birth()
        // 2 comes after 3: filled within the timeout.
        try h.send("spBv1.0/Plant 1/NDATA/edge-a", seq: 3, [metric("Uptime", long: 1)])
        try h.send("spBv1.0/Plant 1/NDATA/edge-a", seq: 2, [metric("Uptime", long: 1)])
        h.now += 3 * Time.second
        #expect(h.host.tick(now: h.now).isEmpty)
        // 4 never comes.
        try h.send("spBv1.0/Plant 1/NDATA/edge-a", seq: 5, [metric("Uptime", long: 1)])
        h.now += Time.second
        #expect(h.host.tick(now: h.now).isEmpty)
        h.now += Time.second + 1
        let out = h.host.tick(now: h.now)
        #expect(out.count == 1 && Harness.isRebirth(out[0]))
        // Readings of the messages around the gap were kept (nothing held back waiting).
        #expect(h.sink.readings.filter { $0.sensor == "uptime" }.count == 4)
    }

    @Test func sequenceNumbersWrapAfter255() throws {
        var h = Harness()
        try h.birth()
        for k in 2...300 {
            try h.send("spBv1.0/Plant 1/NDATA/edge-a", seq: UInt64(k % 256), [metric("Uptime", long: UInt64(k))], flush: false)
        }
        h.now += 10 * Time.second
        #expect(h.host.tick(now: h.now).isEmpty)
        #expect(h.host.nodes.first?.rebirthsRequested == 0)
    }

    @Test func deathsOfTheCurrentSessionTakeDevicesOfflineOthersAreIgnored() throws {
        var h = Harness()
        try h.birth(bdSeq: 3)
        h.now += Time.second
        try h.send("spBv1.0/Plant 1/DDEATH/edge-a/Pump#1", seq: 2, [])
        #expect(h.sink.offline.last?.ids == ["Plant_1.edge-a.Pump_1"])
        // A late will of an older session (bdSeq 2) does not kill the node.
        try h.send("spBv1.0/Plant 1/NDEATH/edge-a", [metric("bdSeq", datatype: 8, long: 2)])
        #expect(h.host.nodes.first?.online == true)
        h.now += Time.second
        try h.send("spBv1.0/Plant 1/NDEATH/edge-a", [metric("bdSeq", datatype: 8, long: 3)])
        let status = try #require(h.host.nodes.first)
        #expect(!status.online && status.lastDeath == h.now)
        #expect(Set(h.sink.offline.last?.ids ?? []) == ["Plant_1.edge-a", "Plant_1.edge-a.Pump_1"])
        #expect(h.sink.offline.last?.at == h.now)
        // Data after death: a rebirth request, nothing stored.
        let count = h.sink.readings.count
        let out = try h.send("spBv1.0/Plant 1/NDATA/edge-a", seq: 3, [metric("Uptime", long: 1)])
        #expect(out.count == 1 && h.sink.readings.count == count)
    }

    @Test func aBirthThatChangesTheMetricsUpdatesTheDevice() throws {
        let h = Harness()
        try h.birth()
        try h.send("spBv1.0/Plant 1/NBIRTH/edge-a", seq: 0, [metric("bdSeq", datatype: 8, long: 1)])
        try h.send("spBv1.0/Plant 1/DBIRTH/edge-a/Pump#1", seq: 1, [metric("Pressure", datatype: 9, double: 2)])
        #expect(h.sink.devices["Plant_1.edge-a.Pump_1"]?.sensors.map(\.name) == ["pressure"])
        // The old aliases went with the old session.
        let out = try h.send("spBv1.0/Plant 1/DDATA/edge-a/Pump#1", seq: 2, [metric(nil, alias: 10, double: 1)])
        #expect(out.count == 1)
    }

    /// mqtt-spb-wrapper births `DATA/current` and `CMD/Node Control/Rebirth`, then sends `current`.
    @Test func prefixedBirthNamesAreFoundByTheirShortNameAndPrefixedControlsAreNotSensors() throws {
        let h = Harness()
        try h.send("spBv1.0/Plant 1/NBIRTH/edge-a", seq: 0, [
            metric("bdSeq", datatype: 4, long: 1), metric("CMD/Node Control/Rebirth", datatype: 11, bool: false),
            metric("DATA/cpu", datatype: 10, double: 1), metric("ATTR/description", datatype: 14, string: "x"),
        ])
        try h.send("spBv1.0/Plant 1/DBIRTH/edge-a/m", seq: 1, [metric("DATA/current", datatype: 10, double: 4.2), metric("ATTR/current", datatype: 10, double: 0)])
        #expect(h.sink.devices["Plant_1.edge-a"]?.sensors.map(\.name) == ["data.cpu"])
        try h.send("spBv1.0/Plant 1/NDATA/edge-a", seq: 2, [metric("cpu", datatype: 10, double: 7)])
        #expect(h.sink.readings.last?.sensor == "data.cpu" && h.sink.readings.last?.value == 7)
        // Ambiguous (DATA/current and ATTR/current): not guessed.
        let count = h.sink.readings.count
        try h.send("spBv1.0/Plant 1/DDATA/edge-a/m", seq: 3, [metric("current", datatype: 10, double: 5)])
        #expect(h.sink.readings.count == count)
    }

    @Test func theHostRepublishesItsBirthWhenItSeesItselfOffline() throws {
        let h = Harness()
        let will = h.host.will(now: 5_000_000_000)
        #expect(will.topic == "spBv1.0/STATE/twin" && will.retain && will.qos == 1)
        #expect(String(decoding: will.payload, as: UTF8.self) == #"{"online":false,"timestamp":5000}"#)
        let birth = h.host.birth()
        #expect(String(decoding: birth.payload, as: UTF8.self) == #"{"online":true,"timestamp":5000}"#)
        let offline = Array(#"{"online":false,"timestamp":5000}"#.utf8)
        let out = offline.withUnsafeBytes { h.host.handle(topic: "spBv1.0/STATE/twin", payload: $0, now: h.now) }
        #expect(out == [birth])
        let other = offline.withUnsafeBytes { h.host.handle(topic: "spBv1.0/STATE/someone-else", payload: $0, now: h.now) }
        #expect(other.isEmpty)
        // Its own death, echoed back while it stops, is not contradicted.
        _ = h.host.death(now: h.now)
        #expect(offline.withUnsafeBytes { h.host.handle(topic: "spBv1.0/STATE/twin", payload: $0, now: h.now) }.isEmpty)
    }

    @Test func groupsNotServedAreIgnored() throws {
        let h = Harness(groups: ["Other"])
        try h.birth()
        #expect(h.sink.devices.isEmpty)
        #expect(h.host.subscriptions == ["spBv1.0/Other/#", "spBv1.0/STATE/twin"])
    }

    @Test func aStoreFailureIsThrownAtTheCommitSoNothingIsAcknowledged() throws {
        let h = Harness()
        try h.birth()
        h.sink.state.withLock { $0.failStore = true }
        try h.send("spBv1.0/Plant 1/NDATA/edge-a", seq: 2, [metric("Uptime", long: 1)], flush: false)
        #expect(throws: TwinError.self) { _ = try h.host.flush(now: h.now) }
    }
}

/// Fuzz tier: anything on any Sparkplug topic — random bytes, truncated and mutated real
/// payloads, extreme values — is counted or ignored, never a crash, never a bad definition.
@Suite struct SparkplugFuzzTests {
    @Test func hostileMessagesNeverCrashTheHost() throws {
        var h = Harness()
        try h.birth()
        var rng = SystemRandomNumberGenerator()
        var real = SparkplugPayload()
        real.seq = 2
        real.timestamp = h.ms
        real.metrics = [metric(nil, alias: 10, double: 1), metric("Running", bool: false),
                        metric("Motor/Temperature", double: .nan), metric("Offset", long: .max, timestamp: .max)]
        let good: [UInt8] = try real.serializedBytes()
        let topics = ["spBv1.0/Plant 1/DDATA/edge-a/Pump#1", "spBv1.0/Plant 1/NDATA/edge-a", "spBv1.0/Plant 1/NBIRTH/edge-b",
                      "spBv1.0/Plant 1/DBIRTH/edge-a/x", "spBv1.0/Plant 1/NDEATH/edge-c", "spBv1.0/STATE/twin", "spBv1.0/G/DDEATH/n/d"]
        for i in 0..<3000 {
            var bytes: [UInt8]
            switch i % 3 {
            case 0: bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1: bytes = Array(good.prefix(Int.random(in: 0...good.count, using: &rng)))
            default:
                bytes = good
                for _ in 0..<3 { bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            }
            h.now += Time.millisecond
            _ = bytes.withUnsafeBytes { h.host.handle(topic: topics[i % topics.count], payload: $0, now: h.now) }
            _ = h.host.tick(now: h.now)
            _ = try? h.host.flush(now: h.now)
        }
        for device in h.sink.devices.values { #expect((try? device.validate()) != nil) }
        for r in h.sink.readings { #expect(r.value.isFinite || r.value.isNaN) }
        #expect(h.host.nodes.reduce(0) { $0 + $1.errors } > 0)
    }

    @Test func brokerURLsParseOrSayWhy() throws {
        let s = try MQTTSettings.parse(broker: "mqtts://broker.plant:8884", clientID: "twind")
        #expect(s.host == "broker.plant" && s.port == 8884 && s.tls)
        #expect(try MQTTSettings.parse(broker: "mqtt://10.0.0.5", clientID: "x").port == 1883)
        #expect(try MQTTSettings.parse(broker: "mqtt://[::1]:1884", clientID: "x").host == "::1")
        for bad in ["tcp://x:1", "mqtt://", "mqtt://host:0", "mqtt://host:99999", "mqtt://host:abc", "mqtt://[::1"] {
            #expect(throws: TwinError.self, "\(bad)") { try MQTTSettings.parse(broker: bad, clientID: "x") }
        }
        #expect(throws: TwinError.self) { try MQTTSettings.parse(broker: "mqtt://h:1", clientID: "") }
    }
}
