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
        for event in events {
            logger.info(
                "simulator ground truth: \(event.kind.rawValue)",
                metadata: ["device": "\(event.deviceID)", "fault": "\(event.fault)", "component": "\(event.component)"])
        }
        return samples.count
    }

    /// Runs until cancelled; first simulates `backfill` of past quickly.
    func run(plant: Plant, backfill: Nanos) async {
        var next = (Time.now() / interval) * interval
        if backfill > 0 {
            let began = ContinuousClock.now
            var t = next - (backfill / interval) * interval
            var count = 0
            var events = 0
            while t < next && !Task.isCancelled {
                let (samples, happened) = state.withLock { s in
                    s.simulator.tick(at: t, into: &s.output)
                    return (s.output.samples.count, s.output.events.count)
                }
                count += samples
                events += happened
                t += interval
            }
            // Until the store lands, backfill advances wear and faults; its readings and ground
            // truth are not kept.
            logger.notice(
                "backfill done",
                metadata: [
                    "span": "\(DurationText.format(backfill))", "readings": "\(count)", "ground_truth_events": "\(events)",
                    "took": "\(ContinuousClock.now - began)", "kept": "no (no store yet)",
                ])
        }
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
