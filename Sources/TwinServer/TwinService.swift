import GRPCCore
import Proto
import SwiftProtobuf
import Synchronization
import TwinApp
import TwinCore
import TwinEngines
import TwinStore

/// `twin.v1.TwinService`: validates requests, calls the plant, maps results.
struct TwinService: Twin_V1_TwinService.SimpleServiceProtocol {
    let plant: Plant
    let encoder: SnapshotEncoder
    var simulator: SimulatorRunner? = nil
    let prognostics: Prognostics
    let assessment: Assessment
    let alerts: AlertBook
    let alertRules: AlertRuleFile
    let notifier: Notifier
    let notifyConfig: NotifyConfigFile
    let identity: Identity
    var gateways: Gateways? = nil
    var opcua: OPCUAGateways? = nil

    // MARK: Devices

    func listDevices(request: Twin_V1_ListDevicesRequest, context: ServerContext) async throws -> Twin_V1_ListDevicesResponse {
        let pageSize = try Page.size(request.pageSize, default: 1_000)
        let after = try Page.cursor(request.pageToken, list: "devices")
        let all = plant.live.devices(types: Set(request.types), site: request.site, line: request.line)
        let start = after.map { after in all.firstIndex { $0.id > after } ?? all.count } ?? 0
        let page = all[start..<min(all.count, start + pageSize)]
        var response = Twin_V1_ListDevicesResponse()
        response.devices = page.map(\.proto)
        response.totalCount = Int32(all.count)
        if start + pageSize < all.count, let last = page.last { response.nextPageToken = Page.token("devices", last.id) }
        return response
    }

    func getDevice(request: Twin_V1_GetDeviceRequest, context: ServerContext) async throws -> Twin_V1_GetDeviceResponse {
        let (index, device) = try plant.device(request.deviceID)
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
        try await UpdateStreamService(plant: plant, encoder: encoder).serve(request) { encoded in
            try await response.write(Twin_V1_StreamUpdatesResponse(serializedBytes: encoded.bytes))
        }
    }

    // MARK: Ingest

    /// Batches are pipelined: while batch N is being stored, batch N+1 is decoded, checked,
    /// resolved against the registry (which reads nothing the store write changes) and queued
    /// behind it, so the store's thread goes from one to the next without waiting for this task
    /// to be scheduled. At most two writes are in flight; the store's single writer thread takes
    /// them in order (with whatever other streams have queued, in one transaction: group commit),
    /// and a write runs only if the stream's batches before it were stored (never one after a
    /// failed or refused batch, which the client sends again). The
    /// response, sent once every write has returned, counts only batches stored, and an error
    /// names the first batch that failed.
    func ingest(
        request: RPCAsyncSequence<Twin_V1_IngestRequest, any Error>, context: ServerContext
    ) async throws -> Twin_V1_IngestResponse {
        try await ingest(batches: request.map(IngestBatch.init))
    }

