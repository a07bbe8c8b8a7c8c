import CMosquitto
import Foundation
import Logging
import Synchronization
import TwinCore

/// Where twind connects and how (`--mqtt-*` flags).
public struct MQTTSettings: Sendable, Equatable {
    public enum Version: String, Sendable { case v311 = "3.1.1", v5 = "5" }

    public var host: String
    public var port: Int
    public var tls: Bool
    /// Stable across restarts: the broker keeps the session (subscriptions and the QoS 1
    /// messages published while twind was away) under this id.
    public var clientID: String
    public var username: String?
    /// Read from a file or a credential, never from a flag value.
    public var password: String?
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    public var version: Version = .v311
    public var keepAlive: Int = 30
    /// Reconnect backoff: the first wait, doubled per failure up to the last.
    public var reconnectFirst: Nanos = Time.second / 2
    public var reconnectMax: Nanos = 30 * Time.second
    /// MQTT 5 session expiry (how long the broker keeps the session while twind is away).
    public var sessionExpiry: UInt32 = 7 * 24 * 3600

    public init(host: String, port: Int, tls: Bool, clientID: String) {
        self.host = host
        self.port = port
        self.tls = tls
        self.clientID = clientID
    }

    /// `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (8883).
    public static func parse(broker: String, clientID: String) throws(TwinError) -> MQTTSettings {
        let tls: Bool
        let rest: Substring
        if broker.hasPrefix("mqtt://") { tls = false; rest = broker.dropFirst(7) }
        else if broker.hasPrefix("mqtts://") { tls = true; rest = broker.dropFirst(8) }
        else { throw .invalidArgument("--mqtt-broker '\(broker.prefix(80))' must be mqtt://HOST:PORT or mqtts://HOST:PORT") }
        var hostPart = Substring(rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        var port = tls ? 8883 : 1883
        if hostPart.hasPrefix("[") {  // [v6]:port
            guard let close = hostPart.firstIndex(of: "]") else { throw .invalidArgument("--mqtt-broker '\(broker.prefix(80))': unclosed '['") }
            let after = hostPart[hostPart.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw .invalidArgument("--mqtt-broker '\(broker.prefix(80))': the port must be 1–65535") }
                port = p
            }
            hostPart = hostPart[hostPart.index(after: hostPart.startIndex)..<close]
        } else if let colon = hostPart.lastIndex(of: ":") {
            guard let p = Int(hostPart[hostPart.index(after: colon)...]), (1...65535).contains(p) else { throw .invalidArgument("--mqtt-broker '\(broker.prefix(80))': the port must be 1–65535") }
            port = p
            hostPart = hostPart[..<colon]
        }
        guard !hostPart.isEmpty else { throw .invalidArgument("--mqtt-broker '\(broker.prefix(80))' names no host") }
        guard !clientID.isEmpty, clientID.utf8.count <= 128 else { throw .invalidArgument("--mqtt-client-id must be 1–128 bytes") }
        return MQTTSettings(host: String(hostPart), port: port, tls: tls, clientID: clientID)
    }

