import Foundation
import Testing

/// twind --metrics-listen: a scrape after known traffic shows it, in valid exposition format;
/// the request log has one line per call and no secret.
@Suite(.serialized, .timeLimit(.minutes(2))) struct MetricsTests {
    struct Sample: Equatable { var name: String; var labels: [String: String]; var value: Double }

    /// Parses the Prometheus text format strictly enough to catch a malformed line.
    static func parse(_ text: String) -> (samples: [Sample], bad: [String]) {
        var samples: [Sample] = [], bad: [String] = []
        let sample = try! NSRegularExpression(pattern: #"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$"#)
        let label = try! NSRegularExpression(pattern: #"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#)
        for line in text.split(separator: "\n").map(String.init) where !line.isEmpty {
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") { continue }
            let ns = line as NSString
            guard let m = sample.firstMatch(in: line, range: NSRange(location: 0, length: ns.length)) else { bad.append(line); continue }
            var labels: [String: String] = [:]
            if m.range(at: 3).location != NSNotFound {
                let inner = ns.substring(with: m.range(at: 3))
                for l in label.matches(in: inner, range: NSRange(location: 0, length: (inner as NSString).length)) {
                    labels[(inner as NSString).substring(with: l.range(at: 1))] = (inner as NSString).substring(with: l.range(at: 2))
                }
            }
            samples.append(Sample(name: ns.substring(with: m.range(at: 1)), labels: labels, value: Double(ns.substring(with: m.range(at: 4))) ?? .nan))
        }
        return (samples, bad)
    }

    func get(_ url: String) async throws -> (status: Int32?, body: String) {
        let curl = try Child("/usr/bin/curl", ["-s", "-o", "-", "-w", "\n%{http_code}", url])
        let status = await curl.wait(timeout: .seconds(20))
        let lines = curl.stdout.text.split(separator: "\n", omittingEmptySubsequences: false)
        return (status == 0 ? Int32(lines.last ?? "") : nil, lines.dropLast().joined(separator: "\n"))
    }

    @Test func scrapeAfterKnownTraffic() async throws {
        let d = try await TwindProcess.start(["--metrics-listen", "127.0.0.1:0", "--simulator", "off"])
        let line = try #require(await d.child.stderr.waitForLine(timeout: .seconds(20)) { $0.contains("metrics listening") })
        let port = try #require(line.range(of: "127.0.0.1:").map { line[$0.upperBound...].prefix { $0.isNumber } })
        for _ in 0..<3 {
            let devices = try d.twin(["devices"])
            #expect(await devices.wait() == 0)
        }
        let bad = try d.twin(["login", "--user", "admin", "--password-stdin"], stdin: Data("wrong-password\n".utf8))
        #expect(await bad.wait() == 6)

        let (status, body) = try await get("http://127.0.0.1:\(port)/metrics")
        #expect(status == 200)
        let (samples, malformed) = Self.parse(body)
        #expect(malformed.isEmpty, "\(malformed.prefix(3))")
        func value(_ name: String, _ labels: [String: String]) -> Double {
            samples.filter { s in s.name == name && labels.allSatisfy { k, v in s.labels[k] == v } }.reduce(0) { $0 + $1.value }
        }
        #expect(value("twind_rpc_requests_total", ["method": "twin.v1.TwinService/ListDevices", "code": "ok"]) == 3)
        #expect(value("twind_rpc_requests_total", ["method": "twin.v1.AuthService/Login", "code": "unauthenticated"]) == 1)
        #expect(value("twind_logins_total", ["result": "failed"]) == 1 && value("twind_logins_total", ["result": "ok"]) >= 1)
        #expect(samples.contains { $0.name == "twind_rpc_duration_seconds_bucket" && $0.labels["le"] != nil })
        #expect(value("twind_uptime_seconds", [:]) > 0 && value("twind_process_resident_memory_bytes", [:]) > 1_000_000)
        // No unbounded labels: nothing names a device.
        #expect(!samples.contains { $0.labels.keys.contains("device") || $0.labels.keys.contains("device_id") })
        let (missing, _) = try await get("http://127.0.0.1:\(port)/other")
        #expect(missing == 404)

        #expect(await d.stop(removing: false) == 0)
        let log = d.child.stderr.text
        #expect(log.contains("method=twin.v1.TwinService/ListDevices") && log.contains("user=admin") && log.contains("status=ok"))
        #expect(log.contains("method=twin.v1.AuthService/Login") && log.contains("status=unauthenticated"))
        #expect(!log.contains("eyJ") && !log.contains("wrong-password") && !log.contains("e2e-admin-password"))
        try? FileManager.default.removeItem(atPath: d.directory)
    }
}