    /// The batches as `IngestWireService` reads them off the wire (or as the generated handler's
    /// messages map to them).
    func ingest<Batches: AsyncSequence>(batches request: Batches) async throws -> Twin_V1_IngestResponse where Batches.Element == IngestBatch {
        var response = Twin_V1_IngestResponse()
        var batch = 0
        let caller = Principal.current
        let plant = self.plant
        /// Writes queued or running, oldest first: batch number, size and outcome.
        var inFlight: [(batch: Int, readings: Int, write: Task<TwinError?, Never>)] = []
        /// Once a batch failed or was refused, the stream's later batches, queued already, are
        /// not stored either.
        let stream = Plant.IngestStream()
        /// Waits for the oldest write and counts it, or throws its failure as the client sees it.
        func settle() async throws {
            guard !inFlight.isEmpty else { return }
            let pending = inFlight.removeFirst()
            let counts = ["batch": "\(pending.batch)", "accepted_batches": "\(response.acceptedBatches)", "accepted_readings": "\(response.acceptedReadings)"]
            switch await pending.write.value {
            case nil:
                Telemetry.ingest(readings: pending.readings, accepted: true)
                response.acceptedReadings += UInt64(pending.readings)
                response.acceptedBatches += 1
            case let error? where error.code == .resourceExhausted:
                throw error.prefixed("batch \(pending.batch): ", suffix: "; it was not accepted, \(response.acceptedBatches) earlier batches (\(response.acceptedReadings) readings) were")
                    .adding(counts)
            case let error?:
                plant.logger.error("cannot store an ingest batch", metadata: ["error": "\(error.message)"])
                throw TwinError(.unavailable,
                    "batch \(pending.batch) could not be stored (\(error.message)); it was not accepted, \(response.acceptedBatches) earlier batches (\(response.acceptedReadings) readings) were; send it again",
                    reason: .storeUnavailable, metadata: counts)
            }
        }
        func settleAll() async throws {
            while !inFlight.isEmpty { try await settle() }
        }
        for try await message in request {
            let now = plant.clock.now()
            var samples: [Sample] = []
            do {
                // Every batch: a key revoked, an account disabled or demoted, a session logged out
                // or a token expired since the stream opened ends it here.
                if let caller {
                    try identity.recheck(caller)
                    try AccessTable.check(Twin_V1_TwinService.Method.Ingest.descriptor, principal: caller)
                }
                if let scope = caller?.scope { try checkScope(scope, key: caller?.apiKeyID ?? "", message.readings) }
                if message.importHistory, caller?.role == .gateway {
                    throw TwinError.permissionDenied(.gatewayKeyLimited, "a history import needs a person's login (operator or admin), not a gateway API key")
                        .adding(["method": Twin_V1_TwinService.Method.Ingest.descriptor.fullyQualifiedMethod]).field("import_history")
                }
                do {
                    try plant.live.resolve(message.readings, now: now, lateWindow: message.importHistory ? plant.history.rawRetention : nil, into: &samples)
                } catch {
                    Telemetry.ingest(readings: message.readings.count, accepted: false)
                    // The earlier batches' outcome comes first: their failure is the one to report.
                    try await settleAll()
                    throw error.prefixed(
                        "batch \(batch), ",
                        suffix: "; this batch was rejected whole, \(response.acceptedBatches) earlier batches (\(response.acceptedReadings) readings) were accepted"
                    ).adding(["batch": "\(batch)", "accepted_batches": "\(response.acceptedBatches)", "accepted_readings": "\(response.acceptedReadings)"])
                }
            } catch {
                try await settleAll()
                throw error
            }
            // Queued here, in the stream's order; stored by the writer in that order.
            let ticket = plant.queueForStore(samples, importing: message.importHistory, now: now, stream: stream)
            inFlight.append((batch, samples.count, Task { await plant.store(ticket) }))
            batch += 1
            if inFlight.count >= 2 { try await settle() }
        }
        try await settleAll()
        return response
    }

    // MARK: Gateways

    func listGateways(request: Twin_V1_ListGatewaysRequest, context: ServerContext) async throws -> Twin_V1_ListGatewaysResponse {
        var response = gateways?.proto() ?? Twin_V1_ListGatewaysResponse()
        response.opcuaConnections = opcua?.proto() ?? []
        return response
    }

    // MARK: Not built yet (each names the capability that will bring it)

    func getHistory(request: Twin_V1_GetHistoryRequest, context: ServerContext) async throws -> Twin_V1_GetHistoryResponse {
        let plant = self.plant
        return try await plant.query { () throws(TwinError) -> Twin_V1_GetHistoryResponse in
            try HistoryRequest(request, plant: plant, now: plant.clock.now()).answer()
        }
    }

