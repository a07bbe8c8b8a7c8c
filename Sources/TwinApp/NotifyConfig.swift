import Foundation
import TwinCore
import Yams

/// Who hears of which alert (`--notify-config FILE`, YAML): channels, and routes from alerts to
/// channels.
///
///     channels:
///       - name: ops
///         type: webhook            # webhook (JSON, HMAC-SHA256 signed), slack, teams, email
///         url: https://hooks.example.com/twin
///         secret_file: /etc/twin/ops-hook.key    # the signing key (or secret_credential: NAME)
///         timeout: 10s
///         rate_limit: 20/h         # at most 20 messages an hour; beyond, one summary
///       - name: oncall-mail
///         type: email
///         server: smtp.example.com:587
///         tls: starttls            # starttls (default), tls, or none (loopback only)
///         username: twin
///         password_file: /etc/twin/smtp.pass
///         from: twin@example.com
///         to: [oncall@example.com]
///         to_users: [olga]         # twind users, by their account's e-mail address
///         to_roles: [admin]        # every enabled user of a role who has an address
///     routes:
///       - name: critical-pumps
///         severity: warning        # at least this severity
///         types: [pump]            # and sites, lines, devices, rules: empty matches all
///         events: [opened, resolved]
///         channels: [ops]
///         quiet_hours: { from: "22:00", to: "06:00", timezone: Europe/Berlin, except: critical }
///         escalate_after: 15m      # still open, not acknowledged: tell escalate_to as well
///         escalate_to: [oncall-mail]
///     retry_for: 24h               # a notice that cannot be delivered this long fails
///
/// Secrets come from files (or systemd credentials) and are never printed.
public struct NotifyConfig: Sendable {
    public enum Kind: String, Sendable, CaseIterable { case webhook, slack, teams, email }
    public enum MailTLS: String, Sendable, CaseIterable { case starttls, tls, none }

    public struct Channel: Sendable {
        public var name: String
        public var kind: Kind
        /// webhook, slack, teams.
        public var url: String = ""
        /// webhook: the HMAC-SHA256 key; email: the password. Never printed.
        public var secret: [UInt8] = []
        public var timeout: Nanos = 10 * Time.second
        /// At most `count` messages per `period`; nil: no limit.
        public var rateLimit: (count: Int, period: Nanos)?
        /// email.
        public var server = ""
        public var port = 587
        public var tls = MailTLS.starttls
        public var username = ""
        public var from = ""
        public var to: [String] = []
        /// email: twind's users to write to (their e-mail address in their account), and the
        /// roles whose every enabled user with an address is written to; resolved at each
        /// sending, so an address changed with `twin users set-email` counts at once.
        public var toUsers: [String] = []
        public var toRoles: [User.Role] = []
        /// email: the CA certificates (PEM) to trust for the mail server instead of the system's.
        public var caFile: String?
        /// Where the channel sends, safe to show: the URL's scheme and host, or the mail server.
        public var target: String {
            if kind == .email { return "smtp://\(server):\(port)" }
            guard let u = URLComponents(string: url), let host = u.host else { return "?" }
            return "\(u.scheme ?? "https")://\(host)\(u.port.map { ":\($0)" } ?? "")/…"
        }
    }

    public struct QuietHours: Sendable, Equatable {
        /// Minutes after midnight, local to `timeZone`.
        public var from: Int
        public var to: Int
        public var timeZone: TimeZone
        /// Alerts at least this severe are sent even in quiet hours; nil: none.
        public var except: Alert.Severity?

