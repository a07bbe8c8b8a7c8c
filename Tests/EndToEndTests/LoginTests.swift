import Foundation
import Proto
import Testing
import TwinClient

/// The bootstrap flow as an operator meets it: the first admin password, twin login, a session
/// that refreshes itself, logout; and no secret in twind's log.
@Suite(.serialized, .timeLimit(.minutes(2))) struct LoginTests {
    @Test func bootstrapLoginRefreshLogoutThroughTheCLI() async throws {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("twin-config-\(UUID().uuidString)").path
        let env = ["XDG_CONFIG_HOME": config]
        // Access tokens live 15 s, so every command below has to refresh its session first.
        let d = try await TwindProcess.start(["--access-token-lifetime", "15s"], login: false)
        let password = try String(contentsOfFile: d.directory + "/initial-admin-password", encoding: .utf8)

        let anonymous = try d.twin(["whoami"], environment: env)
        #expect(await anonymous.wait() == 6)
        #expect(anonymous.stderr.text.contains("twin login"))

        let bad = try d.twin(["login", "--user", "admin", "--password-stdin"], stdin: Data("nope\n".utf8), environment: env)
        #expect(await bad.wait() == 6)
        #expect(bad.stderr.text.contains("wrong username or password"))

        let login = try d.twin(["login", "--user", "admin", "--password-stdin"], stdin: Data(password.utf8), environment: env)
        #expect(await login.wait() == 0)
        #expect(login.stderr.text.contains("logged in"))
        let sessions = config + "/twin/sessions.json"
        let mode = try FileManager.default.attributesOfItem(atPath: sessions)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let before = try String(contentsOfFile: sessions, encoding: .utf8)

        for _ in 0..<2 {
            let me = try d.twin(["whoami"], environment: env)
            #expect(await me.wait() == 0)
            #expect(me.stdout.text.hasPrefix("admin (admin)"))
        }
        // Refreshed silently: the saved tokens were rotated.
        #expect(try String(contentsOfFile: sessions, encoding: .utf8) != before)

        // A watch outlives its 15 s token (1,300 updates at 60 a second): twind ends the stream,
        // twin refreshes and goes on.
        let watch = try d.twin(["watch", "-o", "json"], environment: env)
        #expect(await watch.stdout.waitForLine { $0.contains("\"device\"") } != nil)
        let seen = watch.stdout.lines.count
        #expect(await watch.stdout.waitForLine(timeout: .seconds(60)) { _ in watch.stdout.lines.count > seen + 1_300 } != nil)
        watch.signal(SIGINT)
        #expect(await watch.wait() == 0)
        #expect(!watch.stderr.text.contains("unauthenticated"))

        // Users: an admin adds an operator, lists, changes the role, disables.
        let add = try d.twin(["users", "add", "ops", "--role", "operator", "--password-stdin"], stdin: Data("operator-password-1\n".utf8), environment: env)
        #expect(await add.wait() == 0)
        let list = try d.twin(["users"], environment: env)
        #expect(await list.wait() == 0)
        #expect(list.stdout.lines.contains { $0.hasPrefix("ops ") && $0.contains("operator") && $0.contains("enabled") })
        let setRole = try d.twin(["users", "set-role", "ops", "viewer"], environment: env)
        #expect(await setRole.wait() == 0)
        let disable = try d.twin(["users", "disable", "ops"], environment: env)
        #expect(await disable.wait() == 0)
        #expect(disable.stderr.text.contains("ops: viewer, disabled"))

        // The audit log shows the failed and the good login, to an admin.
        let audit = try d.twin(["audit", "-o", "json"], environment: env)
        #expect(await audit.wait() == 0)
        #expect(audit.stdout.text.contains("login.failed") && audit.stdout.text.contains("login.ok"))
        #expect(!audit.stdout.text.contains("nope"))

        let logout = try d.twin(["logout"], environment: env)
        #expect(await logout.wait() == 0)
        let after = try d.twin(["whoami"], environment: env)
        #expect(await after.wait() == 6)
        let anonymousAudit = try d.twin(["audit"], environment: env)
        #expect(await anonymousAudit.wait() == 6)

        // Nothing secret in the log: not the password, not a token.
        #expect(await d.stop(removing: false) == 0)
        let log = d.child.stderr.text
        #expect(log.contains("initial-admin-password"))
        #expect(!log.contains(password.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(!log.contains("eyJ"))  // the start of every JWT
        try? FileManager.default.removeItem(atPath: d.directory)
        try? FileManager.default.removeItem(atPath: config)
    }
}

