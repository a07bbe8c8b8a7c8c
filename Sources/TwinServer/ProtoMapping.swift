import Proto
import SwiftProtobuf
import TwinApp
import TwinCore
import TwinEngines
import TwinStore

// Proto <-> domain conversions. Nothing else in the server builds proto messages by hand.

extension Google_Protobuf_Timestamp {
    init(nanos: Nanos) {
        self.init()
        seconds = nanos / Time.second
        self.nanos = Int32(nanos % Time.second)
        if self.nanos < 0 {
            seconds -= 1
            self.nanos += Int32(Time.second)
        }
    }

    /// Nanoseconds since the epoch, range-checked (`TimeBounds`): INVALID_ARGUMENT naming `field`.
    func checked(_ field: String) throws(TwinError) -> Nanos {
        try TimeBounds.instant(seconds: seconds, nanos: nanos, field: field)
    }
}

extension Google_Protobuf_Duration {
    /// Nanoseconds, range-checked (`TimeBounds`): INVALID_ARGUMENT naming `field`.
    func checked(_ field: String) throws(TwinError) -> Nanos {
        try TimeBounds.duration(seconds: seconds, nanos: nanos, field: field)
    }

    init(nanos: Nanos) {
        self.init()
        seconds = nanos / Time.second
        self.nanos = Int32(nanos % Time.second)
    }

    /// From hours a model computed (may be NaN or huge): clamped, never a trap.
    init(hours: Double) {
        self.init(nanos: Nanos.clamping(seconds: hours * 3600))
    }
}

extension Twin_V1_Reading: ReadingConvertible {
    public var readingDeviceID: String { deviceID }
    public var readingSensor: String { sensor }
    /// Out of `TimeBounds` reads as `Nanos.min`, which `LivePlant.resolve` refuses by index.
    public var readingTime: Nanos? { hasTime ? ((try? time.checked("time")) ?? .min) : nil }
    public var readingValue: Double { value }
}

extension SensorSpec {
    init(_ proto: Twin_V1_SensorSpec) {
        self.init(
            name: proto.name, unit: proto.unit, nominalMin: proto.nominalMin, nominalMax: proto.nominalMax,
            alarmLow: proto.hasAlarmLow ? proto.alarmLow : nil, alarmHigh: proto.hasAlarmHigh ? proto.alarmHigh : nil,
            description: proto.description_p)
    }

    var proto: Twin_V1_SensorSpec {
        var p = Twin_V1_SensorSpec()
        p.name = name
        p.unit = unit
        p.nominalMin = nominalMin
        p.nominalMax = nominalMax
        if let alarmLow { p.alarmLow = alarmLow }
        if let alarmHigh { p.alarmHigh = alarmHigh }
        p.description_p = description
        return p
    }
}

extension Device {
    init(_ proto: Twin_V1_Device) {
        self.init(
            id: proto.id, name: proto.name, type: proto.type, site: proto.site, line: proto.line,
            sensors: proto.sensors.map(SensorSpec.init), labels: proto.labels)
    }

    var proto: Twin_V1_Device {
        var p = Twin_V1_Device()
        p.id = id
        p.name = name
        p.type = type
        p.site = site
        p.line = line
        p.sensors = sensors.map(\.proto)
        p.labels = labels
        p.simulated = simulated
        if createdAt != 0 { p.createdAt = .init(nanos: createdAt) }
        if updatedAt != 0 { p.updatedAt = .init(nanos: updatedAt) }
        return p
    }
}

extension DeviceState {
    var proto: Twin_V1_DeviceState {
        switch self {
        case .running: .running
        case .idle: .idle
        case .warning: .warning
        case .alarm: .alarm
        case .failed: .failed
        case .maintenance: .maintenance
        case .offline: .offline
        }
    }
}