    func getHealth(request: Twin_V1_GetHealthRequest, context: ServerContext) async throws -> Twin_V1_GetHealthResponse {
        let now = plant.clock.now()
        var window: Nanos = 0
        if request.hasHistory {
            window = try request.history.checked("history")
            guard window > 0, window <= 7 * Time.day else { throw TwinError.invalidArgument("history must be from 1 s to 7 days (scores are kept hourly for 7 days)") }
        }
        var response = Twin_V1_GetHealthResponse()
        for (device, index, verdict) in try assessment.health(request.deviceIds, now: now) {
            var entry = Twin_V1_DeviceHealthWithHistory()
            entry.health = verdict.proto(deviceID: device.id, at: now)
            if window > 0 {
                entry.history = plant.health.scoreHistory(device: index, since: now - window).map(Twin_V1_HealthPoint.init)
            }
            response.devices.append(entry)
        }
        return response
    }

    func getPatterns(request: Twin_V1_GetPatternsRequest, context: ServerContext) async throws -> Twin_V1_GetPatternsResponse {
        let service = self
        return try await plant.query { () throws(TwinError) -> Twin_V1_GetPatternsResponse in try service.patterns(request) }
    }

    func patterns(_ request: Twin_V1_GetPatternsRequest) throws(TwinError) -> Twin_V1_GetPatternsResponse {
        let (index, device) = try plant.device(request.deviceID)
        let now = plant.clock.now()
        let to = request.hasTo ? try request.to.checked("to") : now
        let from = request.hasFrom ? try request.from.checked("from") : to - 7 * Time.day
        guard from < to else { throw TwinError.invalidArgument("from must be before to") }
        guard to - from >= 6 * Time.hour, to - from <= 400 * Time.day else { throw TwinError.invalidArgument("the window must be from 6 hours to 400 days") }
        var specs = device.sensors
        if !request.sensors.isEmpty {
            for name in request.sensors where !specs.contains(where: { $0.name == name }) {
                throw TwinError.invalidArgument("device '\(device.id)' has no sensor '\(name.prefix(64))'; it has: \(specs.map(\.name).joined(separator: ", "))", reason: .sensorNotFound)
                    .adding(["device": device.id, "sensor": String(name.prefix(200))]).field("sensors")
            }
            specs = specs.filter { request.sensors.contains($0.name) }
        }
        var subset = device
        subset.sensors = specs
        let start = from - from % Time.hour
        let hourly = try prognostics.hourly(subset, from: start, to: to)
        let result = PatternAnalysis.analyse(specs: specs, hourly: hourly, start: start)
        var response = Twin_V1_GetPatternsResponse()
        response.deviceID = device.id
        let wanted = Set(specs.map(\.name))
        for a in plant.health.anomalies(device: index, from: from, to: to) where !Set(a.sensors).isDisjoint(with: wanted) {
            response.anomalies.append(a.proto(deviceID: device.id))
        }
        for a in result.anomalies {
            response.anomalies.append(a.proto(deviceID: device.id))
        }
        response.trends = result.trends.map { $0.proto(windowStart: from, windowEnd: to) }
        response.changePoints = result.changePoints.map(\.proto)
        response.correlationBreaks = result.correlationBreaks.map(\.proto)
        response.profiles = result.profiles.map(\.proto)
        return response
    }

    func getPrediction(request: Twin_V1_GetPredictionRequest, context: ServerContext) async throws -> Twin_V1_GetPredictionResponse {
        try plant.checkDevices(request.deviceIds, field: "device_ids")
        var horizons: [Nanos] = []
        for h in request.horizons {
            let n = try h.checked("horizons")
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
            response.note = "\(wanted - outlooks.count) device(s) have no prediction: down (failed, awaiting repair), stopped for most of the last day (off shift), or less than \(FailureFeatures.referenceHours + FailureFeatures.lookback) h of history since their last repair"
        }
        return response
    }

