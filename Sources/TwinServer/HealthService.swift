import GRPCCore
import Proto
import Synchronization
import TwinApp
import TwinCore

/// Serving status per service name ("" is the whole server), watched by `grpc.health.v1.Health`.
final class HealthStatus: Sendable {
    typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

    struct State {
        var statuses: [String: Status]
        var watchers: [UInt64: (service: String, continuation: AsyncStream<Status>.Continuation)] = [:]
        var nextID: UInt64 = 0
        var final = false
    }

    private let state: Mutex<State>
    /// Open Watch streams, at most; the next one is RESOURCE_EXHAUSTED.
    let maxWatchers: Int

    init(services: [String], maxWatchers: Int = 1_000) {
        var statuses: [String: Status] = ["": .serving]
        for s in services { statuses[s] = .serving }
        state = Mutex(State(statuses: statuses))
        self.maxWatchers = maxWatchers
    }

    func status(of service: String) -> Status? { state.withLock { $0.statuses[service] } }

    /// Sets every service NOT_SERVING, tells every watcher, and ends the watch streams (the
    /// server is draining; a watcher must not hold shutdown up).
    func drain() {
        let watchers = state.withLock { s in
            for key in s.statuses.keys { s.statuses[key] = .notServing }
            s.final = true
            defer { s.watchers.removeAll() }
            return Array(s.watchers.values)
        }
        for w in watchers {
            w.continuation.yield(.notServing)
            w.continuation.finish()
        }
    }

    /// Service names longer than this are refused (no service of twind's is that long).
    static let maxServiceName = 200

    var watcherCount: Int { state.withLock { $0.watchers.count } }

    /// A stream of the service's status: the current one first, then changes; nil when
    /// `maxWatchers` are open already (counted under the same lock, so a burst cannot pass it).
    func watch(_ service: String) -> (AsyncStream<Status>, cancel: @Sendable () -> Void)? {
        let (stream, continuation) = AsyncStream.makeStream(of: Status.self, bufferingPolicy: .bufferingNewest(1))
        enum Admission { case full, drained, watching(UInt64) }
        let admission = state.withLock { s -> Admission in
            guard s.watchers.count < maxWatchers else { return .full }
            continuation.yield(s.statuses[service] ?? .serviceUnknown)
            if s.final { return .drained }
            let id = s.nextID
            s.nextID += 1
            s.watchers[id] = (service, continuation)
            return .watching(id)
        }
        let id: UInt64
        switch admission {
        case .full:
            return nil
        case .drained:
            // The server is draining: the current status, then the end.
            continuation.finish()
            return (stream, {})
        case .watching(let n):
            id = n
        }
        return (stream, { [self] in
            let w = state.withLock { $0.watchers.removeValue(forKey: id) }
            w?.continuation.finish()
        })
    }
}

/// The standard `grpc.health.v1.Health` service; open to everyone.
struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
    let status: HealthStatus

    static func validate(_ service: String) throws(TwinError) {
        guard service.utf8.count <= HealthStatus.maxServiceName else {
            throw .invalidArgument("service names are at most \(HealthStatus.maxServiceName) bytes")
        }
    }

    func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        try Self.validate(request.service)
        guard let s = status.status(of: request.service) else {
            throw TwinError.status(.notFound, .notFound, "unknown service '\(request.service.prefix(100))'")
        }
        var response = Grpc_Health_V1_HealthCheckResponse()
        response.status = s
        return response
    }

    func watch(
        request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
        context: ServerContext
    ) async throws {
        try Self.validate(request.service)
        guard let (updates, cancel) = status.watch(request.service) else {
            throw TwinError(.resourceExhausted, "\(status.maxWatchers) health Watch streams are open, the most twind keeps; use Check, or try again later",
                            reason: .limitExceeded, metadata: ["limit": "\(status.maxWatchers)"])
        }
        try await withRPCCancellationHandler {
            var last: HealthStatus.Status?
            for await s in updates where s != last {
                var message = Grpc_Health_V1_HealthCheckResponse()
                message.status = s
                try await response.write(message)
                last = s
            }
        } onCancelRPC: {
            cancel()
        }
        cancel()
    }
}
