import Foundation
import Testing

/// A Python gRPC client, built from the .proto files alone, reads twind's error reasons the
/// standard way (grpc_status.rpc_status.from_call): a bad reading in a batch, a throttled login,
/// an expired token, an unknown device (Tests/Python/error_reasons.py).
@Suite(.timeLimit(.minutes(2))) struct ErrorReasonTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func aPythonClientBranchesOnReasonsNotText() async throws {
        let d = try await TwindProcess.start(["--simulator", "off", "--access-token-lifetime", "10s"], login: false,
                                             environment: ["TWIND_ADMIN_PASSWORD": adminPassword])
        defer { Task { await d.stop() } }
        let script = Self.root.appendingPathComponent("Tests/Python/error_reasons.py").path
        let python = try Child("/usr/bin/env", ["python3", script, d.address, Self.root.appendingPathComponent("proto").path],
                               stdin: Data((adminPassword + "\n").utf8))
        let status = await python.wait(timeout: .seconds(90))
        let output = python.stdout.text
        #expect(status == 0, "error_reasons.py: \(output)\(python.stderr.text)")
        for check in ["ok unknown device: DEVICE_NOT_FOUND twin.v1.Device no-such-pump",
                      "ok bad reading: READING_INVALID batch=1 reading=2 field=readings[2].value",
                      " failures: LOGIN_THROTTLED scope=pair",
                      "ok expired token: TOKEN_EXPIRED"] {
            #expect(output.contains(check), "missing: \(check)")
        }
        #expect(await d.stop() == 0)
    }
}
