import Foundation
import Testing

/// twind serving TCP with TLS, with and without client certificates, as twin meets it.
@Suite(.serialized, .timeLimit(.minutes(2))) struct TLSTests {
    /// A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate,
    /// made with the openssl command-line tool.
    static func makeCertificates() async throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twin-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n".write(toFile: dir + "/server.ext", atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: dir + "/client.ext", atomically: true, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        let steps: [[String]] = [
            ["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=twin test CA"],
            ["req"] + ec + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext"],
            ["req"] + ec + ["-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=gateway-7"],
            ["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "client.pem", "-days", "2", "-extfile", "client.ext"],
            // A second CA nobody trusts, with its own client certificate.
            ["req", "-x509"] + ec + ["-keyout", "other.key", "-out", "other.pem", "-days", "2", "-subj", "/CN=someone else"],
        ]
        for step in steps {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            p.arguments = step
            p.currentDirectoryURL = URL(fileURLWithPath: dir)
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw TestFailure("openssl \(step.joined(separator: " ")) failed") }
        }
        return dir
    }

    @Test func tlsWithTheRightCAAndNotWithout() async throws {
        let certs = try await Self.makeCertificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let socket = FileManager.default.temporaryDirectory.appendingPathComponent("twind-\(UUID().uuidString.prefix(8)).sock").path
        let d = try await TwindProcess.start(
            ["--tls-cert", certs + "/server.pem", "--tls-key", certs + "/server.key", "--simulator", "off", "--listen", "unix:" + socket],
            clientArguments: ["--ca", certs + "/ca.pem"])
        let ok = try d.twin(["whoami", "--ca", certs + "/ca.pem"])
        #expect(await ok.wait() == 0)
        #expect(ok.stdout.text.hasPrefix("admin (admin)"))
        // Plaintext to a TLS port, and TLS trusting the wrong CA: no connection, a clear exit code.
        let plain = try d.twin(["whoami"])
        #expect(await plain.wait() == 3)
        let wrongCA = try d.twin(["whoami", "--ca", certs + "/other.pem"])
        #expect(await wrongCA.wait() == 3)
        // The Unix socket stays plaintext: local users reach it without certificates.
        try await loginAsAdmin(server: "unix:" + socket, directory: d.directory)
        #expect(await d.stop() == 0)
    }

    /// SIGHUP rereads the certificate and key: a renewed pair is served from then on (on the same
    /// port), a pair that does not belong together is refused and the one in force stays.
    @Test func sighupServesARenewedCertificate() async throws {
        let first = try await Self.makeCertificates(), second = try await Self.makeCertificates()
        let live = FileManager.default.temporaryDirectory.appendingPathComponent("twin-tls-live-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: true)
        defer { for d in [first, second, live] { try? FileManager.default.removeItem(atPath: d) } }
        func install(_ from: String, cert: String = "server.pem", key: String = "server.key") throws {
            for (name, source) in [("server.pem", cert), ("server.key", key)] {
                let data = try Data(contentsOf: URL(fileURLWithPath: from + "/" + source))
                try data.write(to: URL(fileURLWithPath: live + "/" + name), options: .atomic)
            }
        }
        try install(first)
        let d = try await TwindProcess.start(
            ["--tls-cert", live + "/server.pem", "--tls-key", live + "/server.key", "--simulator", "off"],
            clientArguments: ["--ca", first + "/ca.pem"])
        let before = try d.twin(["whoami", "--ca", first + "/ca.pem"])
        #expect(await before.wait() == 0)

        try install(second)
        d.child.signal(SIGHUP)
        #expect(await d.child.stderr.waitForLine { $0.contains("listening with the reloaded TLS certificate") } != nil)
        let renewed = try d.twin(["whoami", "--ca", second + "/ca.pem"])
        #expect(await renewed.wait() == 0, "\(renewed.stderr.text)")
        let old = try d.twin(["whoami", "--ca", first + "/ca.pem"])
        #expect(await old.wait() == 3)

        // A key that is not the certificate's: refused, the renewed pair stays in force.
        try install(second, key: "client.key")
        d.child.signal(SIGHUP)
        #expect(await d.child.stderr.waitForLine { $0.contains("TLS certificate or key cannot be loaded") && $0.contains("does not belong") } != nil, "\(d.child.stderr.lines.filter { $0.contains("TLS") })")
        let still = try d.twin(["whoami", "--ca", second + "/ca.pem"])
        #expect(await still.wait() == 0)
        #expect(await d.stop() == 0)
    }

    /// The console serves HTTPS with the same certificate; plain HTTP to it gets no answer.
    @Test func theConsoleServesHTTPSWithTheGRPCCertificate() async throws {
        let certs = try await Self.makeCertificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let d = try await TwindProcess.start(
            ["--tls-cert", certs + "/server.pem", "--tls-key", certs + "/server.key", "--simulator", "off", "--http-listen", "127.0.0.1:0"],
            clientArguments: ["--ca", certs + "/ca.pem"])
        let line = try #require(await d.child.stderr.waitForLine { $0.contains("console url=") })
        let url = String(line[line.range(of: "url=")!.upperBound...].prefix { !$0.isWhitespace })
        #expect(url.hasPrefix("https://127.0.0.1:"))
        let body = #"{"username":"admin","password":"\#(adminPassword)"}"#
        let curl = try Child("/usr/bin/curl", ["-s", "--cacert", certs + "/ca.pem", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
                                               "--data-binary", "@-", url + "twin.v1.AuthService/Login"], stdin: Data(body.utf8))
        #expect(await curl.wait() == 0)
        #expect(curl.stdout.text == "200")
        let plain = try Child("/usr/bin/curl", ["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", url.replacingOccurrences(of: "https://", with: "http://")])
        _ = await plain.wait()
        #expect(plain.stdout.text != "200")
        #expect(await d.stop() == 0)
    }

    /// SIGHUP with a renewed certificate: the console restarts on its port with it (a browser
    /// trusting only the new CA gets in; one trusting only the old is refused).
    @Test func sighupRenewsTheConsolesCertificateToo() async throws {
        let first = try await Self.makeCertificates(), second = try await Self.makeCertificates()
        let live = FileManager.default.temporaryDirectory.appendingPathComponent("twin-tls-live-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: true)
        defer { for d in [first, second, live] { try? FileManager.default.removeItem(atPath: d) } }
        func install(_ from: String) throws {
            for name in ["server.pem", "server.key"] {
                try Data(contentsOf: URL(fileURLWithPath: from + "/" + name)).write(to: URL(fileURLWithPath: live + "/" + name), options: .atomic)
            }
        }
        try install(first)
        let d = try await TwindProcess.start(
            ["--tls-cert", live + "/server.pem", "--tls-key", live + "/server.key", "--simulator", "off", "--http-listen", "127.0.0.1:0"],
            clientArguments: ["--ca", first + "/ca.pem"])
        let line = try #require(await d.child.stderr.waitForLine { $0.contains("console url=") })
        let url = String(line[line.range(of: "url=")!.upperBound...].prefix { !$0.isWhitespace })
        func fetch(trusting ca: String) async throws -> String {
            let curl = try Child("/usr/bin/curl", ["-s", "-m", "10", "--cacert", ca + "/ca.pem", "-o", "/dev/null", "-w", "%{http_code}", url])
            _ = await curl.wait()
            return curl.stdout.text
        }
        #expect(try await fetch(trusting: first) == "200")
        try install(second)
        d.child.signal(SIGHUP)
        #expect(await d.child.stderr.waitForLine { $0.contains("restarted") && $0.contains("console") } != nil, "\(d.child.stderr.text.suffix(2000))")
        #expect(try await fetch(trusting: second) == "200")
        #expect(try await fetch(trusting: first) == "000")
        #expect(await d.stop() == 0)
    }

    @Test func clientCertificatesAreRequiredWhenAsked() async throws {
        let certs = try await Self.makeCertificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let client = ["--ca", certs + "/ca.pem", "--cert", certs + "/client.pem", "--key", certs + "/client.key"]
        let d = try await TwindProcess.start(
            ["--tls-cert", certs + "/server.pem", "--tls-key", certs + "/server.key", "--tls-client-ca", certs + "/ca.pem", "--simulator", "off"],
            clientArguments: client)
        let ok = try d.twin(["whoami"] + client)
        #expect(await ok.wait() == 0)
        let noCert = try d.twin(["whoami", "--ca", certs + "/ca.pem"])
        #expect(await noCert.wait() == 3)
        let strangerCert = try d.twin(["whoami", "--ca", certs + "/ca.pem", "--cert", certs + "/other.pem", "--key", certs + "/other.key"])
        #expect(await strangerCert.wait() == 3)
        #expect(await d.stop() == 0)
    }

    @Test func badTLSSettingsStopTwindWithALine() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twind-e2e-\(UUID().uuidString)").path
        let alone = try Child("twind", ["--data-dir", dir, "--tls-cert", "/nonexistent/server.pem"])
        #expect(await alone.wait() == 78)
        #expect(alone.stderr.text.contains("tls-cert and tls-key go together"))
        let missing = try Child("twind", ["--data-dir", dir, "--tls-cert", "/nonexistent/server.pem", "--tls-key", "/nonexistent/server.key"])
        #expect(await missing.wait() == 78)
        #expect(missing.stderr.text.contains("cannot read /nonexistent/server.pem"))
        try? FileManager.default.removeItem(atPath: dir)
    }
}
