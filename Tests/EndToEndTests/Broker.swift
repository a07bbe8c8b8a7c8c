import Foundation
import Testing

/// A real MQTT broker for the tests: Debian's mosquitto (scripts/bootstrap installs it) on a
/// free loopback port, with its own config and no persistence unless asked.
struct Broker {
    let child: Child
    let port: Int
    let directory: String

    static let executable = "/usr/sbin/mosquitto"

    /// `extra` lines go into mosquitto.conf (e.g. `max_inflight_messages 1000`).
    /// `listener: false` leaves the listeners to `extra` (which must then name the port to wait on first).
    static func start(extra: [String] = [], listener: Bool = true) async throws -> Broker {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw TestFailure("\(executable) is missing: run scripts/bootstrap (it installs Debian's mosquitto)")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mosquitto-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var lastError = ""
        for _ in 0..<5 {
            let port = try freePort()
            // Run as root (CI), mosquitto would switch to its own user and not read the test's files.
            let own = (getuid() == 0 ? ["user root"] : []) + (listener ? ["listener \(port) 127.0.0.1", "allow_anonymous true"] : [])
            let config = (own + ["log_dest stderr", "log_type error", "log_type warning",
                           "log_type notice", "log_type information", "persistence_location \(dir)/"] + extra).joined(separator: "\n") + "\n"
            try config.write(toFile: dir + "/mosquitto.conf", atomically: true, encoding: .utf8)
            let child = try Child(executable, ["-c", dir + "/mosquitto.conf"])
            let line = await child.stderr.waitForLine(timeout: .seconds(10)) { $0.contains("running") || $0.contains("Error") }
            if let line, line.contains("running") { return Broker(child: child, port: port, directory: dir) }
            lastError = child.stderr.text
            child.signal(SIGKILL)
            _ = await child.wait(timeout: .seconds(5))
        }
        throw TestFailure("mosquitto did not start: \(lastError)")
    }

    var url: String { "mqtt://127.0.0.1:\(port)" }

    /// Stops the broker and waits for it, synchronously, so a `defer` tears it down even when
    /// the test fails or throws (a Task started in a defer may never run before exit).
    func stop() {
        child.signal(SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while child.process.isRunning && Date() < deadline { usleep(10_000) }
        if child.process.isRunning {
            child.signal(SIGKILL)
            child.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A port the kernel just handed out on loopback (released again for the broker to take).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestFailure("bind: \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
