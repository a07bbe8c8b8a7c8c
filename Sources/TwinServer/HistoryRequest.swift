import Proto
import SwiftProtobuf
import TwinApp
import TwinCore

/// `GetHistory`: checks the request against the device, picks the step, asks the store.
struct HistoryRequest {
    let device: Device
    let query: HistoryQuery
    let aggregate: Twin_V1_Aggregate
    let columnar: Bool
    let plant: Plant

    /// At most this many buckets per sensor in one answer.
    static let maxBuckets = 100_000

    /// Steps `max_points` chooses from: the smallest that gives few enough buckets.
    static let niceSteps: [Nanos] = [1, 2, 5, 10, 15, 30].map { $0 * Time.second }
        + [1, 2, 5, 10, 15, 30].map { $0 * Time.minute } + [1, 2, 3, 6, 12].map { $0 * Time.hour }
        + [1, 2, 7, 14, 28].map { $0 * Time.day }

    init(_ request: Twin_V1_GetHistoryRequest, plant: Plant, now: Nanos) throws(TwinError) {
        let device = try plant.device(request.deviceID).device
        let known = device.sensors.map(\.name)
        for sensor in request.sensors where !known.contains(sensor) {
            throw TwinError.invalidArgument("device '\(device.id)' has no sensor '\(sensor.prefix(80))'; its sensors are \(known.joined(separator: ", "))", reason: .sensorNotFound)
                .adding(["device": device.id, "sensor": String(sensor.prefix(200))]).field("sensors")
        }
        let to = request.hasTo ? try request.to.checked("to") : now
        let from = request.hasFrom ? try request.from.checked("from") : to - Time.day
        if from >= to {
            throw .invalidArgument("from (\(Time.iso(from))) must be before to (\(Time.iso(to)))")
        }
        let requestedStep = request.hasStep ? try request.step.checked("step") : 0
        if requestedStep < 0 { throw .invalidArgument("step must not be negative") }
        if request.maxPoints < 0 { throw .invalidArgument("max_points must not be negative, got \(request.maxPoints)") }
        var step = requestedStep
        if step == 0 && request.maxPoints > 0 {
            let wanted = (to - from + Nanos(request.maxPoints) - 1) / Nanos(request.maxPoints)
            step = Self.niceSteps.first { $0 >= wanted } ?? ((wanted + Time.day - 1) / Time.day * Time.day)
        }
        if step > 0 && (to - from) / step > Nanos(Self.maxBuckets) {
            throw .invalidArgument(
                "a step of \(DurationText.format(step)) over that range gives more than \(Self.maxBuckets) buckets; use a larger step or max_points")
        }
        let sensorCount = request.sensors.isEmpty ? known.count : request.sensors.count
        if step > 0 && (to - from) / step * Nanos(sensorCount) > Nanos(HistoryQuery.bucketLimit) {
            throw .invalidArgument(
                "\(sensorCount) sensors in buckets of \(DurationText.format(step)) over that range give more than \(HistoryQuery.bucketLimit) buckets in all; use a larger step, fewer sensors or max_points")
        }
        if request.sensors.count > 1_000 { throw .invalidArgument("sensors lists \(request.sensors.count) names; at most 1000 are allowed") }
        switch request.aggregate {
        case .unspecified, .mean, .min, .max, .last, .count: break
        case .UNRECOGNIZED(let n): throw .invalidArgument("aggregate \(n) is not one this server knows")
        }
        self.device = device
        self.plant = plant
        aggregate = request.aggregate
        columnar = request.columnar
        query = HistoryQuery(deviceID: device.id, sensors: request.sensors.isEmpty ? known : request.sensors, from: from, to: to, step: step)
    }

    func answer() throws(TwinError) -> Twin_V1_GetHistoryResponse {
        let series = try plant.history.history(query)
        var response = Twin_V1_GetHistoryResponse()
        response.deviceID = device.id
        if query.step > 0 { response.step = .init(nanos: query.step) }
        response.series = series.map { $0.proto(unit: unit($0.sensor), step: query.step, aggregate: aggregate, columnar: columnar) }
        return response
    }

    /// The same answer in wire form, written from the store's columns (`HistoryWire`).
    func encoded() throws(TwinError) -> [UInt8] {
        let series = try plant.history.history(query).map { HistoryWire.Series(unit: unit($0.sensor), history: $0) }
        if let bytes = HistoryWire.encode(deviceID: device.id, step: query.step, series: series, aggregate: aggregate, columnar: columnar) {
            return bytes
        }
        plant.logger.error("the history answer's written size disagreed with its computed size; it was serialized as a message instead")
        var response = Twin_V1_GetHistoryResponse()
        response.deviceID = device.id
        if query.step > 0 { response.step = .init(nanos: query.step) }
        response.series = series.map { $0.history.proto(unit: $0.unit, step: query.step, aggregate: aggregate, columnar: columnar) }
        do {
            return try response.serializedBytes()
        } catch {
            throw .internalError("cannot encode the history answer: \(error)")
        }
    }

    private func unit(_ sensor: String) -> String {
        device.sensors.first { $0.name == sensor }?.unit ?? ""
    }
}
