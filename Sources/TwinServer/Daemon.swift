import Foundation
import GRPCCore
import GRPCInProcessTransport
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOCore
import NIOSSL
import X509
import Prometheus
import Proto
import ServiceLifecycle
import Synchronization
import TwinApp
import TwinCore
import TwinConsole
import TwinEngines
import TwinGateway
import TwinNotify
import TwinStore

/// Everything `twind` needs to know to run; `twind` fills it from flags, environment and file.
public struct DaemonConfiguration: Sendable {
    /// Addresses to serve on; empty means the defaults (loopback TCP on the default port and the
    /// Unix socket in the data directory).
    public var listen: [NetworkAddress] = []
    public var dataDirectory: String
    /// Run the built-in simulator over the simulated devices.
    public var simulator = true
    /// Number of simulated devices in the default plant (ignored with a fleet file).
    public var simulatedDevices = 12
    public var seed: UInt64 = 1
    /// Simulator reading interval.
    public var interval: Nanos = 5 * Time.second
    /// Simulate this much past before going live, so the plant starts with a history.
    public var backfill: Nanos = 0
    /// A JSON fleet file describing the plant instead of the default one.
    public var fleetFile: String?
    public var plant = LivePlant.Options()
    /// Default StreamUpdates heartbeat interval.
    public var heartbeat: Nanos = 5 * Time.second
    /// A file holding the master key(s); see `KeyRing` for the other sources.
    public var keyFile: String?
    /// How hard commits are pushed to disk (see `HealthDatabase.Durability`).
    public var durability: HealthDatabase.Durability = .full
    /// Chunking and retention of sensor history.
    public var history = SeriesStore.Options()
    /// Argon2id cost for new password hashes (older, cheaper hashes are upgraded at login).
    public var passwordHasher = PasswordHasher.standard
    public var accessTokenLifetime: Nanos = 15 * Time.minute
    public var refreshTokenLifetime: Nanos = 30 * Time.day
    /// Audit entries older than this are deleted by the maintenance pass.
    public var auditRetention: Nanos = 365 * Time.day
    /// Refresh tokens (used, revoked or not) are deleted this long after they expired.
    public var refreshTokenRetention: Nanos = 7 * Time.day
    /// The wait after five failed logins (doubling with each further failure).
    public var firstLoginLockout: Nanos = Time.second
    /// How often buffers are cut and retention runs.
    public var maintenanceInterval: Nanos = Time.minute
    /// TLS on the TCP listeners (the Unix socket stays plaintext: only local users reach it).
    public var tls: ServerTLS?
    /// Model training and prediction refresh.
    var prognostics = Prognostics.Options()
    var alerts = AlertBook.Options()
    /// How often every device's health is scored (and alerts evaluated).
    public var healthInterval: Nanos = 5 * Time.second
    public var alertClearTime: Nanos {
        get { alerts.clearFor }
        set { alerts.clearFor = newValue }
    }
    public var alertMinimumDuration: Nanos {
        get { alerts.minimumDuration }
        set { alerts.minimumDuration = newValue }
    }
    public var retrainInterval: Nanos {
        get { prognostics.retrainInterval }
        set { prognostics.retrainInterval = newValue }
    }
    /// The level of the one line logged per finished RPC.
    public var rpcLogLevel: Logger.Level = .info
    /// Where the plant's and identity's rules read the time (the wall clock; tests may move it).
    public var clock: any TwinClock = SystemClock()
    /// Serve the console and its Connect bridge here (`--http-listen`); nil: off.
    public var console: ConsoleServer<InProcessTransport.Client>.Options?
    /// Serve /metrics here (plain HTTP) from this registry; twind bootstraps swift-metrics with it.
    public var metrics: (host: String, port: Int, registry: PrometheusCollectorRegistry)?
    /// Bounds on what one client can hold (see `ServerLimits`).
    public var limits = ServerLimits()
    /// MQTT and Sparkplug B in (`--mqtt-broker`, `--sparkplug-host-id`); nil: off.
    public var gateways: GatewayConfiguration?
    /// OPC UA servers to read (`--opcua-config`); nil: none.
    public var opcua: OPCUAConfig?
    /// The alert rules file (`--alert-rules`); nil: `alert-rules.yaml` in the data directory,
    /// and the built-in rules while that does not exist. SetAlertRules writes it, SIGHUP rereads it.
    public var alertRulesFile: String?
    public var effectiveAlertRulesFile: String { alertRulesFile ?? dataDirectory + "/alert-rules.yaml" }
    /// The notifications file (`--notify-config`); nil: `notify.yaml` in the data directory,
    /// and no notifications while that does not exist. SIGHUP rereads it.
    public var notifyConfigFile: String?
    public var effectiveNotifyConfigFile: String { notifyConfigFile ?? dataDirectory + "/notify.yaml" }
    /// The environment key sources are read from (`TWIND_KEY`, `CREDENTIALS_DIRECTORY`).
    public var environment: [String: String] = [:]