extension DeviceSnapshot {
    /// The proto form; `sensors` limits the values to those names (empty: all).
    func proto(only sensors: Set<String> = []) -> Twin_V1_DeviceSnapshot {
        var p = Twin_V1_DeviceSnapshot()
        p.deviceID = deviceID
        p.type = type
        p.state = state.proto
        if time != 0 { p.time = .init(nanos: time) }
        p.version = version
        if let health {
            var h = Twin_V1_HealthSummary()
            h.score = health.score
            h.state = health.level.proto
            h.headline = health.headline
            p.health = h
        }
        p.openAlerts = openAlerts
        p.values.reserveCapacity(values.count)
        for v in values where Int(v.sensor) < sensorNames.count {
            let name = sensorNames[Int(v.sensor)]
            if !sensors.isEmpty && !sensors.contains(name) { continue }
            var sv = Twin_V1_SensorValue()
            sv.sensor = name
            sv.value = v.value
            if v.time != time { sv.time = .init(nanos: v.time) }
            sv.stale = v.stale
            p.values.append(sv)
        }
        return p
    }
}

extension MaintenanceEvent.Kind {
    init?(_ proto: Twin_V1_EventKind) {
        switch proto {
        case .failure: self = .failure
        case .repair: self = .repair
        case .inspection: self = .inspection
        case .partReplaced: self = .partReplaced
        case .faultOnset: self = .faultOnset
        case .sensorServiced: self = .sensorServiced
        case .maintenance: self = .maintenance
        case .note: self = .note
        default: return nil
        }
    }

    var proto: Twin_V1_EventKind {
        switch self {
        case .failure: .failure
        case .repair: .repair
        case .inspection: .inspection
        case .partReplaced: .partReplaced
        case .faultOnset: .faultOnset
        case .sensorServiced: .sensorServiced
        case .maintenance: .maintenance
        case .note: .note
        }
    }
}

extension MaintenanceEvent {
    var proto: Twin_V1_Event {
        var p = Twin_V1_Event()
        p.id = id
        p.deviceID = deviceID
        p.kind = kind.proto
        p.time = .init(nanos: time)
        p.component = component
        p.fault = fault
        p.notes = notes
        p.recordedBy = recordedBy
        p.source = switch source {
        case .operator: .operator
        case .simulator: .simulator
        case .import: .import
        }
        if let expectedFailureAt { p.expectedFailureAt = .init(nanos: expectedFailureAt) }
        if let duration { p.duration = .init(nanos: duration) }
        return p
    }
}

extension DeviceOutlook {
    func proto(horizons: [Nanos]) -> Twin_V1_DevicePrediction {
        var p = Twin_V1_DevicePrediction()
        p.deviceID = deviceID
        p.failureProbabilities = horizons.map { h in
            var f = Twin_V1_FailureProbability()
            f.horizon = .init(seconds: h / Time.second)
            f.probability = h <= Time.day ? within24h : within7d
            return f
        }
        // Whole-life models tell remaining life always; older ones learned it only within a
        // week of a failure, and tell it only then.
        if prediction.rulWholeLife || within7d >= 0.5 {
            var r = Twin_V1_RemainingLife()
            r.expected = .init(hours: rulHours)
            r.lower = .init(hours: rulLow)
            r.upper = .init(hours: rulHigh)
            r.confidence = 0.8
            p.remainingLife = r
        }
        p.modelVersion = modelVersion
        p.topFeatures = contributions.map { c in
            var f = Twin_V1_FeatureContribution()
            f.feature = ["max_rise_6h", "max_abs_dev_24h", "max_abs_slope_24h", "max_abs_dev_last_hour"].contains(c.feature) ? "\(c.feature) (\(lead ?? "?"))" : c.feature
            f.value = c.value
            f.contribution = c.contribution
            return f
        }
        p.computedAt = .init(nanos: computedAt)
        return p
    }
}

extension HealthSummary.Level {
    var proto: Twin_V1_HealthState {
        switch self {
        case .healthy: .healthy
        case .degraded: .degraded
        case .critical: .critical
        }
    }
}

