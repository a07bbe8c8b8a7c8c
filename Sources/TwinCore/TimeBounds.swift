/// The times and durations twind accepts from outside, so that no arithmetic on them can
/// overflow: instants from 1970-01-01 to 2200-01-01 (UTC), durations within ±100 years.
/// Everything in between fits an `Int64` of nanoseconds with room for sums and differences.
public enum TimeBounds {
    /// 1970-01-01T00:00:00Z, in seconds since the epoch.
    public static let earliestSeconds: Int64 = 0
    /// 2200-01-01T00:00:00Z, in seconds since the epoch.
    public static let latestSeconds: Int64 = 7_258_118_400
    /// 100 years of 365.25 days, in seconds.
    public static let longestSeconds: Int64 = 3_155_760_000

    public static let earliest: Nanos = earliestSeconds * Time.second
    public static let latest: Nanos = latestSeconds * Time.second
    public static let longest: Nanos = longestSeconds * Time.second

    /// How the accepted range is named in messages.
    public static let instantRange = "1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z"
    public static let durationRange = "±100 years"

    /// `seconds` + `nanos` as nanoseconds since the epoch, or an error naming `field`.
    public static func instant(seconds: Int64, nanos: Int32, field: String) throws(TwinError) -> Nanos {
        guard (-999_999_999...999_999_999).contains(nanos) else {
            throw TwinError.invalidArgument("\(field): nanos \(nanos) is outside -999999999...999999999", reason: .timeOutOfRange).field(field)
        }
        guard (earliestSeconds...latestSeconds).contains(seconds) else {
            throw TwinError.invalidArgument("\(field): \(seconds) s since the epoch is outside the accepted range, \(instantRange)", reason: .timeOutOfRange).field(field)
        }
        let t = seconds * Time.second + Nanos(nanos)
        guard (earliest...latest).contains(t) else {
            throw TwinError.invalidArgument("\(field) is outside the accepted range, \(instantRange)", reason: .timeOutOfRange).field(field)
        }
        return t
    }

    /// `seconds` + `nanos` as nanoseconds, or an error naming `field`. Both parts must have the
    /// same sign (as google.protobuf.Duration requires).
    public static func duration(seconds: Int64, nanos: Int32, field: String) throws(TwinError) -> Nanos {
        guard (-999_999_999...999_999_999).contains(nanos) else {
            throw TwinError.invalidArgument("\(field): nanos \(nanos) is outside -999999999...999999999", reason: .timeOutOfRange).field(field)
        }
        guard (-longestSeconds...longestSeconds).contains(seconds) else {
            throw TwinError.invalidArgument("\(field): \(seconds) s is outside the accepted range, \(durationRange)", reason: .timeOutOfRange).field(field)
        }
        guard seconds == 0 || nanos == 0 || (seconds < 0) == (nanos < 0) else {
            throw TwinError.invalidArgument("\(field): seconds and nanos must have the same sign", reason: .timeOutOfRange).field(field)
        }
        return seconds * Time.second + Nanos(nanos)
    }

    /// Whether an instant already in nanoseconds is in the accepted range.
    public static func contains(_ t: Nanos) -> Bool { (earliest...latest).contains(t) }
}

extension Nanos {
    /// Nanoseconds from a number of seconds that may be anything a computation gives (NaN, ±Inf,
    /// huge): clamped to ±`Int64.max`, NaN as 0. For values computed here, never for input.
    public static func clamping(seconds: Double) -> Nanos {
        guard seconds.isFinite else { return seconds.isNaN ? 0 : (seconds > 0 ? .max : .min) }
        let n = seconds * 1e9
        if n >= 9.2e18 { return .max }
        if n <= -9.2e18 { return .min }
        return Nanos(n)
    }
}
