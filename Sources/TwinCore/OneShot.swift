import Synchronization

/// A value set once and awaited by any number of tasks, before or after it is set: the end of a
/// job queued on a `BlockingPool`, the outcome of an `Ingest` batch's store.
public final class OneShot<Value: Sendable>: Sendable {
    private let state = Mutex<(value: Value?, waiters: [CheckedContinuation<Void, Never>])>((nil, []))

    public init() {}

    /// Sets the value (the first call counts) and wakes everyone waiting for it.
    public func set(_ value: Value) {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            guard s.value == nil else { return [] }
            s.value = value
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// The value, once set.
    public func value() async -> Value {
        if let known = state.withLock({ $0.value }) { return known }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let set = state.withLock { s -> Bool in
                if s.value != nil { return true }
                s.waiters.append(continuation)
                return false
            }
            if set { continuation.resume() }
        }
        return state.withLock { $0.value! }
    }
}

extension OneShot where Value == Void {
    /// Returns once set.
    public func wait() async { await value() }
}
