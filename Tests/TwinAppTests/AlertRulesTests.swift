import Logging
import Testing
import TwinApp
import TwinCore
@testable import TwinEngines

/// Alert rules as configuration: parsing with line numbers, scopes overriding field by field,
/// deadband, hold, disabled rules, reload keeping the last good set. In memory, manual clock.
@Suite struct AlertRulesTests {
    let clock = ManualClock()
    let logger = Logger(label: "test")
    static let pump = Device(
        id: "pump-1", type: "pump",
        sensors: [SensorSpec(name: "bearing_temp", unit: "°C", nominalMin: 20, nominalMax: 60, alarmHigh: 90), SensorSpec(name: "flow", unit: "m3/h", nominalMin: 0, nominalMax: 100)])
    static let other = Device(id: "pump-2", type: "pump", sensors: pump.sensors)
    static let fan = Device(id: "fan-1", type: "fan", sensors: pump.sensors)

    static let text = """
        defaults:
          hold: 1m
        rules:
          - name: high
            condition: above_alarm
            severity: critical
        types:
          pump:
            - name: bearing_hot
              condition: above
              sensor: bearing_temp
              value: 70
              deadband: 5
              severity: warning
        devices:
          pump-1:
            - name: bearing_hot
              value: 75
            - name: high
              enabled: false

        """

    func parse(_ text: String) throws -> AlertRules { try AlertRules.parse(text, source: "test", defaultHold: 30 * Time.second, defaultClear: 10 * Time.minute) }

    func subject(_ device: Device, temp: Double) -> AlertBook.Subject {
        let verdict = HealthEngine.Verdict(
            score: 90, components: [], factors: [], summary: HealthSummary(score: 90, headline: ""),
            levels: [HealthEngine.Level(sensor: "bearing_temp", value: temp, sensorFault: false)])
        return .init(device: device, state: .running, verdict: verdict, outlook: nil)
    }

    @Test func theBuiltInSetParsesAndIsTodaysRules() throws {
        let rules = AlertRules.builtIn(defaultHold: 30 * Time.second, defaultClear: 10 * Time.minute)
        #expect(rules.source == "built-in")
        #expect(rules.rules(for: Self.pump).map(\.name) == ["high", "low", "rate", "anomaly", "sensor", "no_data", "predicted_failure_24h", "predicted_failure_7d"])
        #expect(rules.rules(for: Self.pump).first { $0.name == "predicted_failure_24h" }?.hold == 0)
    }

    @Test func scopesOverrideFieldByField() throws {
        let rules = try parse(Self.text)
        let mine = rules.rules(for: Self.pump)
        let hot = try #require(mine.first { $0.name == "bearing_hot" })
        #expect(hot.value == 75 && hot.deadband == 5 && hot.severity == .warning && hot.hold == Time.minute && hot.scope == "device pump-1")
        #expect(mine.first { $0.name == "high" }?.enabled == false)
        #expect(rules.rules(for: Self.other).first { $0.name == "bearing_hot" }?.value == 70)
        #expect(rules.rules(for: Self.fan).map(\.name) == ["high"])
        #expect(rules.version.hasPrefix("r") && rules.version.count == 17)
        #expect(try parse(Self.text + "\n# a comment\n").version != rules.version)
    }

    @Test(arguments: [
        ("rules:\n  - name: x\n    condition: above\n    sensor: t\n", 2, "needs a value"),
        ("rules:\n  - name: x\n    condition: over\n", 3, "condition is one of"),
        ("rules:\n  - name: x\n    condition: anomaly\n    hold: soon\n", 4, "hold is a duration"),
        ("rules:\n  - name: x\n    condition: anomaly\n  - name: x\n    condition: rate\n", 4, "defined twice"),
        ("rules:\n  - name: x\n    condition: anomaly\n    colour: red\n", 4, "unknown key 'colour'"),
        ("types:\n  pump:\n    - name: y\n      value: 3\n", 3, "has no condition"),
        ("devices:\n  pump-1:\n    - name: y\n      enabled: false\n", 3, "overrides no rule"),
        ("rules:\n  - name: p\n    condition: predicted_failure\n    horizon: 3d\n", 2, "24h or 7d"),
        ("rules:\n  - name: x\n    condition: above\n    sensor: t\n    value: .nan\n", 5, "finite number"),
    ])
    func aBadFileNamesTheLineAndTheProblem(text: String, line: Int, problem: String) throws {
        do {
            _ = try parse(text)
            Issue.record("accepted: \(text)")
        } catch let error as TwinError {
            #expect(error.reason == .alertRulesInvalid)
            #expect(error.metadata["line"] == "\(line)", "\(error.message)")
            #expect(error.message.contains("line \(line)") && error.message.contains(problem), "\(error.message)")
        }
    }

