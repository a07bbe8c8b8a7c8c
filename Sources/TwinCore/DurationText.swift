/// Parses and prints durations the way people type them: `250ms`, `5s`, `15m`, `24h`, `30d`,
/// `1h30m`. A bare number is seconds.
public enum DurationText {
    public static func parse(_ text: String) -> Nanos? {
        let s = text.trimmingCharacters(in: " ")
        if s.isEmpty { return nil }
        if let seconds = Double(s) { return seconds.isFinite && seconds >= 0 && seconds * 1e9 < 9.2e18 ? Nanos(seconds * 1e9) : nil }
        var total: Double = 0
        var number = ""
        var unit = ""
        func flush() -> Bool {
            guard let n = Double(number), n.isFinite, n >= 0 else { return false }
            let scale: Double
            switch unit {
            case "ns": scale = 1
            case "us", "µs": scale = 1e3
            case "ms": scale = 1e6
            case "s": scale = 1e9
            case "m": scale = 60e9
            case "h": scale = 3600e9
            case "d": scale = 86400e9
            case "w": scale = 7 * 86400e9
            default: return false
            }
            total += n * scale
            number = ""
            unit = ""
            return true
        }
        for ch in s {
            if ch.isNumber || ch == "." {
                if !unit.isEmpty { guard flush() else { return nil } }
                number.append(ch)
            } else if ch.isLetter {
                if number.isEmpty { return nil }
                unit.append(ch)
            } else {
                return nil
            }
        }
        guard flush() else { return nil }
        return total < 9.2e18 ? Nanos(total) : nil
    }

    /// A short human form: `450ms`, `12s`, `5m`, `3h20m`, `2d4h`.
    public static func format(_ nanos: Nanos) -> String {
        let negative = nanos < 0
        // Int64.min has no positive counterpart: its magnitude is formatted as UInt64 would be.
        let n = nanos == .min ? Nanos.max : (negative ? -nanos : nanos)
        let s: String
        if n < Time.second { s = "\(n / 1_000_000)ms" }
        else if n < Time.minute { s = "\(n / Time.second)s" }
        else if n < Time.hour { s = "\(n / Time.minute)m" + (n % Time.minute >= Time.second ? "\(n % Time.minute / Time.second)s" : "") }
        else if n < Time.day { s = "\(n / Time.hour)h" + (n % Time.hour >= Time.minute ? "\(n % Time.hour / Time.minute)m" : "") }
        else { s = "\(n / Time.day)d" + (n % Time.day >= Time.hour ? "\(n % Time.day / Time.hour)h" : "") }
        return negative ? "-" + s : s
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        var sub = Substring(self)
        while sub.first == set { sub = sub.dropFirst() }
        while sub.last == set { sub = sub.dropLast() }
        return String(sub)
    }
}
