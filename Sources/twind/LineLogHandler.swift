import Foundation
import Logging
import TwinServer

/// One log line per event on stderr. Text: `TIME LEVEL message key=value …`; under journald the
/// line starts with the syslog priority (`<6>`) instead of a time, so levels survive. JSON: one
/// object per line.
struct LineLogHandler: LogHandler {
    let label: String
    let json: Bool
    let journald: Bool
    /// twind's level, shared by every logger (SIGHUP may change it), unless one sets its own.
    let shared: LogLevelSwitch
    var own: Logger.Level?
    var logLevel: Logger.Level {
        get { own ?? shared.level }
        set { own = newValue }
    }
    var metadata: Logger.Metadata = [:]

    init(label: String, json: Bool, journald: Bool, level: LogLevelSwitch) {
        self.label = label
        self.json = json
        self.journald = journald
        shared = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let line: String
        if json {
            var object: [String: String] = [
                "time": Self.timestamp(), "level": event.level.rawValue, "msg": "\(event.message)", "logger": label,
            ]
            for (k, v) in all { object[k] = "\(v)" }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            line = String(decoding: data, as: UTF8.self)
        } else {
            let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.quote("\($0.value)"))" }.joined(separator: " ")
            let head = journald ? "<\(Self.priority(event.level))>" : "\(Self.timestamp()) \(event.level.rawValue)"
            line = "\(head) \(event.message)\(fields.isEmpty ? "" : " " + fields)"
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    static func quote(_ s: String) -> String {
        s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\\\"") + "\"" : s
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func timestamp() -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date())
    }
}
