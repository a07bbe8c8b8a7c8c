import Configuration
import Prometheus
import Logging
import Foundation
import TwinCore
import TwinServer
import TwinGateway
import TwinStore
import TwinApp

/// One configuration key, looked up in flags, then `TWIND_*` environment, then the config file
/// (then the default the caller gives), through apple/swift-configuration: one `ConfigReader`
/// over three providers in that order. Every key is read as a list (flags repeat, environment
/// values are comma-separated, file values may be arrays); a single-valued key takes the last.
/// Values of secret-looking environment variables (passwords, tokens, keys) are marked secret,
/// so the library redacts them wherever it reports an access.
struct Settings {
    let environment: [String: String]
    let filePath: String?
    /// The layers in precedence order, each named as an error message names it.
    let layers: [(name: (String) -> String, reader: ConfigReader)]
    /// All layers at once: the value in force.
    let reader: ConfigReader

    /// Reads the config file named by `--config` or `TWIND_CONFIG`, if any.
    init(flags: [String: [String]], environment: [String: String]) throws(ConfigError) {
        self.environment = environment
        let path = flags["config"]?.last ?? environment["TWIND_CONFIG"]
        filePath = path
        var file: [String: [String]] = [:]
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigError("config: cannot read config file \(path)")
            }
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ConfigError("config: \(path) is not a JSON object of settings")
            }
            let known = Set(Self.keys)
            if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
                throw ConfigError("config: \(path) has unknown key '\(unknown)' (known: \(Self.keys.joined(separator: ", ")))")
            }
            for (key, v) in object {
                switch v {
                case let array as [Any]: file[key] = array.map { "\($0)" }
                case let b as Bool: file[key] = [b ? "on" : "off"]
                default: file[key] = ["\(v)"]
                }
            }
        }
        func provider(_ name: String, _ values: [String: [String]]) -> InMemoryProvider {
            InMemoryProvider(name: name, values: Dictionary(uniqueKeysWithValues: values.filter { !$0.value.isEmpty }.map {
                (AbsoluteConfigKey([$0.key]), ConfigValue(.stringArray($0.value), isSecret: false))
            }))
        }
        let variables = environment.filter { $0.key.hasPrefix("TWIND_") && !$0.value.isEmpty }
        let env = EnvironmentVariablesProvider(
            environmentVariables: variables,
            secretsSpecifier: .dynamic { name, _ in ["PASSWORD", "TOKEN", "SECRET", "KEY"].contains { name.contains($0) } && name != "TWIND_KEY_FILE" }
        ).prefixKeys(with: "twind")
        let flagLayer = provider("flags", flags)
        let fileLayer = provider(path ?? "config file", file)
        layers = [
            ({ "--\($0)" }, ConfigReader(provider: flagLayer)),
            ({ Self.envName($0) }, ConfigReader(provider: env)),
            ({ "\($0) in \(path ?? "")" }, ConfigReader(provider: fileLayer)),
        ]
        reader = ConfigReader(providers: [flagLayer, env, fileLayer])
    }

    static func envName(_ key: String) -> String {
        "TWIND_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// The values for a key and where they came from, or nil if it is not set anywhere.
    func values(_ key: String) -> (values: [String], source: String)? {
        guard let values = reader.stringArray(forKey: ConfigKey([key])), !values.isEmpty else { return nil }
        let source = layers.first { $0.reader.stringArray(forKey: ConfigKey([key])) != nil }.map { $0.name(key) } ?? key
        return (values.map { $0.trimmingCharacters(in: .whitespaces) }, source)
    }

    func string(_ key: String) -> String? { values(key)?.values.last }

    func parse<T>(_ key: String, expected: String, _ convert: (String) -> T?) throws(ConfigError) -> T? {
        guard let (values, source) = values(key), let text = values.last else { return nil }
        guard let value = convert(text) else {
            throw ConfigError("config: invalid value '\(text)' for \(key) (from \(source)): expected \(expected)")
        }
        return value
    }

    func duration(_ key: String) throws(ConfigError) -> Nanos? {
        try parse(key, expected: "a duration such as 500ms, 5s, 15m, 24h or 30d", DurationText.parse)
    }

    func int(_ key: String, range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        try parse(key, expected: "a whole number from \(range.lowerBound) to \(range.upperBound)") { Int($0).flatMap { range.contains($0) ? $0 : nil } }
    }

    func logLevel(_ key: String) throws(ConfigError) -> Logger.Level? {
        try parse(key, expected: "trace|debug|info|notice|warning|error|critical") { Logger.Level(rawValue: $0.lowercased()) }
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        try parse(key, expected: "on or off") { text -> Bool? in
            switch text.lowercased() {
            case "on", "true", "yes", "1": true
            case "off", "false", "no", "0": false
            default: nil
            }
        }
    }

    /// Every key the config file may hold; flags and environment variables carry the same names
    /// (documented on the flags in Twind.swift).
    static let keys = [
        "config", "listen", "data-dir", "simulator", "devices", "seed", "interval", "backfill", "fleet",
        "heartbeat", "max-future-skew", "late-window", "log-level", "log-format", "key-file", "durability",
        "raw-retention", "rollup-retention", "access-token-lifetime", "tls-cert", "tls-key", "tls-client-ca",
        "retrain-interval", "metrics-listen", "http-listen", "rpc-log-level", "audit-retention", "refresh-token-retention",
        "mqtt-broker", "mqtt-client-id", "mqtt-username", "mqtt-password-file", "mqtt-ca", "mqtt-cert", "mqtt-key",
        "mqtt-protocol", "mqtt-mapping", "sparkplug-host-id", "sparkplug-group", "sparkplug-reorder-timeout",
        "alert-rules", "notify-config", "opcua-config",
    ]

    /// The MQTT connection and the Sparkplug B host on it, if `mqtt-broker` is set.
    func gatewayConfiguration() throws(ConfigError) -> GatewayConfiguration? {
        let hostID = string("sparkplug-host-id")
        guard let broker = string("mqtt-broker") else {
            if hostID != nil { throw ConfigError("config: sparkplug-host-id needs mqtt-broker (the broker the edge nodes publish to)") }
            if string("mqtt-mapping") != nil { throw ConfigError("config: mqtt-mapping needs mqtt-broker") }
            return nil
        }
        var host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        host = String(host.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) || $0 == "-" ? Character($0) : "_" })
        let clientID = string("mqtt-client-id") ?? "twind-\(host)"
        var mqtt: MQTTSettings
        do {
            mqtt = try MQTTSettings.parse(broker: broker, clientID: clientID)
        } catch {
            throw ConfigError("config: invalid mqtt-broker: \(error.message)")
        }
        mqtt.username = string("mqtt-username")
        // The password from a file or a systemd credential, never from a flag value.
        var passwordFile = string("mqtt-password-file")
        if passwordFile == nil, let dir = environment["CREDENTIALS_DIRECTORY"], access(dir + "/mqtt-password", R_OK) == 0 {
            passwordFile = dir + "/mqtt-password"
        }
        if let passwordFile {
            guard let data = FileManager.default.contents(atPath: passwordFile), let text = String(data: data, encoding: .utf8) else {
                throw ConfigError("config: invalid mqtt-password-file: cannot read \(passwordFile)")
            }
            var password = Substring(text)
            while password.last == "\n" || password.last == "\r" { password = password.dropLast() }
            mqtt.password = String(password)
            if mqtt.username == nil { throw ConfigError("config: mqtt-password-file needs mqtt-username") }
        }
        mqtt.caFile = string("mqtt-ca")
        mqtt.certFile = string("mqtt-cert")
        mqtt.keyFile = string("mqtt-key")
        if (mqtt.certFile == nil) != (mqtt.keyFile == nil) { throw ConfigError("config: mqtt-cert and mqtt-key go together") }
        for (name, path) in [("mqtt-ca", mqtt.caFile), ("mqtt-cert", mqtt.certFile), ("mqtt-key", mqtt.keyFile)] {
            if let path {
                if !mqtt.tls { throw ConfigError("config: \(name) needs an mqtts:// broker") }
                if access(path, R_OK) != 0 { throw ConfigError("config: invalid \(name): cannot read \(path) (\(String(cString: strerror(errno))))") }
            }
        }
        mqtt.version = try parse("mqtt-protocol", expected: "3.1.1 or 5") { MQTTSettings.Version(rawValue: $0 == "5.0" ? "5" : $0) } ?? .v311
        var mapping: TopicMapping?
        if let file = string("mqtt-mapping") {
            do {
                mapping = try TopicMapping.load(path: file)
            } catch {
                throw ConfigError("config: invalid mqtt-mapping: \(error.message)")
            }
        }
        if hostID == nil && mapping == nil {
            throw ConfigError("config: mqtt-broker needs something to read: sparkplug-host-id (Sparkplug B) and/or mqtt-mapping (plain topics with JSON)")
        }
        var sparkplug: SparkplugHost.Options?
        if let hostID {
            guard !hostID.isEmpty, hostID.utf8.count <= 128, !hostID.contains(where: { "/+#".contains($0) }) else {
                throw ConfigError("config: invalid sparkplug-host-id '\(hostID.prefix(80))': 1–128 characters, none of / + #")
            }
            var options = SparkplugHost.Options(hostID: hostID)
            options.groups = values("sparkplug-group")?.values ?? []
            for g in options.groups where g.isEmpty || g.contains(where: { "/+#".contains($0) }) {
                throw ConfigError("config: invalid sparkplug-group '\(g.prefix(80))': a group id, none of / + #")
            }
            if let timeout = try duration("sparkplug-reorder-timeout") {
                guard timeout >= 10 * Time.millisecond, timeout <= Time.minute else { throw ConfigError("config: invalid value for sparkplug-reorder-timeout: from 10ms to 1m") }
                options.reorderTimeout = timeout
            }
            sparkplug = options
        }
        return GatewayConfiguration(mqtt: mqtt, sparkplug: sparkplug, mapping: mapping)
    }

    /// Builds the daemon configuration; the first bad value stops with a line naming its key.
    func daemonConfiguration() throws(ConfigError) -> DaemonConfiguration {
        let dataDir = string("data-dir") ?? DaemonConfiguration.defaultDataDirectory(environment: environment)
        var c = DaemonConfiguration(dataDirectory: dataDir)
        if let (values, source) = values("listen") {
            do {
                c.listen = try values.map { text throws(TwinError) in try NetworkAddress.parse(text) }
            } catch {
                throw ConfigError("config: invalid listen (from \(source)): \(error.message)")
            }
        }
        c.simulator = try bool("simulator") ?? true
        c.simulatedDevices = try int("devices", range: 0...100_000) ?? 12
        c.seed = try parse("seed", expected: "a whole number ≥ 0") { UInt64($0) } ?? 1
        c.interval = try duration("interval") ?? 5 * Time.second
        if c.interval < 100 * Time.millisecond {
            throw ConfigError("config: invalid value for interval: at least 100ms is needed")
        }
        c.backfill = try duration("backfill") ?? 0
        c.fleetFile = string("fleet")
        c.heartbeat = try duration("heartbeat") ?? 5 * Time.second
        if let skew = try duration("max-future-skew") { c.plant.maxFutureSkew = skew }
        if let late = try duration("late-window") { c.plant.lateWindow = late }
        c.keyFile = string("key-file")
        c.durability = try parse("durability", expected: "full or normal") { Durability(rawValue: $0.lowercased()) } ?? .full
        if let raw = try duration("raw-retention") { c.history.rawRetention = raw }
        if let rollups = try duration("rollup-retention") { c.history.rollupRetention = rollups }
        if c.history.rawRetention < Time.hour || c.history.rollupRetention < c.history.rawRetention {
            throw ConfigError("config: invalid retention: raw-retention must be at least 1h and rollup-retention at least raw-retention")
        }
        if let audit = try duration("audit-retention") {
            guard audit >= Time.day else { throw ConfigError("config: invalid value for audit-retention: at least 1d") }
            c.auditRetention = audit
        }
        if let tokens = try duration("refresh-token-retention") {
            guard tokens >= Time.hour else { throw ConfigError("config: invalid value for refresh-token-retention: at least 1h") }
            c.refreshTokenRetention = tokens
        }
        if let lifetime = try duration("access-token-lifetime") {
            guard lifetime >= 10 * Time.second && lifetime <= Time.day else {
                throw ConfigError("config: invalid value for access-token-lifetime: from 10s to 24h")
            }
            c.accessTokenLifetime = lifetime
        }
        let tls = (string("tls-cert"), string("tls-key"), string("tls-client-ca"))
        switch tls {
        case (nil, nil, nil):
            break
        case (let cert?, let key?, let ca):
            for (name, path) in [("tls-cert", cert), ("tls-key", key), ("tls-client-ca", ca)] {
                if let path, access(path, R_OK) != 0 {
                    throw ConfigError("config: invalid \(name): cannot read \(path) (\(String(cString: strerror(errno))))")
                }
            }
            c.tls = .init(certificate: cert, privateKey: key, clientCA: ca)
        default:
            throw ConfigError("config: invalid TLS settings: tls-cert and tls-key go together (and tls-client-ca needs them)")
        }
        if let listen = string("metrics-listen") {
            guard case .tcp(let host, let port)? = try? NetworkAddress.parse(listen) else {
                throw ConfigError("config: invalid metrics-listen '\(listen)': HOST:PORT, e.g. 127.0.0.1:9464")
            }
            c.metrics = (host, port, PrometheusCollectorRegistry())
        }
        let http = string("http-listen") ?? "127.0.0.1:8947"
        if http.lowercased() != "off" {
            guard case .tcp(let host, let port)? = try? NetworkAddress.parse(http) else {
                throw ConfigError("config: invalid http-listen '\(http)': HOST:PORT (e.g. 127.0.0.1:8947), or off")
            }
            c.console = .init(host: host, port: port)
        }
        c.rpcLogLevel = try logLevel("rpc-log-level") ?? .info
        if let every = try duration("retrain-interval") {
            guard every >= Time.hour else { throw ConfigError("config: invalid value for retrain-interval: at least 1h") }
            c.retrainInterval = every
        }
        c.gateways = try gatewayConfiguration()
        if let file = string("opcua-config") {
            do {
                c.opcua = try OPCUAConfig.load(path: file)
            } catch {
                throw ConfigError("config: invalid opcua-config: \(error.message)")
            }
        }
        if let file = string("alert-rules") {
            guard FileManager.default.fileExists(atPath: file) else { throw ConfigError("config: invalid alert-rules: there is no file \(file)") }
            do {
                _ = try AlertRules.load(path: file, defaultHold: c.alertMinimumDuration, defaultClear: c.alertClearTime)
            } catch {
                throw ConfigError("config: invalid alert-rules: \(error.message)")
            }
            c.alertRulesFile = file
        }
        if let file = string("notify-config") {
            do {
                _ = try NotifyConfig.load(path: file, environment: environment)
            } catch {
                throw ConfigError("config: invalid notify-config: \(error.message)")
            }
            c.notifyConfigFile = file
        }
        c.environment = environment
        return c
    }
}

struct ConfigError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
