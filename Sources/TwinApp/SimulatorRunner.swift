import Logging
import Synchronization
import TwinApp
import TwinCore
import TwinEngines

/// Drives the simulator on the wall clock: one tick every interval, aligned to the interval, into
/// the plant. Missed ticks (a stalled machine) are skipped, not replayed in a burst.
public final class SimulatorRunner: Sendable {
    private let state: Mutex<(simulator: Simulator, output: Simulator.Output)>
    public let interval: Nanos
    public let logger: Logger

    public init(simulator: Simulator, interval: Nanos, logger: Logger) {
        state = Mutex((simulator, Simulator.Output()))
        self.interval = interval
        self.logger = logger
    }

    /// One tick at `time` applied to the plant; returns the number of samples.
    @discardableResult
    public func tick(at time: Nanos, plant: Plant) -> Int {
        let (samples, statuses, events) = state.withLock { s in
            s.simulator.tick(at: time, into: &s.output)
            return (s.output.samples, s.output.statuses, s.output.events)
        }
        do {
            try plant.ingest(samples, hints: statuses, now: plant.clock.now())
        } catch {
            logger.error("cannot store simulated readings", metadata: ["readings": "\(samples.count)", "error": "\(error.message)"])
            plant.apply(samples, hints: statuses, now: plant.clock.now())
        }
        store(events, plant: plant)
        return samples.count
    }

    /// Ground truth goes into the maintenance log, where training finds its labels.
    public func store(_ events: [MaintenanceEvent], plant: Plant, relearn: Bool = true) {
        if events.isEmpty { return }
        do {
            _ = try plant.record(events, relearn: relearn)
        } catch {
            logger.error("cannot record simulator ground truth", metadata: ["events": "\(events.count)", "error": "\(error.message)"])
        }
        for event in events {
            logger.debug(
                "simulator ground truth: \(event.kind.rawValue)",
                metadata: ["device": "\(event.deviceID)", "fault": "\(event.fault)", "component": "\(event.component)"])
        }
    }

    /// An operator's maintenance on a simulated device reaches the simulation (a repair clears
    /// the fault). Returns false for devices the simulator does not drive.
    public func recordMaintenance(deviceID: String, kind: MaintenanceEvent.Kind, at time: Nanos) -> Bool {
        state.withLock { $0.simulator.recordMaintenance(deviceID: deviceID, kind: kind, at: time) }
    }

    /// Simulates `span` of past up to now, quickly: wear and faults advance, readings go into the
    /// history and the ground truth into the maintenance log. Start-up work, done before twind
    /// serves. With history already stored (a restart), the past is simulated but not stored again.
    public func backfill(span: Nanos, plant: Plant) throws(TwinError) {
        let began = ContinuousClock.now
        let keep = !(try plant.history.hasReadings())
        let end = (plant.clock.now() / interval) * interval
        var t = end - (span / interval) * interval
        var count = 0
        var events: [MaintenanceEvent] = []
        var pending: [Sample] = []
        while t < end {
            let happened = state.withLock { s in
                s.simulator.tick(at: t, into: &s.output)
                if keep { pending += s.output.samples }
                count += s.output.samples.count
                // The health engine learns each machine's normal from the past as well.
                var modes: [Int32: DeviceState.Mode] = [:]
                for status in s.output.statuses { modes[status.device] = (status.state ?? .running).mode }
                plant.health.observe(s.output.samples, modes: modes)
                return s.output.events
            }
            plant.relearn(after: happened)
            if pending.count >= 50_000 {
                try plant.history.append(pending)
                pending.removeAll(keepingCapacity: true)
            }
            events += happened
            t += interval
        }
        try plant.history.append(pending)
        if keep { store(events, plant: plant, relearn: false) }
        logger.notice(
            "backfill done",
            metadata: [
                "span": "\(DurationText.format(span))", "readings": "\(count)", "ground_truth_events": "\(events.count)",
                "took": "\(ContinuousClock.now - began)",
                "stored": "\(keep ? "yes" : "no: this data directory already has history")",
            ])
    }

    /// Runs on the wall clock until cancelled.
    public func run(plant: Plant) async {
        var next = (Time.now() / interval) * interval
        while !Task.isCancelled {
            // The tick commits its readings (an fsync): on the store's own thread.
            let at = next
            do { _ = try await plant.writes.run { self.tick(at: at, plant: plant) } } catch {
                logger.warning("simulator tick skipped", metadata: ["error": "\(error.message)"])
            }
            next += interval
            let now = Time.now()
            if now - next > interval {
                let missed = (now - next) / interval
                logger.warning("simulator fell behind; skipping ticks", metadata: ["missed": "\(missed)"])
                next += missed * interval
            }
            let wait = next - Time.now()
            if wait > 0 {
                do { try await Task.sleep(for: .nanoseconds(wait)) } catch { return }
            }
        }
    }
}
