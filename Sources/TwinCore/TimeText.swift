import Foundation

extension Time {
    /// `2026-11-29T08:00:00Z`, for messages people read.
    public static func iso(_ t: Nanos) -> String {
        Date(timeIntervalSince1970: Double(t) / 1e9).formatted(.iso8601)
    }
}