    public init(dataDirectory: String) {
        self.dataDirectory = dataDirectory
    }

    public var socketPath: String { dataDirectory + "/twind.sock" }

    /// `$STATE_DIRECTORY` under systemd, else `$XDG_STATE_HOME/twin`, else `~/.local/state/twin`.
    public static func defaultDataDirectory(environment: [String: String]) -> String {
        Paths.defaultDataDirectory(environment: environment)
    }

    public var effectiveListen: [NetworkAddress] {
        listen.isEmpty ? [.defaultTCP, .unix(path: socketPath)] : listen
    }
}

/// What one client may hold of twind, each answered with the status and a message naming it.
public struct ServerLimits: Sendable {
    /// Concurrent calls on one HTTP/2 connection (more wait for a free stream, as HTTP/2 says).
    public var maxStreamsPerConnection = 256
    /// A connection with no call open for this long is closed (GOAWAY).
    public var connectionIdleTimeout: Nanos = 15 * Time.minute
    /// A connection older than this is asked to go (GOAWAY) and given `connectionGrace` to
    /// finish its calls; clients reconnect (twin watch does so by itself).
    public var connectionMaxAge: Nanos = 24 * Time.hour
    public var connectionGrace: Nanos = 10 * Time.minute
    /// One Ingest message at most (the transport refuses larger with RESOURCE_EXHAUSTED).
    public var maxIngestMessage = 16 << 20
    /// One message of any other method at most (RESOURCE_EXHAUSTED naming the method).
    public var maxMessage = 1 << 20
    public init() {}
}

/// twind's certificate and key (PEM files) and, to require client certificates, the CA that signs them.
public struct ServerTLS: Sendable {
    public var certificate: String
    public var privateKey: String
    public var clientCA: String?

    public init(certificate: String, privateKey: String, clientCA: String? = nil) {
        self.certificate = certificate
        self.privateKey = privateKey
        self.clientCA = clientCA
    }

    var transportSecurity: HTTP2ServerTransport.Posix.TransportSecurity {
        .tls(certificateChain: [.file(path: certificate, format: .pem)], privateKey: .file(path: privateKey, format: .pem)) { config in
            if let clientCA {
                config.clientCertificateVerification = .noHostnameVerification
                config.trustRoots = .certificates([.file(path: clientCA, format: .pem)])
            }
        }
    }
}

/// Hooks the embedding process gets called at (twind uses them for systemd notifications).
public struct DaemonHooks: Sendable {
    public var ready: @Sendable ([NetworkAddress]) -> Void = { _ in }
    public var stopping: @Sendable () -> Void = {}
    /// On SIGHUP, after the alert rules and notification settings were re-read: what else can
    /// change at run time (twind re-reads its log levels).
    public var reload: @Sendable (Daemon) -> Void = { _ in }
    public init() {}
}

/// Assembles store, engines and gRPC server from a configuration. `twind` and the tests call it.
public func buildDaemon(
    configuration: DaemonConfiguration, logger: Logger, hooks: DaemonHooks = DaemonHooks()
) async throws -> Daemon {
    try await Daemon(configuration: configuration, logger: logger, hooks: hooks)
}