extension HealthEngine.Verdict {
    func proto(deviceID: String, at time: Nanos) -> Twin_V1_DeviceHealth {
        var h = Twin_V1_DeviceHealth()
        h.deviceID = deviceID
        h.score = score.rounded()
        h.state = summary.level.proto
        h.components = components.map { c in
            var x = Twin_V1_ComponentHealth()
            x.name = c.name
            x.score = c.score.rounded()
            x.state = HealthSummary(score: c.score, headline: "").level.proto
            return x
        }
        h.factors = factors.prefix(8).map { f in
            var x = Twin_V1_HealthFactor()
            x.subject = f.subject
            x.description_p = f.description
            x.penalty = (f.penalty * 10).rounded() / 10
            if let v = f.value { x.value = v }
            if let e = f.expected { x.expected = e }
            if let t = f.trendPerDay { x.trendPerDay = t }
            x.unit = f.unit
            return x
        }
        h.computedAt = .init(nanos: time)
        return h
    }
}

extension Recommendation {
    func proto(createdAt: Nanos) -> Twin_V1_Recommendation {
        var r = Twin_V1_Recommendation()
        r.id = id
        r.deviceID = deviceID
        r.component = component
        r.action = switch action {
        case .inspect: .inspect
        case .lubricate: .lubricate
        case .replacePart: .replacePart
        case .recalibrateSensor: .recalibrateSensor
        case .checkSensor: .checkSensor
        case .reduceLoad: .reduceLoad
        case .balance: .balance
        case .clean: .clean
        case .scheduleMaintenance: .scheduleMaintenance
        }
        r.priority = Twin_V1_Priority(rawValue: priority.rawValue) ?? .unspecified
        r.title = title
        r.deadline = .init(nanos: deadline)
        r.evidence = evidence.map { e in
            var x = Twin_V1_Evidence()
            x.kind = e.kind
            x.description_p = e.description
            x.sensor = e.sensor
            if let v = e.value { x.value = v }
            return x
        }
        r.expectedEffect = expectedEffect
        r.sensorFault = sensorFault
        r.createdAt = .init(nanos: createdAt)
        return r
    }
}

extension Alert {
    var proto: Twin_V1_Alert {
        var a = Twin_V1_Alert()
        a.id = id
        a.deviceID = deviceID
        a.rule = rule
        a.sensor = sensor
        a.severity = Twin_V1_AlertSeverity(rawValue: severity.rawValue) ?? .unspecified
        a.state = switch state {
        case .open: .open
        case .acknowledged: .acknowledged
        case .resolved: .resolved
        }
        a.message = message
        if let value { a.value = value }
        a.openedAt = .init(nanos: openedAt)
        a.updatedAt = .init(nanos: updatedAt)
        a.occurrences = occurrences
        a.acknowledgedBy = acknowledgedBy
        if let acknowledgedAt { a.acknowledgedAt = .init(nanos: acknowledgedAt) }
        a.ackComment = ackComment
        a.resolvedBy = resolvedBy
        if let resolvedAt { a.resolvedAt = .init(nanos: resolvedAt) }
        a.resolveComment = resolveComment
        a.ruleVersion = ruleVersion ?? ""
        if let shelf {
            if let until = shelf.until { a.shelvedUntil = .init(nanos: until) }
            a.shelvedBy = shelf.by
            a.shelveReason = shelf.reason
        }
        a.reopened = reopened ?? 0
        a.chattering = chattering
        return a
    }
}

extension AlertRules.Rule {
    var proto: Twin_V1_AlertRule {
        var r = Twin_V1_AlertRule()
        r.name = name
        r.scope = scope
        r.condition = condition.rawValue
        r.sensors = sensors
        if let value { r.value = value }
        if condition == .predictedFailure {
            r.horizon = .init(nanos: horizon)
            r.probability = probability
        }
        if condition == .sensorFault { r.kinds = kinds.map(\.rawValue) }
        r.hold = .init(nanos: hold)
        r.clearAfter_p = .init(nanos: clearAfter)  // "_p": SwiftProtobuf keeps clearX() for its own use
        r.deadband = deadband
        r.severity = Twin_V1_AlertSeverity(rawValue: severity.rawValue) ?? .unspecified
        r.enabled = enabled
        r.origin = origin
        return r
    }
}


