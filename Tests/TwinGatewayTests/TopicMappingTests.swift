import Foundation
import Logging
import Testing
import TwinCore
@testable import TwinGateway

@Suite struct TopicMappingTests {
    static let example = """
        mappings:
          - topic: factory/+/telemetry
            device: 1
            time: ts
            sensors:
              temperature: temp
              vibration: {path: vib.rms, unit: mm/s, scale: 0.001}
            auto_register: pump
          - topic: gateways/#
            device: machine.id
            qos: 0
        """

    func extract(_ entry: TopicMapping.Entry, _ topic: String, _ json: String, now: Nanos = 1_000 * Time.second) throws(TwinError) -> TopicMapping.Extracted {
        let bytes = Array(json.utf8)
        let result = bytes.withUnsafeBytes { b -> Result<TopicMapping.Extracted, TwinError> in
            do throws(TwinError) { return .success(try TopicMapping.extract(entry, topic: topic, payload: b, now: now)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    @Test func theDocumentedExampleParses() throws {
        let m = try TopicMapping.parse(Self.example)
        #expect(m.entries.count == 2)
        let e = m.entries[0]
        #expect(e.device == .segment(1) && e.time == ["ts"] && e.autoRegister == "pump" && e.qos == 1)
        #expect(e.sensors == [.init(name: "temperature", path: ["temp"], unit: "", scale: 1), .init(name: "vibration", path: ["vib", "rms"], unit: "mm/s", scale: 0.001)])
        #expect(m.entries[1].device == .field(["machine", "id"]) && m.entries[1].sensors.isEmpty && m.entries[1].qos == 0)
    }

    @Test func badFilesSayWhichEntryAndWhy() {
        let cases: [(String, String)] = [
            ("mappings: []", "no mappings"),
            ("hello: 1", "expected 'mappings:'"),
            ("mappings:\n  - topic: a/#/b\n    device: 0", "not a valid MQTT topic filter"),
            ("mappings:\n  - topic: a/b\n", "device is required"),
            ("mappings:\n  - topic: a/b\n    device: 5", "no segment 5"),
            ("mappings:\n  - topic: a/b\n    device: 0\n    sensors: {Bad Name: x}", "sensor 'Bad Name'"),
            ("mappings:\n  - topic: a/b\n    device: 0\n    qos: 3", "qos must be"),
            ("mappings:\n  - topic: a/b\n    device: 0\n    colour: red", "unknown key 'colour'"),
            ("mappings: [", "not YAML"),
        ]
        for (text, says) in cases {
            do {
                _ = try TopicMapping.parse(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.message.contains(says), "\(error.message)")
            }
        }
    }

    @Test func filtersMatchAsMQTTSays() {
        #expect(TopicMapping.matches("a/+/c", "a/b/c"))
        #expect(!TopicMapping.matches("a/+/c", "a/b/d/c"))
        #expect(TopicMapping.matches("a/#", "a/b/c") && TopicMapping.matches("a/#", "a"))
        #expect(!TopicMapping.matches("#", "$SYS/broker/uptime"))
        #expect(TopicMapping.matches("a/b", "a/b") && !TopicMapping.matches("a/b", "a/b/"))
    }

    @Test func readingsComeFromTheMappedFieldsWithScaleAndTime() throws {
        let e = try TopicMapping.parse(Self.example).entries[0]
        let x = try extract(e, "factory/pump-7/telemetry", #"{"temp": 71.5, "vib": {"rms": 2500}, "ts": 1767225600000}"#)
        #expect(x.device == "pump-7")
        #expect(x.readings.map(\.sensor) == ["temperature", "vibration"] && x.readings.map(\.value) == [71.5, 2.5])
        #expect(x.time == 1_767_225_600 * Time.second)
        #expect(x.units == ["vibration": "mm/s"])
        // A message may carry some of the sensors.
        #expect(try extract(e, "factory/pump-7/telemetry", #"{"temp": 70, "ts": 1767225600}"#).readings.count == 1)
    }

    @Test func timesInSecondsMillisMicrosNanosOrRFC3339() {
        let t: Nanos = 1_767_225_600 * Time.second
        #expect(TopicMapping.parseTime(NSNumber(value: 1_767_225_600)) == t)
        #expect(TopicMapping.parseTime(NSNumber(value: 1_767_225_600_000 as Int64)) == t)
        #expect(TopicMapping.parseTime(NSNumber(value: 1_767_225_600_000_000 as Int64)) == t)
        #expect(TopicMapping.parseTime(NSNumber(value: 1_767_225_600_000_000_000 as Int64)) == t)
        #expect(TopicMapping.parseTime("2026-01-01T00:00:00Z") == t)
        #expect(TopicMapping.parseTime("2026-01-01T00:00:00.250Z") == t + 250 * Time.millisecond)
        for bad: Any in ["yesterday", NSNumber(value: -5), NSNumber(value: Double.infinity), [1]] {
            #expect(TopicMapping.parseTime(bad) == nil)
        }
    }

    @Test func withoutSensorsEveryNumericFieldIsOneNamedAfterIt() throws {
        let e = try TopicMapping.parse(Self.example).entries[1]
        let x = try extract(e, "gateways/x", #"{"machine": {"id": "press-2"}, "Force kN": 12, "hydraulics": {"oil.temp": 40}, "mode": "auto", "on": true}"#)
        #expect(x.device == "press-2")
        #expect(Dictionary(uniqueKeysWithValues: x.readings.map { ($0.sensor, $0.value) }) == ["force_kn": 12, "hydraulics.oil.temp": 40, "on": 1])
        #expect(x.time == 1_000 * Time.second)
    }

    @Test func badPayloadsAreRefusedWithAReason() throws {
        let e = try TopicMapping.parse(Self.example).entries[0]
        let cases: [(String, String, String)] = [
            ("factory/p/telemetry", "not json", "not JSON"),
            ("factory/p/telemetry", "[1,2]", "not a JSON object"),
            ("factory/p/telemetry", #"{"temp": "hot", "ts": 1767225600}"#, "not a number"),
            ("factory/p/telemetry", #"{"temp": 1}"#, "no ts"),
            ("factory/p/telemetry", #"{"temp": 1, "ts": "soon"}"#, "not an epoch number"),
            ("factory/p/telemetry", #"{"other": 1, "ts": 1767225600}"#, "no reading"),
            ("factory/bad id!/telemetry", #"{"temp": 1, "ts": 1767225600}"#, "device id"),
        ]
        for (topic, json, says) in cases {
            do {
                _ = try extract(e, topic, json)
                Issue.record("accepted: \(json)")
            } catch {
                #expect(error.message.contains(says), "\(error.message)")
            }
        }
    }

    @Test func theConsumerRegistersExtendsCountsAndCommits() throws {
        let sink = RecordingSink()
        let consumer = TopicConsumer(mapping: try TopicMapping.parse(Self.example), sink: sink, logger: Logger(label: "test"))
        func send(_ topic: String, _ json: String) {
            let bytes = Array(json.utf8)
            bytes.withUnsafeBytes { _ = consumer.handle(topic: topic, payload: $0, now: 1_767_225_600 * Time.second) }
        }
        send("factory/pump-1/telemetry", #"{"temp": 70, "ts": 1767225600}"#)
        send("factory/pump-1/telemetry", #"{"temp": 71, "vib": {"rms": 1000}, "ts": 1767225601}"#)
        send("factory/pump-1/telemetry", "garbage")
        #expect(try consumer.flush(now: 0) == 3)
        #expect(sink.devices["pump-1"]?.sensors.map(\.name) == ["temperature", "vibration"])
        #expect(sink.devices["pump-1"]?.sensors.last?.unit == "mm/s")
        #expect(consumer.status == .init(messages: 3, readings: 3, errors: 1))
        // Not mapped: not taken.
        let taken = Array("{}".utf8).withUnsafeBytes { consumer.handle(topic: "elsewhere", payload: $0, now: 0) }
        #expect(!taken)
        sink.state.withLock { $0.failStore = true }
        send("factory/pump-1/telemetry", #"{"temp": 72, "ts": 1767225602}"#)
        #expect(throws: TwinError.self) { _ = try consumer.flush(now: 0) }
    }

    /// Fuzz tier: mutated and truncated mapping files are refused with a message or parse into
    /// entries that hold together; extreme values in them are refused.
    @Test func hostileMappingFilesNeverCrash() {
        var rng = SystemRandomNumberGenerator()
        let good = Array(Self.example.utf8)
        let alphabet = Array("{}[]:-#&*!|>'\"%@`, \n\t0123456789abcxyz+/.".utf8)
        for i in 0..<2000 {
            var bytes = good
            if i % 2 == 0 {
                bytes = Array(good.prefix(Int.random(in: 0...good.count, using: &rng)))
            } else {
                for _ in 0..<4 { bytes[Int.random(in: 0..<bytes.count, using: &rng)] = alphabet.randomElement(using: &rng)! }
            }
            do {
                let m = try TopicMapping.parse(String(decoding: bytes, as: UTF8.self))
                for e in m.entries {
                    #expect(TopicMapping.isValidFilter(e.topic) && (0...2).contains(e.qos))
                    for s in e.sensors { #expect(s.scale.isFinite && s.scale != 0) }
                }
            } catch {
                #expect(!error.message.isEmpty)
            }
        }
        for (bad, says) in [("1e999", "scale"), ("0", "scale"), (".nan", "scale")] {
            let text = "mappings:\n  - topic: a/b\n    device: 0\n    sensors: {x: {path: v, scale: \(bad)}}"
            #expect(throws: TwinError.self, "\(says) \(bad)") { try TopicMapping.parse(text) }
        }
        let huge = "mappings:\n  - topic: " + String(repeating: "a/", count: 40_000) + "b\n    device: " + String(repeating: "9", count: 40)
        #expect(throws: TwinError.self) { try TopicMapping.parse(huge) }
    }

    /// Fuzz tier: random and mutated payloads on mapped topics never crash the consumer.
    @Test func hostilePayloadsNeverCrash() throws {
        let sink = RecordingSink()
        let consumer = TopicConsumer(mapping: try TopicMapping.parse(Self.example), sink: sink, logger: Logger(label: "test"))
        let good = Array(#"{"temp": 70, "vib": {"rms": 1000}, "ts": 1767225600, "machine": {"id": "m"}}"#.utf8)
        var rng = SystemRandomNumberGenerator()
        for i in 0..<3000 {
            var bytes = good
            switch i % 3 {
            case 0: bytes = (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1: bytes = Array(good.prefix(Int.random(in: 0...good.count, using: &rng)))
            default: for _ in 0..<3 { bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            }
            let topic = i % 2 == 0 ? "factory/p\(i % 7)/telemetry" : "gateways/g/\(i)"
            bytes.withUnsafeBytes { _ = consumer.handle(topic: topic, payload: $0, now: 1_767_225_600 * Time.second) }
            _ = try? consumer.flush(now: 0)
        }
        #expect(consumer.status.errors > 0)
        for d in sink.devices.values { #expect((try? d.validate()) != nil) }
    }
}
