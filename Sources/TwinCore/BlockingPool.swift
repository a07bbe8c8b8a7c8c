import Dispatch
import Synchronization

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
    private let queues: [DispatchQueue]
    private let state: Mutex<[Int]>  // jobs queued or running, per queue

    public init(name: String, workers: Int, queueLimit: Int, maxWait: Duration = .seconds(5)) {
        self.name = name
        self.workers = max(1, workers)
        self.queueLimit = queueLimit
        self.maxWait = maxWait
        queues = (0..<max(1, workers)).map { DispatchQueue(label: "twin.\(name).\($0)") }
        state = Mutex(Array(repeating: 0, count: max(1, workers)))
    }

    /// Jobs queued or running now.
    public var load: Int { state.withLock { $0.reduce(0, +) } }

    public func run<T: Sendable>(_ work: @escaping @Sendable () throws(TwinError) -> T) async throws(TwinError) -> T {
        let admitted: Int? = state.withLock { pending in
            guard pending.reduce(0, +) < workers + queueLimit else { return nil }
            let i = pending.indices.min { pending[$0] < pending[$1] }!
            pending[i] += 1
            return i
        }
        guard let index = admitted else {
            throw .init(.resourceExhausted, "\(name) is busy (\(workers) running, \(queueLimit) waiting, the most it takes); try again in a moment")
        }
        let queued = ContinuousClock.now
        let limit = maxWait
        let name = self.name
        let result: Result<T, TwinError> = await withCheckedContinuation { continuation in
            queues[index].async {
                let outcome: Result<T, TwinError>
                if ContinuousClock.now - queued > limit {
                    outcome = .failure(.init(.resourceExhausted, "\(name) is busy: the request waited more than \(limit) for its turn; try again in a moment"))
                } else {
                    do throws(TwinError) { outcome = .success(try work()) } catch { outcome = .failure(error) }
                }
                self.state.withLock { $0[index] -= 1 }
                continuation.resume(returning: outcome)
            }
        }
        return try result.get()
    }
}
