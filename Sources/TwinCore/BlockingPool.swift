import Dispatch
import Foundation
import Synchronization
import CHardening
#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking work (password hashing, and anything else that holds a thread for long) on a
/// few threads of its own, never on Swift's cooperative pool, where it would stall every other
/// task of the daemon. At most `workers` jobs run at once and at most `queueLimit` wait; beyond
/// that, or when a job has waited longer than `maxWait`, the caller gets RESOURCE_EXHAUSTED
/// naming the limit instead of a growing queue.
public final class BlockingPool: Sendable {
    public let name: String
    public let workers: Int
    public let queueLimit: Int
    public let maxWait: Duration
    /// Unix niceness of the pool's threads (0: as the rest of the process; 10: yields the CPU to
    /// everything else, e.g. password hashing under a flood). The threads are the pool's own,
    /// so the setting never leaks to other work.
    public let niceness: Int32
    /// Runs the threads under SCHED_IDLE (Linux): they take only CPU time nothing else wants,
    /// and any other thread that wakes takes their CPU at once. Under the default scheduler a
    /// niced thread still runs out its time slice first, which delays every hand-off of a
    /// pipeline (ingest) by up to a slice.
    public let idle: Bool

    private struct Job: Sendable {
        let queued: ContinuousClock.Instant
        let run: @Sendable (_ late: Bool) -> Void
    }
    private let jobs = Mutex<(waiting: [Job], running: Int, stopped: Bool)>(([], 0, false))
    private let available = DispatchSemaphore(value: 0)

    public init(name: String, workers: Int, queueLimit: Int, maxWait: Duration = .seconds(5), niceness: Int32 = 0, idle: Bool = false) {
        self.name = name
        self.idle = idle
        self.workers = max(1, workers)
        self.queueLimit = queueLimit
        self.maxWait = maxWait
        self.niceness = niceness
        for i in 0..<self.workers {
            let thread = Thread { [self] in self.work(Self.threadName(name, i)) }
            thread.start()
        }
    }

    /// A thread's name as `top -H` and `ps -L` show it: Linux keeps at most 15 bytes and
    /// refuses a longer name outright (the thread would keep its creator's name).
    public static func threadName(_ pool: String, _ i: Int) -> String {
        let suffix = "-\(i)"
        let stem = pool.replacingOccurrences(of: " ", with: "-").unicodeScalars.filter(\.isASCII).map(String.init).joined()
        return String(stem.prefix(15 - suffix.count)) + suffix
    }

    /// Lets the threads end once the jobs queued are done; later jobs are refused.
    public func shutdown() {
        jobs.withLock { $0.stopped = true }
        for _ in 0..<workers { available.signal() }
    }

    /// Jobs queued or running now.
    public var load: Int { jobs.withLock { $0.waiting.count + $0.running } }

    private func work(_ threadName: String) {
        #if canImport(Glibc)
        _ = twin_name_thread(threadName)
        // On Linux "process" 0 is the calling thread.
        if niceness != 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, niceness) }
        if idle {
            var parameters = sched_param()
            parameters.sched_priority = 0
            _ = sched_setscheduler(0, 5 /* SCHED_IDLE */, &parameters)
        }
        #endif
        while true {
            available.wait()
            if jobs.withLock({ $0.stopped && $0.waiting.isEmpty }) { return }
            guard let job = jobs.withLock({ j -> Job? in
                guard !j.waiting.isEmpty else { return nil }
                j.running += 1
                return j.waiting.removeFirst()
            }) else { continue }
            job.run(ContinuousClock.now - job.queued > maxWait)
            jobs.withLock { $0.running -= 1 }
        }
    }

    public func run<T: Sendable>(_ work: @escaping @Sendable () throws(TwinError) -> T) async throws(TwinError) -> T {
        let result: Result<T, TwinError> = await withCheckedContinuation { continuation in
            submit(work) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// As `run`, but a caller that is cancelled stops waiting at once (`UNAVAILABLE`): a job not
    /// started yet is skipped, one under way runs on to its end on the pool's thread and its
    /// result is dropped. For work that shutdown must not wait for (a training job).
    public func runUnlessCancelled<T: Sendable>(_ work: @escaping @Sendable () throws(TwinError) -> T) async throws(TwinError) -> T {
        let waiter = Waiter<T>()
        let name = self.name
        let result: Result<T, TwinError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                waiter.state.withLock { $0.continuation = continuation }
                submit({ () throws(TwinError) -> T in
                    if waiter.state.withLock({ $0.abandoned }) { throw TwinError.unavailable("\(name): the job was abandoned before it started") }
                    return try work()
                }) { outcome in waiter.finish(outcome) }
                if Task.isCancelled { waiter.abandon(name) }
            }
        } onCancel: {
            waiter.abandon(name)
        }
        return try result.get()
    }

    /// The caller of `runUnlessCancelled`: resumed once, by the job or by its cancellation.
    private final class Waiter<T: Sendable>: Sendable {
        let state = Mutex<(continuation: CheckedContinuation<Result<T, TwinError>, Never>?, abandoned: Bool)>((nil, false))

        func finish(_ outcome: Result<T, TwinError>) {
            state.withLock { s in defer { s.continuation = nil }; return s.continuation }?.resume(returning: outcome)
        }

        func abandon(_ name: String) {
            state.withLock { s in
                s.abandoned = true
                defer { s.continuation = nil }
                return s.continuation
            }?.resume(returning: .failure(TwinError.unavailable("\(name): stopped waiting for the job (shutting down)")))
        }
    }

    /// Queues `work` at once, from any thread, without waiting and never refused (neither the
    /// queue limit nor `maxWait` applies): for work that must happen, in the order queued (a
    /// one-worker pool runs its jobs in that order). A stopped pool runs it on the caller's
    /// thread. The handle tells when it has run.
    public func enqueue(_ work: @escaping @Sendable () -> Void) -> Completion {
        let done = Completion()
        let job = Job(queued: .now) { _ in
            work()
            done.set(())
        }
        let queued = jobs.withLock { j -> Bool in
            guard !j.stopped else { return false }
            j.waiting.append(job)
            return true
        }
        if queued { available.signal() } else { job.run(false) }
        return done
    }

    /// The end of a job queued by `enqueue`.
    public typealias Completion = OneShot<Void>

    /// Queues `work`; `completion` gets its outcome, or RESOURCE_EXHAUSTED when the queue is
    /// full, the pool stopped, or the job waited past `maxWait`.
    private func submit<T: Sendable>(_ work: @escaping @Sendable () throws(TwinError) -> T, completion: @escaping @Sendable (Result<T, TwinError>) -> Void) {
        let name = self.name, limit = maxWait
        let job = Job(queued: .now) { late in
            if late {
                completion(.failure(TwinError(.resourceExhausted, "\(name) is busy: the request waited more than \(limit) for its turn; try again in a moment", reason: .serverBusy).retry(after: Time.second)))
                return
            }
            do throws(TwinError) { completion(.success(try work())) } catch { completion(.failure(error)) }
        }
        let admitted = jobs.withLock { j -> Bool in
            guard !j.stopped, j.waiting.count + j.running < workers + queueLimit else { return false }
            j.waiting.append(job)
            return true
        }
        if admitted {
            available.signal()
        } else {
            completion(.failure(TwinError(
                .resourceExhausted, "\(name) is busy (\(workers) running, \(queueLimit) waiting, the most it takes); try again in a moment", reason: .serverBusy
            ).retry(after: Time.second)))
        }
    }
}
