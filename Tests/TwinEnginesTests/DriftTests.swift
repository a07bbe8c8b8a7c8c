import Foundation
import Testing
import TwinCore
@testable import TwinEngines

/// A drifting sensor told from a machine fault by the standstill check: a machine fault acts
/// under load, a sensor's offset stays when the machine stands.
@Suite struct DriftTests {
    /// A shift-operated machine: running 06–22 h, idle at night. Current follows the load and
    /// reads ~0 at rest; the bearing temperature follows the load and, at rest, the weather.
    struct Shift {
        let engine = HealthEngine()
        var rng = SplitMix64(seed: 11)
        let start: Nanos = 1_790_035_200 * Time.second  // a midnight
        var t: Nanos
        /// Added to the current: always (a drifting sensor) or only under load (the machine).
        var currentOffset = 0.0, loadOffset = 0.0
        /// Added to the bearing temperature at rest (a warm afternoon on a day off).
        var restWarmth = 0.0
        var forceIdle = false

        init() {
            t = start
            engine.bind(device: 0, sensors: [
                SensorSpec(name: "current", unit: "A", nominalMin: 0, nominalMax: 100),
                SensorSpec(name: "bearing_temp", unit: "°C", nominalMin: 0, nominalMax: 100),
            ])
        }

        var hour: Double { Double(t % Time.day) / Double(Time.hour) }
        var running: Bool { !forceIdle && hour >= 6 && hour < 22 }

        mutating func run(until end: Nanos) {
            while t < end {
                t += Time.minute
                let load = 0.5 + 0.2 * sin(2 * Double.pi * hour / 24)
                let ambient = 18 + 3 * sin(2 * Double.pi * (hour - 9) / 24) + (running ? 0 : restWarmth)
                let current = running ? 20 + 60 * load + 0.4 * rng.normal() + loadOffset : max(0, 0.04 * rng.normal())
                let temp = ambient + (running ? 25 * load : 0) + 0.3 * rng.normal()
                engine.observe([
                    Sample(device: 0, sensor: 0, time: t, value: current + currentOffset),
                    Sample(device: 0, sensor: 1, time: t, value: temp),
                ], modes: [0: running ? .running : .idle])
            }
        }

        func verdict() throws -> HealthEngine.Verdict {
            try #require(engine.score(device: 0, state: running ? .running : .idle, outlook: nil, now: t))
        }
    }

    @Test func anOffsetAtRestIsTheSensorsAndStaysSoUnderLoadUntilServiced() throws {
        var m = Shift()
        m.run(until: m.start + 3 * Time.day)
        #expect(try m.verdict().factors.isEmpty)
        // The current sensor reads 12 A high from now on, at rest as under load.
        m.currentOffset = 12
        m.run(until: m.start + 3 * Time.day + 4 * Time.hour)  // 04:00, idle
        let resting = try m.verdict()
        let drift = try #require(resting.factors.first { $0.kind == .drift })
        #expect(drift.subject == "current" && drift.sensorFault)
        #expect(drift.description.contains("12.0 A above its idle level"), "\(drift.description)")
        // Back under load: still the sensor, and the machine is not blamed for it.
        m.run(until: m.start + 3 * Time.day + 14 * Time.hour)
        let working = try m.verdict()
        #expect(working.factors.contains { $0.kind == .drift && $0.subject == "current" })
        #expect(!working.factors.contains { !$0.sensorFault && $0.subject == "current" }, "\(working.factors.map(\.description))")
        let recs = Recommender.recommend([.init(device: Device(id: "c-1", type: "conveyor", sensors: []), verdict: working, within24h: 0, within7d: 0, rulHours: nil, lead: nil)], now: m.t)
        #expect(recs.map(\.action) == [.checkSensor] && recs[0].component == "current")
        // Recalibrated: the verdict goes, and the sensor's normals are learned anew.
        m.currentOffset = 0
        m.engine.serviced(device: 0, sensor: "current")
        #expect(!(try m.verdict().factors.contains { $0.kind == .drift }))
        m.engine.serviced(device: 0, sensor: "no such sensor")  // ignored
    }

    @Test func aFaultUnderLoadIsTheMachines() throws {
        var m = Shift()
        m.run(until: m.start + 3 * Time.day + 6 * Time.hour)
        // The machine draws 45 A more under load (a leak, a worn part); at rest it reads 0 as before.
        m.loadOffset = 45
        m.run(until: m.start + 4 * Time.day + 4 * Time.hour)
        #expect(!(try m.verdict().factors.contains { $0.kind == .drift }))
        m.run(until: m.start + 4 * Time.day + 12 * Time.hour)
        let v = try m.verdict()
        #expect(v.factors.contains { $0.kind == .deviation && $0.subject == "current" && !$0.sensorFault })
        #expect(!v.factors.contains { $0.kind == .drift })
    }

    @Test func aTemperatureAtRestFollowsTheWeatherAndIsNotJudgedSo() throws {
        var m = Shift()
        m.run(until: m.start + 4 * Time.day)
        // A day off on a warm day: the idle bearing temperature is 8 °C above any night's.
        m.forceIdle = true
        m.restWarmth = 8
        m.run(until: m.start + 4 * Time.day + 15 * Time.hour)
        #expect(!(try m.verdict().factors.contains { $0.kind == .drift }))
    }
}
