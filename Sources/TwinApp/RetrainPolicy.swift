import TwinCore

/// When the failure models are trained again, by the scheduler and on request.
///
/// Scheduler: a retrain is due one interval (± 10 %, fixed per model) after the newest model
/// was made. Once due it waits only for something new to learn from (a failure recorded after
/// the newest model's training window), and trains at the first step that sees one: a due
/// retrain is never pushed back by skipped steps. With no model yet it trains at once.
///
/// On request (Retrain): trains unless the newest model was trained on exactly the data a new
/// job would read (the same default window, ending at the same hour) — then NOT_ENOUGH_DATA,
/// unless `force`.
public struct RetrainPolicy: Sendable {
    /// What the policy knows of the newest model on disk.
    public struct Newest: Sendable, Equatable {
        public var version: String
        public var createdAt: Nanos
        /// End of its training window.
        public var trainTo: Nanos
        public init(version: String, createdAt: Nanos, trainTo: Nanos) {
            self.version = version
            self.createdAt = createdAt
            self.trainTo = trainTo
        }
    }

    public enum Decision: Sendable, Equatable {
        /// Nothing to do before this time.
        case wait(until: Nanos)
        /// Due, but nothing new to learn from since the newest model: look again next step.
        case nothingNew(dueSince: Nanos)
        /// A job runs already.
        case busy
        case train
    }

    public var interval: Nanos
    public init(interval: Nanos) { self.interval = interval }

    /// When a retrain is due after `newest` (± 10 % of the interval, fixed by its version name).
    public func due(after newest: Newest) -> Nanos {
        let jitter = (Double(stableHash(newest.version) % 1000) / 1000 - 0.5) * 0.2
        return newest.createdAt + interval + Nanos(Double(interval) * jitter)
    }

    /// One scheduler step. `failuresSince(t)` counts failures recorded after `t`; it is asked
    /// only once a retrain is due.
    public func scheduled(now: Nanos, newest: Newest?, running: Bool, failuresSince: (Nanos) -> Int) -> Decision {
        guard let newest else { return running ? .busy : .train }
        let due = due(after: newest)
        if now < due { return .wait(until: due) }
        if running { return .busy }
        return failuresSince(newest.trainTo) == 0 ? .nothingNew(dueSince: due) : .train
    }

    /// A Retrain request: nil to train, or why not.
    public func requested(force: Bool, customWindow: Bool, end: Nanos, newest: Newest?) -> TwinError? {
        guard !force, !customWindow, let newest, newest.trainTo >= end else { return nil }
        return TwinError.failedPrecondition(
            "model \(newest.version) was trained on this same history (up to \(Time.iso(newest.trainTo))); a new job would learn nothing new before the next hour — pass force (twin retrain --force) to train anyway",
            reason: .notEnoughData
        ).adding(["model": newest.version])
    }
}
