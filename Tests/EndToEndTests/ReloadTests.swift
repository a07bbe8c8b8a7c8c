import Foundation
import Testing

/// SIGHUP re-reads what can change while twind runs: here the log levels from the config file
/// (flags and environment still win over it); a bad value keeps the levels running.
@Suite(.timeLimit(.minutes(2))) struct ReloadTests {
    @Test func sighupChangesTheLogLevelsFromTheConfigFile() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("twind-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        // Notice: the "listening" line shows, the per-RPC lines (info) do not.
        try #"{"log-level": "notice", "rpc-log-level": "info"}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let d = try await TwindProcess.start(["--config", file])
        func listDevices() async throws {
            let run = try d.twin(["devices"])
            #expect(await run.wait() == 0)
        }
        func rpcLines() -> Int { d.child.stderr.lines.filter { $0.contains(" rpc ") && $0.contains("ListDevices") }.count }
        try await listDevices()

        // The RPC lines raised to warning: logged from the next call on.
        try #"{"log-level": "notice", "rpc-log-level": "warning"}"#.write(toFile: file, atomically: true, encoding: .utf8)
        d.child.signal(SIGHUP)
        #expect(await d.child.stderr.waitForLine { $0.contains("log levels reloaded") && $0.contains("rpc_log_level=warning") } != nil)
        #expect(rpcLines() == 0, "an RPC line was logged at info under notice")
        try await listDevices()
        #expect(await d.child.stderr.waitForLine { $0.contains("warning rpc ") && $0.contains("ListDevices") } != nil)

        // A bad value: said, and the levels in force stay.
        try #"{"log-level": "loud"}"#.write(toFile: file, atomically: true, encoding: .utf8)
        d.child.signal(SIGHUP)
        #expect(await d.child.stderr.waitForLine { $0.contains("log levels were not reloaded") && $0.contains("loud") } != nil)
        let before = rpcLines()
        try await listDevices()
        #expect(await d.child.stderr.waitForLine { _ in rpcLines() > before } != nil)
        #expect(await d.stop() == 0)
    }
}