    /// PERMISSION_DENIED naming the first reading whose device the key may not write for.
    func checkScope(_ scope: ApiKeyScope, key: String, _ readings: NamedReadings) throws(TwinError) {
        // Per device slot: nil not yet asked, else whether the key may write for it.
        var allowed = [Bool?](repeating: nil, count: readings.devices.count)
        for (n, r) in readings.entries.enumerated() {
            let slot = Int(r.device), id = readings.devices[slot]
            let ok: Bool
            if let known = allowed[slot] {
                ok = known
            } else {
                // An unknown device is the reading's own error (READING_INVALID), found next.
                guard let device = plant.live.device(id) else { continue }
                ok = scope.allows(id: device.id, site: device.site, line: device.line)
                allowed[slot] = ok
            }
            if !ok {
                throw TwinError.permissionDenied(.outOfScope, "reading \(n): device '\(id)' is outside the scope of API key \(key) (\(scope.description)); this batch was rejected whole")
                    .adding(["reading": "\(n)", "device": String(id.prefix(200)), "api_key": key]).field("readings[\(n)].device_id")
            }
        }
    }

    func getRecommendations(
        request: Twin_V1_GetRecommendationsRequest, context: ServerContext
    ) async throws -> Twin_V1_GetRecommendationsResponse {
        guard request.limit >= 0 && request.limit <= 10_000 else { throw TwinError.invalidArgument("limit must be from 0 to 10000, got \(request.limit)") }
        let minimum: Recommendation.Priority? = request.minPriority == .unspecified ? nil : Recommendation.Priority(rawValue: request.minPriority.rawValue)
        if request.minPriority != .unspecified && minimum == nil { throw TwinError.invalidArgument("min_priority \(request.minPriority.rawValue) is not a priority") }
        let now = plant.clock.now()
        let list = try assessment.recommendations(
            ids: request.deviceIds, types: request.types, minimum: minimum, limit: request.limit == 0 ? 100 : Int(request.limit), now: now)
        var response = Twin_V1_GetRecommendationsResponse()
        response.recommendations = list.map { $0.proto(createdAt: assessment.firstSeenTime($0.id) ?? now) }
        return response
    }

    func listAlerts(request: Twin_V1_ListAlertsRequest, context: ServerContext) async throws -> Twin_V1_ListAlertsResponse {
        try plant.checkDevices(request.deviceIds, field: "device_ids")
        let pageSize = try Page.size(request.pageSize, default: 500)
        let offset = try Page.cursor(request.pageToken, list: "alerts")
        var states = Set<Alert.State>()
        for s in request.states {
            switch s {
            case .open: states.insert(.open)
            case .acknowledged: states.insert(.acknowledged)
            case .resolved: states.insert(.resolved)
            default: throw TwinError.invalidArgument("states: \(s.rawValue) is not an alert state")
            }
        }
        if states.isEmpty { states = [.open, .acknowledged] }
        let minimum = request.minSeverity == .unspecified ? nil : Alert.Severity(rawValue: request.minSeverity.rawValue)
        let all = alerts.list(devices: Set(request.deviceIds), states: states, minimum: minimum, shelved: request.includeShelved)
        let start = offset.map { Int($0) ?? -1 } ?? 0
        guard start >= 0 && start <= all.count else {
            throw TwinError.invalidArgument("page_token is past the end of the list; start again without it", reason: .pageTokenInvalid).field("page_token")
        }
        var response = Twin_V1_ListAlertsResponse()
        response.alerts = all[start..<min(all.count, start + pageSize)].map(\.proto)
        if start + pageSize < all.count { response.nextPageToken = Page.token("alerts", String(start + pageSize)) }
        return response
    }

    func ackAlert(request: Twin_V1_AckAlertRequest, context: ServerContext) async throws -> Twin_V1_AckAlertResponse {
        var response = Twin_V1_AckAlertResponse()
        response.alert = try change(request.alertID, to: .acknowledged, comment: request.comment, audited: .alertAcked, context: context).proto
        return response
    }