// MARK: Identity

extension UsersDatabase.AuditEntry {
    var proto: Twin_V1_AuditEvent {
        var event = Twin_V1_AuditEvent()
        event.time = .init(nanos: time)
        event.action = kind
        event.actor = actor
        event.peer = peer
        event.detail = detail
        return event
    }
}

extension ApiKey {
    var proto: Twin_V1_ApiKey {
        var k = Twin_V1_ApiKey()
        k.id = id
        k.name = name
        k.role = role.proto
        k.createdAt = .init(nanos: createdAt)
        if let lastUsedAt { k.lastUsedAt = .init(nanos: lastUsedAt) }
        k.revoked = revokedAt != nil
        if !scope.isEverything {
            k.scope.sites = scope.sites
            k.scope.lines = scope.lines
            k.scope.devices = scope.devices
        }
        return k
    }
}

extension User {
    var proto: Twin_V1_User {
        var u = Twin_V1_User()
        u.username = username
        u.role = role.proto
        u.disabled = disabled
        u.createdAt = .init(nanos: createdAt)
        if let lastLoginAt { u.lastLoginAt = .init(nanos: lastLoginAt) }
        u.email = email
        return u
    }
}

// MARK: Models

extension TrainingJobStatus {
    var proto: Twin_V1_TrainingJob {
        var j = Twin_V1_TrainingJob()
        j.id = id
        j.state = switch state {
        case .queued: .queued
        case .running: .running
        case .succeeded: .succeeded
        case .failed: .failed
        }
        j.progress = progress
        j.stage = stage
        j.startedAt = .init(nanos: startedAt)
        if let finishedAt { j.finishedAt = .init(nanos: finishedAt) }
        j.modelVersion = modelVersion
        j.promoted = promoted
        j.error = error
        j.trigger = trigger
        j.requestedBy = requestedBy
        return j
    }
}

extension ModelManifest {
    func proto(active: String?, everActive: Set<String>) -> Twin_V1_ModelVersion {
        var m = Twin_V1_ModelVersion()
        m.version = version
        m.status = version == active ? .active : everActive.contains(version) ? .retired : .candidate
        m.createdAt = .init(nanos: createdAt)
        m.features = features
        m.trainFrom = .init(nanos: trainFrom)
        m.trainTo = .init(nanos: trainTo)
        m.hyperparameters = hyperparameters
        m.promotionNote = promotionNote
        var x = Twin_V1_ModelMetrics()
        x.rocAuc = metrics.rocAUC
        x.precision = metrics.precision
        x.recall = metrics.recall
        x.threshold = metrics.threshold
        x.rulMaeHours = metrics.rulMAEHours
        x.rulRmseHours = metrics.rulRMSEHours
        x.baselineRocAuc = metrics.baselineRocAUC
        x.baselineRulMaeHours = metrics.baselineRulMAEHours
        x.trainExamples = UInt64(metrics.trainExamples)
        x.testExamples = UInt64(metrics.testExamples)
        x.trainDevices = UInt32(metrics.trainDevices)
        x.testDevices = UInt32(metrics.testDevices)
        x.rulWholeLifeMaeHours = metrics.rulWholeLifeMAEHours ?? .nan
        x.baselineRulWholeLifeMaeHours = metrics.baselineRulWholeLifeMAEHours ?? .nan
        x.rulIntervalCoverage = metrics.rulIntervalCoverage ?? .nan
        x.rulIntervalCoverage7D = metrics.rulIntervalCoverage7d ?? .nan
        x.rulNearModelMaeHours = metrics.rulNearModelMAEHours ?? .nan
        x.meanLifetimeHours = metrics.meanLifetimeHours
        x.testFailures = UInt32(clamping: metrics.testFailures)
        m.metrics = x
        return m
    }
}