    public var brokerURL: String { "\(tls ? "mqtts" : "mqtt")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

/// What the client tells the code that uses it. All calls come on the client's own thread, one
/// at a time; `flush` is the commit point (see `MQTTClient`).
public protocol MQTTHandler: AnyObject, Sendable {
    /// The will to register for the next connection (a Sparkplug host's STATE death), if any.
    func will(for client: MQTTClient) -> MQTTClient.Message?
    /// The broker accepted the connection: subscribe, publish births.
    func connected(_ client: MQTTClient, sessionPresent: Bool)
    /// One message; what it yields is gathered until `flush`.
    func received(_ client: MQTTClient, topic: String, payload: UnsafeRawBufferPointer, retained: Bool, now: Nanos)
    /// Makes durable what the messages since the last flush carried. Called before any
    /// acknowledgement of them leaves twind; throwing drops the connection unacknowledged, so the
    /// broker delivers them again.
    func flush(_ client: MQTTClient, now: Nanos) throws
    /// The connection is gone (`error` says why, `nil` for a disconnect twind asked for).
    func disconnected(_ client: MQTTClient, error: String?)
    /// Called about every 100 ms on the client's thread (timers: sequence gaps and the like).
    func tick(_ client: MQTTClient, now: Nanos)
    /// Before a clean disconnect (the Sparkplug STATE death).
    func stopping(_ client: MQTTClient)
}

/// A connection to an MQTT broker over libmosquitto, driven on a thread of its own.
///
/// **Acknowledgements follow the commit.** libmosquitto 2.0.11 has no manual-ack API: for a
/// QoS 1 PUBLISH it queues the PUBACK itself before calling `on_message`. But in threaded mode
/// (`mosquitto_threaded_set`) a queued packet is only written by `mosquitto_loop_write`, never
/// while packets are being read. So the loop here reads what the socket holds
/// (`mosquitto_loop_read`), hands every message to the handler, calls the handler's `flush`
/// (the commit), and only then writes (`mosquitto_loop_write`), PUBACKs included. If the
/// commit fails the connection is dropped with the acknowledgements unsent; the persistent
/// session (clean session off, a fixed client id) makes the broker send those messages again.
/// A `kill -9` at any point loses nothing the broker has been told was received.
public final class MQTTClient: @unchecked Sendable {
    public struct Message: Sendable {
        public var topic: String
        public var payload: [UInt8]
        public var qos: Int32
        public var retain: Bool
        public init(topic: String, payload: [UInt8], qos: Int32, retain: Bool) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
        }
    }

    /// What `ListGateways` shows of the connection.
    public struct Status: Sendable {
        public var connected = false
        public var since: Nanos = 0
        public var messages: UInt64 = 0
        public var readings: UInt64 = 0
        public var reconnects: UInt64 = 0
        public var lastError = ""
    }

    public let settings: MQTTSettings
    let logger: Logger
    private weak var handlerReference: (any MQTTHandler)?
    private let status = Mutex(Status())
    private let running = Atomic<Bool>(true)
    /// Set by the loop thread once it has finished (clean disconnect done).
    private let finished = Shared<[CheckedContinuation<Void, Never>]?>([])
    // Loop-thread state (only the loop thread touches these).
    private var mosq: OpaquePointer?
    private var connectedNow = false
    private var everConnected = false
    private var pendingError: String?

    public init(settings: MQTTSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        _ = Self.libraryReady
    }

    private static let libraryReady: Bool = {
        mosquitto_lib_init()
        return true
    }()

    public var snapshot: Status { status.withLock { $0 } }

    /// Counts the readings a commit stored, for `ListGateways` (the handler calls it).
    public func count(readings: Int) {
        status.withLock { $0.readings &+= UInt64(readings) }
    }

    /// Starts the loop thread; it connects, and reconnects with backoff, until `stop`.
    public func start(handler: any MQTTHandler) {
        handlerReference = handler
        let thread = Thread { [self] in
            self.loop(handler: handler)
        }
        thread.name = "mqtt \(settings.brokerURL)"
        thread.start()
    }

    /// Asks the loop to disconnect cleanly (the handler's `stopping` first) and waits for it, at
    /// most `limit` (a connect attempt to an unreachable broker can block its thread far longer;
    /// the daemon's drain does not wait for that).
    public func stop(limit: Duration = .seconds(3)) async {
        running.store(false, ordering: .releasing)
        let finished = self.finished
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = finished.withLock { waiters -> Bool in
                guard waiters != nil else { return true }
                waiters!.append(c)
                return false
            }
            if done { c.resume(); return }
            Task {
                try? await Task.sleep(for: limit)
                let late = finished.withLock { w -> [CheckedContinuation<Void, Never>] in
                    let all = w ?? []
                    if w != nil { w = [] }
                    return all
                }
                for w in late { w.resume() }
            }
        }
    }

    // MARK: Publishing (from the handler, on the loop thread)

    /// Queues a publish; it goes out at the next write. Returns false when not connected.
    @discardableResult
    public func publish(_ message: Message) -> Bool {
        guard let mosq, connectedNow else { return false }
        let rc = message.payload.withUnsafeBytes { buf in
            mosquitto_publish(mosq, nil, message.topic, Int32(buf.count), buf.baseAddress, message.qos, message.retain)
        }
        return rc == MOSQ_ERR_SUCCESS.rawValue
    }

