import Foundation
import GRPCCore
import Proto
import Testing
import TwinClient
import TwinCore

/// The OPC UA server the tests read: asyncua (Python, PyPI; scripts/bootstrap installs it),
/// Tests/Python/opcua_server.py, on a loopback port.
struct OPCUAServer {
    let child: Child
    let port: Int
    var url: String { "opc.tcp://127.0.0.1:\(port)/twin/" }

    static func start(port fixed: Int? = nil, user: String? = nil, extra: [String] = []) async throws -> OPCUAServer {
        var last = ""
        for _ in 0..<5 {
            let port = try fixed ?? Broker.freePort()
            let child = try Child("/usr/bin/env", ["python3", MQTTTopicTests.root.appendingPathComponent("Tests/Python/opcua_server.py").path, "\(port)"]
                                  + (user.map { ["--user", $0] } ?? []) + extra)
            if await child.stdout.waitForLine(timeout: .seconds(60), { $0.hasPrefix("ready") }) != nil { return OPCUAServer(child: child, port: port) }
            last = child.stderr.text
            child.signal(SIGKILL)
            _ = await child.wait(timeout: .seconds(5))
            if fixed != nil { try await Task.sleep(for: .milliseconds(500)) }  // the port may still be held: try again
        }
        throw TestFailure("the asyncua server did not start: \(last.suffix(2000))")
    }

    /// Kills the server and waits for it (synchronously, so a `defer` tears it down).
    func stop() {
        child.signal(SIGKILL)
        child.process.waitUntilExit()
    }
}

