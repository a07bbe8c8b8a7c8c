import Logging
import Synchronization
import TwinCore
import TwinEngines

/// Drives the simulator on the wall clock: one tick every interval, aligned to the interval, into
/// the plant. Missed ticks (a stalled machine) are skipped, not replayed in a burst.
final class SimulatorRunner: Sendable {
    private let state: Mutex<(simulator: Simulator, output: Simulator.Output)>
    let interval: Nanos
    let logger: Logger

    init(simulator: Simulator, interval: Nanos, logger: Logger) {
        state = Mutex((simulator, Simulator.Output()))
        self.interval = interval
        self.logger = logger
    }

    /// One tick at `time` applied to the plant; returns the number of samples.
    @discardableResult
    func tick(at time: Nanos, plant: Plant) -> Int {
        let (samples, statuses, events) = state.withLock { s in
            s.simulator.tick(at: time, into: &s.output)
            return (s.output.samples, s.output.statuses, s.output.events)
        }
        plant.apply(samples, hints: statuses, now: Time.now())
        store(events, plant: plant)
        return samples.count
    }

    /// Ground truth goes into the maintenance log, where training finds its labels.
    func store(_ events: [MaintenanceEvent], plant: Plant) {
        if events.isEmpty { return }
        do {
            _ = try plant.record(events)
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
    func recordMaintenance(deviceID: String, kind: MaintenanceEvent.Kind, at time: Nanos) -> Bool {
        state.withLock { $0.simulator.recordMaintenance(deviceID: deviceID, kind: kind, at: time) }
    }

    /// Simulates `span` of past up to now, quickly: wear and faults advance and the ground truth
    /// is recorded. Start-up work, done before twind serves.
    func backfill(span: Nanos, plant: Plant) {
        let began = ContinuousClock.now
        let end = (Time.now() / interval) * interval
        var t = end - (span / interval) * interval
        var count = 0
        var events: [MaintenanceEvent] = []
        while t < end {
            let (samples, happened) = state.withLock { s in
                s.simulator.tick(at: t, into: &s.output)
                return (s.output.samples.count, s.output.events)
            }
            count += samples
            events += happened
            t += interval
        }
        store(events, plant: plant)
        // Until the time-series store lands, backfill keeps its ground truth but not its readings.
        logger.notice(
            "backfill done",
            metadata: [
                "span": "\(DurationText.format(span))", "readings": "\(count)", "ground_truth_events": "\(events.count)",
                "took": "\(ContinuousClock.now - began)", "readings_kept": "no (no time-series store yet)",
            ])
    }

    /// Runs on the wall clock until cancelled.
    func run(plant: Plant) async {
        var next = (Time.now() / interval) * interval
        while !Task.isCancelled {
            tick(at: next, plant: plant)
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
