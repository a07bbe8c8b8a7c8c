import Foundation
import Logging
import Synchronization
import TwinCore

/// Where the notification channels and routes live: one file (`--notify-config FILE`, else
/// `notify.yaml` in the data directory; absent: nothing is sent). Read at start (a bad file
/// stops twind with the line named), again on SIGHUP (a bad file is reported and the
/// configuration in force stays), and written by `SetNotifyConfig` (checked first, replaced
/// atomically, then put in force), so the file always holds what is in force.
public final class NotifyConfigFile: Sendable {
    public let path: String
    let notifier: Notifier
    let environment: [String: String]
    let logger: Logger
    let clock: any TwinClock
    /// File writes end in an fsync: they run here, never on the cooperative pool.
    let writes: BlockingPool?
    let audit: @Sendable (AuditEntry) -> Void
    private let lastError = Mutex("")
    /// One change at a time (check-version, write, put in force).
    private let changing = Mutex(())

    /// The configuration the file holds now: none when there is no file and none was asked for.
    public static func read(path: String, required: Bool, environment: [String: String]) throws(TwinError) -> NotifyConfig {
        if !required && !FileManager.default.fileExists(atPath: path) { return .none }
        return try NotifyConfig.load(path: path, environment: environment)
    }

    public init(
        path: String, notifier: Notifier, environment: [String: String], logger: Logger, writes: BlockingPool? = nil,
        clock: any TwinClock = SystemClock(), audit: @escaping @Sendable (AuditEntry) -> Void = { _ in }
    ) {
        self.path = path
        self.notifier = notifier
        self.environment = environment
        self.logger = logger
        self.writes = writes
        self.clock = clock
        self.audit = audit
    }

    /// Checks `text` (secret files read and their modes checked) and, unless `validateOnly`,
    /// writes it to the file and puts it in force. A text that does not check out is
    /// NOTIFY_CONFIG_INVALID naming the line; a stale `expectedVersion` NOTIFY_CONFIG_CHANGED.
    public func set(text: String, by user: String, peer: String, validateOnly: Bool, expectedVersion: String) async throws(TwinError) -> NotifyConfig {
        var config: NotifyConfig
        do { config = try NotifyConfig.parse(text, source: "SetNotifyConfig", environment: environment) } catch {
            throw TwinError(.invalidArgument, error.message, reason: .notifyConfigInvalid)
        }
        if validateOnly { return config }
        config.source = path
        let written = config
        let change: @Sendable () throws(TwinError) -> NotifyConfig = {
            try self.changing.withLock { _ throws(TwinError) -> NotifyConfig in
                let old = self.notifier.config
                if !expectedVersion.isEmpty && expectedVersion != old.version {
                    throw TwinError(
                        .failedPrecondition, "the notifications changed meanwhile: \(old.version) is in force, not \(expectedVersion.prefix(40)); fetch them again",
                        reason: .notifyConfigChanged, metadata: ["version": old.version])
                }
                try PrivateFile.replace(self.path, with: Array(text.utf8))
                self.notifier.replaceConfig(written)
                self.lastError.withLock { $0 = "" }
                self.logger.notice("notifications changed", metadata: [
                    "by": "\(user)", "version": "\(written.version)", "was": "\(old.version)", "channels": "\(written.channels.count)", "routes": "\(written.routes.count)",
                ])
                self.audit(AuditEntry(time: self.clock.now(), action: .notifyConfigChanged, actor: user, peer: peer, detail: "\(old.version) -> \(written.version)"))
                return written
            }
        }
        guard let writes else { return try change() }
        return try await writes.run(change)
    }

    /// The last reload that failed and why (empty once one succeeds).
    public var error: String { lastError.withLock { $0 } }

    /// Reads the file again (SIGHUP); a file that does not check out leaves the configuration
    /// in force and is reported.
    public func reload() {
        do {
            let config = try Self.read(path: path, required: false, environment: environment)
            notifier.replaceConfig(config)
            lastError.withLock { $0 = "" }
            logger.notice("notifications reloaded", metadata: ["version": "\(config.version)", "channels": "\(config.channels.count)", "routes": "\(config.routes.count)"])
        } catch {
            lastError.withLock { $0 = error.message }
            logger.error("notifications not reloaded; the configuration in force stays", metadata: ["error": "\(error.message)"])
        }
    }
}
