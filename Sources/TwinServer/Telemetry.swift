import CoreMetrics
import Foundation
import GRPCCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization
import TwinApp
import TwinCore

/// What twind measures, named the Prometheus way (`twind_…_total`, `_seconds`, base units; no
/// device ids as labels). Recorded through swift-metrics: a no-op until twind bootstraps a
/// backend (`--metrics-listen`).
enum Telemetry {
    static func rpc(method: String, code: String, seconds: Double) {
        Counter(label: "twind_rpc_requests_total", dimensions: [("method", method), ("code", code)]).increment()
        Timer(label: "twind_rpc_duration_seconds", dimensions: [("method", method)]).recordNanoseconds(Int64(seconds * 1e9))
    }

    static func ingest(readings: Int, accepted: Bool) {
        let result = accepted ? "accepted" : "rejected"
        Counter(label: "twind_ingest_readings_total", dimensions: [("result", result)]).increment(by: readings)
        Counter(label: "twind_ingest_batches_total", dimensions: [("result", result)]).increment()
    }

    /// The MQTT connection and Sparkplug nodes (recorded every few seconds; counters by the
    /// growth since the last record).
    static func gateways(connected: Bool, grown: (messages: UInt64, readings: UInt64, errors: UInt64, reconnects: UInt64, rebirths: UInt64), online: Int, offline: Int) {
        Gauge(label: "twind_mqtt_connected").record(connected ? 1 : 0)
        for (name, n) in [("messages", grown.messages), ("readings", grown.readings), ("errors", grown.errors), ("reconnects", grown.reconnects)] where n > 0 {
            Counter(label: "twind_mqtt_\(name)_total").increment(by: Int(n))
        }
        if grown.rebirths > 0 { Counter(label: "twind_sparkplug_rebirths_requested_total").increment(by: Int(grown.rebirths)) }
        Gauge(label: "twind_sparkplug_edge_nodes", dimensions: [("state", "online")]).record(online)
        Gauge(label: "twind_sparkplug_edge_nodes", dimensions: [("state", "offline")]).record(offline)
    }

    /// One OPC UA endpoint's connection, monitored items and what grew since the last record.
    static func opcua(endpoint: String, connected: Bool, items: Int, grown: (notifications: UInt64, readings: UInt64, bad: UInt64, errors: UInt64, reconnects: UInt64)) {
        let e = [("endpoint", endpoint)]
        Gauge(label: "twind_opcua_connected", dimensions: e).record(connected ? 1 : 0)
        Gauge(label: "twind_opcua_monitored_items", dimensions: e).record(items)
        for (name, n) in [("notifications", grown.notifications), ("readings", grown.readings), ("bad_readings", grown.bad),
                          ("errors", grown.errors), ("reconnects", grown.reconnects)] where n > 0 {
            Counter(label: "twind_opcua_\(name)_total", dimensions: e).increment(by: Int(n))
        }
    }

    static let subscribers = Atomic<Int>(0)
    static func subscriber(_ delta: Int) {
        let now = subscribers.add(delta, ordering: .relaxed).newValue
        Gauge(label: "twind_stream_subscribers").record(now)
    }

    static func updatesSent(_ count: Int, conflated: UInt64) {
        Counter(label: "twind_stream_updates_sent_total").increment(by: count)
        if conflated > 0 { Counter(label: "twind_stream_updates_conflated_total").increment(by: Int(conflated)) }
    }

    /// A notification delivery outcome per channel ("delivered", "retry", "failed"), and the
    /// channel's failures in a row since its last delivery (above 0: failing).
    static func notification(channel: String, outcome: String, failures: Int) {
        Counter(label: "twind_notifications_total", dimensions: [("channel", channel), ("outcome", outcome)]).increment()
        Gauge(label: "twind_notification_channel_failures", dimensions: [("channel", channel)]).record(failures)
    }

    static func login(_ result: String) {
        Counter(label: "twind_logins_total", dimensions: [("result", result)]).increment()
    }

    static func maintenance(seconds: Double, report: (cut: Int, expired: Int, deleted: Int)) {
        Counter(label: "twind_store_maintenance_runs_total").increment()
        Timer(label: "twind_store_maintenance_duration_seconds").recordNanoseconds(Int64(seconds * 1e9))
        if report.expired > 0 { Counter(label: "twind_store_retention_chunks_total", dimensions: [("action", "raw_dropped")]).increment(by: report.expired) }
        if report.deleted > 0 { Counter(label: "twind_store_retention_chunks_total", dimensions: [("action", "deleted")]).increment(by: report.deleted) }
    }