// MARK: Health and patterns

extension Twin_V1_HealthPoint {
    init(_ point: (time: Nanos, score: Double)) {
        self.init()
        time = .init(nanos: point.time)
        score = point.score
    }
}

extension Twin_V1_Anomaly {
    init(id: String, deviceID: String, sensors: [String], score: Double, start: Nanos, end: Nanos?, detector: String, description: String) {
        self.init()
        self.id = id
        self.deviceID = deviceID
        self.sensors = sensors
        self.score = score
        self.start = .init(nanos: start)
        if let end { self.end = .init(nanos: end) }
        self.detector = detector
        description_p = description
    }
}

extension HealthEngine.Anomaly {
    func proto(deviceID: String) -> Twin_V1_Anomaly {
        .init(id: id, deviceID: deviceID, sensors: sensors, score: score, start: start, end: end, detector: detector, description: description)
    }
}

extension PatternAnalysis.AnomalousSpan {
    func proto(deviceID: String) -> Twin_V1_Anomaly {
        .init(id: "\(deviceID)-\(sensor)-h\(start / Time.hour)", deviceID: deviceID, sensors: [sensor], score: score, start: start, end: end,
              detector: "hourly_profile_mad",
              description: String(format: "%@: hourly mean far from its usual value for that hour of day (peak %.1f robust z)", sensor, score * 5))
    }
}

extension PatternAnalysis.Trend {
    func proto(windowStart: Nanos, windowEnd: Nanos) -> Twin_V1_Trend {
        var x = Twin_V1_Trend()
        x.sensor = sensor
        x.slopePerDay = slopePerDay
        x.slopeLow = low
        x.slopeHigh = high
        if let timeToLimit { x.timeToLimit = .init(seconds: timeToLimit / Time.second) }
        x.windowStart = .init(nanos: windowStart)
        x.windowEnd = .init(nanos: windowEnd)
        return x
    }
}

extension PatternAnalysis.ChangePoint {
    var proto: Twin_V1_ChangePoint {
        var x = Twin_V1_ChangePoint()
        x.sensor = sensor
        x.time = .init(nanos: time)
        x.levelBefore = before
        x.levelAfter = after
        x.confidence = confidence
        return x
    }
}

extension PatternAnalysis.CorrelationBreak {
    var proto: Twin_V1_CorrelationBreak {
        var x = Twin_V1_CorrelationBreak()
        x.sensorA = a
        x.sensorB = b
        x.normalCorrelation = normal
        x.recentCorrelation = recent
        x.since = .init(nanos: since)
        return x
    }
}

extension PatternAnalysis.Profile {
    var proto: Twin_V1_Profile {
        var x = Twin_V1_Profile()
        x.sensor = sensor
        x.period = weekly ? .weekly : .daily
        x.bucket = .init(seconds: 3600)
        x.mean = mean
        x.stddev = stddev
        return x
    }
}

// MARK: History

extension SeriesHistory {
    /// The first time, then each one's difference from the one before (times are 1970–2200
    /// and ascending, so no difference overflows).
    static func deltas(_ times: [Nanos]) -> [Int64] {
        var out = [Int64](repeating: 0, count: times.count)
        var previous: Nanos = 0
        for (i, t) in times.enumerated() {
            out[i] = t &- previous
            previous = t
        }
        return out
    }

    /// A bucket's value under the chosen aggregate.
    static func value(_ b: Bucket, _ aggregate: Twin_V1_Aggregate) -> Double {
        switch aggregate {
        case .min: b.min
        case .max: b.max
        case .last: b.last
        case .count: Double(b.count)
        default: b.mean
        }
    }

