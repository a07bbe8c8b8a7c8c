import Foundation
import Testing

/// History older than the late window: `twin ingest` refuses it and says how to bring it in,
/// `twin import` brings it in, in its place, without alerts for the past or a device brought
/// back to life; a gateway API key may not import.
@Suite(.timeLimit(.minutes(2))) struct ImportTests {
    static func fleetFile() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-\(UUID().uuidString).json").path
        let json = """
            {"devices": [{"id": "press-7", "type": "press", "simulate": false,
              "sensors": [{"name": "force", "unit": "kN", "nominal_min": 0, "nominal_max": 800, "alarm_high": 950}]}]}
            """
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func lastMonthsHistoryIsImportedNotIngested() async throws {
        let fleet = try Self.fleetFile()
        defer { try? FileManager.default.removeItem(atPath: fleet) }
        let d = try await TwindProcess.start(["--simulator", "off", "--fleet", fleet])
        defer { Task { await d.stop() } }
        let now = Int(Date().timeIntervalSince1970)
        // 30 days ago, newest first (out of order), every value above the alarm limit.
        var csv = "device,sensor,time,value\n"
        for i in (0..<3000).reversed() { csv += "press-7,force,\(now - 30 * 86_400 + i * 60),\(1000 + Double(i % 7))\n" }

        let refused = try d.twin(["ingest", "-"], stdin: Data(csv.utf8))
        #expect(await refused.wait() == 4)
        #expect(refused.stderr.text.contains("not accepted") && refused.stderr.text.contains("twin import"), "\(refused.stderr.text)")

        let imported = try d.twin(["import", "-"], stdin: Data(csv.utf8))
        #expect(await imported.wait() == 0, "\(imported.stderr.text)")
        #expect(imported.stdout.text.contains("import: accepted 3000 readings"), "\(imported.stdout.text)")

        // In its place: the history of 31 days ago to 29 days ago holds all of it, in time order.
        let history = try d.twin(["history", "press-7", "force", "--since", "31d", "-o", "csv"])
        #expect(await history.wait() == 0, "\(history.stderr.text)")
        let rows = history.stdout.lines.dropFirst()
        #expect(rows.count == 3000)
        // A row cut short is a failure below, not a crash of the whole test process.
        let times = rows.map { $0.split(separator: ",").dropFirst(2).first ?? "" }
        #expect(times == times.sorted())

        // The past raised no alert and did not bring the press to life.
        let alerts = try d.twin(["alerts", "-o", "json"])
        #expect(await alerts.wait() == 0)
        #expect(!alerts.stdout.text.contains("press-7"), "\(alerts.stdout.text)")
        let device = try d.twin(["device", "press-7"])
        #expect(await device.wait() == 0)
        #expect(device.stdout.text.contains("never reported"), "\(device.stdout.text)")

        // Older than the raw retention (90 days by default): refused, naming it.
        let ancient = try d.twin(["import", "-"], stdin: Data("press-7,force,\(now - 120 * 86_400),1\n".utf8))
        #expect(await ancient.wait() == 4)
        #expect(ancient.stderr.text.contains("raw retention"), "\(ancient.stderr.text)")

        // A gateway key may push data, not history.
        let create = try d.twin(["apikeys", "create", "line gateway"])
        #expect(await create.wait() == 0)
        let secret = create.stdout.text.trimmingCharacters(in: .whitespacesAndNewlines)
        let gateway = ["TWIN_API_KEY": secret, "XDG_CONFIG_HOME": d.directory + "-gateway"]
        defer { try? FileManager.default.removeItem(atPath: d.directory + "-gateway") }
        let byKey = try d.twin(["import", "-"], stdin: Data(csv.utf8), environment: gateway)
        #expect(await byKey.wait() == 7)
        #expect(byKey.stderr.text.contains("person's login"), "\(byKey.stderr.text)")
        #expect(await d.stop() == 0)
    }
}