    static func storeSize(_ bytes: [(db: String, bytes: Int)], chunks: Int?) {
        for (db, size) in bytes { Gauge(label: "twind_store_size_bytes", dimensions: [("db", db)]).record(size) }
        if let chunks { Gauge(label: "twind_store_chunks").record(chunks) }
    }

    static func retrain(outcome: String, seconds: Double) {
        Counter(label: "twind_retrain_jobs_total", dimensions: [("outcome", outcome)]).increment()
        Timer(label: "twind_retrain_duration_seconds").recordNanoseconds(Int64(seconds * 1e9))
    }

    static let shownVersion = Mutex<String?>(nil)

    static func activeModel(version: String, rocAUC: Double, rulMAEHours: Double) {
        // One series per active version, 1 for the active one (0 for the one it replaced).
        let previous = shownVersion.withLock { old in defer { old = version }; return old }
        if let previous, previous != version { Gauge(label: "twind_model_active_info", dimensions: [("version", previous)]).record(0) }
        Gauge(label: "twind_model_active_info", dimensions: [("version", version)]).record(1)
        Gauge(label: "twind_model_heldout_roc_auc").record(rocAUC.isNaN ? 0 : rocAUC)
        Gauge(label: "twind_model_heldout_rul_mae_seconds").record(rulMAEHours.isNaN ? 0 : rulMAEHours * 3600)
    }

    static func openAlerts(_ bySeverity: [String: Int]) {
        for severity in ["info", "warning", "critical"] {
            Gauge(label: "twind_alerts_open", dimensions: [("severity", severity)]).record(bySeverity[severity] ?? 0)
        }
    }

    static let started = Date()
    static func process() {
        Gauge(label: "twind_uptime_seconds").record(Date().timeIntervalSince(started))
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
           let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
            Gauge(label: "twind_process_resident_memory_bytes").record(pages * Int(sysconf(Int32(_SC_PAGESIZE))))
        }
    }
}

/// Where the auth interceptor leaves the caller's name for the request log (which runs around it).
final class CallerSlot: Sendable {
    private let name = Mutex<String?>(nil)
    func set(_ value: String) { name.withLock { $0 = value } }
    var value: String? { name.withLock { $0 } }
    @TaskLocal static var current: CallerSlot?
}

/// One line per finished RPC (method, peer, user, status, duration; never tokens or payloads)
/// and the RPC metrics. Slow unary calls are logged at warning with their duration.
struct RequestLogInterceptor: ServerInterceptor {
    let logger: Logger
    let levelSwitch: LogLevelSwitch
    var level: Logger.Level { levelSwitch.level }
    static let slow = 1.0

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let began = ContinuousClock.now
        let slot = CallerSlot()
        let method = context.descriptor.fullyQualifiedMethod
        let streaming = AccessTable.longLived.contains(method)
        let finish: @Sendable (RPCError.Code?) -> Void = { code in
            let seconds = (ContinuousClock.now - began).seconds
            let status = code.map { "\($0)" } ?? "ok"
            Telemetry.rpc(method: method, code: status, seconds: seconds)
            let user = slot.value ?? "-"
            let slow = !streaming && seconds >= Self.slow && !method.hasSuffix("/Login")
            logger.log(
                level: slow ? .warning : level, "\(slow ? "slow rpc" : "rpc")",
                metadata: ["method": "\(method)", "peer": "\(context.clientPeer)", "user": "\(user)", "status": "\(status)", "duration_ms": "\(String(format: "%.1f", seconds * 1000))"])
        }
        let response: StreamingServerResponse<Output>
        do {
            response = try await CallerSlot.$current.withValue(slot) { try await next(request, context) }
        } catch {
            finish((error as? RPCError)?.code ?? (error as? any RPCErrorConvertible)?.rpcErrorCode ?? .unknown)
            throw error
        }
        guard case .success(var contents) = response.accepted else {
            if case .failure(let error) = response.accepted { finish(error.code) }
            return response
        }
        let producer = contents.producer
        contents.producer = { writer in
            do {
                let trailers = try await producer(writer)
                finish(nil)
                return trailers
            } catch {
                finish((error as? RPCError)?.code ?? (error as? any RPCErrorConvertible)?.rpcErrorCode ?? .unknown)
                throw error
            }
        }
        var result = response
        result.accepted = .success(contents)
        return result
    }
}

