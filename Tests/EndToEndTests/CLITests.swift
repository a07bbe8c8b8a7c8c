import Foundation
import Testing

/// twind and twin as a user runs them: real processes, real sockets, exit codes and output.
@Suite(.serialized, .timeLimit(.minutes(2))) struct CLITests {
    @Test func watchPrintsNDJSONAndCountStops() async throws {
        let d = try await TwindProcess.start()
        let watch = try d.twin(["watch", "-o", "json", "--count", "20"])
        #expect(await watch.wait() == 0)
        let lines = watch.stdout.lines
        #expect(lines.count == 20)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["device"] is String)
            #expect(object?["state"] is String)
            #expect((object?["values"] as? [String: Any])?.isEmpty == false)
        }
        #expect(await d.stop() == 0)
    }

    @Test func devicesAndDeviceAndNotFoundExitCode() async throws {
        let d = try await TwindProcess.start()
        let list = try d.twin(["devices"])
        #expect(await list.wait() == 0)
        #expect(list.stdout.text.contains("pump-001"))
        #expect(list.stdout.lines.count == 13)  // header + 12 devices

        let json = try d.twin(["devices", "-o", "json", "--type", "motor"])
        #expect(await json.wait() == 0)
        #expect(json.stdout.lines.allSatisfy { $0.contains("\"type\":\"motor\"") })

        // Global options before the subcommand, as kubectl and etcdctl take them.
        let before = try Child("twin", ["--server", d.address, "-o", "json", "watch", "--count", "3"],
                               environment: ["XDG_CONFIG_HOME": configHome(for: d.directory)])
        #expect(await before.wait() == 0, "\(before.stderr.text)")
        #expect(before.stdout.lines.count == 3 && before.stdout.lines.allSatisfy { $0.hasPrefix("{") })

        let missing = try d.twin(["device", "pump-999"])
        #expect(await missing.wait() == 5)
        #expect(missing.stderr.text.contains("pump-999"))

        // The data directory and everything in it are for twind's user only.
        let files = try FileManager.default.contentsOfDirectory(atPath: d.directory)
        #expect(files.contains("health_data.db") && files.contains("twind.key"))
        for name in files + ["."] {
            let mode = (try FileManager.default.attributesOfItem(atPath: d.directory + "/" + name)[.posixPermissions] as? Int) ?? 0
            #expect(mode & 0o077 == 0, "\(name) has mode \(String(mode, radix: 8))")
        }
        #expect(await d.stop() == 0)
    }

    @Test func ingestCSVGoodAndBadLine() async throws {
        let d = try await TwindProcess.start(["--simulator", "off", "--fleet", try Self.fleetFile()])
        let now = Int(Date().timeIntervalSince1970)
        var csv = "device,sensor,time,value\n"
        for i in 0..<2500 { csv += "press-7,force,\(now - 2500 + i),\(Double(i) * 0.5)\n" }
        let good = try d.twin(["ingest", "-", "--batch-size", "1000"], stdin: Data(csv.utf8))
        #expect(await good.wait() == 0)
        #expect(good.stdout.text.contains("accepted 2500 readings in 3 batches"))

        let badValue = "press-7,force,\(now),1\npress-7,force,\(now),abc\n"
        let bad = try d.twin(["ingest", "-"], stdin: Data(badValue.utf8))
        #expect(await bad.wait() == 4)
        #expect(bad.stderr.text.contains("line 2"))
        #expect(bad.stderr.text.contains("accepted 1 readings"))

        // Rejected by the server: the CLI names the line the server's reading index points at.
        let unknownSensor = "press-7,force,\(now),1\npress-7,force,\(now),2\npress-7,rpm,\(now),3\n"
        let rejected = try d.twin(["ingest", "-"], stdin: Data(unknownSensor.utf8))
        #expect(await rejected.wait() == 4)
        #expect(rejected.stderr.text.contains("line 3"))
        #expect(rejected.stderr.text.contains("no sensor 'rpm'"))
        #expect(await d.stop() == 0)
    }

    @Test func unreachableDaemonIsOneClearLine() async throws {
        let child = try Child("twin", ["devices", "--server", "127.0.0.1:1"])
        #expect(await child.wait() == 3)
        let err = child.stderr.text
        #expect(err.contains("cannot reach twind"))
        #expect(err.split(separator: "\n").count == 1)
    }

    /// SIGTERM while streams are open: the stream is told, twind exits 0 on its own while the
    /// watcher is still connected (stop() waits 30 s, then reports no exit status).
    @Test func sigtermWithOpenStreamsExitsCleanly() async throws {
        let d = try await TwindProcess.start()
        let watch = try d.twin(["watch", "-o", "json"])
        _ = await watch.stdout.waitForLine { $0.contains("\"device\"") }
        #expect(await d.stop() == 0)
        #expect(await watch.stderr.waitForLine { $0.contains("shutting down") } != nil)
        watch.signal(SIGINT)
        #expect(await watch.wait() == 0)
    }

    @Test func badConfigurationStopsWithOneLineNamingTheKey() async throws {
        let child = try Child("twind", ["--data-dir", "/tmp/unused-\(UUID().uuidString)", "--interval", "fast"])
        #expect(await child.wait() == 78)
        #expect(child.stderr.text.contains("interval"))
        #expect(child.stderr.text.contains("--interval"))
        let env = try Child("twind", ["--data-dir", "/tmp/unused-\(UUID().uuidString)"], environment: ["TWIND_DEVICES": "many"])
        #expect(await env.wait() == 78)
        #expect(env.stderr.text.contains("TWIND_DEVICES"))
    }

    /// Flags win over TWIND_* variables, which win over the config file: the value in force is
    /// the one a bad-value message names, with where it came from.
    @Test func flagsThenEnvironmentThenTheConfigFile() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("twind-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try #"{"devices": "from-file", "seed": 3}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let dir = "/tmp/unused-\(UUID().uuidString)"
        let cases: [(arguments: [String], environment: [String: String], names: String)] = [
            (["--config", file], [:], "'from-file' for devices (from devices in \(file))"),
            (["--config", file], ["TWIND_DEVICES": "from-env"], "'from-env' for devices (from TWIND_DEVICES)"),
            (["--config", file, "--devices", "from-flag"], ["TWIND_DEVICES": "from-env"], "'from-flag' for devices (from --devices)"),
            ([], ["TWIND_CONFIG": file, "TWIND_DEVICES": "from-env"], "'from-env' for devices (from TWIND_DEVICES)"),
        ]
        for c in cases {
            let child = try Child("twind", ["--data-dir", dir] + c.arguments, environment: c.environment)
            #expect(await child.wait() == 78)
            #expect(child.stderr.text.contains(c.names), "\(c.arguments) \(c.environment): \(child.stderr.text)")
        }
        // An unknown key in the file is named.
        try #"{"devcies": 3}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let unknown = try Child("twind", ["--data-dir", dir, "--config", file])
        #expect(await unknown.wait() == 78)
        #expect(unknown.stderr.text.contains("unknown key 'devcies'"))
    }

    static func fleetFile() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-\(UUID().uuidString).json").path
        let json = """
            {"devices": [{"id": "press-7", "type": "press", "simulate": false,
              "sensors": [{"name": "force", "unit": "kN", "nominal_min": 0, "nominal_max": 800}]}]}
            """
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// Under systemd (NOTIFY_SOCKET set) twind reports READY=1 once serving and STOPPING=1 on SIGTERM.
@Suite(.timeLimit(.minutes(2))) struct SystemdNotifyTests {
    @Test func readyThenStopping() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(getpid()).sock").path
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd); unlink(path) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        func receive() -> String {
            var buffer = [UInt8](repeating: 0, count: 512)
            let n = recv(fd, &buffer, buffer.count, 0)
            return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twind-notify-\(UUID().uuidString)").path
        // With WatchdogSec= (WATCHDOG_USEC), twind pings the watchdog after READY.
        let child = try Child("twind", ["--data-dir", dir, "--listen", "127.0.0.1:0", "--http-listen", "off"], environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"])
        #expect(receive().contains("READY=1"))
        #expect(receive().contains("WATCHDOG=1"))
        #expect(receive().contains("WATCHDOG=1"))
        // No core dumps: the core-file limit is 0 whatever the parent allowed.
        let limits = try String(contentsOfFile: "/proc/\(child.process.processIdentifier)/limits", encoding: .utf8)
        #expect(limits.split(separator: "\n").contains { $0.hasPrefix("Max core file size") && $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).first == "0" })
        child.signal(SIGTERM)
        var stopping = false
        for _ in 0..<20 where !stopping { stopping = receive().contains("STOPPING=1") }
        #expect(stopping)
        #expect(await child.wait() == 0)
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// `twin watch` survives a daemon restart: it says it lost the daemon, reconnects, and goes on.
@Suite(.timeLimit(.minutes(2))) struct WatchReconnectTests {
    @Test func watchReconnectsAfterARestart() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twind-re-\(UUID().uuidString)").path
        let socket = "unix:\(dir)/twind.sock"
        func startDaemon() async throws -> Child {
            let child = try Child(
                "twind", ["--data-dir", dir, "--listen", socket, "--interval", "200ms", "--http-listen", "off"], environment: ["TWIND_ADMIN_PASSWORD": adminPassword])
            guard await child.stderr.waitForLine({ $0.contains("twind is serving") }) != nil else {
                throw TestFailure("twind did not start: \(child.stderr.text)")
            }
            return child
        }
        let first = try await startDaemon()
        try await loginAsAdmin(server: socket, directory: dir)
        let watch = try Child("twin", ["watch", "-o", "json", "--server", socket], environment: ["XDG_CONFIG_HOME": configHome(for: dir)])
        #expect(await watch.stdout.waitForLine { $0.contains("\"device\"") } != nil)

        first.signal(SIGTERM)
        #expect(await first.wait() == 0)
        #expect(await watch.stderr.waitForLine { $0.contains("reconnecting") } != nil)
        let linesBefore = watch.stdout.lines.count

        let second = try await startDaemon()
        // New updates arrive over the new connection.
        #expect(await watch.stdout.waitForLine(timeout: .seconds(60)) { _ in watch.stdout.lines.count > linesBefore + 12 } != nil)
        watch.signal(SIGINT)
        #expect(await watch.wait() == 0)
        second.signal(SIGTERM)
        #expect(await second.wait() == 0)
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.removeItem(atPath: configHome(for: dir))
    }
}
