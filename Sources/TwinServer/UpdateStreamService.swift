import GRPCCore
import GRPCProtobuf
import Proto
import TwinApp
import TwinCore
import TwinEngines

/// `TwinService.StreamUpdates`, registered over the generated handler so that messages go out in
/// wire form assembled from per-device encodings shared by every subscriber (`SnapshotEncoder`).
/// Clients see an ordinary `StreamUpdatesResponse` stream.
struct UpdateStreamService: RegistrableRPCService {
    let plant: Plant
    let encoder: SnapshotEncoder

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerEncoded(Twin_V1_TwinService.Method.StreamUpdates.descriptor, request: Twin_V1_StreamUpdatesRequest.self) { request, context in
            StreamingServerResponse(metadata: [:]) { writer in
                try await self.serve(request, peer: context.clientPeer) { try await writer.write($0) }
                return [:]
            }
        }
    }

    /// The stream: the snapshot of every matching device, the sync marker, then changes as they
    /// are published, or heartbeats. Ends when the client cancels, or with UNAVAILABLE when the
    /// daemon shuts down.
    func serve(_ request: Twin_V1_StreamUpdatesRequest, peer: String = "", write: (EncodedMessage) async throws -> Void) async throws {
        var heartbeat = plant.heartbeat
        if request.hasHeartbeatInterval {
            let h = try request.heartbeatInterval.checked("heartbeat_interval")
            guard h >= Time.second && h <= Time.minute else {
                throw TwinError.invalidArgument("heartbeat_interval must be between 1s and 60s, got \(DurationText.format(h))")
            }
            heartbeat = h
        }
        try plant.checkDevices(request.deviceIds, field: "device_ids")
        let filter = UpdateBus.Filter(deviceIDs: Set(request.deviceIds), types: Set(request.types))
        let sensors = Set(request.sensors)
        let subscription = try plant.bus.subscribe(filter: filter, heartbeat: heartbeat, now: plant.clock.now())
        Telemetry.subscriber(1)
        defer {
            plant.bus.unsubscribe(subscription)
            Telemetry.subscriber(-1)
        }

        try await withRPCCancellationHandler {
            let matching = plant.live.identities().enumerated()
                .filter { filter.matches(id: $0.element.id, type: $0.element.type) }
                .map { Int32($0.offset) }
            let reported = plant.live.reported(matching)
            for message in encoder.devicesMessages(reported.map { ($0, 0) }, sensors: sensors, live: plant.live, sentAt: plant.clock.now()) {
                try await write(message)
            }
            var done = Twin_V1_StreamUpdatesResponse()
            done.syncComplete.deviceCount = UInt32(reported.count)
            done.sentAt = .init(nanos: plant.clock.now())
            try await write(encoder.message(done))
            subscription.sent(now: plant.clock.now())
            // A subscriber that reads slower than the plant changes is told about once a minute.
            var conflated: UInt64 = 0
            var lastWarning = plant.clock.now()

            for await _ in subscription.wakeups {
                switch subscription.take(now: plant.clock.now()) {
                case .updates(let taken):
                    let skipped = taken.reduce(0) { $0 + UInt64($1.1) }
                    Telemetry.updatesSent(taken.count, conflated: skipped)
                    conflated += skipped
                    if conflated > 0, plant.clock.now() - lastWarning >= Time.minute {
                        plant.logger.warning(
                            "slow subscriber: device updates were conflated because it reads slower than they arrive",
                            metadata: ["peer": "\(peer)", "conflated": "\(conflated)", "over_s": "\((plant.clock.now() - lastWarning) / Time.second)"])
                        conflated = 0
                        lastWarning = plant.clock.now()
                    }
                    for message in encoder.devicesMessages(taken, sensors: sensors, live: plant.live, sentAt: plant.clock.now()) {
                        try await write(message)
                    }
                case .alerts(let alerts):
                    for alert in alerts {
                        var message = Twin_V1_StreamUpdatesResponse()
                        message.alert = alert.proto
                        message.sentAt = .init(nanos: plant.clock.now())
                        try await write(encoder.message(message))
                    }
                case .heartbeat(let skippedTotal):
                    var beat = Twin_V1_StreamUpdatesResponse()
                    beat.heartbeat.deviceCount = UInt32(matching.count)
                    beat.heartbeat.skippedTotal = skippedTotal
                    beat.sentAt = .init(nanos: plant.clock.now())
                    try await write(encoder.message(beat))
                case .nothing:
                    continue
                }
            }
        } onCancelRPC: {
            subscription.close(UpdateBus.CloseReason.cancelled)
        }
        if subscription.closeReason == UpdateBus.CloseReason.shuttingDown {
            throw TwinError.status(.unavailable, .shuttingDown, "twind is shutting down; reconnect to another instance or retry later")
        }
    }
}