    func resolveAlert(request: Twin_V1_ResolveAlertRequest, context: ServerContext) async throws -> Twin_V1_ResolveAlertResponse {
        var response = Twin_V1_ResolveAlertResponse()
        response.alert = try change(request.alertID, to: .resolved, comment: request.comment, audited: .alertResolved, context: context).proto
        return response
    }

    /// An operator's acknowledgement or resolution, with its audit entry.
    private func change(_ id: String, to state: Alert.State, comment: String, audited action: AuditEntry.Action, context: ServerContext) throws(TwinError) -> Alert {
        let user = Principal.current?.username ?? ""
        let peer = context.clientPeer
        return try alerts.change(id, to: state, by: user, comment: comment) { alert in
            AuditEntry(time: alert.updatedAt, action: action, actor: user, peer: peer, detail: "\(alert.id) \(alert.deviceID) \(alert.rule)")
        }
    }

    func shelveAlert(request: Twin_V1_ShelveAlertRequest, context: ServerContext) async throws -> Twin_V1_ShelveAlertResponse {
        guard request.hasDuration else { throw TwinError.invalidArgument("duration is required: how long to shelve it (1m to 7d)").field("duration") }
        let duration = try request.duration.checked("duration")
        guard duration >= Time.minute, duration <= 7 * Time.day else {
            throw TwinError.invalidArgument("duration is from 1 minute to 7 days (a shelved alert must come back)").field("duration")
        }
        let reason = request.reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty else { throw TwinError.invalidArgument("reason is required: why it is shelved, for the next shift").field("reason") }
        let user = Principal.current?.username ?? ""
        let peer = context.clientPeer
        let alert = try alerts.shelve(request.alertID, until: plant.clock.now() + duration, by: user, reason: reason) { alert in
            AuditEntry(time: alert.updatedAt, action: .alertShelved, actor: user, peer: peer,
                       detail: "\(alert.id) \(alert.deviceID) \(alert.rule) for \(DurationText.format(duration)): \(reason.prefix(200))")
        }
        var response = Twin_V1_ShelveAlertResponse()
        response.alert = alert.proto
        return response
    }

    func unshelveAlert(request: Twin_V1_UnshelveAlertRequest, context: ServerContext) async throws -> Twin_V1_UnshelveAlertResponse {
        let user = Principal.current?.username ?? ""
        let peer = context.clientPeer
        let alert = try alerts.shelve(request.alertID, until: nil, by: user, reason: "") { alert in
            AuditEntry(time: alert.updatedAt, action: .alertUnshelved, actor: user, peer: peer, detail: "\(alert.id) \(alert.deviceID) \(alert.rule)")
        }
        var response = Twin_V1_UnshelveAlertResponse()
        response.alert = alert.proto
        return response
    }

    func getAlertReport(request: Twin_V1_GetAlertReportRequest, context: ServerContext) async throws -> Twin_V1_GetAlertReportResponse {
        var since = 7 * Time.day
        if request.hasSince {
            since = try request.since.checked("since")
            guard since >= Time.minute, since <= 30 * Time.day else {
                throw TwinError.invalidArgument("since is from 1 minute to 30 days (twind keeps resolved alerts 30 days)").field("since")
            }
        }
        let now = plant.clock.now()
        let report = AlertReport(alerts: alerts.list(devices: [], states: [.open, .acknowledged, .resolved], minimum: nil), from: now - since, to: now)
        return report.proto
    }

    // MARK: Alert rules

    func getAlertRules(request: Twin_V1_GetAlertRulesRequest, context: ServerContext) async throws -> Twin_V1_GetAlertRulesResponse {
        let status = alertRules.status
        var response = Twin_V1_GetAlertRulesResponse()
        response.text = status.rules.text
        response.version = status.rules.version
        response.source = status.rules.source
        response.loadedAt = .init(nanos: status.loadedAt)
        response.rules = status.rules.listed { plant.live.device($0)?.type }.map(\.proto)
        response.lastError = status.lastError
        response.path = status.path
        return response
    }