/// The running daemon, as a swift-service-lifecycle `Service`: `run()` serves until graceful
/// shutdown, then drains (health NOT_SERVING, streams end UNAVAILABLE, servers stop) within 5 s.
public final class Daemon: Service, Sendable {
    public let configuration: DaemonConfiguration
    let plant: Plant
    /// Changed snapshots in wire form, once for every subscriber of `StreamUpdates`.
    let encoder: SnapshotEncoder
    let health: HealthStatus
    let simulator: SimulatorRunner?
    let dataDirectory: DataDirectory
    let store: HealthDatabase
    let users: UsersDatabase
    let identity: Identity
    let prognostics: Prognostics
    let alerts: AlertBook
    let alertRules: AlertRuleFile
    let notifier: Notifier
    let notifyConfig: NotifyConfigFile
    let sender: ChannelSender
    let assessment: Assessment
    let gateways: Gateways?
    let opcua: OPCUAGateways?
    let servers: [(address: NetworkAddress, server: GRPCServer<HTTP2ServerTransport.Posix>)]
    /// What every server serves, in this order through these interceptors.
    let services: [any RegistrableRPCService]
    let interceptors: [any ServerInterceptor]
    let logger: Logger
    let hooks: DaemonHooks
    /// The health pass, prediction refresh and retrain scheduler: one at a time, off the
    /// cooperative pool (a pass that is late waits for the one before, never piles up).
    let passes = BlockingPool(name: "health passes", workers: 1, queueLimit: 2, maxWait: .seconds(60))
    /// The notifications outbox's writes (each ends in an fsync).
    let notifyWrites = BlockingPool(name: "notifications", workers: 1, queueLimit: 256, maxWait: .seconds(60))
    private let bound = Mutex<[NetworkAddress]?>(nil)
    /// The level of the line logged per finished RPC (`rpc-log-level`; SIGHUP may change it).
    public let rpcLogLevel: LogLevelSwitch
    /// Set once the gRPC servers listen (or failed to): the other listeners start after them.
    let serversUp = Readiness()

