import Foundation
import Synchronization
import Testing
import TwinCore
@testable import TwinServer

@Suite struct BlockingPoolTests {
    /// `enqueue` (how stored `Ingest` batches reach the live state): never refused, even by a
    /// pool with no queue; jobs run in the order queued; the handle ends once its job has run;
    /// a stopped pool runs the job on the caller's thread.
    @Test(.timeLimit(.minutes(2))) func enqueuedJobsRunInOrderAndAreNeverRefused() async throws {
        let pool = BlockingPool(name: "ordered", workers: 1, queueLimit: 0)
        let seen = Mutex<[Int]>([])
        let gate = DispatchSemaphore(value: 0)
        // The first job holds the worker while the rest queue up behind it.
        let first = pool.enqueue { gate.wait(); seen.withLock { $0.append(0) } }
        let rest = (1..<500).map { k in pool.enqueue { seen.withLock { $0.append(k) } } }
        #expect(seen.withLock { $0.isEmpty })
        gate.signal()
        await first.wait()
        #expect(seen.withLock { $0.first } == 0)
        for done in rest { await done.wait() }
        #expect(seen.withLock { $0 } == Array(0..<500))
        pool.shutdown()
        let late = pool.enqueue { seen.withLock { $0.append(500) } }
        #expect(seen.withLock { $0.last } == 500)
        await late.wait()
    }

    /// A loaded CI box once took longer than the old shared 10 s bound to schedule the second
    /// job; the third was then queued behind a worker held by a gate nothing would open, and the
    /// whole run hung. Each step now waits on its own (long) bound, the gate opens whatever
    /// happens, and the test has a time limit.
    @Test(.timeLimit(.minutes(2))) func refusesBeyondItsQueueWithResourceExhausted() async throws {
        // A long queue wait: on a loaded box the queued job may sit for seconds before the test
        // opens the gate, and this test is about a full queue, not a late job.
        let pool = BlockingPool(name: "test pool", workers: 1, queueLimit: 1, maxWait: .seconds(600))
        defer { pool.shutdown() }
        let gate = DispatchSemaphore(value: 0)
        let opened = Mutex(false)
        func open() {
            let first = opened.withLock { o in
                defer { o = true }
                return !o
            }
            if first { gate.signal() }
        }
        defer { open() }
        func until(_ load: Int) async throws -> Bool {
            let deadline = ContinuousClock.now + .seconds(60)
            while pool.load < load {
                guard ContinuousClock.now < deadline else { return false }
                try await Task.sleep(for: .milliseconds(1))
            }
            return true
        }
        async let first: Int = pool.run { gate.wait(); return 1 }
        // The first job holds the worker, the second fills the queue.
        let held = try await until(1)
        async let second: Int = pool.run { 2 }
        let queued = try await until(2)
        #expect(held && queued, "the pool's jobs were not scheduled within a minute")
        if held && queued {
            do {
                _ = try await pool.run { 3 }
                Issue.record("a third job was taken")
            } catch {
                #expect(error.code == .resourceExhausted && error.reason == .serverBusy && error.retryAfter != nil)
            }
        }
        open()
        #expect(try await first == 1)
        #expect(try await second == 2)
        #expect(pool.load == 0)
    }

    /// What an operator sees in `top -H`: the pool's name on its threads (Linux keeps 15 bytes
    /// and refuses longer names), and the history pool under SCHED_IDLE, niced pools niced.
    @Test func threadsCarryThePoolsNameAndPriority() async throws {
        let queries = BlockingPool(name: "history queries", workers: 1, queueLimit: 1, niceness: 10, idle: true)
        defer { queries.shutdown() }
        let (name, stat) = try await queries.run { () throws(TwinError) in
            let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
            let stat = (try? String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8)) ?? ""
            return (name.trimmingCharacters(in: .whitespacesAndNewlines), stat)
        }
        #expect(name == "history-queri-0")
        // Fields after the command's closing parenthesis: state is field 3, nice 19, policy 41.
        let fields = stat.split(separator: ")").last.map { $0.split(separator: " ") } ?? []
        #expect(fields.count > 38)
        if fields.count > 38 {
            #expect(fields[16] == "10")
            #expect(fields[38] == "5")  // SCHED_IDLE
        }
        #expect(BlockingPool.threadName("store writes", 0) == "store-writes-0")
        #expect(BlockingPool.threadName("password hashing", 12).utf8.count == 15)
    }

    /// The training worker at shutdown: a cancelled caller stops waiting at once though its job
    /// still holds the thread; a job cancelled before it started never runs.
    @Test(.timeLimit(.minutes(2))) func aCancelledCallerStopsWaitingWhileTheJobRunsOn() async throws {
        let pool = BlockingPool(name: "training", workers: 1, queueLimit: 1)
        defer { pool.shutdown() }
        let gate = DispatchSemaphore(value: 0)
        let ran = Counted()
        // Each wait bounded on its own: a loaded CI box may be slow to schedule the pool's thread.
        func until(_ condition: () -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(60)
            while !condition() && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        }
        let running = Task { @Sendable () async throws -> Int in try await pool.runUnlessCancelled { ran.n.withLock { $0 += 1 }; gate.wait(); return 1 } }
        try await until { ran.n.withLock { $0 } >= 1 }
        let queued = Task { @Sendable () async throws -> Int in try await pool.runUnlessCancelled { ran.n.withLock { $0 += 1 }; return 2 } }
        try await until { pool.load >= 2 }
        running.cancel()
        queued.cancel()
        // Both answer while the first job is still blocked on the gate.
        for task in [running, queued] {
            switch await task.result {
            case .success: Issue.record("a cancelled caller got a result")
            case .failure(let error): #expect((error as? TwinError)?.code == .unavailable)
            }
        }
        #expect(pool.load >= 1)
        gate.signal()
        try await until { pool.load == 0 }
        #expect(ran.n.withLock { $0 } == 1)
        // Not cancelled, it is the same as run.
        #expect(try await pool.runUnlessCancelled { 3 } == 3)
    }
}

private final class Counted: Sendable {
    let n = Mutex(0)
}