    func setAlertRules(request: Twin_V1_SetAlertRulesRequest, context: ServerContext) async throws -> Twin_V1_SetAlertRulesResponse {
        try Self.checkConfigText(request.text, expectedVersion: request.expectedVersion, what: "alert rules")
        let rules = try await alertRules.set(
            text: request.text, by: Principal.current?.username ?? "", peer: context.clientPeer, validateOnly: request.validateOnly,
            expectedVersion: request.expectedVersion)
        var response = Twin_V1_SetAlertRulesResponse()
        response.version = rules.version
        response.rules = rules.listed { plant.live.device($0)?.type }.map(\.proto)
        if !request.validateOnly { response.path = alertRules.path }
        return response
    }

    // MARK: Notifications

    func getNotificationStatus(request: Twin_V1_GetNotificationStatusRequest, context: ServerContext) async throws -> Twin_V1_GetNotificationStatusResponse {
        let config = notifier.config
        var response = Twin_V1_GetNotificationStatusResponse()
        response.channels = notifier.status().map(\.proto)
        response.path = config.source == "none" ? "" : config.source
        response.version = config.version
        response.routes = config.routes.map(\.name)
        response.lastError = notifyConfig.error
        return response
    }

    func getNotifyConfig(request: Twin_V1_GetNotifyConfigRequest, context: ServerContext) async throws -> Twin_V1_GetNotifyConfigResponse {
        let config = notifier.config
        var response = Twin_V1_GetNotifyConfigResponse()
        response.text = config.text
        response.version = config.version
        response.path = notifyConfig.path
        response.lastError = notifyConfig.error
        response.channels = config.channels.map(\.name)
        response.routes = config.routes.map(\.name)
        return response
    }

    /// A configuration text (alert rules, notifications) and the version it expects: at most
    /// 1 MiB and 64 characters.
    static func checkConfigText(_ text: String, expectedVersion: String, what: String) throws(TwinError) {
        guard text.utf8.count <= AlertRules.maxText else {
            throw TwinError.invalidArgument("text: \(what) is at most 1 MiB", reason: .limitExceeded).field("text")
        }
        guard expectedVersion.utf8.count <= 64 else { throw TwinError.invalidArgument("expected_version: at most 64 characters").field("expected_version") }
    }

    func setNotifyConfig(request: Twin_V1_SetNotifyConfigRequest, context: ServerContext) async throws -> Twin_V1_SetNotifyConfigResponse {
        try Self.checkConfigText(request.text, expectedVersion: request.expectedVersion, what: "a notifications file")
        let config = try await notifyConfig.set(
            text: request.text, by: Principal.current?.username ?? "", peer: context.clientPeer, validateOnly: request.validateOnly,
            expectedVersion: request.expectedVersion)
        var response = Twin_V1_SetNotifyConfigResponse()
        response.version = config.version
        response.channels = config.channels.map(\.name)
        response.routes = config.routes.map(\.name)
        if !request.validateOnly { response.path = notifyConfig.path }
        return response
    }

    func testNotification(request: Twin_V1_TestNotificationRequest, context: ServerContext) async throws -> Twin_V1_TestNotificationResponse {
        guard !request.channel.isEmpty else { throw TwinError.invalidArgument("channel is required (twin notify status lists them)").field("channel") }
        let user = Principal.current?.username ?? ""
        let (outcome, took) = try await notifier.test(channel: request.channel, by: user)
        var response = Twin_V1_TestNotificationResponse()
        switch outcome {
        case .delivered(let said):
            response.delivered = true
            response.result = said
        case .retry(let why, _), .rejected(let why):
            response.result = why
        }
        response.took = .init(nanos: took)
        identity.recordAudit(
            AuditEntry(time: plant.clock.now(), action: .notificationTested, actor: user, peer: context.clientPeer,
                       detail: "\(request.channel): \(response.delivered ? "delivered" : "not delivered")"))
        return response
    }