    init(configuration: DaemonConfiguration, logger: Logger, hooks: DaemonHooks) async throws {
        self.configuration = configuration
        self.logger = logger
        self.hooks = hooks
        rpcLogLevel = LogLevelSwitch(configuration.rpcLogLevel)
        _ = Telemetry.started  // uptime counts from here
        dataDirectory = try DataDirectory(path: configuration.dataDirectory)
        // A `twind restore` cut off half way is finished before anything opens the databases.
        let finished = try StoreAdmin.completeInterruptedRestore(dataDirectory: configuration.dataDirectory)
        if !finished.isEmpty { logger.notice("finished an interrupted restore", metadata: ["databases": "\(finished.joined(separator: ", "))"]) }
        let keys = try KeyRing.load(
            keyFile: configuration.keyFile, environment: configuration.environment, dataDirectory: configuration.dataDirectory)
        if keys.generated {
            logger.warning(
                "created a master key beside the data; keep a copy elsewhere, and prefer --key-file or a systemd credential",
                metadata: ["source": "\(keys.source)"])
        } else {
            logger.info("master key loaded", metadata: ["source": "\(keys.source)", "keys": "\(keys.keys.count)"])
        }
        users = try UsersDatabase(path: dataDirectory.file("users.db"), keys: keys, durability: configuration.durability)
        identity = try await Identity(
            users: users, hasher: configuration.passwordHasher, accessTTL: configuration.accessTokenLifetime,
            refreshTTL: configuration.refreshTokenLifetime, logger: logger, firstLockout: configuration.firstLoginLockout,
            clock: configuration.clock, loginOutcome: { Telemetry.login($0) })
        try identity.bootstrapAdmin(dataDirectory: configuration.dataDirectory, environment: configuration.environment)
        store = try HealthDatabase(
            path: dataDirectory.file("health_data.db"), keys: keys, durability: configuration.durability, series: configuration.history)
        var options = configuration.plant
        options.offlineAfter = max(options.offlineAfter, 3 * configuration.interval)
        let encoder = SnapshotEncoder()
        self.encoder = encoder
        plant = Plant(
            options: options, heartbeat: configuration.heartbeat, store: store, history: store.series, logger: logger,
            clock: configuration.clock, snapshotsChanged: { encoder.refresh($0) })

        // The fleet: a fleet file, or the default simulated plant.
        let now = configuration.clock.now()
        let devices: [Device]
        if let file = configuration.fleetFile {
            devices = try FleetFile.load(path: file)
        } else {
            devices = configuration.simulator ? MachineCatalog.defaultPlant(count: configuration.simulatedDevices) : []
        }
        let registered = try PlantAssembly.register(fleet: devices, plant: plant, now: now)
        simulator = PlantAssembly.simulator(
            for: registered, enabled: configuration.simulator, seed: configuration.seed, backfill: configuration.backfill,
            interval: configuration.interval, now: now, logger: logger)

        var prognosticsHooks = Prognostics.Hooks()
        prognosticsHooks.retrained = { Telemetry.retrain(outcome: $0, seconds: $1) }
        prognosticsHooks.activeModel = { Telemetry.activeModel(version: $0, rocAUC: $1, rulMAEHours: $2) }
        prognostics = try Prognostics(
            plant: plant, modelsDirectory: dataDirectory.file("models"), options: configuration.prognostics, logger: logger, hooks: prognosticsHooks)
        let alertOptions = configuration.alerts
        let rules = try AlertRuleFile.read(path: configuration.effectiveAlertRulesFile, hold: alertOptions.minimumDuration, clear: alertOptions.clearFor)
        alerts = try AlertBook(store: store, options: alertOptions, rules: rules, logger: logger, counted: Telemetry.openAlerts) { [plant] in
            plant.bus.publishAlerts($0)
        }
        alertRules = AlertRuleFile(
            path: configuration.effectiveAlertRulesFile, book: alerts, hold: alertOptions.minimumDuration, clear: alertOptions.clearFor, writes: plant.writes,
            logger: logger
        ) { [identity] in identity.recordAudit($0) }
        logger.info("alert rules", metadata: ["source": "\(rules.source)", "version": "\(rules.version)"])
        let notifyPath = configuration.effectiveNotifyConfigFile
        let notify = try NotifyConfigFile.read(path: notifyPath, required: configuration.notifyConfigFile != nil, environment: configuration.environment)
        sender = ChannelSender(userAgent: "twind")
        notifier = try Notifier(
            config: notify, store: store, writes: notifyWrites, sender: sender, logger: logger,
            placement: { [plant] id in plant.live.device(id).map { Notifier.Placement(site: $0.site, line: $0.line, type: $0.type) } },
            counted: Telemetry.notification,
            accounts: { [identity, plant] in (try? await plant.queries.run { () throws(TwinError) in try identity.users.allUsers() }) ?? [] })
        alerts.attach(notifier)
        try PlantAssembly.restoreMaintenanceWindows(store: store, alerts: alerts, now: now)
        notifyConfig = NotifyConfigFile(
            path: notifyPath, notifier: notifier, environment: configuration.environment, logger: logger, writes: plant.writes, clock: configuration.clock
        ) { [identity] in identity.recordAudit($0) }
        if notify.source != "none" {
            logger.info("notifications", metadata: ["source": "\(notify.source)", "channels": "\(notify.channels.count)", "routes": "\(notify.routes.count)"])
        }
        assessment = Assessment(plant: plant, prognostics: prognostics, alerts: alerts)
        if let g = configuration.gateways { gateways = Gateways(configuration: g, plant: plant, logger: logger) } else { gateways = nil }
        if let o = configuration.opcua { opcua = try OPCUAGateways(configuration: o, dataDirectory: configuration.dataDirectory, plant: plant, logger: logger) } else { opcua = nil }
        health = HealthStatus(services: [
            Twin_V1_TwinService.descriptor.fullyQualifiedService,
            Twin_V1_AuthService.descriptor.fullyQualifiedService,
            Twin_V1_ModelService.descriptor.fullyQualifiedService,
            Grpc_Health_V1_Health.descriptor.fullyQualifiedService,
        ])
        let twin = TwinService(
            plant: plant, encoder: encoder, simulator: simulator, prognostics: prognostics, assessment: assessment, alerts: alerts, alertRules: alertRules, notifier: notifier, notifyConfig: notifyConfig, identity: identity,
            gateways: gateways, opcua: opcua)
        let services: [any RegistrableRPCService] = [
            twin, IngestWireService(service: twin),
            UpdateStreamService(plant: plant, encoder: encoder), HistoryAnswerService(plant: plant), AuthService(identity: identity, plant: store),
            ModelService(prognostics: prognostics, identity: identity),
            HealthService(status: health),
        ]
        let interceptors: [any ServerInterceptor] = [
            ClientPeerInterceptor(), RequestLogInterceptor(logger: logger, levelSwitch: rpcLogLevel), AuthInterceptor(identity: identity),
            RequestShapeInterceptor(maxMessage: configuration.limits.maxMessage),
        ]
        self.services = services
        self.interceptors = interceptors
        servers = try configuration.effectiveListen.map { address throws(TwinError) in
            if case .unix(let path) = address { try Self.clearStaleSocket(path) }
            if case .tcp(let host, _) = address, configuration.tls == nil, !["127.0.0.1", "::1", "localhost"].contains(host) {
                logger.warning("serving plaintext gRPC beyond loopback: passwords and tokens cross the network unencrypted; set --tls-cert and --tls-key", metadata: ["address": "\(address)"])
            }
            return (address, Self.makeServer(address, configuration: configuration, services: services, interceptors: interceptors))
        }
        logger.info(
            "plant ready",
            metadata: [
                "devices": "\(registered.count)", "simulated": "\(simulator == nil ? 0 : registered.count { $0.device.simulated })",
                "data_dir": "\(configuration.dataDirectory)",
            ])
    }

