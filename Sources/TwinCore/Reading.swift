/// Nanoseconds since the Unix epoch (UTC). Every time in the domain uses it.
public typealias Nanos = Int64

public enum Time {
    public static let millisecond: Nanos = 1_000_000
    public static let second: Nanos = 1_000_000_000
    public static let minute: Nanos = 60 * second
    public static let hour: Nanos = 60 * minute
    public static let day: Nanos = 24 * hour
}

/// One measurement with its device and sensor named, as it arrives from outside.
public struct Reading: Sendable, Hashable {
    public var deviceID: String
    public var sensor: String
    public var time: Nanos
    public var value: Double

    public init(deviceID: String, sensor: String, time: Nanos, value: Double) {
        self.deviceID = deviceID
        self.sensor = sensor
        self.time = time
        self.value = value
    }
}

/// One measurement resolved against the registry: device and sensor by index.
/// This is the form the live state, the store and the engines pass around.
public struct Sample: Sendable, Hashable {
    /// Index of the device in the plant registry.
    public var device: Int32
    /// Index of the sensor in the device's `sensors`.
    public var sensor: Int32
    public var time: Nanos
    public var value: Double

    public init(device: Int32, sensor: Int32, time: Nanos, value: Double) {
        self.device = device
        self.sensor = sensor
        self.time = time
        self.value = value
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Time {
    /// Wall-clock time now (UTC).
    public static func now() -> Nanos {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Nanos(ts.tv_sec) * second + Nanos(ts.tv_nsec)
    }
}

extension Sample {
    /// The distinct devices of these samples (indices from 0 below `count`; others are left out),
    /// in the order they first appear. A flag per device, not a hash set: a batch of 10,000
    /// readings hashed 10,000 indices.
    public static func devices(_ samples: [Sample], below count: Int) -> [Int] {
        var seen = [Bool](repeating: false, count: Swift.max(0, count))
        var out: [Int] = []
        for s in samples {
            let d = Int(s.device)
            if d >= 0 && d < count && !seen[d] {
                seen[d] = true
                out.append(d)
            }
        }
        return out
    }
}
