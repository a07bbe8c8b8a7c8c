import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import ServiceLifecycle
import Synchronization
import TwinApp
import TwinCore

// The daemon's concerns, each a `Service` of the ServiceGroup that `Daemon.run()` runs. The group
// starts them in the order `Daemon.concerns()` lists them and, on graceful shutdown, stops them
// one after the other in the reverse order: first the drain (health NOT_SERVING, live streams
// end), then what feeds the plant, the listeners, the tickers, and the gRPC servers last, each
// letting its calls finish. `maximumGracefulShutdownDuration` cuts whatever is still open.

/// A one-shot "it is up" (or "it failed") that one concern sets and another awaits.
final class Readiness: Sendable {
    private let state = Mutex<(outcome: Result<Void, TwinError>?, waiters: [CheckedContinuation<Result<Void, TwinError>, Never>])>((nil, []))

    func settle(_ outcome: Result<Void, TwinError>) {
        let waiters = state.withLock { s -> [CheckedContinuation<Result<Void, TwinError>, Never>] in
            guard s.outcome == nil else { return [] }
            s.outcome = outcome
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: outcome) }
    }

    func wait() async throws(TwinError) {
        let outcome = await withCheckedContinuation { (c: CheckedContinuation<Result<Void, TwinError>, Never>) in
            let known = state.withLock { s -> Result<Void, TwinError>? in
                if let o = s.outcome { return o }
                s.waiters.append(c)
                return nil
            }
            if let known { c.resume(returning: known) }
        }
        try outcome.get()
    }
}

/// One gRPC server (a TCP or Unix-socket listener). On graceful shutdown it takes no new calls
/// and waits for the open ones; the group's deadline cancels it, which closes what is left.
/// With `reloads` (TLS listeners), each reload replaces the server by a new one from `make`
/// (which reads the certificate files again): the old one stops listening and lets its calls
/// finish, the new one binds the same address (retried while the old socket lets go).
struct GRPCServerConcern: Service, CustomStringConvertible {
    let address: NetworkAddress
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let logger: Logger
    var reloads: ChangeSignal? = nil
    /// A new server for the same address, on the port given (the one bound, where the
    /// configuration said 0).
    var make: (@Sendable (_ port: Int) -> GRPCServer<HTTP2ServerTransport.Posix>)? = nil
    var description: String { "gRPC server \(address)" }

    final class Current: Sendable {
        let server: Mutex<GRPCServer<HTTP2ServerTransport.Posix>>
        let stopping = Mutex(false)
        init(_ s: GRPCServer<HTTP2ServerTransport.Posix>) { server = Mutex(s) }
    }

    func run() async throws {
        let (first, logger, address, make) = (server, logger, address, make)
        let current = Current(first)
        let changes = reloads?.subscribe()
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask {
                        do { try await first.serve() } catch {
                            // Cancelled by the group once the shutdown grace is over: the calls
                            // still open are cut (logged below), which is how the grace ends, not
                            // a failure to listen.
                            if Task.isCancelled { return }
                            throw TwinError.unavailable("cannot listen on \(address): \(Daemon.describe(error))")
                        }
                    }
                    guard let changes, let make else { return }
                    // The signal's wake-ups, until graceful shutdown ends them; the servers
                    // below are not cancelled by it (they drain like the first one).
                    let (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
                    group.addTask {
                        await cancelWhenGracefulShutdown { for await _ in changes { wake.yield() } }
                        wake.finish()
                    }
                    group.addTask {
                        await withDiscardingTaskGroup { servers in
                            for await _ in wakes {
                                if current.stopping.withLock({ $0 }) { return }
                                let old = current.server.withLock { $0 }
                                let bound = try? await old.listeningAddress
                                guard let port = bound?.ipv4?.port ?? bound?.ipv6?.port else { continue }
                                old.beginGracefulShutdown()
                                // The same address; a server serves once, so a failed one is made again.
                                let outcome = await rebinding { () async throws -> GRPCServer<HTTP2ServerTransport.Posix> in
                                    let next = make(port)
                                    servers.addTask { try? await next.serve() }
                                    _ = try await next.listeningAddress
                                    return next
                                }
                                switch outcome {
                                case .success(let next):
                                    current.server.withLock { $0 = next }
                                    logger.notice("listening with the reloaded TLS certificate", metadata: ["address": "\(address)", "port": "\(port)"])
                                case .failure(let error):
                                    logger.error("cannot listen again after the TLS reload", metadata: ["address": "\(address)", "error": "\(Daemon.describe(error))"])
                                }
                                if current.stopping.withLock({ $0 }) { current.server.withLock { $0 }.beginGracefulShutdown() }
                            }
                        }
                    }
                }
            } onCancel: {
                logger.warning("calls still open after the shutdown grace; closing them", metadata: ["address": "\(address)"])
            }
        } onGracefulShutdown: {
            current.stopping.withLock { $0 = true }
            current.server.withLock { $0 }.beginGracefulShutdown()
        }
    }
}

