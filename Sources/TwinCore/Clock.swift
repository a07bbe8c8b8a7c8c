import Synchronization

/// Where policies read the time: the wall clock in twind, a hand-moved one in tests.
public protocol TwinClock: Sendable {
    func now() -> Nanos
}

/// The wall clock.
public struct SystemClock: TwinClock {
    public init() {}
    public func now() -> Nanos { Time.now() }
}

/// A clock that moves only when told: policies are tested with it in milliseconds, no sleeps.
public final class ManualClock: TwinClock {
    private let time: Mutex<Nanos>
    public init(_ start: Nanos = 1_800_000_000 * Time.second) { time = Mutex(start) }
    public func now() -> Nanos { time.withLock { $0 } }
    public func advance(by delta: Nanos) { time.withLock { $0 += delta } }
    public func set(_ t: Nanos) { time.withLock { $0 = t } }
}

extension Duration {
    /// The duration in seconds, for figures and metrics.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
