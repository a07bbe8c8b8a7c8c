import Foundation
import GRPCCore
import Proto
import Testing
import TwinClient
import TwinCore

/// Plain MQTT with JSON payloads through a real mosquitto, published by paho-mqtt
/// (Tests/Python/mqtt_publish.py) into twind with a mapping file: devices registered on first
/// sight, readings stored; QoS 1 messages published while twind is down arrive when it is back
/// (persistent session); and a `kill -9` in the middle of a stream loses none of them.
@Suite(.timeLimit(.minutes(3))) struct MQTTTopicTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let mapping = """
        mappings:
          - topic: plant/+/telemetry
            device: 1
            time: ts
            sensors:
              temperature: {path: temp, unit: °C}
            auto_register: chiller
        """

    func publish(_ broker: Broker, device: String, first: Int, count: Int) throws -> Child {
        try Child("/usr/bin/env", ["python3", Self.root.appendingPathComponent("Tests/Python/mqtt_publish.py").path,
                                   "\(broker.port)", "plant/\(device)/telemetry", "\(first)", "\(count)"])
    }

    /// The distinct temperatures stored for `device` (each message carries its own number).
    func stored(_ d: TwindProcess, _ device: String) async throws -> Set<Double> {
        let parts = d.address.split(separator: ":")
        let address = NetworkAddress.tcp(host: String(parts[0]), port: Int(parts[1])!)
        return try await TwinConnection.with(address, bearer: try await d.token()) { client in
            var request = Twin_V1_GetHistoryRequest()
            request.deviceID = device
            request.from = .init(seconds: Int64(Date().timeIntervalSince1970) - 3600)
            request.to = .init(seconds: Int64(Date().timeIntervalSince1970) + 60)
            do {
                let r = try await Twin_V1_TwinService.Client(wrapping: client).getHistory(request)
                return Set(r.series.flatMap(\.points).map(\.value))
            } catch let error as RPCError where error.code == .notFound {
                return []
            }
        }
    }

    func waitFor(_ d: TwindProcess, _ device: String, count: Int) async throws -> Set<Double> {
        let deadline = ContinuousClock.now + .seconds(60)
        var values: Set<Double> = []
        while ContinuousClock.now < deadline {
            values = try await stored(d, device)
            if values.count >= count { return values }
            try await Task.sleep(for: .milliseconds(100))  // polling a condition, bounded
        }
        return values
    }

    @Test func mappedTopicsPersistentSessionAndNoLossOnKill() async throws {
        let broker = try await Broker.start(extra: ["max_queued_messages 100000", "max_inflight_messages 100"])
        defer { broker.stop() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twind-e2e-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "-mapping", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir + "-mapping") }
        let mappingFile = dir + "-mapping/mapping.yaml"
        try Self.mapping.write(toFile: mappingFile, atomically: true, encoding: .utf8)
        let flags = ["--simulator", "off", "--mqtt-broker", broker.url, "--mqtt-client-id", "twind-e2e-mapping", "--mqtt-mapping", mappingFile]
        let env = ["TWIND_ADMIN_PASSWORD": adminPassword]

        // 1. Registered on first sight, stored.
        var d = try await TwindProcess.start(flags, directory: dir, login: false, environment: env)
        let first = try publish(broker, device: "chiller-1", first: 0, count: 50)
        #expect(await first.wait(timeout: .seconds(60)) == 0, "\(first.stderr.text)")
        #expect(try await waitFor(d, "chiller-1", count: 50) == Set((0..<50).map(Double.init)))
        #expect(await d.stop(removing: false) == 0)

        // 2. Published while twind is down: there when it is back.
        let whileDown = try publish(broker, device: "chiller-1", first: 50, count: 200)
        #expect(await whileDown.wait(timeout: .seconds(60)) == 0)
        d = try await TwindProcess.start(flags, directory: dir, login: false, environment: env)
        #expect(try await waitFor(d, "chiller-1", count: 250) == Set((0..<250).map(Double.init)))

        // 3. kill -9 while a stream comes in: every message the broker took is stored after the restart.
        let stream = try publish(broker, device: "chiller-2", first: 0, count: 3000)
        let some = try await waitFor(d, "chiller-2", count: 1)
        #expect(!some.isEmpty)
        d.child.signal(SIGKILL)
        _ = await d.child.wait(timeout: .seconds(10))
        #expect(await stream.wait(timeout: .seconds(90)) == 0, "\(stream.stderr.text)")
        d = try await TwindProcess.start(flags, directory: dir, login: false, environment: env)
        let after = try await waitFor(d, "chiller-2", count: 3000)
        let lost = Set((0..<3000).map(Double.init)).subtracting(after)
        #expect(lost.isEmpty, "lost \(lost.count) of 3000 after kill -9: \(lost.sorted().prefix(20))")
        #expect(await d.stop() == 0)
    }
}
