import Foundation
import Logging
import Synchronization
import TwinCore

/// Where the alert rules live: one file (`--alert-rules FILE`, else `alert-rules.yaml` in the
/// data directory; absent: the built-in set). Read at start (a bad file stops twind with the
/// line named), again on SIGHUP (a bad file is reported and the rules in force stay), and
/// written by `SetAlertRules` (checked first, replaced atomically, then put in force), so the
/// file always holds what is in force.
public final class AlertRuleFile: Sendable {
    public let path: String
    let book: AlertBook
    let clock: any TwinClock
    let logger: Logger
    let hold: Nanos
    let clear: Nanos
    /// File writes end in an fsync: they run here, never on the cooperative pool.
    let writes: BlockingPool
    let audit: @Sendable (AuditEntry) -> Void
    private let state: Mutex<(loadedAt: Nanos, lastError: String)>
    /// One change at a time (check-version, write, put in force).
    private let changing = Mutex(())

    /// What `GetAlertRules` shows.
    public struct Status: Sendable {
        public var rules: AlertRules
        public var loadedAt: Nanos
        public var lastError: String
        public var path: String
    }

    /// The rules the file holds now, for twind's start: the built-in set when there is no file.
    public static func read(path: String, hold: Nanos, clear: Nanos) throws(TwinError) -> AlertRules {
        guard FileManager.default.fileExists(atPath: path) else { return AlertRules.builtIn(defaultHold: hold, defaultClear: clear) }
        return try AlertRules.load(path: path, defaultHold: hold, defaultClear: clear)
    }

    public init(
        path: String, book: AlertBook, hold: Nanos, clear: Nanos, writes: BlockingPool, clock: any TwinClock = SystemClock(), logger: Logger,
        audit: @escaping @Sendable (AuditEntry) -> Void = { _ in }
    ) {
        self.path = path
        self.book = book
        self.hold = hold
        self.clear = clear
        self.writes = writes
        self.clock = clock
        self.logger = logger
        self.audit = audit
        state = Mutex((clock.now(), ""))
    }

    public var status: Status {
        let s = state.withLock { $0 }
        return Status(rules: book.rules, loadedAt: s.loadedAt, lastError: s.lastError, path: path)
    }

    /// Reads the file again (SIGHUP). A file that does not check out leaves the rules in force
    /// and is reported (log, `GetAlertRules.last_error`); returns the rules in force after.
    @discardableResult
    public func reload() -> AlertRules {
        changing.withLock { _ in
            let old = book.rules
            do throws(TwinError) {
                let rules = try Self.read(path: path, hold: hold, clear: clear)
                state.withLock { $0 = (clock.now(), "") }
                guard rules.version != old.version else {
                    logger.info("alert rules unchanged", metadata: ["path": "\(path)", "version": "\(rules.version)"])
                    return old
                }
                book.replaceRules(rules)
                logger.notice("alert rules reloaded", metadata: ["path": "\(path)", "version": "\(rules.version)", "was": "\(old.version)"])
                audit(AuditEntry(time: clock.now(), action: .alertRulesChanged, actor: "SIGHUP", peer: "", detail: "\(old.version) -> \(rules.version) from \(path)"))
                return rules
            } catch {
                state.withLock { $0.lastError = error.message }
                logger.error("alert rules not reloaded; the rules in force stay", metadata: ["error": "\(error.message)", "version": "\(old.version)"])
                return old
            }
        }
    }

    /// Checks `text` and, unless `validateOnly`, writes it to the file and puts it in force.
    public func set(text: String, by user: String, peer: String, validateOnly: Bool, expectedVersion: String) async throws(TwinError) -> AlertRules {
        var parsed = try AlertRules.parse(text, source: "SetAlertRules", defaultHold: hold, defaultClear: clear)
        if validateOnly { return parsed }
        parsed.source = "SetAlertRules by \(user)"
        let rules = parsed
        let path = path, book = book
        return try await writes.run { () throws(TwinError) -> AlertRules in
            try self.changing.withLock { _ throws(TwinError) -> AlertRules in
                let old = book.rules
                if !expectedVersion.isEmpty && expectedVersion != old.version {
                    throw TwinError(
                        .failedPrecondition, "the alert rules changed meanwhile: \(old.version) is in force, not \(expectedVersion.prefix(40)); fetch them again",
                        reason: .alertRulesChanged, metadata: ["version": old.version])
                }
                try PrivateFile.replace(path, with: Array(text.utf8))
                book.replaceRules(rules)
                self.state.withLock { $0 = (self.clock.now(), "") }
                self.logger.notice("alert rules changed", metadata: ["by": "\(user)", "version": "\(rules.version)", "was": "\(old.version)"])
                self.audit(AuditEntry(time: self.clock.now(), action: .alertRulesChanged, actor: user, peer: peer, detail: "\(old.version) -> \(rules.version)"))
                return rules
            }
        }
    }
}
