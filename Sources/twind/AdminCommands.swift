import ArgumentParser
import Foundation
import TwinCore
import TwinServer
import TwinStore

/// Where the store commands find the data and the key: the same flags, `TWIND_*` variables and
/// config file as `twind serve`.
struct StoreOptions: ParsableArguments {
    @Option(help: "JSON config file (TWIND_CONFIG).") var config: String?
    @Option(help: "Data directory (TWIND_DATA_DIR).") var dataDir: String?
    @Option(help: "File with the master key(s) (TWIND_KEY_FILE); else as twind serve finds it.") var keyFile: String?

    func configuration() throws -> DaemonConfiguration {
        var flags: [String: [String]] = [:]
        if let config { flags["config"] = [config] }
        if let dataDir { flags["data-dir"] = [dataDir] }
        if let keyFile { flags["key-file"] = [keyFile] }
        do {
            return try Settings(flags: flags, environment: ProcessInfo.processInfo.environment).daemonConfiguration()
        } catch {
            fail(error.description, code: 78)
        }
    }

    /// The master keys, as twind serve finds them, but never a newly generated one.
    func keys(_ c: DaemonConfiguration) throws -> KeyRing {
        let env = c.environment
        let credential = env["CREDENTIALS_DIRECTORY"].map { access($0 + "/twind.key", R_OK) == 0 } ?? false
        if c.keyFile == nil && (env["TWIND_KEY_FILE"] ?? "").isEmpty && !credential && (env["TWIND_KEY"] ?? "").isEmpty
            && access(c.dataDirectory + "/twind.key", F_OK) != 0 {
            fail(
                "no master key for \(c.dataDirectory): put the key the data was sealed with in \(c.dataDirectory)/twind.key (mode 0600), or pass --key-file",
                code: 66)
        }
        return try attempt { () throws(TwinError) in try KeyRing.load(keyFile: c.keyFile, environment: c.environment, dataDirectory: c.dataDirectory) }
    }
}

/// One line on stderr, then exit with `code`.
func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("twind: \(message)\n".utf8))
    Foundation.exit(code)
}

/// Runs a store operation; a `TwinError` becomes one line and an exit code (65 for damaged data).
func attempt<R>(_ body: () throws(TwinError) -> R) throws -> R {
    do {
        return try body()
    } catch {
        let code: Int32 = switch error.code {
        case .dataLoss: 65  // EX_DATAERR
        case .notFound: 66  // EX_NOINPUT
        case .invalidArgument: 64
        case .failedPrecondition: 75  // EX_TEMPFAIL: e.g. twind is running, wrong key
        default: 74  // EX_IOERR
        }
        fail(error.message, code: code)
    }
}

func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open every sealed block of the store and report what fails (safe while twind runs).",
        discussion: "Exit 0 when everything opens; 65 when something is damaged (each damaged range is listed).")
    @OptionGroup var store: StoreOptions

    func run() throws {
        let c = try store.configuration()
        let keys = try store.keys(c)
        let report = try attempt { () throws(TwinError) in try StoreAdmin.verify(dataDirectory: c.dataDirectory, keys: keys) }
        for line in report.lines { say(line) }
        if report.problems.isEmpty {
            say("ok: everything opens with the key from \(keys.source)")
            return
        }
        for problem in report.problems { say("DAMAGED: \(problem)") }
        fail("\(report.problems.count) damaged block(s) in \(c.dataDirectory)", code: 65)
    }
}

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the databases into DEST, consistently, while twind runs.",
        discussion: """
            Uses SQLite's online backup. The copy stays encrypted and does not include the master \
            key: keep the key (twind.key, or wherever it comes from) safe separately, or the backup \
            cannot be read.
            """)
    @OptionGroup var store: StoreOptions
    @Argument(help: "A new or empty directory.") var destination: String

    func run() throws {
        umask(0o077)
        let c = try store.configuration()
        let written = try attempt { () throws(TwinError) in try StoreAdmin.backup(dataDirectory: c.dataDirectory, to: destination) }
        for path in written { say("backed up \(path)") }
    }
}

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring a backup back into the data directory (stop twind first).",
        discussion: """
            Checks that the backup opens with the current master key before replacing anything; \
            the replaced databases are kept beside, renamed *.before-restore-<time>. Users, API keys and \
            device definitions must carry valid row MACs: a backup altered outside twind is refused, \
            naming the rows.
            """)
    @OptionGroup var store: StoreOptions
    @Argument(help: "A directory written by twind backup.") var source: String
    @Flag(help: "Restore a backup made before row MACs existed (its rows cannot be checked; they are bound as found).")
    var acceptUnboundRows = false

    func run() throws {
        umask(0o077)
        let c = try store.configuration()
        let keys = try store.keys(c)
        let restored = try attempt { () throws(TwinError) in try StoreAdmin.restore(dataDirectory: c.dataDirectory, from: source, keys: keys, acceptUnbound: acceptUnboundRows) }
        for path in restored { say("restored \(path)") }
    }
}

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage the master keys and the token signing keys.", subcommands: [Rotate.self])

    struct Rotate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a new master key and a new token signing key; twind uses them after its next start.",
            discussion: """
                The key file keeps the old keys, so data sealed with them stays readable; the \
                previous two token signing keys stay too, so tokens already handed out keep working. With the \
                key in TWIND_KEY or a systemd credential, pass --output FILE and install FILE there. \
                The rotation is recorded in the audit log. No key is ever printed.
                """)
        @OptionGroup var store: StoreOptions
        @Option(help: "Write the new key file here instead of replacing the one twind reads.") var output: String?

        func run() throws {
            umask(0o077)
            let c = try store.configuration()
            _ = try store.keys(c)
            let result = try attempt { () throws(TwinError) in
                try StoreAdmin.rotate(keyFile: c.keyFile, environment: c.environment, dataDirectory: c.dataDirectory, output: output)
            }
            var signing = ""
            if let users = try? UsersDatabase(path: c.dataDirectory + "/users.db", keys: result.current) {
                let signingID = try attempt { () throws(TwinError) in try users.addSigningKey() }
                signing = " and token signing key k\(signingID) to users.db"
                do {
                    try users.audit(.init(time: Time.now(), action: .keysRotated, actor: NSUserName(), peer: "local", detail: "new key id \(result.keyID), signing key k\(signingID)"))
                } catch {
                    FileHandle.standardError.write(Data("twind: warning: the rotation is done but its audit entry could not be written: \(error.message)\n".utf8))
                }
                users.close()
            }
            say("added key id \(result.keyID) to \(result.path) (\(result.ring.keys.count) keys)\(signing); restart twind to seal new data and sign new tokens with them")
        }
    }
}