    func recordEvent(request: Twin_V1_RecordEventRequest, context: ServerContext) async throws -> Twin_V1_RecordEventResponse {
        guard request.hasEvent else { throw TwinError.invalidArgument("event is required") }
        let e = request.event
        _ = try plant.device(e.deviceID, field: "event.device_id")
        guard let kind = MaintenanceEvent.Kind(e.kind) else {
            throw TwinError.invalidArgument("event.kind is required (failure, repair, inspection, part_replaced, fault_onset, sensor_serviced, maintenance or note)")
        }
        guard e.hasTime else { throw TwinError.invalidArgument("event.time is required: when it happened") }
        let now = plant.clock.now()
        let time = try e.time.checked("event.time")
        if time > now + plant.live.options.maxFutureSkew {
            throw TwinError.invalidArgument("event.time is \(DurationText.format(time - now)) in the future")
        }
        for (field, text, limit) in [("component", e.component, 200), ("fault", e.fault, 200), ("notes", e.notes, 4000)]
        where text.count > limit {
            throw TwinError.invalidArgument("event.\(field) is longer than \(limit) characters")
        }
        var event = MaintenanceEvent(
            deviceID: e.deviceID, kind: kind, time: time, component: e.component, fault: e.fault, notes: e.notes,
            recordedBy: Principal.current?.username ?? "peer \(context.clientPeer)", source: .operator,
            expectedFailureAt: e.hasExpectedFailureAt ? try e.expectedFailureAt.checked("event.expected_failure_at") : nil)
        if e.hasDuration {
            let duration = try e.duration.checked("event.duration")
            guard duration > 0, duration <= 90 * Time.day else {
                throw TwinError.invalidArgument("event.duration is from 1 ns to 90 days: how long the work takes the machine out of service").field("event.duration")
            }
            event.duration = duration
        }
        let stored = try plant.record([event])
        if let duration = event.duration {
            alerts.suppress(device: event.deviceID, from: time, until: time + duration)
        }
        // Maintenance on a simulated machine happens in the simulation too.
        if simulator?.recordMaintenance(deviceID: event.deviceID, kind: kind, at: time) == true {
            plant.logger.info("simulated device serviced", metadata: ["device": "\(event.deviceID)", "kind": "\(kind.rawValue)"])
        }
        var response = Twin_V1_RecordEventResponse()
        response.event = stored[0].proto
        return response
    }

    func listEvents(request: Twin_V1_ListEventsRequest, context: ServerContext) async throws -> Twin_V1_ListEventsResponse {
        let pageSize = try Page.size(request.pageSize, default: 500)
        let cursor = try Page.cursor(request.pageToken, list: "events")
        var query = EventQuery()
        query.deviceIDs = Set(request.deviceIds)
        query.kinds = Set(try request.kinds.map { kind in
            guard let k = MaintenanceEvent.Kind(kind) else { throw TwinError.invalidArgument("kinds: \(kind) is not an event kind") }
            return k
        })
        if request.hasFrom { query.from = try request.from.checked("from") }
        if request.hasTo { query.to = try request.to.checked("to") }
        query.limit = pageSize
        if let cursor {
            let parts = cursor.split(separator: "_")
            guard parts.count == 2, let time = Int64(parts[0]), let id = Int64(parts[1]) else {
                throw TwinError.invalidArgument("page_token '\(request.pageToken.prefix(40))' is not one this server gave out", reason: .pageTokenInvalid).field("page_token")
            }
            query.before = (time, id)
        }
        let events = try plant.store.events(query)
        var response = Twin_V1_ListEventsResponse()
        response.events = events.map(\.proto)
        if events.count == query.limit, let last = events.last { response.nextPageToken = Page.token("events", "\(last.time)_\(last.id)") }
        return response
    }
}