    @Test func aDeviceOverrideThatBreaksTheRuleItOverridesIsRefused() throws {
        let text = "rules:\n  - name: p\n    condition: predicted_failure\ndevices:\n  pump-1:\n    - name: p\n      horizon: 3d\n"
        #expect {
            try parse(text)
        } throws: { error in
            (error as? TwinError).map { $0.metadata["line"] == "6" && $0.message.contains("24h or 7d") } ?? false
        }
    }

    /// The decoder's fuzz tier: truncated, mutated and random texts are refused with the
    /// rules' reason or accepted, never a crash (seeded, bounded).
    @Test func hostileTextsNeverCrashTheParser() {
        var random = SplitMix64(seed: 17)
        let seed = Array((AlertRules.builtInText + Self.text.replacingOccurrences(of: "defaults:\n  hold: 1m\n", with: "")).utf8)
        let pieces = ["\u{0}", "*", "&a", "*a", "[", "{", "]", "}", ": ", "- ", "\n  ", "1e400", "-0", ".nan", ".inf", "~", "!!binary", "'", "\"", "9223372036854775807d", String(repeating: "x", count: 5_000)]
        for round in 0..<2_000 {
            var bytes = seed
            switch round % 3 {
            case 0: bytes = Array(bytes.prefix(Int(random.next() % UInt64(bytes.count + 1))))
            case 1:
                for _ in 0..<(1 + random.next() % 8) {
                    let at = Int(random.next() % UInt64(bytes.count))
                    let piece = Array(pieces[Int(random.next() % UInt64(pieces.count))].utf8)
                    bytes.replaceSubrange(at..<min(bytes.count, at + Int(random.next() % 6)), with: piece)
                }
            default: bytes = (0..<Int(random.next() % 400)).map { _ in UInt8(truncatingIfNeeded: random.next() % 128) }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            do {
                let rules = try parse(text)
                _ = rules.rules(for: Self.pump)
                _ = rules.listed { _ in "pump" }
            } catch let error as TwinError {
                #expect(error.reason == .alertRulesInvalid, "\(error.message)")
            } catch {
                Issue.record("not a TwinError: \(error)")
            }
        }
    }

    @Test func aValueRuleHoldsThenClearsOnlyPastItsDeadband() throws {
        let book = try AlertBook(store: MemoryAlertStore(), rules: try parse(Self.text), clock: clock, logger: logger)
        _ = book.evaluate([subject(Self.other, temp: 72)])
        clock.advance(by: 59 * Time.second)
        #expect(book.evaluate([subject(Self.other, temp: 72)]) == ["pump-2": 0])  // hold is 1m
        clock.advance(by: Time.second)
        #expect(book.evaluate([subject(Self.other, temp: 72)]) == ["pump-2": 1])
        let alert = try #require(book.list(devices: [], states: [.open], minimum: nil).first)
        #expect(alert.rule == "bearing_temp.bearing_hot" && alert.severity == .warning && alert.ruleVersion == book.rules.version)
        #expect(alert.message == "bearing_temp 72.0 °C is above 70.0 °C")
        // 67 °C is below 70 but inside the 5 °C deadband: still holding, never clear.
        clock.advance(by: 11 * Time.minute)
        _ = book.evaluate([subject(Self.other, temp: 67)])
        #expect(book.list(devices: [], states: [.open], minimum: nil).first?.clearSince == nil)
        // Below 65: clear, and resolved after clear_after (10 min by default).
        _ = book.evaluate([subject(Self.other, temp: 64)])
        clock.advance(by: 10 * Time.minute)
        _ = book.evaluate([subject(Self.other, temp: 64)])
        #expect(book.list(devices: [], states: [.open], minimum: nil).isEmpty)
        // pump-1's override: 72 °C is below its 75.
        clock.advance(by: 2 * Time.minute)
        _ = book.evaluate([subject(Self.pump, temp: 72)])
        clock.advance(by: 2 * Time.minute)
        #expect(book.evaluate([subject(Self.pump, temp: 72)]) == ["pump-1": 0])
    }

    @Test func aReloadWithABadFileKeepsTheRulesInForce() throws {
        let dir = FileManagerPath.temporary()
        let path = dir + "/rules.yaml"
        try Self.text.write(toFile: path, atomically: true, encoding: .utf8)
        let first = try AlertRuleFile.read(path: path, hold: 30 * Time.second, clear: 10 * Time.minute)
        let book = try AlertBook(store: MemoryAlertStore(), rules: first, clock: clock, logger: logger)
        let file = AlertRuleFile(path: path, book: book, hold: 30 * Time.second, clear: 10 * Time.minute, writes: BlockingPool(name: "t", workers: 1, queueLimit: 1), clock: clock, logger: logger)
        try "rules:\n  - name: x\n    condition: nonsense\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(file.reload().version == first.version)
        #expect(file.status.lastError.contains("line 3"))
        try "rules:\n  - name: quiet\n    condition: no_data\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(file.reload().rules(for: Self.pump).map(\.name) == ["quiet"])
        #expect(file.status.lastError.isEmpty)
        // No file: the built-in set.
        #expect(try AlertRuleFile.read(path: dir + "/none.yaml", hold: 0, clear: 0).source == "built-in")
    }
}

import Foundation

enum FileManagerPath {
    static func temporary() -> String {
        let path = NSTemporaryDirectory() + "twin-rules-\(UInt64.random(in: 0...UInt64.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
