import Testing
import TwinCore
@testable import TwinEngines

@Suite struct LivePlantTests {
    let now: Nanos = 1_790_000_000 * Time.second

    func makePlant() throws -> LivePlant {
        let plant = LivePlant()
        try plant.upsert(Device(id: "pump-1", type: "pump", sensors: [
            SensorSpec(name: "flow", unit: "m³/h", nominalMin: 10, nominalMax: 100, alarmHigh: 150),
            SensorSpec(name: "temp", unit: "°C", nominalMin: 0, nominalMax: 70, alarmHigh: 85),
        ]), now: now)
        return plant
    }

    func reason(_ plant: LivePlant, _ readings: [Reading]) -> String? {
        var samples: [Sample] = []
        do { try plant.resolve(readings, now: now, into: &samples); return nil } catch { return error.message }
    }

    @Test func rejectsBadReadingsNamingTheFirstOne() throws {
        let plant = try makePlant()
        let good = Reading(deviceID: "pump-1", sensor: "flow", time: now, value: 50)
        #expect(reason(plant, [good]) == nil)
        #expect(reason(plant, [good, Reading(deviceID: "nope", sensor: "flow", time: now, value: 1)])?
            .hasPrefix("reading 1: unknown device 'nope'") == true)
        #expect(reason(plant, [Reading(deviceID: "pump-1", sensor: "rpm", time: now, value: 1)])?
            .contains("has no sensor 'rpm' (it has: flow, temp)") == true)
        #expect(reason(plant, [Reading(deviceID: "pump-1", sensor: "flow", time: now, value: .nan)])?
            .contains("not a finite number") == true)
        #expect(reason(plant, [Reading(deviceID: "pump-1", sensor: "flow", time: now, value: .infinity)])?
            .contains("not a finite number") == true)
        #expect(reason(plant, [Reading(deviceID: "pump-1", sensor: "flow", time: now + Time.hour, value: 1)])?
            .contains("in the future") == true)
        #expect(reason(plant, [Reading(deviceID: "pump-1", sensor: "flow", time: now - 30 * Time.day, value: 1)])?
            .contains("old") == true)
    }

    struct Loose: ReadingConvertible {
        var readingDeviceID: String, readingSensor: String, readingTime: Nanos?, readingValue: Double
    }

    /// Batches with their names interned (as `Ingest` reads them) resolve exactly as readings one
    /// by one do: the same samples, or the same error naming the same reading.
    @Test func internedBatchesResolveAsReadingsDo() throws {
        let plant = try makePlant()
        try plant.upsert(Device(id: "fan-2", type: "fan", sensors: [SensorSpec(name: "rpm", unit: "rpm", nominalMin: 0, nominalMax: 3000)]), now: now)
        var rng = SplitMix64(seed: 11)
        let devices = ["pump-1", "fan-2", "pump-1 ", "nope", ""]
        let sensors = ["flow", "temp", "rpm", "", "Flow"]
        let times: [Nanos?] = [now, now - Time.hour, now + Time.hour, now - 30 * Time.day, nil, .min, now - 6 * Time.day]
        let values = [1.5, -0.0, .nan, .infinity, 1e300]
        var failures = 0
        for round in 0..<3_000 {
            // Mostly good readings, so that the bad one comes at any position.
            let batch = (0..<Int(rng.next() % 30)).map { _ -> Loose in
                let good = rng.next() % 12 != 0
                let d = good ? Int(rng.next() % 2) : Int(rng.next() % UInt64(devices.count))
                let s = good ? (d == 0 ? Int(rng.next() % 2) : 2) : Int(rng.next() % UInt64(sensors.count))
                return Loose(
                    readingDeviceID: devices[d], readingSensor: sensors[s],
                    readingTime: good ? now - Nanos(rng.next() % 1000) * Time.second : times[Int(rng.next() % UInt64(times.count))],
                    readingValue: good ? Double(rng.next() % 1000) : values[Int(rng.next() % UInt64(values.count))])
            }
            let lateWindow: Nanos? = round % 5 == 0 ? 60 * Time.day : nil
            var one: [Sample] = [], interned: [Sample] = []
            let a = Result { () throws(TwinError) in try plant.resolve(batch, now: now, lateWindow: lateWindow, into: &one) }
            let b = Result { () throws(TwinError) in try plant.resolve(NamedReadings(batch), now: now, lateWindow: lateWindow, into: &interned) }
            switch (a, b) {
            case (.success, .success): #expect(one == interned, "round \(round)")
            case let (.failure(x), .failure(y)):
                failures += 1
                #expect(x == y, "round \(round)")
            default: Issue.record("round \(round): \(a) vs \(b)")
            }
        }
        #expect(failures > 500)
    }

    @Test func appliesReadingsDerivesStateAndGoesOffline() throws {
        let plant = try makePlant()
        var samples: [Sample] = []
        try plant.resolve([Reading(deviceID: "pump-1", sensor: "flow", time: now, value: 50),
                           Reading(deviceID: "pump-1", sensor: "temp", time: now, value: 40)], now: now, into: &samples)
        #expect(plant.apply(samples, now: now) == [0])
        #expect(plant.snapshot(0)?.state == .running)
        #expect(plant.snapshot(0)?.values.map(\.value) == [50, 40])

        try plant.resolve([Reading(deviceID: "pump-1", sensor: "temp", time: now + 1, value: 90)], now: now, into: &samples)
        _ = plant.apply(samples, now: now + 1)
        #expect(plant.snapshot(0)?.state == .alarm)

        // An older reading does not move the live value back.
        try plant.resolve([Reading(deviceID: "pump-1", sensor: "temp", time: now - Time.second, value: 20)], now: now, into: &samples)
        _ = plant.apply(samples, now: now + 2)
        #expect(plant.snapshot(0)?.values.last?.value == 90)

        #expect(plant.sweep(now: now + 10 * Time.second).isEmpty)
        #expect(plant.sweep(now: now + 60 * Time.second) == [0])
        #expect(plant.snapshot(0)?.state == .offline)
    }

    @Test func statusHintsWinAndCountAsChanges() throws {
        let plant = try makePlant()
        #expect(plant.apply([], hints: [(0, .failed)], now: now) == [0])
        #expect(plant.snapshot(0)?.state == .failed)
        #expect(plant.apply([], hints: [(0, .failed)], now: now + 1).isEmpty)
    }

    @Test func upsertKeepsValuesOfSensorsThatStay() throws {
        let plant = try makePlant()
        var samples: [Sample] = []
        try plant.resolve([Reading(deviceID: "pump-1", sensor: "temp", time: now, value: 40)], now: now, into: &samples)
        _ = plant.apply(samples, now: now)
        let result = try plant.upsert(Device(id: "pump-1", type: "pump", sensors: [
            SensorSpec(name: "temp", unit: "°C", nominalMin: 0, nominalMax: 70),
        ]), now: now + 1)
        #expect(!result.created)
        #expect(result.device.createdAt == now)
        #expect(plant.snapshot(0)?.values.map(\.value) == [40])
    }
}