    /// Bytes queued on a connection before its streams are told to wait, and when they resume.
    static let connectionWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 1 << 20, high: 4 << 20)

    /// The gRPC server for one listen address. A TCP one speaks TLS when configured; the
    /// certificate and key files are read when it starts serving (a reload makes a new one).
    static func makeServer(
        _ address: NetworkAddress, configuration: DaemonConfiguration, services: [any RegistrableRPCService], interceptors: [any ServerInterceptor]
    ) -> GRPCServer<HTTP2ServerTransport.Posix> {
        let socketAddress: GRPCNIOTransportCore.SocketAddress
        var security = HTTP2ServerTransport.Posix.TransportSecurity.plaintext
        switch address {
        case .tcp(let host, let port):
            socketAddress = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
            if let tls = configuration.tls { security = tls.transportSecurity }
        case .unix(let path):
            socketAddress = .unixDomainSocket(path: path)
        }
        // Large windows let a gateway stream Ingest batches without a round trip per 64 KiB.
        let limits = configuration.limits
        let config = HTTP2ServerTransport.Posix.Config.defaults { config in
            config.http2.targetWindowSize = 8 << 20
            config.http2.maxFrameSize = 1 << 20
            config.http2.maxConcurrentStreams = limits.maxStreamsPerConnection
            config.connection.maxIdleTime = .nanoseconds(limits.connectionIdleTimeout)
            config.connection.maxAge = .nanoseconds(limits.connectionMaxAge)
            config.connection.maxGraceTime = .nanoseconds(limits.connectionGrace)
            config.rpc.maxRequestPayloadSize = limits.maxIngestMessage
            // A connection's socket buffer may hold a few live-update batches before it
            // counts as full. With NIO's 64 KiB default every batch of a 1,000-device plant
            // (~200 KiB per subscriber) flips the connection unwritable and back several
            // times, and each flip is told to every stream on it: at 100 subscribers per
            // connection that notification storm was the largest cost of fan-out.
            config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
                channel.setOption(ChannelOptions.writeBufferWaterMark, value: Self.connectionWaterMark)
            }
        }
        let transport = HTTP2ServerTransport.Posix(address: socketAddress, transportSecurity: security, config: config)
        return GRPCServer(transport: transport, services: services, interceptors: interceptors)
    }

    /// A Unix socket file left by a daemon that died is removed; anything else there is an error.
    static func clearStaleSocket(_ path: String) throws(TwinError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw .failedPrecondition("cannot listen on unix:\(path): a file that is not a socket is in the way")
        }
        unlink(path)
    }

    /// The addresses actually bound (port 0 resolved), once serving. Throws if binding failed.
    public func listeningAddresses() async throws -> [NetworkAddress] {
        if let known = bound.withLock({ $0 }) { return known }
        var result: [NetworkAddress] = []
        for (address, server) in servers {
            do {
                let actual = try await server.listeningAddress
                if let v4 = actual?.ipv4 { result.append(.tcp(host: v4.host, port: v4.port)) }
                else if let v6 = actual?.ipv6 { result.append(.tcp(host: v6.host, port: v6.port)) }
                else { result.append(address) }
            } catch {
                throw TwinError.unavailable("cannot listen on \(address): \(Self.describe(error))")
            }
        }
        bound.withLock { $0 = result }
        return result
    }

    static func describe(_ error: any Error) -> String {
        if let rpc = error as? RPCError {
            if let cause = rpc.cause { return describe(cause) }
            return rpc.message
        }
        if let runtime = error as? RuntimeError {
            if let cause = runtime.cause { return describe(cause) }
            return runtime.message
        }
        return String(describing: error)
    }

    /// Serves the same services through the same interceptors over grpc-swift's in-process
    /// transport for the length of `body` (the service test tier: no sockets, no HTTP/2).
    public func withInProcessClient<R: Sendable>(_ body: (GRPCClient<InProcessTransport.Client>) async throws -> R) async throws -> R {
        let transport = InProcessTransport()
        let server = GRPCServer(transport: transport.server, services: services, interceptors: interceptors)
        return try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await server.serve() }
            defer { server.beginGracefulShutdown() }
            return try await withGRPCClient(transport: transport.client) { client in try await body(client) }
        }
    }

    /// The plant as gateways see it (the path of `Ingest`), for decoders driven without a broker
    /// (the libFuzzer harness).
    public var gatewaySink: any GatewaySink { PlantGatewaySink(plant: plant) }

    public func run() async throws {
        // The history the simulator backfills is there before anyone can ask for it.
        if let simulator, configuration.backfill > 0 {
            try simulator.backfill(span: configuration.backfill, plant: plant)
        }
        let reloads = Self.onSIGHUP { [self] in
            alertRules.reload()
            notifyConfig.reload()
            reloadTLS()
            hooks.reload(self)
        }
        defer { reloads.cancel() }
        var group = ServiceGroupConfiguration(services: concerns().map {
            .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
        }, logger: logger)
        // Calls get until 4.5 s after the signal to finish; then they are cut.
        group.maximumGracefulShutdownDuration = Self.shutdownGrace
        let started = Mutex<ContinuousClock.Instant?>(nil)
        let outcome: Result<Void, any Error>
        do {
            try await withGracefulShutdownHandler {
                try await ServiceGroup(configuration: group).run()
            } onGracefulShutdown: {
                started.withLock { $0 = .now }
            }
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        close()
        let took = started.withLock { $0 }.map { ContinuousClock.now - $0 }
        logger.notice("stopped", metadata: took.map { ["drained_in": "\($0)"] } ?? [:])
        try outcome.get()
    }

    /// Fired when a reloaded TLS certificate and key have loaded: the TCP servers restart with them.
    let tlsReloads = ChangeSignal()

    /// SIGHUP: the TLS certificate chain and key are read again and checked together; when they
    /// load, each TCP listener is replaced by one serving them (calls open on the old one
    /// finish there); when not, the ones in force stay and the error is logged.
    func reloadTLS() {
        guard let tls = configuration.tls else { return }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificate)
            guard let leaf = chain.first else { throw TwinError.invalidArgument("\(tls.certificate) holds no certificate") }
            // The key must be the certificate's (TLS would fail every handshake otherwise).
            let keyPEM = try String(contentsOfFile: tls.privateKey, encoding: .utf8)
            let certificate = try X509.Certificate(derEncoded: try leaf.toDERBytes())
            guard try certificate.publicKey == X509.Certificate.PrivateKey(pemEncoded: keyPEM).publicKey else {
                throw TwinError.invalidArgument("the private key in \(tls.privateKey) does not belong to the certificate in \(tls.certificate)")
            }
            let key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
            _ = try NIOSSLContext(configuration: TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)))
            logger.notice("TLS certificate reloaded; the TCP listeners restart with it", metadata: [
                "certificate": "\(tls.certificate)", "not_after": "\(Time.iso(Nanos(leaf.notValidAfter) * Time.second))",
            ])
            tlsReloads.fire()
        } catch {
            logger.error("SIGHUP: the TLS certificate or key cannot be loaded; the ones in force stay", metadata: ["error": "\(Self.describe(error))"])
        }
    }

    /// How long calls get to finish once shutdown begins.
    static let shutdownGrace = Duration.milliseconds(4500)

    /// The daemon's concerns in the order they start; they stop in the reverse order.
    func concerns() -> [any Service] {
        var list: [any Service] = servers.map { address, server in
            var concern = GRPCServerConcern(address: address, server: server, logger: logger)
            if configuration.tls != nil, case .tcp(let host, _) = address {
                let (configuration, services, interceptors) = (configuration, services, interceptors)
                concern.reloads = tlsReloads
                concern.make = { port in Self.makeServer(.tcp(host: host, port: port), configuration: configuration, services: services, interceptors: interceptors) }
            }
            return concern
        }
        list.append(TrainingConcern(prognostics: prognostics))
        list.append(LoopConcern(name: "notifier", body: { [notifier, alerts] in await notifier.run { alerts.escalatable() } }, after: { [sender] in await sender.shutdown() }))
        // Scoring every device and predicting for all of them hold a thread for a while (326 ms
        // at 10,000 devices): they run on a thread of their own (`passes`), never the
        // cooperative pool, one at a time (a pass that is late waits, never piles up).
        let passes = self.passes
        list.append(TickerConcern(name: "health pass", interval: .nanoseconds(configuration.healthInterval)) { [assessment] in
            try? await passes.run { assessment.tick(now: Time.now()) }
        })
        // Predictions refreshed, and the retrain scheduler checked, every few minutes.
        list.append(TickerConcern(name: "prognostics", atStart: { [prognostics] in try? await passes.run { prognostics.refresh(now: Time.now()) } }, interval: .nanoseconds(min(configuration.prognostics.refreshInterval, Time.minute))) { [prognostics] in
            try? await passes.run {
                prognostics.scheduledStep(now: Time.now())
                prognostics.refreshIfDue(now: Time.now())
            }
        })
        list.append(TickerConcern(name: "store maintenance", interval: .nanoseconds(configuration.maintenanceInterval)) { [self] in
            try? await passes.run { self.maintainStore() }
        })
        // Failed-login counts saved every 2 s when they changed: a restart keeps them.
        list.append(TickerConcern(name: "login throttle", interval: .seconds(2)) { [identity] in
            try? await passes.run { identity.persistThrottle(now: Time.now()) }
        })
        // The offline sweep and the streams' heartbeats.
        list.append(TickerConcern(name: "housekeeping", interval: .milliseconds(250)) { [plant] in plant.housekeeping(now: Time.now()) })
        if gateways != nil || opcua != nil {
            let record: @Sendable () async -> Void = { [gateways, opcua] in
                gateways?.recordMetrics()
                opcua?.recordMetrics()
            }
            list.append(TickerConcern(name: "gateway metrics", atStart: record, interval: .seconds(5), body: record))
        }
        if let simulator {
            list.append(LoopConcern(name: "simulator", body: { [plant] in await simulator.run(plant: plant) }))
        }
        var listeners: [ListenerConcern] = []
        if let m = configuration.metrics {
            listeners.append(ListenerConcern(name: "metrics exporter", after: serversUp) { [logger] () throws(TwinError) in
                let exporter: MetricsExporter
                do { exporter = try await MetricsExporter(registry: m.registry, host: m.host, port: m.port, logger: logger) } catch {
                    throw (error as? TwinError) ?? .unavailable("cannot listen for metrics on \(m.host):\(m.port): \(error)")
                }
                return { await exporter.close() }
            })
        }
        if configuration.console != nil {
            // The console: HTTP in front of the same services, over the in-process transport.
            // With TLS, a reloaded certificate restarts it on the port it had.
            listeners.append(ListenerConcern(name: "console", after: serversUp, restarts: configuration.tls == nil ? nil : tlsReloads, logger: logger) { [self] () throws(TwinError) in
                let task: Task<Void, Never>?
                do { task = try await startConsole(port: consoleAddress.withLock { $0?.port }) } catch {
                    throw (error as? TwinError) ?? .unavailable("cannot serve the console: \(Self.describe(error))")
                }
                return {
                    task?.cancel()
                    await task?.value
                }
            })
        }
        // The gateways stop before the rest: their STATE death goes out and nothing more comes in.
        if let gateways {
            listeners.append(ListenerConcern(name: "MQTT gateways", after: serversUp) { () throws(TwinError) in
                gateways.start()
                return { await gateways.stop() }
            })
        }
        if let opcua {
            listeners.append(ListenerConcern(name: "OPC UA gateways", after: serversUp) { () throws(TwinError) in
                opcua.start()
                return { await opcua.stop() }
            })
        }
        list += listeners as [any Service]
        list.append(AnnounceAndDrainConcern(daemon: self, listeners: listeners.map(\.ready)))
        return list
    }

    /// After every concern has stopped: the socket files, the databases (a failure to close is
    /// reported), the worker threads, the data directory's lock.
    func close() {
        for case .unix(let path) in configuration.effectiveListen { unlink(path) }
        identity.persistThrottle(now: Time.now())
        for (name, close) in [("health_data.db", store.shutDown), ("users.db", users.shutDown)] {
            do { try close() } catch { logger.error("a database did not close cleanly", metadata: ["db": "\(name)", "error": "\(error)"]) }
        }
        identity.hashing.shutdown()
        plant.queries.shutdown()
        plant.writes.shutdown()
        plant.applying.shutdown()
        prognostics.stop()
        passes.shutdown()
        notifyWrites.shutdown()
        dataDirectory.unlock()
    }


    /// Calls `body` on every SIGHUP (off the cooperative pool) until the source is cancelled.
    static func onSIGHUP(_ body: @escaping @Sendable () -> Void) -> any DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global(qos: .utility))
        source.setEventHandler(handler: body)
        source.resume()
        return source
    }

    /// The console's address once it listens (port 0 in tests is resolved here).
    let consoleAddress = Mutex<(host: String, port: Int)?>(nil)
    public var consoleURL: String? { consoleAddress.withLock { $0 }.map { "\(configuration.tls == nil ? "http" : "https")://\($0.host.contains(":") ? "[\($0.host)]" : $0.host):\($0.port)/" } }

    /// Starts the console (if configured; on `port` when given, the one it had before a
    /// restart) and waits until it listens; the task ends when cancelled.
    func startConsole(port: Int? = nil) async throws -> Task<Void, Never>? {
        guard var options = configuration.console else { return nil }
        if let port { options.port = port }
        if let tls = configuration.tls { options.tls = (tls.certificate, tls.privateKey, tls.clientCA) }
        let transport = InProcessTransport()
        let server = GRPCServer(transport: transport.server, services: services, interceptors: interceptors)
        let client = GRPCClient(transport: transport.client)
        let console = ConsoleServer(client: client, options: options, logger: logger)
        let (bound, boundContinuation) = AsyncStream<Result<Void, any Error>>.makeStream()
        let logger = logger
        let task = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await server.serve() }
                group.addTask { try? await client.runConnections() }
                group.addTask {
                    do {
                        try await console.run { host, port in
                            self.consoleAddress.withLock { $0 = (host, port) }
                            boundContinuation.yield(.success(()))
                        }
                    } catch {
                        if !Task.isCancelled {
                            logger.error("the console stopped", metadata: ["error": "\(error)"])
                        }
                        boundContinuation.yield(.failure(error))
                    }
                }
                // Until cancelled (the sleep ends early then).
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                client.beginGracefulShutdown()
                server.beginGracefulShutdown()
                group.cancelAll()
            }
        }
        for await outcome in bound {
            if case .failure(let error) = outcome {
                task.cancel()
                throw TwinError.unavailable("cannot serve the console on \(options.host):\(options.port): \(Self.describe(error))")
            }
            break
        }
        if let url = consoleURL { logger.notice("console", metadata: ["url": "\(url)"]) }
        return task
    }

    /// Cuts stale buffers and runs a slice of retention; logged when it did something.
    func maintainStore() {
        let began = ContinuousClock.now
        defer {
            let sizes = ["health_data.db", "users.db"].map { name in
                (db: name, bytes: ["", "-wal"].reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: dataDirectory.file(name) + $1)[.size] as? Int) ?? 0) })
            }
            Telemetry.storeSize(sizes, chunks: try? store.chunkCount())
        }
        do {
            let pruned = try users.prune(
                now: Time.now(), auditOlderThan: configuration.auditRetention, tokensExpiredFor: configuration.refreshTokenRetention)
            let plantAudit = try store.pruneAudit(olderThan: Time.now() - configuration.auditRetention)
            // Delivered and failed notifications are kept 30 days (what was sent, to whom).
            _ = try store.pruneNotices(before: Time.now() - 30 * Time.day)
            if pruned.audit + pruned.tokens + plantAudit > 0 {
                logger.info("users.db retention", metadata: ["audit_entries_deleted": "\(pruned.audit + plantAudit)", "refresh_tokens_deleted": "\(pruned.tokens)"])
            }
        } catch {
            logger.error("users.db retention failed", metadata: ["error": "\(error.message)"])
        }
        do {
            let report = try store.series.maintain()
            Telemetry.maintenance(seconds: (ContinuousClock.now - began).seconds, report: (report.cutStale, report.rawExpired, report.deleted))
            if report != .init() {
                logger.info(
                    "store maintenance",
                    metadata: [
                        "buffers_cut": "\(report.cutStale)", "chunks_past_raw_retention": "\(report.rawExpired)",
                        "chunks_deleted": "\(report.deleted)", "took": "\(ContinuousClock.now - began)",
                    ])
            }
        } catch {
            logger.error("store maintenance failed", metadata: ["error": "\(error.message)"])
        }
    }
}