    func proto(unit: String, step: Nanos, aggregate: Twin_V1_Aggregate, columnar: Bool = false) -> Twin_V1_SensorSeries {
        var out = Twin_V1_SensorSeries()
        out.sensor = sensor
        out.unit = unit
        if columnar {
            var c = Twin_V1_HistoryColumns()
            if step > 0 {
                c.timeDeltas = Self.deltas(buckets.map(\.start))
                c.values = buckets.map { Self.value($0, aggregate) }
                c.min = buckets.map(\.min)
                c.max = buckets.map(\.max)
                c.mean = buckets.map(\.mean)
                c.count = buckets.map { UInt64(clamping: $0.count) }
                c.last = buckets.map(\.last)
            } else {
                c.timeDeltas = Self.deltas(times)
                c.values = values
            }
            out.columns = c
        } else if step > 0 {
            out.points = buckets.map { b in
                var p = Twin_V1_HistoryPoint()
                p.time = .init(nanos: b.start)
                p.min = b.min
                p.max = b.max
                p.mean = b.mean
                p.count = UInt64(clamping: b.count)
                p.last = b.last
                p.value = Self.value(b, aggregate)
                return p
            }
        } else {
            out.points = zip(times, values).map { t, v in
                var p = Twin_V1_HistoryPoint()
                p.time = .init(nanos: t)
                p.value = v
                return p
            }
        }
        return out
    }
}

extension Notifier.ChannelStatus {
    var proto: Twin_V1_NotificationChannel {
        var c = Twin_V1_NotificationChannel()
        c.name = name
        c.type = kind.rawValue
        c.target = target
        c.pending = UInt64(pending)
        c.delivered = UInt64(delivered)
        c.failed = UInt64(failed)
        c.consecutiveFailures = UInt32(clamping: consecutiveFailures)
        c.lastError = lastError
        if let t = lastDeliveredAt { c.lastDeliveredAt = .init(nanos: t) }
        if let t = lastAttemptAt { c.lastAttemptAt = .init(nanos: t) }
        if let t = oldestPendingAt { c.oldestPendingAt = .init(nanos: t) }
        c.rateLimited = rateLimited
        c.summaries = UInt64(summaries)
        return c
    }
}

extension AlertReport {
    var proto: Twin_V1_GetAlertReportResponse {
        var r = Twin_V1_GetAlertReportResponse()
        r.from = .init(nanos: from)
        r.to = .init(nanos: to)
        r.opened = UInt64(opened)
        r.reopened = UInt64(reopened)
        r.perHour = perHour
        r.peak10M = UInt32(clamping: peak10m)
        if let t = peak10mAt { r.peak10MAt = .init(nanos: t) }
        r.floodWindows = UInt32(clamping: floodWindows)
        r.floodPercent = floodPercent
        func counts(_ list: [(name: String, count: Int)]) -> [Twin_V1_AlertCount] {
            list.map { var c = Twin_V1_AlertCount(); c.name = $0.name; c.count = UInt64($0.count); return c }
        }
        r.topRules = counts(topRules)
        r.topDevices = counts(topDevices)
        r.standing = standing.map(\.proto)
        r.chattering = chattering.map(\.proto)
        r.shelved = UInt32(clamping: shelved)
        return r
    }
}

/// For `twin-bench store`: a GetHistory answer serialized, one message per point or in packed
/// columns, written by `HistoryWire` (as twind answers) or built as messages and serialized by
/// SwiftProtobuf (the baseline); returns its size.
@_spi(Benchmarks)
public enum HistoryAnswerBenchmark {
    public static func encode(_ series: [SeriesHistory], device: String, columnar: Bool, messages: Bool = false) throws -> Int {
        if !messages {
            return HistoryWire.encode(deviceID: device, step: 0, series: series.map { .init(unit: "", history: $0) }, aggregate: .unspecified, columnar: columnar)?.count ?? 0
        }
        var response = Twin_V1_GetHistoryResponse()
        response.deviceID = device
        response.series = series.map { $0.proto(unit: "", step: 0, aggregate: .unspecified, columnar: columnar) }
        let bytes: [UInt8] = try response.serializedBytes()
        return bytes.count
    }
}
