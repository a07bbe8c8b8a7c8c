import Foundation
import Testing

/// scripts/install into a staging directory produces the tree an operator gets; running it
/// again changes nothing; scripts/uninstall keeps the data unless asked. And --version names
/// the commit.
@Suite(.serialized, .timeLimit(.minutes(2))) struct InstallTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func script(_ name: String, _ arguments: [String]) async throws -> Child {
        let child = try Child("/bin/bash", [Self.repository.appendingPathComponent("scripts/\(name)").path] + arguments)
        _ = await child.wait(timeout: .seconds(60))
        return child
    }

    @Test func installsTheExpectedTreeTwiceAndUninstallsKeepingData() async throws {
        let stage = FileManager.default.temporaryDirectory.appendingPathComponent("twin-install-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: stage) }
        let arguments = ["--destdir", stage, "--prefix", "/opt/twin", "--bin-dir", Binaries.directory.path]
        for _ in 0..<2 {
            let run = try await script("install", arguments)
            #expect(await run.wait() == 0, "\(run.stderr.text)")
        }
        let fm = FileManager.default
        let expected = [
            "opt/twin/bin/twind", "opt/twin/bin/twin", "etc/systemd/system/twind.service",
            "opt/twin/share/bash-completion/completions/twin", "opt/twin/share/bash-completion/completions/twind",
            "opt/twin/share/zsh/site-functions/_twin", "opt/twin/share/zsh/site-functions/_twind",
            "opt/twin/share/fish/vendor_completions.d/twin.fish", "opt/twin/share/fish/vendor_completions.d/twind.fish",
            "opt/twin/share/man/man1/twin.1", "opt/twin/share/man/man1/twind.1",
        ]
        for path in expected {
            let size = (try? fm.attributesOfItem(atPath: stage + "/" + path)[.size] as? Int) ?? 0
            #expect(size > 100, "\(path) missing or empty")
        }
        #expect(fm.isExecutableFile(atPath: stage + "/opt/twin/bin/twind"))
        let unit = try String(contentsOfFile: stage + "/etc/systemd/system/twind.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/opt/twin/bin/twind\n"))
        let bash = try String(contentsOfFile: stage + "/opt/twin/share/bash-completion/completions/twin", encoding: .utf8)
        #expect(bash.contains("recommend") && bash.contains("apikeys"))
        let man = try String(contentsOfFile: stage + "/opt/twin/share/man/man1/twind.1", encoding: .utf8)
        #expect(man.hasPrefix(".TH \"TWIND\" 1") && man.contains("retrain\\-interval"))
        let mode = try fm.attributesOfItem(atPath: stage + "/var/lib/twin")[.posixPermissions] as? Int
        #expect(mode == 0o700)
        // systemd's own check of the installed unit (its ExecStart must exist: point it at the staged binary).
        if fm.isExecutableFile(atPath: "/usr/bin/systemd-analyze") {
            let checked = stage + "/twind.service"
            try unit.replacingOccurrences(of: "ExecStart=/opt/twin/bin/twind", with: "ExecStart=\(stage)/opt/twin/bin/twind").write(toFile: checked, atomically: true, encoding: .utf8)
            let verify = try Child("/usr/bin/systemd-analyze", ["verify", "--man=no", checked])
            #expect(await verify.wait(timeout: .seconds(30)) == 0, "\(verify.stderr.text)")
        }

        let uninstall = try await script("uninstall", ["--destdir", stage, "--prefix", "/opt/twin"])
        #expect(await uninstall.wait() == 0)
        #expect(!fm.fileExists(atPath: stage + "/opt/twin/bin/twind") && !fm.fileExists(atPath: stage + "/etc/systemd/system/twind.service"))
        #expect(fm.fileExists(atPath: stage + "/var/lib/twin"))
        let purge = try await script("uninstall", ["--destdir", stage, "--prefix", "/opt/twin", "--purge"])
        #expect(await purge.wait() == 0)
        #expect(!fm.fileExists(atPath: stage + "/var/lib/twin"))
    }

    @Test func versionNamesTheCommit() async throws {
        for binary in ["twind", "twin"] {
            let child = try Child(binary, ["--version"])
            #expect(await child.wait() == 0)
            let line = child.stdout.text.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(line.range(of: #"^\d+\.\d+\.\d+ \(commit ([0-9a-f]{12}(-modified)?|unknown)\)$"#, options: .regularExpression) != nil, "\(line)")
        }
    }
}