        /// When a notice made at `time` may go: `time` itself, or the end of the quiet hours.
        public func release(_ time: Nanos, severity: Alert.Severity) -> Nanos {
            if let except, severity >= except { return time }
            let offset = Nanos(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(time) / 1e9))) * Time.second
            let local = time + offset
            let minute = Int(((local / Time.minute) % 1440 + 1440) % 1440)
            let quiet = from <= to ? (minute >= from && minute < to) : (minute >= from || minute < to)
            guard quiet else { return time }
            let wait = Nanos((to - minute + 1440) % 1440)
            return time - ((local % Time.minute) + Time.minute) % Time.minute + wait * Time.minute
        }
    }

    public struct Route: Sendable {
        public var name: String
        public var severity: Alert.Severity = .info
        public var sites: Set<String> = []
        public var lines: Set<String> = []
        public var types: Set<String> = []
        public var devices: Set<String> = []
        public var rules: Set<String> = []
        public var events: Set<Notice.Event> = [.opened, .resolved]
        public var channels: [String]
        public var quietHours: QuietHours?
        public var escalateAfter: Nanos?
        public var escalateTo: [String] = []

        /// Whether an alert of this device falls under the route.
        public func matches(_ alert: Alert, site: String, line: String, type: String) -> Bool {
            guard alert.severity >= severity else { return false }
            if !sites.isEmpty && !sites.contains(site) { return false }
            if !lines.isEmpty && !lines.contains(line) { return false }
            if !types.isEmpty && !types.contains(type) { return false }
            if !devices.isEmpty && !devices.contains(alert.deviceID) { return false }
            if !rules.isEmpty && !rules.contains(where: { Self.names(alert.rule, $0) }) { return false }
            return true
        }

        /// An alert's rule ("bearing_temp.hot", "flow.sensor_fault_stuck", "no_data") is named by
        /// its whole name or by the rules file's name for it ("hot", "sensor_fault").
        static func names(_ alertRule: String, _ name: String) -> Bool {
            if alertRule == name { return true }
            let tail = alertRule.split(separator: ".", maxSplits: 1).last.map(String.init) ?? alertRule
            return tail == name || tail.hasPrefix(name + "_")
        }
    }

    public var channels: [Channel]
    public var routes: [Route]
    public var retryFor: Nanos = 24 * Time.hour
    /// Names this configuration (a hash of its text, "n" and 16 hex digits).
    public let version: String
    /// The file's path, or "none" when there is no file.
    public var source: String
    /// The text it was read from (secrets are only named in it, by file or credential).
    public var text = ""

    public static let none = NotifyConfig(channels: [], routes: [], version: "none", source: "none")

    init(channels: [Channel], routes: [Route], version: String, source: String) {
        self.channels = channels
        self.routes = routes
        self.version = version
        self.source = source
    }

    public func channel(_ name: String) -> Channel? { channels.first { $0.name == name } }

    // MARK: Reading

    static let topKeys: Set<String> = ["channels", "routes", "retry_for"]
    static let channelKeys: Set<String> = [
        "name", "type", "url", "secret_file", "secret_credential", "password_file", "password_credential", "timeout", "rate_limit",
        "server", "tls", "username", "from", "to", "to_users", "to_roles", "ca_file",
    ]
    static let routeKeys: Set<String> = [
        "name", "severity", "sites", "lines", "types", "devices", "rules", "events", "channels", "quiet_hours", "escalate_after", "escalate_to",
    ]

    /// Reads and checks a notifications file; every problem names the line. `environment` gives
    /// `CREDENTIALS_DIRECTORY` for `*_credential` secrets.
    public static func load(path: String, environment: [String: String]) throws(TwinError) -> NotifyConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw .invalidArgument("notifications \(path): cannot read it") }
        guard data.count <= AlertRules.maxText, let text = String(data: data, encoding: .utf8) else {
            throw .invalidArgument("notifications \(path): not UTF-8 text of at most 1 MiB")
        }
        return try parse(text, source: path, environment: environment)
    }

    public static func parse(_ text: String, source: String, environment: [String: String] = [:]) throws(TwinError) -> NotifyConfig {
        let root: Yams.Node?
        do { root = try Yams.compose(yaml: text) } catch {
            let said = "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
            throw .invalidArgument("notifications \(source): not YAML (\(String(said.prefix(200))))")
        }
        func fail(_ node: Yams.Node?, _ problem: String) -> TwinError {
            .invalidArgument("notifications \(source)\(node?.mark.map { ", line \($0.line)" } ?? ""): \(problem)")
        }
        var config = NotifyConfig(channels: [], routes: [], version: "n" + String(format: "%016llx", stableHash(text)), source: source)
        config.text = text
        guard let root else { return config }
        guard let top = root.mapping else { throw fail(root, "expected a mapping of channels, routes, retry_for") }
        for key in top.keys where !topKeys.contains(key.string ?? "") {
            throw fail(key, "unknown key '\(AlertRules.clip(key.string ?? "?"))' (known: \(topKeys.sorted().joined(separator: ", ")))")
        }
        if let n = top["retry_for"] { config.retryFor = try AlertRules.duration(n, "retry_for", fail) }
        if let list = top["channels"] {
            guard let items = list.sequence else { throw fail(list, "channels: expected a list (- name: …)") }
            for item in items {
                let c = try channel(item, fail: fail, environment: environment)
                guard config.channel(c.name) == nil else { throw fail(item, "channel '\(c.name)' is defined twice") }
                config.channels.append(c)
            }
        }
        if let list = top["routes"] {
            guard let items = list.sequence else { throw fail(list, "routes: expected a list (- name: …)") }
            for item in items {
                let r = try route(item, fail: fail)
                guard !config.routes.contains(where: { $0.name == r.name }) else { throw fail(item, "route '\(r.name)' is defined twice") }
                for name in r.channels + r.escalateTo where config.channel(name) == nil {
                    throw fail(item, "route '\(r.name)': no channel is named '\(AlertRules.clip(name))'")
                }
                config.routes.append(r)
            }
        }
        return config
    }

    static func strings(_ n: Yams.Node, _ what: String, _ fail: (Yams.Node?, String) -> TwinError) throws(TwinError) -> [String] {
        if let s = n.scalar?.string { return [s] }
        guard let list = n.sequence, list.count <= 10_000 else { throw fail(n, "\(what) is a list of names") }
        var result: [String] = []
        for item in list {
            guard let s = item.scalar?.string, !s.isEmpty, s.utf8.count <= 256 else { throw fail(item, "\(what): a name of 1–256 characters") }
            result.append(s)
        }
        return result
    }

    static func secret(file: String, _ n: Yams.Node, _ fail: (Yams.Node?, String) -> TwinError) throws(TwinError) -> [UInt8] {
        var st = stat()
        guard stat(file, &st) == 0, let data = FileManager.default.contents(atPath: file) else { throw fail(n, "cannot read the secret file \(file)") }
        guard st.st_mode & 0o077 == 0 else {
            throw fail(n, "the secret file \(file) can be read by other users (mode \(String(st.st_mode & 0o777, radix: 8))); run chmod 600 on it")
        }
        var bytes = Array(data)
        while let last = bytes.last, last == 10 || last == 13 { bytes.removeLast() }
        guard !bytes.isEmpty, bytes.count <= 4096 else { throw fail(n, "the secret file \(file) is empty or longer than 4 KiB") }
        return bytes
    }

    static func channel(_ node: Yams.Node, fail: (Yams.Node?, String) -> TwinError, environment: [String: String]) throws(TwinError) -> Channel {
        guard let m = node.mapping else { throw fail(node, "a channel is a mapping (name, type, …)") }
        for key in m.keys where !channelKeys.contains(key.string ?? "") {
            throw fail(key, "unknown channel key '\(AlertRules.clip(key.string ?? "?"))' (known: \(channelKeys.sorted().joined(separator: ", ")))")
        }
        let name = try AlertRules.name(m, node, "channel", fail)
        let at = "channel '\(name)'"
        guard let t = m["type"], let kind = t.scalar.flatMap({ Kind(rawValue: $0.string) }) else {
            throw fail(m["type"] ?? node, "\(at): type is one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var c = Channel(name: name, kind: kind)
        for (fileKey, credentialKey) in [("secret_file", "secret_credential"), ("password_file", "password_credential")] {
            if let n = m[fileKey] {
                guard let path = n.scalar?.string, !path.isEmpty else { throw fail(n, "\(at): \(fileKey) is a path") }
                c.secret = try secret(file: path, n, fail)
            }
            if let n = m[credentialKey] {
                guard let cred = n.scalar?.string, !cred.isEmpty, !cred.contains("/") else { throw fail(n, "\(at): \(credentialKey) is a credential name") }
                guard let dir = environment["CREDENTIALS_DIRECTORY"] else {
                    throw fail(n, "\(at): \(credentialKey) needs systemd's CREDENTIALS_DIRECTORY (LoadCredential=)")
                }
                c.secret = try secret(file: dir + "/" + cred, n, fail)
            }
        }
        if let n = m["timeout"] {
            c.timeout = try AlertRules.duration(n, "\(at): timeout", fail)
            guard c.timeout >= Time.second, c.timeout <= 5 * Time.minute else { throw fail(n, "\(at): timeout is between 1s and 5m") }
        }
        if let n = m["rate_limit"] {
            let parts = (n.scalar?.string ?? "").split(separator: "/")
            guard parts.count == 2, let count = Int(parts[0]), count >= 1, count <= 100_000,
                  let period = DurationText.parse(parts[1].first?.isNumber == true ? String(parts[1]) : "1" + parts[1]), period >= Time.second, period <= 7 * Time.day
            else { throw fail(n, "\(at): rate_limit is a count per period, such as 20/h or 5/10m") }
            c.rateLimit = (count, period)
        }
        switch kind {
        case .webhook, .slack, .teams:
            guard let n = m["url"], let url = n.scalar?.string, let u = URLComponents(string: url), ["http", "https"].contains(u.scheme ?? ""),
                  u.host?.isEmpty == false, url.utf8.count <= 2048
            else { throw fail(m["url"] ?? node, "\(at): url is an http:// or https:// address") }
            c.url = url
            for key in ["server", "tls", "username", "from", "to", "ca_file"] where m[key] != nil { throw fail(m[key], "\(at): \(key) is for email channels") }
        case .email:
            guard let n = m["server"], let s = n.scalar?.string, let hp = try? NetworkAddress.parse(s.contains(":") ? s : s + ":587"),
                  case .tcp(let host, let port) = hp
            else { throw fail(m["server"] ?? node, "\(at): server is HOST or HOST:PORT of the mail server") }
            c.server = host
            c.port = port
            if let t = m["tls"] {
                guard let v = t.scalar.flatMap({ MailTLS(rawValue: $0.string) }) else { throw fail(t, "\(at): tls is starttls, tls or none") }
                c.tls = v
                if v == .none && !["127.0.0.1", "::1", "localhost"].contains(host) {
                    throw fail(t, "\(at): tls: none only to a mail server on loopback (the password and alerts would cross the network in clear)")
                }
            }
            if let u = m["username"] { c.username = u.scalar?.string ?? "" }
            if let n = m["ca_file"] {
                guard let path = n.scalar?.string, FileManager.default.isReadableFile(atPath: path) else { throw fail(n, "\(at): ca_file is a readable PEM file") }
                c.caFile = path
            }
            if !c.username.isEmpty && c.secret.isEmpty { throw fail(node, "\(at): a username needs password_file or password_credential") }
            guard let f = m["from"], let from = f.scalar?.string, from.contains("@"), !from.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                throw fail(m["from"] ?? node, "\(at): from is an e-mail address")
            }
            c.from = from
            guard m["to"] != nil || m["to_users"] != nil || m["to_roles"] != nil else {
                throw fail(node, "\(at): to (addresses), to_users (twind users) or to_roles (viewer, operator, admin) names the recipients")
            }
            if let t = m["to"] {
                c.to = try strings(t, "\(at): to", fail)
                for address in c.to where !address.contains("@") || address.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "<" || $0 == ">" }) {
                    throw fail(t, "\(at): '\(AlertRules.clip(address))' is not an e-mail address")
                }
            }
            if let n = m["to_users"] { c.toUsers = try strings(n, "\(at): to_users", fail) }
            if let n = m["to_roles"] {
                for name in try strings(n, "\(at): to_roles", fail) {
                    guard let role = User.Role(rawValue: name), User.Role.people.contains(role) else {
                        throw fail(n, "\(at): to_roles: '\(AlertRules.clip(name))' is not a role (viewer, operator, admin)")
                    }
                    c.toRoles.append(role)
                }
            }
            if m["url"] != nil { throw fail(m["url"], "\(at): url is for webhook, slack and teams channels") }
        }
        if kind != .webhook && kind != .email && !c.secret.isEmpty { throw fail(node, "\(at): \(kind.rawValue) webhooks are not signed; the URL is the secret") }
        return c
    }

    static func route(_ node: Yams.Node, fail: (Yams.Node?, String) -> TwinError) throws(TwinError) -> Route {
        guard let m = node.mapping else { throw fail(node, "a route is a mapping (name, channels, …)") }
        for key in m.keys where !routeKeys.contains(key.string ?? "") {
            throw fail(key, "unknown route key '\(AlertRules.clip(key.string ?? "?"))' (known: \(routeKeys.sorted().joined(separator: ", ")))")
        }
        let name = try AlertRules.name(m, node, "route", fail)
        let at = "route '\(name)'"
        guard let ch = m["channels"] else { throw fail(node, "\(at): channels lists where it sends") }
        var r = Route(name: name, channels: try strings(ch, "\(at): channels", fail))
        if let n = m["severity"] { r.severity = try AlertRules.severity(n, "\(at): severity", fail) }
        if let n = m["sites"] { r.sites = Set(try strings(n, "\(at): sites", fail)) }
        if let n = m["lines"] { r.lines = Set(try strings(n, "\(at): lines", fail)) }
        if let n = m["types"] { r.types = Set(try strings(n, "\(at): types", fail)) }
        if let n = m["devices"] { r.devices = Set(try strings(n, "\(at): devices", fail)) }
        if let n = m["rules"] { r.rules = Set(try strings(n, "\(at): rules", fail)) }
        if let n = m["events"] {
            var events: Set<Notice.Event> = []
            for s in try strings(n, "\(at): events", fail) {
                guard let e = Notice.Event(rawValue: s), e != .escalated, e != .test else { throw fail(n, "\(at): events are opened, acknowledged, resolved") }
                events.insert(e)
            }
            r.events = events
        }
        if let n = m["escalate_after"] {
            r.escalateAfter = try AlertRules.duration(n, "\(at): escalate_after", fail)
            guard let to = m["escalate_to"] else { throw fail(n, "\(at): escalate_after needs escalate_to") }
            r.escalateTo = try strings(to, "\(at): escalate_to", fail)
        } else if let to = m["escalate_to"] {
            throw fail(to, "\(at): escalate_to needs escalate_after")
        }
        if let q = m["quiet_hours"] {
            guard let qm = q.mapping else { throw fail(q, "\(at): quiet_hours is a mapping of from, to, timezone, except") }
            func clock(_ key: String) throws(TwinError) -> Int {
                let n = qm[key]
                let parts = (n?.scalar?.string ?? "").split(separator: ":")
                guard parts.count == 2, let h = Int(parts[0]), let mi = Int(parts[1]), (0..<24).contains(h), (0..<60).contains(mi) else {
                    throw fail(n ?? q, "\(at): quiet_hours.\(key) is a time of day such as 22:00")
                }
                return h * 60 + mi
            }
            var zone = TimeZone(identifier: "UTC")!
            if let z = qm["timezone"] {
                guard let s = z.scalar?.string, let tz = TimeZone(identifier: s) else { throw fail(z, "\(at): quiet_hours.timezone is a zone such as Europe/Berlin or UTC") }
                zone = tz
            }
            var hours = QuietHours(from: try clock("from"), to: try clock("to"), timeZone: zone)
            if let e = qm["except"] { hours.except = try AlertRules.severity(e, "\(at): quiet_hours.except", fail) }
            guard hours.from != hours.to else { throw fail(q, "\(at): quiet_hours from and to differ") }
            r.quietHours = hours
        }
        return r
    }
}
