import Foundation
import GRPCCore
import Proto
import Testing
import TwinClient
import TwinCore

/// twind as a Sparkplug B host against a Sparkplug edge node written by someone else
/// (pysparkplug, Tests/Python/sparkplug_edge.py) through a real mosquitto: the node's births
/// define the devices, its data is stored and streamed, a sequence gap gets a rebirth request,
/// and its death takes the devices offline with their values stale.
@Suite(.timeLimit(.minutes(2))) struct SparkplugTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func aThirdPartyEdgeNodeDefinesStreamsRebirthsAndDies() async throws {
        let broker = try await Broker.start()
        defer { broker.stop() }
        let d = try await TwindProcess.start([
            "--simulator", "off", "--mqtt-broker", broker.url, "--mqtt-client-id", "twind-e2e-\(UUID().uuidString.prefix(8))",
            "--sparkplug-host-id", "twin-e2e", "--sparkplug-reorder-timeout", "300ms",
        ], login: false, environment: ["TWIND_ADMIN_PASSWORD": adminPassword])
        defer { Task { await d.stop() } }
        let parts = d.address.split(separator: ":")
        let address = NetworkAddress.tcp(host: String(parts[0]), port: Int(parts[1])!)
        let token = try await d.token()
        let pump = "Plant_1.Edge_A.Pump_1"

        try await TwinConnection.with(address, bearer: token) { client in
            let twin = Twin_V1_TwinService.Client(wrapping: client)
            // A live stream open before the node exists: it must see the data, then the death.
            let (synced, syncedTap) = AsyncStream.makeStream(of: Void.self)
            let streamed = Task {
                try await twin.streamUpdates(Twin_V1_StreamUpdatesRequest()) { response -> (values: [Double], staleOffline: Bool) in
                    var values: [Double] = []
                    for try await message in response.messages {
                        switch message.update {
                        case .syncComplete: syncedTap.yield()
                        case .devices(let batch):
                            for u in batch.updates where u.snapshot.deviceID == pump {
                                let t = u.snapshot.values.first { $0.sensor == "motor.temperature" }
                                if let t, !t.stale { values.append(t.value) }
                                if u.snapshot.state == .offline, u.snapshot.values.allSatisfy(\.stale), !u.snapshot.values.isEmpty {
                                    return (values, true)
                                }
                            }
                        default: break
                        }
                    }
                    return (values, false)
                }
            }
            for await _ in synced { break }

            let script = Self.root.appendingPathComponent("Tests/Python/sparkplug_edge.py").path
            let edge = try Child("/usr/bin/env", ["python3", script, "\(broker.port)", "twin-e2e", "Plant 1", "Edge A"])
            let status = await edge.wait(timeout: .seconds(60))
            #expect(status == 0, "sparkplug_edge.py: \(edge.stdout.text)\(edge.stderr.text)")
            #expect(edge.stdout.text.contains("ok rebirth requested"))

            // Streamed: each temperature as it came (conflation may merge some), then offline and stale.
            let seen = try await streamed.value
            #expect(seen.staleOffline)
            #expect(seen.values.last == 45.0)

            // Defined from the births: sensors named from the metrics, the string metric left out.
            var get = Twin_V1_GetDeviceRequest()
            get.deviceID = pump
            let device = try await twin.getDevice(get)
            #expect(device.device.sensors.map(\.name) == ["motor.temperature", "running"])
            #expect(device.device.sensors.first?.description_p == "Motor/Temperature")
            #expect(device.device.type == "sparkplug_device")
            #expect(device.snapshot.state == .offline)
            get.deviceID = "Plant_1.Edge_A"
            #expect(try await twin.getDevice(get).device.sensors.map(\.name) == ["uptime"])

            // Stored: the birth value and the six data values.
            var history = Twin_V1_GetHistoryRequest()
            history.deviceID = pump
            history.sensors = ["motor.temperature"]
            history.from = .init(seconds: Int64(Date().timeIntervalSince1970) - 600)
            history.to = .init(seconds: Int64(Date().timeIntervalSince1970) + 60)
            let stored = try await twin.getHistory(history).series.first?.points.map(\.value) ?? []
            #expect(stored == [39.5, 40, 41, 42, 43, 44, 45])

            // Visible: the connection and the node, offline, with its rebirth request.
            let gateways = try await twin.listGateways(Twin_V1_ListGatewaysRequest())
            #expect(gateways.connections.first?.connected == true)
            #expect(gateways.connections.first?.sparkplugHostID == "twin-e2e")
            let node = try #require(gateways.edgeNodes.first { $0.edgeNodeID == "Edge A" })
            #expect(!node.online && node.groupID == "Plant 1" && node.rebirthsRequested >= 1)
            #expect(node.devices == ["Plant_1.Edge_A", pump] && node.ignoredMetrics >= 1 && node.readings >= 8)
        }

        // `twin gateways` shows the same.
        try await loginAsAdmin(server: d.address, directory: d.directory)
        let cli = try d.twin(["gateways"])
        #expect(await cli.wait() == 0)
        #expect(cli.stdout.text.contains("Edge A") && cli.stdout.text.contains("offline") && cli.stdout.text.contains(broker.url))

        // A clean stop publishes the host's STATE death (retained) before it disconnects.
        #expect(await d.stop(removing: false) == 0)
        let read = """
            import sys, paho.mqtt.subscribe as s
            print(s.simple("spBv1.0/STATE/twin-e2e", hostname="127.0.0.1", port=int(sys.argv[1]), retained=True).payload.decode())
            """
        let state = try Child("/usr/bin/env", ["python3", "-c", read, "\(broker.port)"])
        #expect(await state.wait() == 0)
        #expect(state.stdout.text.contains("\"online\":false"))
        try? FileManager.default.removeItem(atPath: d.directory)
        try? FileManager.default.removeItem(atPath: configHome(for: d.directory))
    }
}