/// Work repeated on a timer (the health pass, store maintenance, …) until graceful shutdown; a
/// pass under way is let finish.
struct TickerConcern: Service, CustomStringConvertible {
    let name: String
    /// Runs once at once, before the first wait.
    var atStart: (@Sendable () async -> Void)? = nil
    let interval: Duration
    let body: @Sendable () async -> Void
    var description: String { name }

    func run() async throws {
        let (interval, body, atStart) = (interval, body, atStart)
        let stop = Mutex(false)
        try await withGracefulShutdownHandler {
            await atStart?()
            while !stop.withLock({ $0 }) && !Task.isCancelled {
                // The wait ends early at shutdown; the pass after it does not run then.
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
                if stop.withLock({ $0 }) || Task.isCancelled { return }
                await body()
            }
        } onGracefulShutdown: {
            stop.withLock { $0 = true }
        }
    }
}

/// A long-running loop (the simulator, the notifier) cancelled at graceful shutdown, with what
/// to do once it has ended.
struct LoopConcern: Service, CustomStringConvertible {
    let name: String
    let body: @Sendable () async -> Void
    var after: @Sendable () async -> Void = {}
    var description: String { name }

    func run() async throws {
        await cancelWhenGracefulShutdown(body)
        await after()
    }
}

/// Something that listens or connects on its own (the console, the metrics exporter, the MQTT
/// and OPC UA gateways): started once the gRPC servers listen, marked ready, stopped at
/// graceful shutdown.
struct ListenerConcern: Service, CustomStringConvertible {
    let name: String
    /// Set when the gRPC servers listen (or failed to): it starts after them.
    let after: Readiness
    let ready = Readiness()
    /// Each signal stops it and starts it again (the console with a reloaded TLS certificate);
    /// a start that fails then is logged and retried at the next signal.
    var restarts: ChangeSignal? = nil
    var logger: Logger? = nil
    /// Starts it; returns how to stop it.
    let start: @Sendable () async throws(TwinError) -> @Sendable () async -> Void
    var description: String { name }

    func run() async throws {
        let stop: Mutex<@Sendable () async -> Void>
        do throws(TwinError) {
            try await after.wait()
            stop = Mutex(try await start())
        } catch {
            ready.settle(.failure(error))
            throw error
        }
        ready.settle(.success(()))
        if let changes = restarts?.subscribe() {
            let (start, name, logger) = (start, name, logger)
            await cancelWhenGracefulShutdown {
                for await _ in changes {
                    await stop.withLock { $0 }()
                    stop.withLock { $0 = {} }
                    switch await rebinding({ () async throws -> @Sendable () async -> Void in try await start() }) {
                    case .success(let next):
                        stop.withLock { $0 = next }
                        logger?.notice("restarted", metadata: ["listener": "\(name)"])
                    case .failure(let error):
                        logger?.error("cannot start again", metadata: ["listener": "\(name)", "error": "\(Daemon.describe(error))"])
                    }
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        await stop.withLock { $0 }()
    }
}

/// The training worker: the jobs `Prognostics` queues, one at a time on the training thread. At
/// graceful shutdown a job still training is reported failed and abandoned to the process's end
/// (its files are in a staging directory); no job starts after it.
struct TrainingConcern: Service, CustomStringConvertible {
    let prognostics: Prognostics
    var description: String { "training worker" }

    func run() async throws {
        let prognostics = prognostics
        await cancelWhenGracefulShutdown { await prognostics.runJobs() }
        prognostics.stop()
    }
}

/// Last in the list, so first to stop: waits until the servers and the listeners are up, says
/// so (logs, systemd READY=1), and at graceful shutdown drains: health turns NOT_SERVING and
/// live streams end, before anything else stops.
struct AnnounceAndDrainConcern: Service, CustomStringConvertible {
    let daemon: Daemon
    let listeners: [Readiness]
    var description: String { "announce and drain" }

    func run() async throws {
        let addresses: [NetworkAddress]
        do { addresses = try await daemon.listeningAddresses() } catch {
            daemon.serversUp.settle(.failure((error as? TwinError) ?? .unavailable(Daemon.describe(error))))
            throw error
        }
        for address in addresses { daemon.logger.notice("listening", metadata: ["address": "\(address)"]) }
        daemon.serversUp.settle(.success(()))
        for l in listeners { try await l.wait() }
        daemon.hooks.ready(addresses)
        daemon.logger.notice("twind is serving")
        try? await gracefulShutdown()
        daemon.logger.notice("shutting down: draining streams and calls")
        daemon.hooks.stopping()
        daemon.health.drain()
        daemon.plant.bus.shutdown()
    }
}

/// Binds again on a port a listener just let go of: the old socket closes at once, but the new
/// bind may race it. Tries `bind` up to 40 times, 50 ms apart; the last error when none took.
func rebinding<T: Sendable>(_ bind: () async throws -> T) async -> Result<T, any Error> {
    var last: any Error = CancellationError()
    for attempt in 1...40 {
        do { return .success(try await bind()) } catch { last = error }
        if attempt < 40 { try? await Task.sleep(for: .milliseconds(50)) }
    }
    return .failure(last)
}
