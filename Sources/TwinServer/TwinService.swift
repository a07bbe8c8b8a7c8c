import GRPCCore
import Proto
import SwiftProtobuf
import TwinCore
import TwinEngines

/// `twin.v1.TwinService`: validates requests, calls the plant, maps results.
struct TwinService: Twin_V1_TwinService.SimpleServiceProtocol {
    let plant: Plant
    var simulator: SimulatorRunner? = nil
    let prognostics: Prognostics

    // MARK: Devices

    func listDevices(request: Twin_V1_ListDevicesRequest, context: ServerContext) async throws -> Twin_V1_ListDevicesResponse {
        if request.pageSize < 0 || request.pageSize > 10_000 {
            throw TwinError.invalidArgument("page_size must be between 0 and 10000, got \(request.pageSize)")
        }
        let pageSize = request.pageSize == 0 ? 1_000 : Int(request.pageSize)
        let all = plant.live.devices(types: Set(request.types), site: request.site, line: request.line)
        let start = request.pageToken.isEmpty ? 0 : (all.firstIndex { $0.id > request.pageToken } ?? all.count)
        let page = all[start..<min(all.count, start + pageSize)]
        var response = Twin_V1_ListDevicesResponse()
        response.devices = page.map(\.proto)
        response.totalCount = Int32(all.count)
        if start + pageSize < all.count, let last = page.last { response.nextPageToken = last.id }
        return response
    }

    func getDevice(request: Twin_V1_GetDeviceRequest, context: ServerContext) async throws -> Twin_V1_GetDeviceResponse {
        if request.deviceID.isEmpty { throw TwinError.invalidArgument("device_id is required") }
        guard let index = plant.live.index(of: request.deviceID), let device = plant.live.device(at: index) else {
            throw TwinError.notFound("device '\(request.deviceID.prefix(80))' not found")
        }
        var response = Twin_V1_GetDeviceResponse()
        response.device = device.proto
        if let snapshot = plant.live.snapshot(index) { response.snapshot = snapshot.proto() }
        return response
    }

    func upsertDevice(request: Twin_V1_UpsertDeviceRequest, context: ServerContext) async throws -> Twin_V1_UpsertDeviceResponse {
        guard request.hasDevice else { throw TwinError.invalidArgument("device is required") }
        let result = try plant.upsert(Device(request.device))
        plant.logger.info("device \(result.created ? "registered" : "updated")", metadata: ["device": "\(result.device.id)"])
        var response = Twin_V1_UpsertDeviceResponse()
        response.device = result.device.proto
        response.created = result.created
        return response
    }

    // MARK: Live updates

    func streamUpdates(
        request: Twin_V1_StreamUpdatesRequest, response: RPCWriter<Twin_V1_StreamUpdatesResponse>, context: ServerContext
    ) async throws {
        // The daemon registers UpdateStreamService over this method so messages go out in their
        // shared wire form; this path serves the same stream to anyone using TwinService alone.
        try await UpdateStreamService(plant: plant).serve(request) { encoded in
            try await response.write(Twin_V1_StreamUpdatesResponse(serializedBytes: encoded.bytes))
        }
    }

    // MARK: Ingest

    func ingest(
        request: RPCAsyncSequence<Twin_V1_IngestRequest, any Error>, context: ServerContext
    ) async throws -> Twin_V1_IngestResponse {
        var response = Twin_V1_IngestResponse()
        var samples: [Sample] = []
        var batch = 0
        for try await message in request {
            let now = Time.now()
            do {
                try plant.live.resolve(message.readings, now: now, into: &samples)
            } catch {
                throw TwinError.invalidArgument(
                    "batch \(batch), \(error.message); this batch was rejected whole, \(response.acceptedBatches) earlier batches (\(response.acceptedReadings) readings) were accepted")
            }
            do {
                try plant.ingest(samples, now: now)
            } catch {
                plant.logger.error("cannot store an ingest batch", metadata: ["error": "\(error.message)"])
                throw TwinError.unavailable(
                    "batch \(batch) could not be stored (\(error.message)); it was not accepted, \(response.acceptedBatches) earlier batches (\(response.acceptedReadings) readings) were; send it again")
            }
            response.acceptedReadings += UInt64(samples.count)
            response.acceptedBatches += 1
            batch += 1
        }
        return response
    }

    // MARK: Not built yet (each names the capability that will bring it)

    func getHistory(request: Twin_V1_GetHistoryRequest, context: ServerContext) async throws -> Twin_V1_GetHistoryResponse {
        try HistoryRequest(request, plant: plant, now: Time.now()).answer()
    }

    func getHealth(request: Twin_V1_GetHealthRequest, context: ServerContext) async throws -> Twin_V1_GetHealthResponse {
        throw notYetBuilt("GetHealth", "the health engine")
    }

    func getPatterns(request: Twin_V1_GetPatternsRequest, context: ServerContext) async throws -> Twin_V1_GetPatternsResponse {
        throw notYetBuilt("GetPatterns", "pattern and anomaly analysis")
    }

