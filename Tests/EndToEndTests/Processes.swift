import Foundation
import Proto
import TwinClient
import Synchronization
import Testing

/// The built `twind` and `twin` beside this test binary (swift test builds them too).
enum Binaries {
    static let directory: URL = {
        var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent()) }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        for c in candidates {
            var dir = c
            for _ in 0..<4 {
                if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("twind").path) { return dir }
                dir = dir.deletingLastPathComponent()
            }
        }
        return candidates[0]
    }()

    static func url(_ name: String) -> URL { name.hasPrefix("/") ? URL(fileURLWithPath: name) : directory.appendingPathComponent(name) }
}

/// Collects a pipe's output as it arrives and lets a test wait (bounded) for a line. A thread
/// of its own reads the pipe with blocking reads to its end: Foundation's readabilityHandler,
/// used before, lost a chunk now and then under a loaded run (a 3,000-row answer came back
/// with 2,930-2,976 rows, one of them cut in two, with twin's exit status 0).
final class OutputLog: Sendable {
    private let state = Mutex((bytes: [UInt8](), closed: false))

    init(_ pipe: Pipe) {
        let handle = pipe.fileHandleForReading
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(handle.fileDescriptor, $0.baseAddress!, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                state.withLock { $0.bytes += buffer[0..<n] }
            }
            state.withLock { $0.closed = true }
        }
    }

    var text: String { String(decoding: state.withLock { $0.bytes }, as: UTF8.self) }
    var lines: [String] { text.split(separator: "\n").map(String.init) }

    /// Waits (bounded) until the writer's end is closed and everything written has been read.
    func waitUntilClosed(deadline: ContinuousClock.Instant) async {
        while !state.withLock({ $0.closed }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Waits until a line satisfies `match` (returns it), the stream closes, or the deadline passes.
    func waitForLine(timeout: Duration = .seconds(30), _ match: (String) -> Bool) async -> String? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let line = lines.first(where: match) { return line }
            if state.withLock({ $0.closed }) { return nil }
            // Poll the condition with a deadline; the wait ends as soon as the line is there.
            try? await Task.sleep(for: .milliseconds(20))
        }
        return lines.first(where: match)
    }
}

