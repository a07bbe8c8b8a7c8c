import CHardening
import Prometheus
import Metrics
import BuildInfo
import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TwinCore
import TwinServer

/// `twind`: the twin daemon, and the operator's store commands.
@main
struct Twind: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "twind",
        abstract: "The twin daemon: a live digital twin of a plant, served over gRPC.",
        discussion: "Without a subcommand, twind serves (twind serve --help lists its settings).",
        version: BuildInfo.description,
        subcommands: [Serve.self, Verify.self, Backup.self, Restore.self, Keys.self],
        defaultSubcommand: Serve.self)
}

/// `twind serve`: serves gRPC on TCP and a Unix socket, runs the simulated plant.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the plant over gRPC (the default).",
        discussion: """
            Every setting comes from a flag, else a TWIND_* environment variable (shown with each \
            option; lists comma-separated), else the JSON config file (--config; keys are the \
            option names, e.g. {"data-dir": "/srv/twin", "devices": 100, "listen": \
            ["0.0.0.0:8946"]}), else its default. A bad value stops twind with one line naming \
            the key (exit 78).

            Defaults: listen 127.0.0.1:8946 and unix:<data-dir>/twind.sock; data-dir \
            $STATE_DIRECTORY under systemd, else ~/.local/state/twin; 12 simulated devices \
            every 5s, seed 1.

            SIGTERM or SIGINT drains: health goes NOT_SERVING, streams end UNAVAILABLE, and twind \
            exits 0 within 5 s. Under systemd (Type=notify) it reports READY=1 and STOPPING=1.
            """)

    @Option(help: "JSON config file (TWIND_CONFIG).") var config: String?
    @Option(help: ArgumentHelp("Address to serve on, repeatable: HOST:PORT or unix:PATH (TWIND_LISTEN).", valueName: "addr"))
    var listen: [String] = []
    @Option(help: "Data directory (TWIND_DATA_DIR).") var dataDir: String?
    @Option(help: ArgumentHelp("Run the built-in simulator: on|off (TWIND_SIMULATOR).", valueName: "on|off"))
    var simulator: String?
    @Option(help: "Simulated devices in the default plant, up to 100000 (TWIND_DEVICES).") var devices: String?
    @Option(help: "Simulator seed (TWIND_SEED).") var seed: String?
    @Option(help: "Simulator reading interval, e.g. 5s (TWIND_INTERVAL).") var interval: String?
    @Option(help: "Simulate this much past at start, e.g. 30d (TWIND_BACKFILL).") var backfill: String?
    @Option(help: "YAML or JSON fleet file describing the plant instead of the default one (TWIND_FLEET).") var fleet: String?
    @Option(help: "Default StreamUpdates heartbeat, e.g. 5s (TWIND_HEARTBEAT).") var heartbeat: String?
    @Option(help: "Reject readings further in the future, e.g. 5m (TWIND_MAX_FUTURE_SKEW).") var maxFutureSkew: String?
    @Option(help: "Reject readings older than this, e.g. 7d (TWIND_LATE_WINDOW).") var lateWindow: String?
    @Option(help: "File with the master key(s), base64 one per line (TWIND_KEY_FILE); else $CREDENTIALS_DIRECTORY/twind.key, TWIND_KEY, or <data-dir>/twind.key, created on first start.")
    var keyFile: String?
    @Option(help: "full|normal: full survives power loss, normal only a crash of twind (TWIND_DURABILITY).") var durability: String?
    @Option(help: "Keep raw readings this long, e.g. 90d (TWIND_RAW_RETENTION).") var rawRetention: String?
    @Option(help: "Keep 1-minute and 1-hour roll-ups this long, e.g. 730d (TWIND_ROLLUP_RETENTION).") var rollupRetention: String?
    @Option(help: "Lifetime of access tokens, e.g. 15m (TWIND_ACCESS_TOKEN_LIFETIME).") var accessTokenLifetime: String?
    @Option(help: "Keep audit entries this long, e.g. 365d (TWIND_AUDIT_RETENTION).") var auditRetention: String?
    @Option(help: "Keep refresh tokens this long after they expire, e.g. 7d (TWIND_REFRESH_TOKEN_RETENTION).") var refreshTokenRetention: String?
    @Option(help: "PEM certificate chain: serve TCP with TLS (TWIND_TLS_CERT). The Unix socket stays plain.") var tlsCert: String?
    @Option(help: "PEM private key of --tls-cert (TWIND_TLS_KEY).") var tlsKey: String?
    @Option(help: "PEM CA certificates: require clients to present a certificate they signed (TWIND_TLS_CLIENT_CA).") var tlsClientCa: String?
    @Option(help: "Retrain the failure models this often, e.g. 24h (TWIND_RETRAIN_INTERVAL); skipped when no failure was recorded since.") var retrainInterval: String?
    @Option(help: "Serve Prometheus metrics on HOST:PORT at /metrics, plain HTTP; off by default (TWIND_METRICS_LISTEN).") var metricsListen: String?
    @Option(help: "Serve the operator's console and its HTTP API (Connect protocol, JSON) on HOST:PORT, or off (TWIND_HTTP_LISTEN; default 127.0.0.1:8947).") var httpListen: String?
    @Option(help: "Level of the line logged per finished RPC: trace|debug|info|notice|… (TWIND_RPC_LOG_LEVEL; default info).") var rpcLogLevel: String?
    @Option(help: "MQTT broker to take readings from: mqtt://HOST:PORT or mqtts://HOST:PORT (TWIND_MQTT_BROKER); off by default.") var mqttBroker: String?
    @Option(help: "MQTT client id, stable across restarts so the broker keeps the session (TWIND_MQTT_CLIENT_ID; default twind-<hostname>).") var mqttClientId: String?
    @Option(help: "MQTT user name (TWIND_MQTT_USERNAME).") var mqttUsername: String?
    @Option(help: "File holding the MQTT password (TWIND_MQTT_PASSWORD_FILE); else the systemd credential mqtt-password.") var mqttPasswordFile: String?
    @Option(help: "PEM CA certificates to verify an mqtts:// broker (TWIND_MQTT_CA; default the system's).") var mqttCa: String?
    @Option(help: "PEM client certificate for the broker (TWIND_MQTT_CERT; with --mqtt-key).") var mqttCert: String?
    @Option(help: "PEM private key of --mqtt-cert (TWIND_MQTT_KEY).") var mqttKey: String?
    @Option(help: "MQTT protocol version: 3.1.1|5 (TWIND_MQTT_PROTOCOL; default 3.1.1).") var mqttProtocol: String?
    @Option(help: "YAML file mapping plain MQTT topics with JSON payloads to devices and sensors (TWIND_MQTT_MAPPING); see the README.") var mqttMapping: String?
    @Option(help: "Run a Sparkplug B host application with this host id on the MQTT connection (TWIND_SPARKPLUG_HOST_ID).") var sparkplugHostId: String?
    @Option(help: "YAML file naming the OPC UA servers to read and which of their nodes are which device's sensors (TWIND_OPCUA_CONFIG); see the README.") var opcuaConfig: String?
    @Option(help: ArgumentHelp("Sparkplug group to serve, repeatable; default every group (TWIND_SPARKPLUG_GROUP).", valueName: "group"))
    var sparkplugGroup: [String] = []
    @Option(help: "How long a Sparkplug sequence gap may stay open before twind asks for a rebirth, e.g. 2s (TWIND_SPARKPLUG_REORDER_TIMEOUT).") var sparkplugReorderTimeout: String?
    @Option(help: "YAML alert rules per device type and device (TWIND_ALERT_RULES; default alert-rules.yaml in the data directory, else the built-in set); SIGHUP reloads it. See the README.") var alertRules: String?
    @Option(help: "YAML notification channels (webhook, Slack, Teams, e-mail) and routes (TWIND_NOTIFY_CONFIG; default notify.yaml in the data directory, else none); SIGHUP reloads it. See the README.") var notifyConfig: String?
    @Option(help: "trace|debug|info|notice|warning|error|critical (TWIND_LOG_LEVEL).") var logLevel: String?
    @Option(help: "text|json (TWIND_LOG_FORMAT).") var logFormat: String?

    var flagValues: [String: [String]] {
        var f: [String: [String]] = [:]
        let single: [(String, String?)] = [
            ("config", config), ("data-dir", dataDir), ("simulator", simulator), ("devices", devices),
            ("seed", seed), ("interval", interval), ("backfill", backfill), ("fleet", fleet),
            ("heartbeat", heartbeat), ("max-future-skew", maxFutureSkew), ("late-window", lateWindow),
            ("log-level", logLevel), ("log-format", logFormat), ("key-file", keyFile), ("durability", durability),
            ("raw-retention", rawRetention), ("rollup-retention", rollupRetention), ("access-token-lifetime", accessTokenLifetime),
            ("tls-cert", tlsCert), ("tls-key", tlsKey), ("tls-client-ca", tlsClientCa), ("retrain-interval", retrainInterval),
            ("metrics-listen", metricsListen), ("http-listen", httpListen), ("rpc-log-level", rpcLogLevel), ("audit-retention", auditRetention),
            ("refresh-token-retention", refreshTokenRetention), ("mqtt-broker", mqttBroker), ("mqtt-client-id", mqttClientId),
            ("mqtt-username", mqttUsername), ("mqtt-password-file", mqttPasswordFile), ("mqtt-ca", mqttCa), ("mqtt-cert", mqttCert),
            ("mqtt-key", mqttKey), ("mqtt-protocol", mqttProtocol), ("mqtt-mapping", mqttMapping), ("sparkplug-host-id", sparkplugHostId),
            ("sparkplug-reorder-timeout", sparkplugReorderTimeout), ("alert-rules", alertRules),
            ("notify-config", notifyConfig), ("opcua-config", opcuaConfig),
        ]
        for (key, value) in single { if let value { f[key] = [value] } }
        if !listen.isEmpty { f["listen"] = listen }
        if !sparkplugGroup.isEmpty { f["sparkplug-group"] = sparkplugGroup }
        return f
    }

    func run() async throws {
        // Everything twind creates (databases, key, socket) is for its own user only.
        umask(0o077)
        let environment = ProcessInfo.processInfo.environment
        let configuration: DaemonConfiguration
        let logging: (level: Logger.Level, json: Bool)
        do {
            let settings = try Settings(flags: flagValues, environment: environment)
            configuration = try settings.daemonConfiguration()
            logging = (
                try settings.logLevel("log-level") ?? .info,
                try settings.parse("log-format", expected: "text or json") { ["text": false, "json": true][$0.lowercased()] } ?? false
            )
        } catch {
            FileHandle.standardError.write(Data("twind: \(error.description)\n".utf8))
            throw ExitCode(78)  // EX_CONFIG
        }

        let journald = environment["JOURNAL_STREAM"] != nil
        let level = LogLevelSwitch(logging.level)
        LoggingSystem.bootstrap { label in
            LineLogHandler(label: label, json: logging.json, journald: journald, level: level)
        }
        let logger = Logger(label: "twind")
        if let metrics = configuration.metrics { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics.registry)) }

        // A crash must not leave the keys in a core file (LimitCORE=0 in the unit says it too).
        if twin_forbid_core_dumps() != 0 { logger.warning("could not turn core dumps off", metadata: ["errno": "\(errno)"]) }
        // A file-size limit (LimitFSIZE, ulimit -f) reached makes a write fail with EFBIG, which
        // the store reports as any failed write, instead of killing the daemon with SIGXFSZ.
        signal(SIGXFSZ, SIG_IGN)

        var hooks = DaemonHooks()
        hooks.ready = { _ in
            SystemdNotifier.notify("READY=1\nSTATUS=serving")
            SystemdNotifier.startWatchdog(environment: ProcessInfo.processInfo.environment)
        }
        hooks.stopping = { SystemdNotifier.notify("STOPPING=1\nSTATUS=draining") }
        // SIGHUP: the log levels are read again (flags and environment still win over the file;
        // a change in the file is what takes effect). A bad value keeps the level running.
        let flags = flagValues
        hooks.reload = { daemon in
            let log = Logger(label: "twind")
            do {
                let settings = try Settings(flags: flags, environment: environment)
                let newLevel = try settings.logLevel("log-level") ?? .info
                let newRPC = try settings.logLevel("rpc-log-level") ?? .info
                if newLevel != level.level || newRPC != daemon.rpcLogLevel.level {
                    level.level = newLevel
                    daemon.rpcLogLevel.level = newRPC
                    log.notice("log levels reloaded", metadata: ["log_level": "\(newLevel)", "rpc_log_level": "\(newRPC)"])
                }
            } catch {
                log.error("SIGHUP: the log levels were not reloaded; the running ones stay", metadata: ["error": "\(error)"])
            }
        }

        let daemon: Daemon
        do {
            daemon = try await buildDaemon(configuration: configuration, logger: logger, hooks: hooks)
        } catch let error as TwinError {
            logger.critical("cannot start: \(error.message)")
            throw ExitCode(error.code == .invalidArgument ? 78 : 69)
        }
        let group = ServiceGroup(
            services: [daemon], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger)
        do {
            try await group.run()
        } catch {
            logger.critical("stopped on an error: \(Self.describe(error))")
            throw ExitCode(69)  // EX_UNAVAILABLE
        }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? TwinError { return e.message }
        return "\(error)"
    }
}