    func getPrediction(request: Twin_V1_GetPredictionRequest, context: ServerContext) async throws -> Twin_V1_GetPredictionResponse {
        try checkDevices(request.deviceIds)
        var horizons: [Nanos] = []
        for h in request.horizons {
            let n = h.totalNanos
            guard n == Time.day || n == 7 * Time.day else {
                throw TwinError.invalidArgument("horizons: the models are trained for 24h and 168h (7 days); \(Double(n) / Double(Time.hour)) h is not one of them")
            }
            horizons.append(n)
        }
        if horizons.isEmpty { horizons = [Time.day, 7 * Time.day] }
        var response = Twin_V1_GetPredictionResponse()
        guard let model = prognostics.activeModel else {
            response.note = prognostics.unavailableReason.withLock { $0 }
            return response
        }
        response.modelVersion = model.manifest.version
        let outlooks = prognostics.outlook(request.deviceIds)
        let sorted = outlooks.sorted { a, b in a.within24h != b.within24h ? a.within24h > b.within24h : a.deviceID < b.deviceID }
        response.predictions = sorted.map { $0.proto(horizons: horizons) }
        let wanted = request.deviceIds.isEmpty ? plant.live.count : request.deviceIds.count
        if outlooks.count < wanted {
            response.note = "\(wanted - outlooks.count) device(s) have no prediction: down (failed, awaiting repair) or less than \(FailureFeatures.referenceHours + FailureFeatures.lookback) h of history since their last repair"
        }
        return response
    }

    /// NOT_FOUND naming the first unknown device.
    func checkDevices(_ ids: [String]) throws(TwinError) {
        for id in ids where plant.live.index(of: id) == nil { throw .notFound("device '\(id.prefix(64))' not found") }
    }

    func getRecommendations(
        request: Twin_V1_GetRecommendationsRequest, context: ServerContext
    ) async throws -> Twin_V1_GetRecommendationsResponse {
        throw notYetBuilt("GetRecommendations", "the recommendation engine")
    }

    func listAlerts(request: Twin_V1_ListAlertsRequest, context: ServerContext) async throws -> Twin_V1_ListAlertsResponse {
        throw notYetBuilt("ListAlerts", "alerting")
    }

    func ackAlert(request: Twin_V1_AckAlertRequest, context: ServerContext) async throws -> Twin_V1_AckAlertResponse {
        throw notYetBuilt("AckAlert", "alerting")
    }

    func resolveAlert(request: Twin_V1_ResolveAlertRequest, context: ServerContext) async throws -> Twin_V1_ResolveAlertResponse {
        throw notYetBuilt("ResolveAlert", "alerting")
    }

    func recordEvent(request: Twin_V1_RecordEventRequest, context: ServerContext) async throws -> Twin_V1_RecordEventResponse {
        guard request.hasEvent else { throw TwinError.invalidArgument("event is required") }
        let e = request.event
        if e.deviceID.isEmpty { throw TwinError.invalidArgument("event.device_id is required") }
        guard plant.live.index(of: e.deviceID) != nil else {
            throw TwinError.notFound("device '\(e.deviceID.prefix(80))' not found")
        }
        guard let kind = MaintenanceEvent.Kind(e.kind) else {
            throw TwinError.invalidArgument("event.kind is required (failure, repair, inspection, part_replaced, fault_onset, sensor_serviced, maintenance or note)")
        }
        guard e.hasTime else { throw TwinError.invalidArgument("event.time is required: when it happened") }
        let now = Time.now()
        let time = e.time.nanosSinceEpoch
        if time > now + plant.live.options.maxFutureSkew {
            throw TwinError.invalidArgument("event.time is \(DurationText.format(time - now)) in the future")
        }
        for (field, text, limit) in [("component", e.component, 200), ("fault", e.fault, 200), ("notes", e.notes, 4000)]
        where text.count > limit {
            throw TwinError.invalidArgument("event.\(field) is longer than \(limit) characters")
        }
        let event = MaintenanceEvent(
            deviceID: e.deviceID, kind: kind, time: time, component: e.component, fault: e.fault, notes: e.notes,
            recordedBy: "peer \(context.remotePeer)", source: .operator,
            expectedFailureAt: e.hasExpectedFailureAt ? e.expectedFailureAt.nanosSinceEpoch : nil)
        let stored = try plant.record([event])
        // Maintenance on a simulated machine happens in the simulation too.
        if simulator?.recordMaintenance(deviceID: event.deviceID, kind: kind, at: time) == true {
            plant.logger.info("simulated device serviced", metadata: ["device": "\(event.deviceID)", "kind": "\(kind.rawValue)"])
        }
        var response = Twin_V1_RecordEventResponse()
        response.event = stored[0].proto
        return response
    }

    func listEvents(request: Twin_V1_ListEventsRequest, context: ServerContext) async throws -> Twin_V1_ListEventsResponse {
        if request.pageSize < 0 || request.pageSize > 10_000 {
            throw TwinError.invalidArgument("page_size must be between 0 and 10000, got \(request.pageSize)")
        }
        var query = EventQuery()
        query.deviceIDs = Set(request.deviceIds)
        query.kinds = Set(try request.kinds.map { kind in
            guard let k = MaintenanceEvent.Kind(kind) else { throw TwinError.invalidArgument("kinds: \(kind) is not an event kind") }
            return k
        })
        if request.hasFrom { query.from = request.from.nanosSinceEpoch }
        if request.hasTo { query.to = request.to.nanosSinceEpoch }
        query.limit = request.pageSize == 0 ? 500 : Int(request.pageSize)
        if !request.pageToken.isEmpty {
            let parts = request.pageToken.split(separator: "_")
            guard parts.count == 2, let time = Int64(parts[0]), let id = Int64(parts[1]) else {
                throw TwinError.invalidArgument("page_token '\(request.pageToken.prefix(40))' is not one this server gave out")
            }
            query.before = (time, id)
        }
        let events = try plant.store.events(query)
        var response = Twin_V1_ListEventsResponse()
        response.events = events.map(\.proto)
        if events.count == query.limit, let last = events.last { response.nextPageToken = "\(last.time)_\(last.id)" }
        return response
    }
}