/// `/metrics` in the Prometheus text format on a plain-HTTP listener of its own.
final class MetricsExporter: Sendable {
    let registry: PrometheusCollectorRegistry
    let channel: any Channel
    let address: NetworkAddress

    init(registry: PrometheusCollectorRegistry, host: String, port: Int, logger: Logger) async throws {
        self.registry = registry
        let registry = registry
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // A scraper that connects and says nothing is dropped after 30 s.
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(MetricsExporter.idleSeconds)))
                    try channel.pipeline.syncOperations.addHandler(CloseWhenIdle())
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry))
                }
            }
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            throw TwinError.unavailable("cannot listen for metrics on \(host):\(port): \(error)")
        }
        address = .tcp(host: host, port: channel.localAddress?.port ?? port)
        logger.notice("metrics listening", metadata: ["address": "\(address)", "path": "/metrics"])
    }

    static let idleSeconds: Int64 = 30

    func close() async {
        try? await channel.close()
    }
}

/// Closes a connection when `IdleStateHandler` says it has been quiet too long.
final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }
}

final class MetricsHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let registry: PrometheusCollectorRegistry
    var path = ""
    var method = HTTPMethod.GET

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.uri
            method = head.method
        case .body:
            break
        case .end:
            var body: [UInt8] = []
            var status = HTTPResponseStatus.ok
            var type = "text/plain; version=0.0.4; charset=utf-8"
            if method == .GET && (path == "/metrics" || path.hasPrefix("/metrics?")) {
                Telemetry.process()
                body.reserveCapacity(16 << 10)
                registry.emit(into: &body)
            } else {
                status = .notFound
                type = "text/plain; charset=utf-8"
                body = Array("only GET /metrics is served here\n".utf8)
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: type)
            headers.add(name: "Content-Length", value: "\(body.count)")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

/// For `twin-bench metrics`: the in-process cost of recording one RPC (counter + histogram).
@_spi(Benchmarks)
public enum TelemetryBenchmark {
    public static func recordRPC(iterations: Int) -> Duration {
        let began = ContinuousClock.now
        for i in 0..<iterations { Telemetry.rpc(method: "twin.v1.TwinService/ListDevices", code: "ok", seconds: Double(i % 100) * 1e-5) }
        return (ContinuousClock.now - began) / iterations
    }
}

/// The address a call came from. Calls the console's HTTP bridge makes for a browser arrive over
/// the in-process transport carrying the browser's address in `x-twin-peer`; that header is
/// believed only there (nobody outside twind can open an in-process call), so the login
/// throttle, the audit log and the request log see the browser, not twind itself.
enum ClientPeer {
    @TaskLocal static var current: String?
    static let header = "x-twin-peer"
}

extension ServerContext {
    var clientPeer: String { ClientPeer.current ?? remotePeer }
}

struct ClientPeerInterceptor: ServerInterceptor {
    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard context.remotePeer.hasPrefix("in-process:"),
              let forwarded = request.metadata[stringValues: ClientPeer.header].first(where: { _ in true }), forwarded.utf8.count <= 200
        else { return try await next(request, context) }
        var response = try await ClientPeer.$current.withValue(forwarded) { try await next(request, context) }
        guard case .success(var contents) = response.accepted else { return response }
        let producer = contents.producer
        contents.producer = { writer in try await ClientPeer.$current.withValue(forwarded) { try await producer(writer) } }
        response.accepted = .success(contents)
        return response
    }
}

/// A log level that can change while twind runs (SIGHUP re-reads `log-level` and
/// `rpc-log-level`): every logger and the RPC log read it at each line.
public final class LogLevelSwitch: Sendable {
    private let raw: Atomic<Int>
    private static let levels = Logger.Level.allCases

    public init(_ level: Logger.Level) { raw = Atomic(Self.levels.firstIndex(of: level) ?? 2) }

    public var level: Logger.Level {
        get { Self.levels[raw.load(ordering: .relaxed)] }
        set { raw.store(Self.levels.firstIndex(of: newValue) ?? 2, ordering: .relaxed) }
    }
}
