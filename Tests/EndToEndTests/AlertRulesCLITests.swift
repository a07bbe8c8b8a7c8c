import Foundation
import Testing

/// Alert rules through real twind and twin processes: a rules file at start, `twin rules`,
/// import, SIGHUP with a bad file (the rules in force stay), a bad file at start (exit 78).
@Suite(.timeLimit(.minutes(2))) struct AlertRulesCLITests {
    static let rules = """
        types:
          pump:
            - name: hot
              condition: above
              sensor: bearing_temp
              value: 1
              hold: 0s
              severity: warning

        """

    func json(_ child: Child) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(child.stdout.text.utf8)) as? [String: Any] ?? [:]
    }

    @Test func aRulesFileIsInForceAReloadWithABadFileKeepsItAndImportReplacesIt() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rules-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Self.rules.write(toFile: file, atomically: true, encoding: .utf8)
        let d = try await TwindProcess.start(["--alert-rules", file])
        let listed = try d.twin(["rules", "-o", "json"])
        #expect(await listed.wait() == 0)
        let first = try json(listed)
        let version = try #require(first["version"] as? String)
        let rules = first["rules"] as? [[String: Any]] ?? []
        #expect(rules.contains { $0["name"] as? String == "hot" && $0["scope"] as? String == "type pump" && $0["origin"] as? String == "line 3" })
        #expect(first["source"] as? String == file)

        // Every pump is above 1 °C: alerts open at the next health pass, carrying the version.
        var opened: String?
        for _ in 0..<150 where opened == nil {
            let alerts = try d.twin(["alerts", "-o", "json"])
            _ = await alerts.wait()
            opened = alerts.stdout.lines.first { $0.contains("\"rule\":\"bearing_temp.hot\"") }
            if opened == nil { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(opened?.contains("\"rule_version\":\"\(version)\"") == true, "\(opened ?? "no alert")")

        // A bad file and SIGHUP: reported, the rules in force stay.
        try "rules:\n  - name: x\n    condition: hotter\n".write(toFile: file, atomically: true, encoding: .utf8)
        d.child.signal(SIGHUP)
        #expect(await d.child.stderr.waitForLine { $0.contains("alert rules not reloaded") && $0.contains("line 3") } != nil)
        let after = try d.twin(["rules"])
        #expect(await after.wait() == 0)
        #expect(after.stderr.text.contains("rules \(version)") && after.stderr.text.contains("the last reload failed"))

        // A bad import names the line and changes nothing; a good one is written and in force.
        let bad = try d.twin(["rules", "import", "-"], stdin: Data("rules:\n  - name: y\n    condition: above\n    sensor: flow\n".utf8))
        #expect(await bad.wait() == 4)  // INVALID_ARGUMENT
        #expect(bad.stderr.text.contains("line 2") && bad.stderr.text.contains("needs a value"), "\(bad.stderr.text)")
        let good = try d.twin(["rules", "import", "-"], stdin: Data("rules:\n  - name: quiet\n    condition: no_data\n".utf8))
        #expect(await good.wait() == 0, "\(good.stderr.text)")
        #expect(try String(contentsOfFile: file, encoding: .utf8).contains("name: quiet"))
        let now = try d.twin(["rules", "-o", "json"])
        _ = await now.wait()
        #expect((try json(now)["rules"] as? [[String: Any]])?.map { $0["name"] as? String } == ["quiet"])
        #expect(await d.stop() == 0)
    }

    @Test func aBadRulesFileStopsTheStartNamingTheLine() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rules-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "rules:\n  - name: x\n    condition: above\n    sensor: t\n    value: hot\n".write(toFile: file, atomically: true, encoding: .utf8)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twind-e2e-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let child = try Child("twind", ["--data-dir", dir, "--listen", "127.0.0.1:0", "--http-listen", "off", "--alert-rules", file])
        #expect(await child.wait() == 78)
        #expect(child.stderr.text.contains("line 5") && child.stderr.text.contains("value is a finite number"), "\(child.stderr.text)")
    }
}