/// twind reading an OPC UA server written by others: `twin opcua browse`, a mapping file with
/// browse paths and NodeIds, units and ranges from the server, readings stored and streamed,
/// values with a bad StatusCode kept out, a wrong password refused with its StatusCode while
/// the other endpoint goes on, devices offline while the server is down and back after its restart.
@Suite(.timeLimit(.minutes(3))) struct OPCUATests {
    func client(_ d: TwindProcess) async throws -> (NetworkAddress, String) {
        let parts = d.address.split(separator: ":")
        return (.tcp(host: String(parts[0]), port: Int(parts[1])!), try await d.token())
    }

    func gateways(_ d: TwindProcess) async throws -> [String: Twin_V1_OpcUaConnection] {
        let (address, token) = try await client(d)
        let r = try await TwinConnection.with(address, bearer: token) { try await Twin_V1_TwinService.Client(wrapping: $0).listGateways(.init()) }
        return Dictionary(uniqueKeysWithValues: r.opcuaConnections.map { ($0.name, $0) })
    }

    func device(_ d: TwindProcess, _ id: String) async throws -> Twin_V1_GetDeviceResponse? {
        let (address, token) = try await client(d)
        return try await TwinConnection.with(address, bearer: token) { c in
            var request = Twin_V1_GetDeviceRequest()
            request.deviceID = id
            do { return try await Twin_V1_TwinService.Client(wrapping: c).getDevice(request) } catch let e as RPCError where e.code == .notFound { return nil }
        }
    }

    func history(_ d: TwindProcess, _ id: String, _ sensor: String, since: Date) async throws -> [Double] {
        let (address, token) = try await client(d)
        return try await TwinConnection.with(address, bearer: token) { c in
            var request = Twin_V1_GetHistoryRequest()
            request.deviceID = id
            request.sensors = [sensor]
            request.from = .init(seconds: Int64(since.timeIntervalSince1970))
            request.to = .init(seconds: Int64(Date().timeIntervalSince1970) + 60)
            do { return try await Twin_V1_TwinService.Client(wrapping: c).getHistory(request).series.flatMap(\.points).map(\.value) } catch let e as RPCError where e.code == .notFound { return [] }
        }
    }

    /// Polls `condition` (bounded at 60 s), returning whether it held.
    func eventually(_ what: String, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("not within 60 s: \(what)")
        return false
    }

    @Test func browseWithTheCLI() async throws {
        let server = try await OPCUAServer.start(user: "reader:reader-pass-12")
        defer { server.stop() }
        let browse = try Child("twin", ["opcua", "browse", server.url, "2:Plant", "--depth", "2"])
        #expect(await browse.wait() == 0, "\(browse.stderr.text)")
        let out = browse.stdout.text
        #expect(out.contains("2:Plant/2:Press1/2:Force"))
        #expect(out.contains("ns=2;s=Press1.Force"))
        #expect(out.split(separator: "\n").contains { $0.contains("2:Press1/2:Force") && $0.contains("kN") })
        let json = try Child("twin", ["opcua", "browse", server.url, "-o", "json"])
        #expect(await json.wait() == 0)
        #expect(json.stdout.text.contains("\"browse_name\":\"2:Plant\""))

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("opcua-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "not-the-password\n".write(toFile: dir + "/wrong", atomically: true, encoding: .utf8)
        chmod(dir + "/wrong", 0o600)
        let refused = try Child("twin", ["opcua", "browse", server.url, "--username", "reader", "--password-file", dir + "/wrong"])
        #expect(await refused.wait() == 7)
        #expect(refused.stderr.text.contains("BadUserAccessDenied"))
        #expect(!refused.stderr.text.contains("not-the-password"))
        let missing = try Child("twin", ["opcua", "browse", server.url, "2:Plant/2:Nothing"])
        #expect(await missing.wait() == 5)
        #expect(missing.stderr.text.contains("BadNoMatch"))
        let down = try Child("twin", ["opcua", "browse", "opc.tcp://127.0.0.1:\(try Broker.freePort())/"])
        #expect(await down.wait() == 3)
    }

    @Test func readingsFromAServerThatRestarts() async throws {
        var server = try await OPCUAServer.start(user: "reader:reader-pass-12")
        defer { server.stop() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twind-e2e-\(UUID().uuidString)").path
        let files = dir + "-opcua"
        try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: files) }
        for (name, text) in [("good", "reader-pass-12\n"), ("wrong", "not-the-password\n")] {
            try text.write(toFile: "\(files)/\(name)", atomically: true, encoding: .utf8)
            chmod("\(files)/\(name)", 0o600)
        }
        let config = """
            endpoints:
              - url: \(server.url)
                name: press-line
                username: reader
                password_file: \(files)/good
                sampling_interval: 100ms
                type: press
                nodes:
                  - {path: "2:Plant/2:Press1/2:Force", device: press-1, sensor: force}
                  - {path: "2:Plant/2:Press1/2:Temperature", device: press-1, sensor: temperature, unit: "°C", nominal: [30, 50]}
                  - {node: "ns=2;s=Press1.Force", device: press-2, sensor: force}
                  - {path: "2:Plant/2:Pump1/2:Flow", device: pump-1, sensor: flow, type: pump}
                  - {path: "2:Plant/2:Pump1/2:Pressure", device: pump-1, sensor: pressure, type: pump}
                  - {path: "2:Plant/2:Pump1/2:Missing", device: pump-1, sensor: missing, type: pump}
                  - {node: "ns=2;s=no.such.node", device: pump-1, sensor: ghost, type: pump}
              - url: \(server.url)
                name: wrong-login
                username: reader
                password_file: \(files)/wrong
                nodes:
                  - {path: "2:Plant/2:Press1/2:Force", device: press-9, sensor: force}
            """
        try config.write(toFile: files + "/opcua.yaml", atomically: true, encoding: .utf8)
        let started = Date()
        // A test that fails before the end still ends this twind: its Child terminates it when released.
        let d = try await TwindProcess.start(["--simulator", "off", "--opcua-config", files + "/opcua.yaml", "--metrics-listen", "127.0.0.1:0"], directory: dir)
        let metricsLine = try #require(await d.child.stderr.waitForLine(timeout: .seconds(20)) { $0.contains("metrics listening") })
        let metricsPort = try #require(metricsLine.range(of: "127.0.0.1:").map { metricsLine[$0.upperBound...].prefix { $0.isNumber } })

        // Registered with the server's unit and range where the file gives none, the file's where it does.
        guard try await eventually("press-1 and pump-1 registered", {
            let a = try await device(d, "press-1"), b = try await device(d, "pump-1")
            return a != nil && b != nil
        }) else { return }
        let press = try #require(try await device(d, "press-1")).device
        let force = try #require(press.sensors.first { $0.name == "force" })
        #expect(force.unit == "kN" && force.nominalMin == 0 && force.nominalMax == 500)
        let temperature = try #require(press.sensors.first { $0.name == "temperature" })
        #expect(temperature.unit == "°C" && temperature.nominalMin == 30 && temperature.nominalMax == 50)
        #expect(press.type == "press" && press.labels["source"] == "opcua")
        let pump = try #require(try await device(d, "pump-1")).device
        #expect(pump.type == "pump")
        #expect(Set(pump.sensors.map(\.name)) == ["flow", "pressure"], "nodes the server lacks are not sensors")
        #expect(try await device(d, "press-9") == nil)

        // Readings stored, pressure only while Good; the endpoint's counts and refusals.
        _ = try await eventually("force readings stored") { try await history(d, "press-1", "force", since: started).count >= 20 }
        #expect(try await history(d, "press-1", "force", since: started).allSatisfy { (150...350).contains($0) })
        _ = try await eventually("press-2 by NodeId") { try await history(d, "press-2", "force", since: started).count >= 5 }
        _ = try await eventually("a bad pressure value counted") { (try await gateways(d)["press-line"]?.badReadings ?? 0) > 0 }
        let line = try #require(try await gateways(d)["press-line"])
        #expect(line.connected && line.monitoredItems == 5 && line.failedItems == 2)
        #expect(line.readings > 0 && line.identity == "user reader" && line.securityPolicy == "None")
        #expect(line.devices == ["press-1", "press-2", "pump-1"])
        _ = try await eventually("the wrong password refused") { try await gateways(d)["wrong-login"]?.lastError.contains("BadUserAccessDenied") == true }
        #expect(try await gateways(d)["wrong-login"]?.connected == false)

        // Metrics: connected, items, readings per endpoint (recorded every 5 s).
        _ = try await eventually("OPC UA metrics") {
            let body = try await MetricsTests().get("http://127.0.0.1:\(metricsPort)/metrics").body
            let (samples, _) = MetricsTests.parse(body)
            func value(_ name: String, _ endpoint: String) -> Double? { samples.first { $0.name == name && $0.labels["endpoint"] == endpoint }?.value }
            return value("twind_opcua_connected", "press-line") == 1 && value("twind_opcua_monitored_items", "press-line") == 5
                && (value("twind_opcua_readings_total", "press-line") ?? 0) > 0 && value("twind_opcua_connected", "wrong-login") == 0
        }

        // Streamed as it comes.
        let watch = try d.twin(["watch", "--device", "press-1", "--count", "3", "-o", "json"])
        #expect(await watch.wait(timeout: .seconds(30)) == 0, "\(watch.stderr.text)")
        #expect(watch.stdout.lines.filter { $0.contains("\"force\"") }.count == 3)
        let table = try d.twin(["gateways"])
        #expect(await table.wait() == 0)
        #expect(table.stdout.text.contains("press-line") && table.stdout.text.contains("connected"))

        // The server goes away: its devices go offline; it comes back on the same port: readings resume.
        server.stop()
        _ = try await eventually("disconnected") { try await gateways(d)["press-line"]?.connected == false }
        _ = try await eventually("press-1 offline") { try await device(d, "press-1")?.snapshot.state == .offline }
        server = try await OPCUAServer.start(port: server.port, user: "reader:reader-pass-12")
        let back = Date()
        _ = try await eventually("reconnected") {
            let g = try await gateways(d)["press-line"]
            return g?.connected == true && (g?.reconnects ?? 0) >= 1
        }
        _ = try await eventually("readings after the restart") { try await history(d, "press-1", "force", since: back).count >= 5 }
        _ = try await eventually("press-1 running again") { try await device(d, "press-1")?.snapshot.state != .offline }
        #expect(await d.stop() == 0)
    }

    /// Basic256Sha256 SignAndEncrypt with a password encrypted for the server: refused while the
    /// server certificate is not trusted (saved in rejected/), read once it is moved to trusted/.
    @Test func aSecuredServerOnceItsCertificateIsTrusted() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twind-e2e-\(UUID().uuidString)").path
        let files = dir + "-opcua"
        try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: files) }
        let server = try await OPCUAServer.start(user: "reader:reader-pass-12", extra: ["--secure", files + "/server", "--secure-only"])
        defer { server.stop() }
        try "reader-pass-12\n".write(toFile: files + "/good", atomically: true, encoding: .utf8)
        chmod(files + "/good", 0o600)

        // twin opcua browse over the secured channel (trusting what it is shown, as a person looking around may).
        let browse = try Child("twin", ["opcua", "browse", server.url, "2:Plant", "--security", "sign-and-encrypt", "--pki", files + "/cli-pki",
                                        "--trust-any-server", "--username", "reader", "--password-file", files + "/good"])
        #expect(await browse.wait() == 0, "\(browse.stderr.text)")
        #expect(browse.stdout.text.contains("2:Plant/2:Press1"))
        let strict = try Child("twin", ["opcua", "browse", server.url, "--security", "sign", "--pki", files + "/cli-pki"])
        #expect(await strict.wait() == 7)
        #expect(strict.stderr.text.contains("BadCertificateUntrusted"))

        let config = """
            pki: \(files)/pki
            endpoints:
              - url: \(server.url)
                name: secured
                security_policy: Basic256Sha256
                security_mode: SignAndEncrypt
                username: reader
                password_file: \(files)/good
                sampling_interval: 100ms
                nodes:
                  - {path: "2:Plant/2:Press1/2:Force", device: press-1, sensor: force}
            """
        try config.write(toFile: files + "/opcua.yaml", atomically: true, encoding: .utf8)
        let started = Date()
        let d = try await TwindProcess.start(["--simulator", "off", "--opcua-config", files + "/opcua.yaml"], directory: dir)
        #expect(FileManager.default.fileExists(atPath: files + "/pki/own/cert.der"))
        _ = try await eventually("refused as untrusted") { try await gateways(d)["secured"]?.lastError.contains("BadCertificateUntrusted") == true }
        let rejected = (try? FileManager.default.contentsOfDirectory(atPath: files + "/pki/rejected")) ?? []
        #expect(rejected.count == 1)
        #expect(try await gateways(d)["secured"]?.securityPolicy == "Basic256Sha256 SignAndEncrypt")
        if let name = rejected.first { try FileManager.default.moveItem(atPath: files + "/pki/rejected/" + name, toPath: files + "/pki/trusted/" + name) }
        _ = try await eventually("connected once trusted") { try await gateways(d)["secured"]?.connected == true }
        _ = try await eventually("readings over the encrypted channel") { try await history(d, "press-1", "force", since: started).count >= 5 }
        #expect(await d.stop() == 0)
    }
}