    public func subscribe(_ filters: [String], qos: Int32 = 1) {
        guard let mosq else { return }
        for filter in filters {
            let rc = mosquitto_subscribe(mosq, nil, filter, qos)
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                logger.error("MQTT subscribe failed", metadata: ["filter": "\(filter)", "error": "\(Self.describe(rc))"])
            }
        }
    }

    // MARK: The loop

    private func loop(handler: any MQTTHandler) {
        var backoff = settings.reconnectFirst
        var lastAttemptFailed = false
        while running.load(ordering: .acquiring) {
            if mosq == nil || mosquitto_socket(mosq) < 0 {
                if let error = connect(handler: handler) {
                    if !lastAttemptFailed || backoff >= settings.reconnectMax {
                        logger.warning("cannot reach the MQTT broker; retrying", metadata: ["broker": "\(settings.brokerURL)", "error": "\(error)", "retry_in": "\(DurationText.format(backoff))"])
                    }
                    lastAttemptFailed = true
                    status.withLock { $0.lastError = error }
                    backOff(&backoff)
                    continue
                }
                lastAttemptFailed = false
            }
            guard let mosq else { continue }
            let socket = mosquitto_socket(mosq)
            var fd = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            if mosquitto_want_write(mosq) { fd.events |= Int16(POLLOUT) }
            let ready = poll(&fd, 1, 100)
            var failure: Int32 = MOSQ_ERR_SUCCESS.rawValue
            if ready > 0 && (fd.revents & Int16(POLLIN | POLLHUP | POLLERR)) != 0 {
                // Read what the socket holds (a bounded round), then commit, then write.
                var rounds = 0
                repeat {
                    failure = mosquitto_loop_read(mosq, 1)
                    rounds += 1
                    if failure != MOSQ_ERR_SUCCESS.rawValue { break }
                    var more = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
                    if poll(&more, 1, 0) <= 0 { break }
                } while rounds < 512 && running.load(ordering: .relaxed)
                do {
                    try handler.flush(self, now: Time.now())
                } catch {
                    // Nothing of this round is acknowledged: drop the connection unwritten.
                    let text = (error as? TwinError)?.message ?? "\(error)"
                    logger.error("cannot store what came over MQTT; dropping the connection unacknowledged so the broker sends it again",
                                 metadata: ["broker": "\(settings.brokerURL)", "error": "\(text)"])
                    status.withLock { $0.lastError = text }
                    dropConnection(handler: handler, error: "store: \(text)")
                    backOff(&backoff)
                    continue
                }
            }
            if failure == MOSQ_ERR_SUCCESS.rawValue, mosquitto_want_write(mosq) {
                failure = mosquitto_loop_write(mosq, 1)
            }
            if failure == MOSQ_ERR_SUCCESS.rawValue { failure = mosquitto_loop_misc(mosq) }
            handler.tick(self, now: Time.now())
            if failure != MOSQ_ERR_SUCCESS.rawValue || pendingError != nil {
                let error = pendingError ?? Self.describe(failure)
                dropConnection(handler: handler, error: error)
                continue
            }
            if connectedNow { backoff = settings.reconnectFirst }
        }
        // A clean disconnect: the handler's last words (STATE death), written, then DISCONNECT.
        if let mosq, connectedNow {
            handler.stopping(self)
            let deadline = Time.now() + Time.second
            while mosquitto_want_write(mosq) && Time.now() < deadline {
                if mosquitto_loop_write(mosq, 1) != MOSQ_ERR_SUCCESS.rawValue { break }
            }
            // Give the broker a moment to take a QoS 1 death before the DISCONNECT.
            var fd = pollfd(fd: mosquitto_socket(mosq), events: Int16(POLLIN), revents: 0)
            if poll(&fd, 1, 200) > 0 { _ = mosquitto_loop_read(mosq, 1) }
            mosquitto_disconnect(mosq)
            while mosquitto_want_write(mosq) && Time.now() < deadline {
                if mosquitto_loop_write(mosq, 1) != MOSQ_ERR_SUCCESS.rawValue { break }
            }
            handler.disconnected(self, error: nil)
        }
        if let mosq { mosquitto_destroy(mosq) }
        mosq = nil
        status.withLock { $0.connected = false; $0.since = Time.now() }
        let waiters = finished.withLock { w -> [CheckedContinuation<Void, Never>] in
            let all = w ?? []
            w = nil
            return all
        }
        for w in waiters { w.resume() }
    }

    /// Destroys the connection without writing what is queued (acknowledgements included).
    private func dropConnection(handler: any MQTTHandler, error: String) {
        if let mosq { mosquitto_destroy(mosq) }
        mosq = nil
        let was = connectedNow
        connectedNow = false
        pendingError = nil
        status.withLock { s in
            s.connected = false
            s.since = Time.now()
            s.lastError = error
        }
        if was {
            logger.warning("lost the MQTT broker", metadata: ["broker": "\(settings.brokerURL)", "error": "\(error)"])
            handler.disconnected(self, error: error)
        }
    }

    /// Waits `backoff` (or until stopped), then doubles it with jitter (±20 %, so a plant's
    /// gateways do not reconnect in step) up to `reconnectMax`.
    private func backOff(_ backoff: inout Nanos) {
        sleepInterruptibly(backoff)
        backoff = min(settings.reconnectMax, Nanos(Double(backoff) * Double.random(in: 1.6...2.4)))
    }

    private func sleepInterruptibly(_ span: Nanos) {
        let until = Time.now() + span
        while running.load(ordering: .relaxed) && Time.now() < until {
            usleep(UInt32(min(100_000, max(1, (until - Time.now()) / 1000))))
        }
    }

    /// A fresh libmosquitto client, connected (CONNACK comes later through the loop).
    private func connect(handler: any MQTTHandler) -> String? {
        if let mosq { mosquitto_destroy(mosq) }
        // Clean session off: the broker keeps the subscriptions and queues QoS 1 messages.
        guard let m = mosquitto_new(settings.clientID, false, Unmanaged.passUnretained(self).toOpaque()) else {
            return "cannot create an MQTT client (out of memory or an invalid client id)"
        }
        mosq = m
        mosquitto_threaded_set(m, true)
        mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, settings.version == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311)
        if let username = settings.username {
            let rc = mosquitto_username_pw_set(m, username, settings.password)
            if rc != MOSQ_ERR_SUCCESS.rawValue { return "username/password: \(Self.describe(rc))" }
        }
        if settings.tls {
            let rc = mosquitto_tls_set(m, settings.caFile, settings.caFile == nil ? "/etc/ssl/certs" : nil, settings.certFile, settings.keyFile, nil)
            if rc != MOSQ_ERR_SUCCESS.rawValue { return "TLS settings: \(Self.describe(rc))" }
        }
        if let will = handler.will(for: self) {
            let rc = will.payload.withUnsafeBytes { buf in
                mosquitto_will_set(m, will.topic, Int32(buf.count), buf.baseAddress, will.qos, will.retain)
            }
            if rc != MOSQ_ERR_SUCCESS.rawValue { return "will: \(Self.describe(rc))" }
        }
        mosquitto_connect_with_flags_callback_set(m) { _, context, rc, flags in
            guard let context else { return }
            Unmanaged<MQTTClient>.fromOpaque(context).takeUnretainedValue().onConnect(rc: rc, flags: flags)
        }
        mosquitto_message_callback_set(m) { _, context, message in
            guard let context, let message else { return }
            Unmanaged<MQTTClient>.fromOpaque(context).takeUnretainedValue().onMessage(message.pointee)
        }
        mosquitto_disconnect_callback_set(m) { _, context, rc in
            guard let context else { return }
            let client = Unmanaged<MQTTClient>.fromOpaque(context).takeUnretainedValue()
            // A refusal said at CONNACK is the reason; the disconnect that follows is not news.
            if rc != 0, client.pendingError == nil { client.pendingError = "disconnected: \(MQTTClient.describe(rc))" }
        }
        var rc: Int32
        if settings.version == .v5 {
            var properties: OpaquePointer? = nil
            mosquitto_property_add_int32(&properties, Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue), settings.sessionExpiry)
            rc = mosquitto_connect_bind_v5(m, settings.host, Int32(settings.port), Int32(settings.keepAlive), nil, properties)
            mosquitto_property_free_all(&properties)
        } else {
            rc = mosquitto_connect_bind(m, settings.host, Int32(settings.port), Int32(settings.keepAlive), nil)
        }
        if rc != MOSQ_ERR_SUCCESS.rawValue {
            let text = rc == MOSQ_ERR_ERRNO.rawValue ? String(cString: strerror(errno)) : Self.describe(rc)
            mosquitto_destroy(m)
            mosq = nil
            return text
        }
        return nil
    }

    private func onConnect(rc: Int32, flags: Int32) {
        guard let handler = handlerReference else { return }
        if rc != 0 {
            let why = settings.version == .v5 ? String(cString: mosquitto_reason_string(rc)) : String(cString: mosquitto_connack_string(rc))
            pendingError = "the broker refused the connection: \(why)"
            return
        }
        let reconnected = everConnected
        everConnected = true
        connectedNow = true
        status.withLock { s in
            s.connected = true
            s.since = Time.now()
            if reconnected { s.reconnects &+= 1 }
        }
        let sessionPresent = (flags & 1) != 0
        logger.notice("connected to the MQTT broker", metadata: ["broker": "\(settings.brokerURL)", "client_id": "\(settings.clientID)", "session_present": "\(sessionPresent)"])
        handler.connected(self, sessionPresent: sessionPresent)
    }

    private func onMessage(_ message: mosquitto_message) {
        guard let handler = handlerReference, let topicPointer = message.topic else { return }
        status.withLock { $0.messages &+= 1 }
        let topic = String(cString: topicPointer)
        let payload = UnsafeRawBufferPointer(start: message.payload, count: Int(max(0, message.payloadlen)))
        handler.received(self, topic: topic, payload: payload, retained: message.retain, now: Time.now())
    }

    static func describe(_ rc: Int32) -> String {
        String(cString: mosquitto_strerror(rc))
    }
}

/// A value behind a lock, shareable with a Task.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