/// A child process with its stdout and stderr collected.
final class Child: Sendable {
    let process: Process
    let stdout: OutputLog
    let stderr: OutputLog

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:], stdin: Data? = nil) throws {
        let p = Process()
        p.executableURL = Binaries.url(executable)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["TWIN_SERVER"] = nil
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let input = stdin.map { _ in Pipe() }
        p.standardInput = input ?? FileHandle.nullDevice
        stdout = OutputLog(out)
        stderr = OutputLog(err)
        process = p
        try p.run()
        if let input, let stdin {
            // Written after start, off this thread: a pipe holds only 64 KiB until the child reads.
            let writer = input.fileHandleForWriting
            Thread.detachNewThread {
                try? writer.write(contentsOf: stdin)
                try? writer.close()
            }
        }
    }

    /// Waits for exit (bounded); returns the exit status, or nil if it did not exit in time.
    func wait(timeout: Duration = .seconds(30)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        var exited: Int32?
        while process.isRunning && ContinuousClock.now < deadline {
            // Foundation learns of the exit from its own SIGCHLD handling, which under a loaded
            // test run has been seen to lag for more than 30 s; the kernel already knows.
            if let status = Self.exitedStatus(process.processIdentifier) {
                exited = status
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        if let exited, process.isRunning {
            // Seen before Foundation reaped it: what it wrote last may still be in the pipes,
            // read by handlers that a loaded run schedules late (2 s cut a 3,000-row answer).
            let drained = ContinuousClock.now + .seconds(15)
            await stdout.waitUntilClosed(deadline: drained)
            await stderr.waitUntilClosed(deadline: drained)
            return exited
        }
        if process.isRunning { return nil }
        // The exit can be seen before the last output is read from the pipes: a test that reads
        // `stdout.text` after `wait()` must find all of it. Bounded after the exit, as a process
        // the child left running may hold the pipes open (scripts/install's build); 15 s, not
        // 2: a loaded clean-clone run cut a 3,000-row answer at 2,976 rows after 2 s here too.
        let drained = ContinuousClock.now + .seconds(15)
        await stdout.waitUntilClosed(deadline: drained)
        await stderr.waitUntilClosed(deadline: drained)
        return process.terminationStatus
    }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// The status of a child that has exited and is not reaped yet (a zombie), read from
    /// /proc/PID/stat: its state (field 3) is Z and field 52 holds the status as waitpid(2)
    /// gives it. The exit code, or the signal number for a killed child (as `terminationStatus`
    /// gives them); nil while it runs.
    static func exitedStatus(_ pid: Int32) -> Int32? {
        // The leader turns Z before its other threads are gone, and the process's files (and
        // the data directory's lock) are released only with the last thread: one left, or wait.
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              status.split(separator: "\n").contains(where: { $0.hasPrefix("Threads:") && $0.hasSuffix("\t1") })
        else { return nil }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.first == "Z", fields.count > 49, let raw = Int32(fields[49].trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return raw & 0x7f == 0 ? (raw >> 8) & 0xff : raw & 0x7f
    }

    deinit { if process.isRunning { process.terminate() } }
}

/// The admin password the end-to-end daemons are started with (TWIND_ADMIN_PASSWORD).
let adminPassword = "e2e-admin-password"

/// Where `twin` keeps its sessions for a data directory's daemon (XDG_CONFIG_HOME), so a
/// restarted daemon finds its clients still logged in.
func configHome(for directory: String) -> String { directory + "-config" }

/// Logs `twin` in as admin to `server`, with the sessions of `directory`'s daemon.
func loginAsAdmin(server: String, directory: String, clientArguments: [String] = []) async throws {
    let login = try Child(
        "twin", ["login", "--user", "admin", "--password-stdin", "--server", server] + clientArguments,
        environment: ["XDG_CONFIG_HOME": configHome(for: directory)], stdin: Data((adminPassword + "\n").utf8))
    guard await login.wait() == 0 else { throw TestFailure("twin login failed: \(login.stderr.text)") }
}

/// A real twind process on an ephemeral loopback port with a temporary data directory; `twin`
/// run through it is logged in as admin unless `login` is false.
struct TwindProcess {
    let child: Child
    let address: String
    let directory: String

    /// `clientArguments` go to the `twin login` that logs in as admin (e.g. `--ca FILE`).
    static func start(
        _ extra: [String] = [], directory: String? = nil, login: Bool = true, clientArguments: [String] = [], environment: [String: String] = [:]
    ) async throws -> TwindProcess {
        let dir = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("twind-e2e-\(UUID().uuidString)").path
        let child = try Child(
            // The console is off unless a test asks for it (its default port would be shared).
            "twind", ["--data-dir", dir, "--listen", "127.0.0.1:0", "--interval", "200ms"] + (extra.contains("--http-listen") ? [] : ["--http-listen", "off"]) + extra,
            environment: (login ? ["TWIND_ADMIN_PASSWORD": adminPassword] : [:]).merging(environment) { _, new in new })
        guard let line = await child.stderr.waitForLine(timeout: .seconds(60), { $0.contains("listening") && $0.contains("127.0.0.1:") }),
              let range = line.range(of: "127.0.0.1:")
        else {
            throw TestFailure("twind did not start: \(child.stderr.text)")
        }
        let port = line[range.upperBound...].prefix { $0.isNumber }
        let process = TwindProcess(child: child, address: "127.0.0.1:\(port)", directory: dir)
        if login { try await loginAsAdmin(server: process.address, directory: dir, clientArguments: clientArguments) }
        return process
    }

    /// Runs twin against this daemon (logged in as admin unless `environment` says otherwise).
    func twin(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:]) throws -> Child {
        var env = ["XDG_CONFIG_HOME": configHome(for: directory)]
        env.merge(environment) { _, new in new }
        return try Child("twin", arguments + ["--server", address], environment: env, stdin: stdin)
    }

    /// An admin access token, for tests that speak gRPC themselves.
    func token() async throws -> String {
        let parts = address.split(separator: ":")
        var login = Twin_V1_LoginRequest()
        login.username = "admin"
        login.password = adminPassword
        return try await TwinConnection.with(.tcp(host: String(parts[0]), port: Int(parts[1])!)) {
            try await Twin_V1_AuthService.Client(wrapping: $0).login(login).accessToken
        }
    }

    /// SIGTERM, then twind's exit status; nil when it had not exited 30 s later (it is then
    /// killed, so no test leaves a daemon behind).
    func stop(removing: Bool = true) async -> Int32? {
        child.signal(SIGTERM)
        let status = await child.wait(timeout: .seconds(30))
        if status == nil {
            child.signal(SIGKILL)
            _ = await child.wait(timeout: .seconds(5))
        }
        if removing {
            try? FileManager.default.removeItem(atPath: directory)
            try? FileManager.default.removeItem(atPath: configHome(for: directory))
        }
        return status
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