/// A gateway's life through the CLI: an admin makes a key, the gateway ingests with it and can do
/// nothing else, the admin revokes it. And `twind keys rotate` adds a signing key without
/// ending the sessions already handed out.
@Suite(.serialized, .timeLimit(.minutes(2))) struct GatewayKeyTests {
    @Test func apiKeyThroughTheCLI() async throws {
        let d = try await TwindProcess.start(["--simulator", "off", "--fleet", try CLITests.fleetFile()])
        let create = try d.twin(["apikeys", "create", "line 2 gateway"])
        #expect(await create.wait() == 0)
        let secret = create.stdout.text.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.hasPrefix("twk_") && !secret.contains("\n"))
        #expect(create.stderr.text.contains("shown only now"))

        // The gateway is nobody's session: only TWIN_API_KEY, and a config dir of its own.
        let gateway = ["TWIN_API_KEY": secret, "XDG_CONFIG_HOME": d.directory + "-gateway"]
        let now = Int(Date().timeIntervalSince1970)
        let ingest = try d.twin(["ingest", "-"], stdin: Data("press-7,force,\(now),12.5\n".utf8), environment: gateway)
        #expect(await ingest.wait() == 0)
        let read = try d.twin(["devices"], environment: gateway)
        #expect(await read.wait() == 7)
        #expect(read.stderr.text.contains("may only call Ingest"))

        let list = try d.twin(["apikeys", "list"])
        #expect(await list.wait() == 0)
        let id = String(secret.dropFirst(4).prefix(12))
        #expect(list.stdout.lines.contains { $0.hasPrefix(id) && $0.contains("line 2 gateway") && $0.contains("active") })
        #expect(!list.stdout.text.contains(secret))
        let revoke = try d.twin(["apikeys", "revoke", id])
        #expect(await revoke.wait() == 0)
        let after = try d.twin(["ingest", "-"], stdin: Data("press-7,force,\(now + 1),13\n".utf8), environment: gateway)
        #expect(await after.wait() == 6)

        // A key scoped to other devices may not write for press-7.
        let scoped = try d.twin(["apikeys", "create", "pump gateway", "--device", "pump-*"])
        #expect(await scoped.wait() == 0)
        #expect(scoped.stderr.text.contains("devices pump-*"))
        let pumpKey = ["TWIN_API_KEY": scoped.stdout.text.trimmingCharacters(in: .whitespacesAndNewlines), "XDG_CONFIG_HOME": d.directory + "-gateway"]
        let outside = try d.twin(["ingest", "-"], stdin: Data("press-7,force,\(now + 2),14\n".utf8), environment: pumpKey)
        #expect(await outside.wait() == 7)
        #expect(outside.stderr.text.contains("outside the scope"))
        let listed = try d.twin(["apikeys", "list"])
        #expect(await listed.wait() == 0)
        #expect(listed.stdout.lines.contains { $0.contains("pump gateway") && $0.contains("devices pump-*") })
        let before = try await d.token()
        #expect(await d.stop(removing: false) == 0)
        #expect(!d.child.stderr.text.contains(secret))
        try? FileManager.default.removeItem(atPath: d.directory + "-gateway")

        // Rotation: a new signing key for new tokens; the session from before still works.
        let rotate = try Child("twind", ["keys", "rotate", "--data-dir", d.directory])
        #expect(await rotate.wait() == 0)
        #expect(rotate.stdout.text.contains("token signing key k2"))
        let again = try await TwindProcess.start(["--simulator", "off", "--fleet", try CLITests.fleetFile()], directory: d.directory, login: false)
        let parts = again.address.split(separator: ":")
        let me = try await TwinConnection.with(.tcp(host: String(parts[0]), port: Int(parts[1])!), bearer: before) {
            try await Twin_V1_AuthService.Client(wrapping: $0).whoAmI(Twin_V1_WhoAmIRequest())
        }
        #expect(me.user.username == "admin")
        let token = try await again.token()
        let header = try JSONSerialization.jsonObject(with: base64URL(token.split(separator: ".")[0])) as? [String: Any]
        #expect(header?["kid"] as? String == "k2")
        #expect(await again.stop() == 0)
    }

    func base64URL(_ text: Substring) -> Data {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s) ?? Data()
    }
}

/// Several `twin` processes refreshing one session at once do not spend its refresh token
/// twice (which would revoke the session): the sessions file is locked while one refreshes.
@Suite(.timeLimit(.minutes(2))) struct ConcurrentRefreshTests {
    @Test func parallelCommandsKeepTheSession() async throws {
        // 15 s tokens: with the 30 s margin, every command refreshes first.
        let d = try await TwindProcess.start(["--access-token-lifetime", "15s", "--devices", "2"])
        defer { Task { _ = await d.stop() } }
        for _ in 0..<3 {
            let commands = try (0..<4).map { _ in try d.twin(["devices"]) }
            for c in commands { #expect(await c.wait() == 0, "\(c.stderr.text)") }
        }
        let after = try d.twin(["whoami"])
        #expect(await after.wait() == 0, "\(after.stderr.text)")
        #expect(!d.child.stderr.text.contains("presented again"))
    }
}

/// `twind keys rotate --output FILE` with the key in TWIND_KEY: twind still starts with the old
/// key until FILE is installed, and starts with FILE once it is, keeping sessions.
@Suite(.timeLimit(.minutes(2))) struct RotateOutputTests {
    @Test func restartingBeforeTheNewKeyIsInstalledStillWorks() async throws {
        let key = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let d = try await TwindProcess.start(["--devices", "1"], environment: ["TWIND_KEY": key])
        let token = try await d.token()
        #expect(await d.stop(removing: false) == 0)
        let file = d.directory + "-newkey"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let rotate = try Child("twind", ["keys", "rotate", "--data-dir", d.directory, "--output", file], environment: ["TWIND_KEY": key])
        #expect(await rotate.wait() == 0, "\(rotate.stderr.text)")

        // Restarted before FILE is installed: the old key alone still opens everything.
        let before = try await TwindProcess.start(["--devices", "1"], directory: d.directory, login: false, environment: ["TWIND_KEY": key])
        #expect(await before.stop(removing: false) == 0)
        // FILE installed: it starts, and the session from before is still good.
        let after = try await TwindProcess.start(["--devices", "1", "--key-file", file], directory: d.directory, login: false)
        let parts = after.address.split(separator: ":")
        let me = try await TwinConnection.with(.tcp(host: String(parts[0]), port: Int(parts[1])!), bearer: token) {
            try await Twin_V1_AuthService.Client(wrapping: $0).whoAmI(Twin_V1_WhoAmIRequest())
        }
        #expect(me.user.username == "admin")
        #expect(await after.stop() == 0)
    }
}
