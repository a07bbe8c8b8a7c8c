import Foundation
import Logging
import Synchronization
import TwinCore

/// Where the notification channels and routes live: one file (`--notify-config FILE`, else
/// `notify.yaml` in the data directory; absent: nothing is sent). Read at start (a bad file
/// stops twind with the line named) and again on SIGHUP (a bad file is reported and the
/// configuration in force stays).
public final class NotifyConfigFile: Sendable {
    public let path: String
    let notifier: Notifier
    let environment: [String: String]
    let logger: Logger
    private let lastError = Mutex("")

    /// The configuration the file holds now: none when there is no file and none was asked for.
    public static func read(path: String, required: Bool, environment: [String: String]) throws(TwinError) -> NotifyConfig {
        if !required && !FileManager.default.fileExists(atPath: path) { return .none }
        return try NotifyConfig.load(path: path, environment: environment)
    }

    public init(path: String, notifier: Notifier, environment: [String: String], logger: Logger) {
        self.path = path
        self.notifier = notifier
        self.environment = environment
        self.logger = logger
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
