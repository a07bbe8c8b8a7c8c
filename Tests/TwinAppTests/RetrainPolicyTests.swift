import Testing
import TwinApp
import TwinCore

/// The retrain schedule and Retrain's force, as a policy: no daemon, no model files.
@Suite struct RetrainPolicyTests {
    let policy = RetrainPolicy(interval: Time.day)
    let t0: Nanos = 1_800_000_000 * Time.second
    var newest: RetrainPolicy.Newest { .init(version: "v-1", createdAt: t0, trainTo: t0 - t0 % Time.hour) }

    @Test func withNoModelItTrainsAtOnce() {
        #expect(policy.scheduled(now: t0, newest: nil, running: false) { _ in 0 } == .train)
        #expect(policy.scheduled(now: t0, newest: nil, running: true) { _ in 0 } == .busy)
    }

    @Test func dueOneIntervalAfterTheNewestModelWithAFixedJitter() {
        let due = policy.due(after: newest)
        #expect(abs(due - (t0 + Time.day)) <= Time.day / 10)
        #expect(policy.due(after: newest) == due)
        #expect(policy.scheduled(now: due - 1, newest: newest, running: false) { _ in 5 } == .wait(until: due))
        #expect(policy.scheduled(now: due, newest: newest, running: false) { _ in 5 } == .train)
        #expect(policy.scheduled(now: due, newest: newest, running: true) { _ in 5 } == .busy)
    }

    /// The bug: once due with no new failure, every step pushed the retrain a whole interval
    /// further, so a failure recorded later waited up to a day. Now the next step trains.
    @Test func aFailureAfterADueRetrainWaitedForTrainsAtTheNextStep() {
        let due = policy.due(after: newest)
        var failures = 0
        var now = due
        // Due for six hours with nothing new: it waits, and is never pushed back.
        for _ in 0..<(6 * 60) {
            #expect(policy.scheduled(now: now, newest: newest, running: false) { _ in failures } == .nothingNew(dueSince: due))
            now += Time.minute
        }
        failures = 1
        #expect(policy.scheduled(now: now, newest: newest, running: false) { _ in failures } == .train)
    }

    @Test func failuresAreCountedFromTheEndOfTheTrainingWindow() {
        var asked: Nanos?
        _ = policy.scheduled(now: policy.due(after: newest), newest: newest, running: false) { since in asked = since; return 0 }
        #expect(asked == newest.trainTo)
        // Not asked at all before the retrain is due (it reads the maintenance log).
        asked = nil
        _ = policy.scheduled(now: t0, newest: newest, running: false) { since in asked = since; return 0 }
        #expect(asked == nil)
    }

    @Test func forceTrainsOnTheSameHistoryWithoutItNotEnoughData() {
        let end = newest.trainTo
        let refusal = policy.requested(force: false, customWindow: false, end: end, newest: newest)
        #expect(refusal?.code == .failedPrecondition && refusal?.reason == .notEnoughData && refusal?.metadata["model"] == "v-1")
        #expect(policy.requested(force: true, customWindow: false, end: end, newest: newest) == nil)
        // Another window, a later hour, or no model yet: there is something to learn.
        #expect(policy.requested(force: false, customWindow: true, end: end, newest: newest) == nil)
        #expect(policy.requested(force: false, customWindow: false, end: end + Time.hour, newest: newest) == nil)
        #expect(policy.requested(force: false, customWindow: false, end: end, newest: nil) == nil)
    }
}
