import Foundation
import Testing

/// Alarm management through real twind and twin processes: shelve and unshelve, maintenance
/// recorded with a duration suppresses a device's alerts, a resolved alert that comes straight
/// back reopens, and `twin alerts report` counts it all.
@Suite(.timeLimit(.minutes(2))) struct AlarmManagementCLITests {
    func alerts(_ d: TwindProcess, _ extra: [String] = []) async throws -> [[String: Any]] {
        let list = try d.twin(["alerts", "-o", "json"] + extra)
        _ = await list.wait()
        return list.stdout.lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func pumpAlert(_ list: [[String: Any]], _ device: String) -> [String: Any]? {
        list.first { $0["device_id"] as? String == device && $0["rule"] as? String == "bearing_temp.hot" }
    }

    @Test func shelveSuppressReopenAndReport() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rules-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try AlertRulesCLITests.rules.write(toFile: file, atomically: true, encoding: .utf8)
        let d = try await TwindProcess.start(["--alert-rules", file])
        var list: [[String: Any]] = []
        for _ in 0..<150 where pumpAlert(list, "pump-001") == nil || pumpAlert(list, "pump-002") == nil {
            list = try await alerts(d)
            try await Task.sleep(for: .milliseconds(200))
        }
        let one = try #require(pumpAlert(list, "pump-001")?["id"] as? String)
        let two = try #require(pumpAlert(list, "pump-002")?["id"] as? String)

        // Shelved: off the list (there with --shelved, with who and why), audited; back on unshelve.
        let bad = try d.twin(["shelve", one, "--for", "30d", "--reason", "x"])
        #expect(await bad.wait() == 64)  // usage: at most 7 days
        let shelve = try d.twin(["shelve", one, "--for", "2h", "--reason", "sensor known bad, crew on it"])
        #expect(await shelve.wait() == 0, "\(shelve.stderr.text)")
        #expect(pumpAlert(try await alerts(d), "pump-001") == nil)
        let shelved = try #require(pumpAlert(try await alerts(d, ["--shelved"]), "pump-001"))
        #expect(shelved["shelved_by"] as? String == "admin" && shelved["shelve_reason"] as? String == "sensor known bad, crew on it" && shelved["shelved_until"] != nil)
        let audit = try d.twin(["audit", "-o", "json"])
        _ = await audit.wait()
        #expect(audit.stdout.text.contains("alert.shelved"), "\(audit.stdout.text.prefix(500))")
        let unshelve = try d.twin(["unshelve", one])
        #expect(await unshelve.wait() == 0)
        #expect(pumpAlert(try await alerts(d), "pump-001")?["id"] as? String == one)

        // pump-001 under maintenance for an hour; both alerts resolved by hand. The condition
        // still holds on both: pump-002's alert reopens at the next health pass, pump-001's,
        // suppressed, stays resolved.
        let record = try d.twin(["record", "pump-001", "maintenance", "--duration", "1h", "--notes", "bearing change"])
        #expect(await record.wait() == 0, "\(record.stderr.text)")
        for id in [one, two] {
            let resolve = try d.twin(["ack", id, "--resolve"])
            #expect(await resolve.wait() == 0)
        }
        var reopened: [String: Any]?
        for _ in 0..<150 where reopened == nil {
            let now = try await alerts(d)
            reopened = pumpAlert(now, "pump-002")
            if reopened == nil { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(reopened?["id"] as? String == two && reopened?["reopened"] as? Int == 1)
        #expect(pumpAlert(try await alerts(d), "pump-001") == nil)

        // The report: every pump's alert opened, the reopening counted, the rule on top.
        let report = try d.twin(["alerts", "report", "--since", "1h", "-o", "json"])
        #expect(await report.wait() == 0)
        let r = try #require(try JSONSerialization.jsonObject(with: Data(report.stdout.text.utf8)) as? [String: Any])
        #expect((Int(r["opened"] as? String ?? "") ?? 0) >= 2 && (Int(r["reopened"] as? String ?? "") ?? 0) >= 1, "\(r)")
        #expect((r["top_rules"] as? [[String: Any]])?.first?["name"] as? String == "bearing_temp.hot")
        let table = try d.twin(["alerts", "report", "--since", "1h"])
        #expect(await table.wait() == 0)
        #expect(table.stdout.text.contains("per hour:") && table.stdout.text.contains("ISA-18.2"))
        #expect(await d.stop() == 0)
    }
}
