import Foundation
import Testing

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
