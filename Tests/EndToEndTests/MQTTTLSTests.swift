import Foundation
import GRPCCore
import Proto
import Testing
import TwinClient
import TwinCore

/// twind to a broker over TLS as a plant would set it up: mqtts with the plant's CA, a client
/// certificate, a user name and a password from a file, MQTT 5. The gateway publishes on the
/// broker's plain loopback listener; twind must take the readings through its TLS one. With the
/// wrong CA or the wrong password twind stays disconnected and says why.
@Suite(.timeLimit(.minutes(2))) struct MQTTTLSTests {
    func brokerConfig(_ certs: String, plain: Int, tls: Int) -> [String] {
        // The extra lines replace the harness's own listener settings per listener.
        [
            "per_listener_settings true",
            "listener \(tls) 127.0.0.1",
            "cafile \(certs)/ca.pem", "certfile \(certs)/server.pem", "keyfile \(certs)/server.key",
            "require_certificate true", "allow_anonymous false", "password_file \(certs)/passwords",
            "listener \(plain) 127.0.0.1", "allow_anonymous true",
        ]
    }

    @Test func mqttsWithCAClientCertificateAndPasswordFile() async throws {
        let certs = try await TLSTests.makeCertificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let passwd = try Child("/usr/bin/mosquitto_passwd", ["-b", "-c", certs + "/passwords", "twind", "s3cret-broker-pass"])
        #expect(await passwd.wait() == 0, "\(passwd.stderr.text)")
        try "s3cret-broker-pass\n".write(toFile: certs + "/mqtt-password", atomically: true, encoding: .utf8)
        try "wrong-pass\n".write(toFile: certs + "/wrong-password", atomically: true, encoding: .utf8)
        let mapping = "mappings:\n  - topic: line/+/data\n    device: 1\n    sensors: {pressure: p}\n    auto_register: press\n"
        try mapping.write(toFile: certs + "/mapping.yaml", atomically: true, encoding: .utf8)

        let plain = try Broker.freePort()
        let tls = try Broker.freePort()
        let broker = try await Broker.start(extra: brokerConfig(certs, plain: plain, tls: tls), listener: false)
        defer { broker.stop() }
        func start(ca: String, passwordFile: String) async throws -> TwindProcess {
            try await TwindProcess.start([
                "--simulator", "off", "--mqtt-broker", "mqtts://127.0.0.1:\(tls)", "--mqtt-ca", ca,
                "--mqtt-cert", certs + "/client.pem", "--mqtt-key", certs + "/client.key", "--mqtt-username", "twind",
                "--mqtt-password-file", passwordFile, "--mqtt-protocol", "5", "--mqtt-mapping", certs + "/mapping.yaml",
                "--mqtt-client-id", "twind-tls-\(UUID().uuidString.prefix(6))",
            ], login: false, environment: ["TWIND_ADMIN_PASSWORD": adminPassword])
        }
        func gateways(_ d: TwindProcess) async throws -> Twin_V1_MqttConnection? {
            let parts = d.address.split(separator: ":")
            return try await TwinConnection.with(.tcp(host: String(parts[0]), port: Int(parts[1])!), bearer: try await d.token()) {
                try await Twin_V1_TwinService.Client(wrapping: $0).listGateways(.init()).connections.first
            }
        }
        func eventually(_ d: TwindProcess, _ check: (Twin_V1_MqttConnection) -> Bool) async throws -> Twin_V1_MqttConnection? {
            let deadline = ContinuousClock.now + .seconds(30)
            var last: Twin_V1_MqttConnection?
            while ContinuousClock.now < deadline {
                last = try await gateways(d)
                if let last, check(last) { return last }
                try await Task.sleep(for: .milliseconds(100))  // polling a condition, bounded
            }
            return last
        }

        // The right CA and password: connected, and readings come through.
        let d = try await start(ca: certs + "/ca.pem", passwordFile: certs + "/mqtt-password")
        defer { Task { await d.stop() } }
        #expect(try await eventually(d) { $0.connected }?.connected == true)
        #expect(!(try String(contentsOfFile: "/proc/\(d.child.process.processIdentifier)/cmdline", encoding: .utf8)).contains("s3cret"))
        let publish = try Child("/usr/bin/env", ["python3", "-c", """
            import sys, paho.mqtt.publish as p
            p.single("line/press-3/data", '{"p": 212.5}', qos=1, hostname="127.0.0.1", port=int(sys.argv[1]))
            """, "\(plain)"])
        #expect(await publish.wait() == 0, "\(publish.stderr.text)")
        let got = try await eventually(d) { $0.readings >= 1 }
        #expect(got?.readings == 1 && got?.broker == "mqtts://127.0.0.1:\(tls)")
        #expect(await d.stop() == 0)

        // A CA that did not sign the broker: never connected, the reason shown.
        let wrongCA = try await start(ca: certs + "/other.pem", passwordFile: certs + "/mqtt-password")
        defer { Task { await wrongCA.stop() } }
        let refused = try await eventually(wrongCA) { !$0.lastError.isEmpty }
        #expect(refused?.connected == false && refused?.lastError.isEmpty == false, "\(String(describing: refused))")
        #expect(await wrongCA.stop() == 0)

        // The wrong password: refused by the broker, said so.
        let wrongPassword = try await start(ca: certs + "/ca.pem", passwordFile: certs + "/wrong-password")
        defer { Task { await wrongPassword.stop() } }
        let denied = try await eventually(wrongPassword) { $0.lastError.contains("refused") }
        #expect(denied?.connected == false && denied?.lastError.contains("refused") == true, "\(String(describing: denied))")
        #expect(!(wrongPassword.child.stderr.text.contains("wrong-pass")))
        #expect(await wrongPassword.stop() == 0)
    }
}
