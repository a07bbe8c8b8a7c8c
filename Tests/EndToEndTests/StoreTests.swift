import Foundation
import GRPCCore
import Proto
import Synchronization
import Testing
import TwinClient
import TwinCore

/// The store as an operator meets it: crash safety, history, backup, restore, verify.
@Suite(.serialized, .timeLimit(.minutes(3))) struct StoreEndToEndTests {
    static func reading(_ i: Int, base: Nanos) -> Twin_V1_Reading {
        var r = Twin_V1_Reading()
        r.deviceID = "press-7"
        r.sensor = "force"
        let t = base + Nanos(i) * 10 * Time.millisecond
        r.time = .init(seconds: t / Time.second, nanos: Int32(t % Time.second))
        r.value = Double(i % 5_000) * 0.1
        return r
    }

    static func history(_ address: String, token: String, from: Nanos, to: Nanos) async throws -> [Nanos] {
        let parts = address.split(separator: ":")
        return try await TwinConnection.with(.tcp(host: String(parts[0]), port: Int(parts[1])!), bearer: token) { client in
            var request = Twin_V1_GetHistoryRequest()
            request.deviceID = "press-7"
            request.sensors = ["force"]
            request.from = .init(seconds: from / Time.second, nanos: 0)
            request.to = .init(seconds: to / Time.second, nanos: 0)
            let response = try await Twin_V1_TwinService.Client(wrapping: client).getHistory(request)
            return response.series[0].points.map { $0.time.seconds * Time.second + Nanos($0.time.nanos) }
        }
    }

    /// A gateway streams batches, each acknowledged by its own Ingest call; twind is killed with
    /// SIGKILL while the next batch is in flight. After a restart every acknowledged reading is
    /// in the history.
    @Test func killNineMidIngestLosesNothingAcknowledged() async throws {
        let fleet = try CLITests.fleetFile()
        let d = try await TwindProcess.start(["--simulator", "off", "--fleet", fleet])
        let base = (Time.now() / Time.second - 3_600) * Time.second
        let perBatch = 500
        let killAfter = 25
        let acked = Mutex(0)
        let parts = d.address.split(separator: ":")
        let address = NetworkAddress.tcp(host: String(parts[0]), port: Int(parts[1])!)
        let token = try await d.token()
        do {
            try await TwinConnection.with(address, bearer: token) { client in
                let twin = Twin_V1_TwinService.Client(wrapping: client)
                for batch in 0..<1_000 {
                    var request = Twin_V1_IngestRequest()
                    request.readings = (batch * perBatch..<(batch + 1) * perBatch).map { Self.reading($0, base: base) }
                    // The kill lands while this batch is on its way (or being committed).
                    if batch == killAfter { d.child.signal(SIGKILL) }
                    let message = request
                    let response = try await twin.ingest(request: StreamingClientRequest { try await $0.write(message) })
                    #expect(response.acceptedReadings == UInt64(perBatch))
                    acked.withLock { $0 = batch + 1 }
                }
            }
            Issue.record("ingest went on after SIGKILL")
        } catch {
            // The connection died with twind.
        }
        _ = await d.child.wait()
        let acknowledged = acked.withLock { $0 } * perBatch
        #expect(acknowledged >= killAfter * perBatch)

        let again = try await TwindProcess.start(["--simulator", "off", "--fleet", fleet], directory: d.directory)
        let times = try await Self.history(again.address, token: try await again.token(), from: base, to: base + Time.hour)
        let stored = Set(times)
        let missing = (0..<acknowledged).filter { !stored.contains(base + Nanos($0) * 10 * Time.millisecond) }
        #expect(missing.isEmpty, "\(missing.count) acknowledged readings lost, first \(missing.prefix(5))")
        #expect(times.count == stored.count, "no reading stored twice")
        #expect(await again.stop() == 0)
    }

    @Test func historyChartExportBackupRestoreAndVerifyThroughTheCLI() async throws {
        let d = try await TwindProcess.start(["--backfill", "2h"])
        let chart = try d.twin(["history", "pump-001", "bearing_temp", "--since", "2h"])
        #expect(await chart.wait() == 0)
        #expect(chart.stdout.text.contains("pump-001 bearing_temp (°C)"))
        #expect(chart.stdout.text.contains("█"))
        let csv = try d.twin(["history", "pump-001", "flow", "--since", "1h", "-o", "csv"])
        #expect(await csv.wait() == 0)
        #expect(csv.stdout.lines.first == "device,sensor,time,value")
        #expect(csv.stdout.lines.count > 600)  // a reading every 200 ms for the last minutes, 5 s before
        let json = try d.twin(["history", "pump-001", "--since", "2h", "--points", "10", "-o", "json"])
        #expect(await json.wait() == 0)
        let first = try JSONSerialization.jsonObject(with: Data(json.stdout.lines[0].utf8)) as? [String: Any]
        #expect(first?["count"] is Int && first?["min"] is Double)
        let badSensor = try d.twin(["history", "pump-001", "nope"])
        #expect(await badSensor.wait() == 4)
        #expect(badSensor.stderr.text.contains("no sensor 'nope'"))

        // Backup while serving; the copy needs the key, which is not in it.
        let backup = FileManager.default.temporaryDirectory.appendingPathComponent("backup-\(UUID().uuidString)").path
        let b = try Child("twind", ["backup", "--data-dir", d.directory, backup])
        #expect(await b.wait() == 0)
        #expect(FileManager.default.fileExists(atPath: backup + "/health_data.db"))
        #expect(!FileManager.default.fileExists(atPath: backup + "/twind.key"))
        #expect(await d.stop(removing: false) == 0)

        // Restore into a new data directory holding the same key: verify passes, history is there.
        let restored = FileManager.default.temporaryDirectory.appendingPathComponent("restored-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: restored, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try FileManager.default.copyItem(atPath: d.directory + "/twind.key", toPath: restored + "/twind.key")
        let r = try Child("twind", ["restore", "--data-dir", restored, backup])
        #expect(await r.wait() == 0)
        let v = try Child("twind", ["verify", "--data-dir", restored])
        #expect(await v.wait() == 0)
        #expect(v.stdout.text.contains("ok: everything opens"))
        let again = try await TwindProcess.start([], directory: restored)
        let old = try again.twin(["history", "pump-001", "flow", "--since", "2h", "-o", "csv"])
        #expect(await old.wait() == 0)
        #expect(old.stdout.lines.count > 1_000)
        #expect(await again.stop() == 0)

        // Another key: restore refuses before touching anything, in one line.
        let stranger = FileManager.default.temporaryDirectory.appendingPathComponent("stranger-\(UUID().uuidString)").path
        let noKey = try Child("twind", ["restore", "--data-dir", stranger, backup])
        #expect(await noKey.wait() == 66)
        #expect(noKey.stderr.text.contains("no master key"))
        try FileManager.default.createDirectory(atPath: stranger, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let otherKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        FileManager.default.createFile(atPath: stranger + "/twind.key", contents: Data(otherKey.utf8), attributes: [.posixPermissions: 0o600])
        let wrong = try Child("twind", ["restore", "--data-dir", stranger, backup])
        #expect(await wrong.wait() == 75)
        #expect(wrong.stderr.text.contains("does not match"))
        #expect(!FileManager.default.fileExists(atPath: stranger + "/health_data.db"))
        for dir in [d.directory, backup, restored, stranger] { try? FileManager.default.removeItem(atPath: dir) }
    }
}
