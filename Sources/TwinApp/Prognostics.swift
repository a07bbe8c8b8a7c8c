import Foundation
import Logging
import Synchronization
import TwinCore
import TwinEngines
import TwinApp

/// A training job, as GetTrainingJob reports it.
public struct TrainingJobStatus: Sendable {
    public enum State: String, Sendable { case queued, running, succeeded, failed }
    public var id: String
    public var state: State = .queued
    public var progress = 0.0
    public var stage = "queued"
    public var startedAt: Nanos
    public var finishedAt: Nanos?
    public var modelVersion = ""
    public var promoted = false
    public var error = ""
    public var trigger: String
    public var requestedBy: String
}

/// Failure prediction and remaining life: trains models from the stored history and the
/// maintenance log (Retrain, and a scheduler every 24 h), keeps versions on disk, serves the
/// active one's predictions from a cache refreshed every few minutes.
public final class Prognostics: Sendable {
    public struct Options: Sendable {
        public var retrainInterval: Nanos = Time.day
        /// Default training window (all stored history up to this).
        public var window: Nanos = 90 * Time.day
        public var refreshInterval: Nanos = 5 * Time.minute
        public init() {}
    }

    /// What twind counts (metrics): a training job's end, and the model in force.
    public struct Hooks: Sendable {
        public var retrained: @Sendable (_ outcome: String, _ seconds: Double) -> Void = { _, _ in }
        public var activeModel: @Sendable (_ version: String, _ rocAUC: Double, _ rulMAEHours: Double) -> Void = { _, _, _ in }
        public init() {}
    }
    let hooks: Hooks

    public let plant: Plant
    public let repository: ModelRepository
    public let options: Options
    public let logger: Logger
    public let active = Mutex<LoadedModel?>(nil)
    /// Why there is no active model, for people.
    public let unavailableReason = Mutex<String>("no model has been trained yet: run twin retrain (admins) once the plant has a history with recorded failures")
    let outlooks = Mutex<[String: DeviceOutlook]>([:])
    let jobs = Mutex<(all: [TrainingJobStatus], running: String?)>(([], nil))
    let references = Mutex<[String: (serviceStart: Nanos, reference: [FailureFeatures.Reference])]>([:])
    public let sequence = Atomic<Int>(0)
    /// Training runs here: one job at a time on a thread of its own at nice 5, never on the
    /// cooperative pool (XGBoost holds its thread for seconds to minutes).
    let trainer = BlockingPool(name: "training", workers: 1, queueLimit: 1, maxWait: .seconds(24 * 3600), niceness: 5)

    public init(plant: Plant, modelsDirectory: String, options: Options, logger: Logger, hooks: Hooks = Hooks()) throws(TwinError) {
        self.hooks = hooks
        self.plant = plant
        self.options = options
        self.logger = logger
        repository = try ModelRepository(directory: modelsDirectory)
        let (_, broken) = repository.manifests()
        for problem in broken { logger.warning("a model version cannot be read and is ignored", metadata: ["problem": "\(problem)"]) }
        if let version = repository.activeVersion() {
            do {
                active.withLock { $0 = try? repository.load(version) }
                if active.withLock({ $0 == nil }) { _ = try repository.load(version) }
                logger.info("failure model loaded", metadata: ["version": "\(version)"])
                if let m = activeModel?.manifest.metrics { hooks.activeModel(version, m.rocAUC, m.rulMAEHours) }
            } catch {
                unavailableReason.withLock { $0 = "the active model \(version) cannot be loaded (\(error.message)); serving without predictions until a retrain or ActivateModel" }
                logger.error("serving without predictions: the active model cannot be loaded", metadata: ["version": "\(version)", "error": "\(error.message)"])
            }
        }
    }

    public var activeModel: LoadedModel? { active.withLock { $0 } }

    // MARK: Data

    /// Hourly means of a device's sensors over [from, to) on the hourly grid; NaN where empty.
    public func hourly(_ device: Device, from: Nanos, to: Nanos) throws(TwinError) -> [[Double]] {
        let start = from - from % Time.hour
        let hours = Int((to - start + Time.hour - 1) / Time.hour)
        var query = HistoryQuery(deviceID: device.id, sensors: device.sensors.map(\.name), from: start, to: start + Nanos(hours) * Time.hour, step: Time.hour)
        query.maxRawPoints = .max
        let series = try plant.history.history(query)
        return series.map { s in
            var grid = [Double](repeating: .nan, count: hours)
            for b in s.buckets {
                let h = Int((b.start - start) / Time.hour)
                if h >= 0 && h < hours { grid[h] = b.mean }
            }
            return grid
        }
    }

    /// The first hour of an hourly grid in which any sensor has a reading.
    static func firstHourWithReadings(_ grid: [[Double]]) -> Int? {
        (0..<(grid.first?.count ?? 0)).first { h in grid.contains { !$0[h].isNaN } }
    }

    /// Failures and repairs per device, from the maintenance log.
    func serviceEvents(since: Nanos) throws(TwinError) -> [String: (failures: [Nanos], repairs: [Nanos])] {
        var query = EventQuery()
        query.kinds = [.failure, .repair, .partReplaced]
        query.from = since
        query.limit = 1_000_000
        var result: [String: (failures: [Nanos], repairs: [Nanos])] = [:]
        for e in try plant.store.events(query) {
            if e.kind == .failure { result[e.deviceID, default: ([], [])].failures.append(e.time) } else { result[e.deviceID, default: ([], [])].repairs.append(e.time) }
        }
        return result
    }

    // MARK: Training

    /// Starts a training job; FAILED_PRECONDITION while another runs.
    /// Starts a training job. `audit` is called with the job before it starts: if it throws, the
    /// job is dropped and the request refused, so no job runs without its audit entry.
    public func retrain(trigger: String, requestedBy: String, window: Nanos?, force: Bool,
                 audit: (TrainingJobStatus) throws(TwinError) -> Void = { _ in }) throws(TwinError) -> TrainingJobStatus {
        let now = plant.clock.now()
        if trigger != "scheduler", let refusal = policy.requested(force: force, customWindow: window != nil, end: now - now % Time.hour, newest: newest) {
            throw refusal
        }
        let job = try jobs.withLock { state throws(TwinError) -> TrainingJobStatus in
            if let running = state.running {
                throw TwinError.failedPrecondition("training job \(running) is still running; follow it with twin retrain --follow or GetTrainingJob", reason: .trainingInProgress)
                    .adding(["job_id": running])
            }
            let job = TrainingJobStatus(id: "job-\(Time.iso(now).filter { $0.isNumber }.prefix(14))-\(sequence.add(1, ordering: .relaxed).newValue)", startedAt: now, trigger: trigger, requestedBy: requestedBy)
            state.all.append(job)
            if state.all.count > 100 { state.all.removeFirst(state.all.count - 100) }
            state.running = job.id
            return job
        }
        do { try audit(job) } catch {
            jobs.withLock { state in
                state.all.removeAll { $0.id == job.id }
                if state.running == job.id { state.running = nil }
            }
            throw error
        }
        queue.continuation.yield((job.id, window ?? options.window))
        return job
    }

    /// Accepted jobs, for the training worker (`runJobs`).
    let queue = AsyncStream.makeStream(of: (id: String, window: Nanos).self)

    /// The training worker (the daemon's `TrainingConcern`): runs the accepted jobs one after the
    /// other on the training thread until cancelled. Cancelled while a job trains, it returns
    /// at once and leaves the job to `stop()`.
    public func runJobs() async {
        for await (id, window) in queue.stream {
            do throws(TwinError) {
                try await trainer.runUnlessCancelled { self.run(job: id, window: window) }
            } catch {
                if Task.isCancelled { return }
                finish(id, failure: error.message)
            }
        }
    }

    /// A job that cannot run (or was cut off) ends failed, and the next one may start.
    public func finish(_ id: String, failure: String) {
        update(id) { j in
            guard j.finishedAt == nil else { return }
            j.state = .failed
            j.error = failure
            j.stage = "failed"
            j.finishedAt = plant.clock.now()
        }
        jobs.withLock { if $0.running == id { $0.running = nil } }
    }

    /// At shutdown: no new job starts; one still training is reported and left to die with the
    /// process (its files are in a staging directory, never a half-written version).
    public func stop() {
        queue.continuation.finish()
        trainer.shutdown()
        if let running = jobs.withLock({ $0.running }) {
            logger.warning("a training job was still running at shutdown; it is abandoned (nothing of it is kept)", metadata: ["job": "\(running)"])
            finish(running, failure: "twind stopped before the job finished")
        }
    }

    public func job(_ id: String) -> TrainingJobStatus? { jobs.withLock { $0.all.first { $0.id == id } } }

    private func update(_ id: String, _ change: (inout TrainingJobStatus) -> Void) {
        jobs.withLock { state in
            if let i = state.all.firstIndex(where: { $0.id == id }) { change(&state.all[i]) }
        }
    }

    private func run(job id: String, window: Nanos) {
        let began = ContinuousClock.now
        update(id) { $0.state = .running; $0.stage = "reading history" }
        do {
            let result = try train(job: id, window: window)
            update(id) { j in
                j.state = .succeeded
                j.progress = 1
                j.stage = result.promoted ? "done: \(result.version) is active" : "done: \(result.version) kept as a candidate"
                j.modelVersion = result.version
                j.promoted = result.promoted
                j.finishedAt = plant.clock.now()
            }
            hooks.retrained("succeeded", (ContinuousClock.now - began).seconds)
            logger.notice("model trained", metadata: ["job": "\(id)", "version": "\(result.version)", "promoted": "\(result.promoted)", "took": "\(ContinuousClock.now - began)"])
        } catch {
            update(id) { j in
                j.state = .failed
                j.error = error.message
                j.stage = "failed"
                j.finishedAt = plant.clock.now()
            }
            hooks.retrained("failed", (ContinuousClock.now - began).seconds)
            logger.warning("training failed", metadata: ["job": "\(id)", "error": "\(error.message)"])
        }
        jobs.withLock { $0.running = nil }
    }

    private func train(job id: String, window: Nanos) throws(TwinError) -> (version: String, promoted: Bool) {
        let now = plant.clock.now()
        let end = now - now % Time.hour
        let from = end - window
        let devices = plant.live.devices()
        let events = try serviceEvents(since: from - 30 * Time.day)
        var histories: [DeviceHourlyHistory] = []
        for (n, device) in devices.enumerated() {
            var grid = try hourly(device, from: from, to: end)
            // History starts at the device's first hour with readings.
            let first = Self.firstHourWithReadings(grid) ?? 0
            grid = grid.map { Array($0[first...]) }
            let e = events[device.id] ?? ([], [])
            histories.append(DeviceHourlyHistory(
                deviceID: device.id, specs: device.sensors, start: from - from % Time.hour + Nanos(first) * Time.hour, hourly: grid,
                failures: e.failures, repairs: e.repairs))
            if n % 10 == 0 { update(id) { $0.stage = "reading history (\(n + 1)/\(devices.count) devices)"; $0.progress = 0.2 * Double(n + 1) / Double(devices.count) } }
        }
        let model = try FailureModel.train(histories: histories, end: end) { stage, fraction in
            self.update(id) { $0.stage = stage; $0.progress = 0.2 + 0.75 * fraction }
        }
        let version = ModelRepository.versionName(at: now, sequence: sequence.add(1, ordering: .relaxed).newValue)
        var hyper: [String: String] = [:]
        for (name, p) in model.parameters { for (k, v) in p.description { hyper["\(name).\(k)"] = v } }
        var manifest = ModelManifest(
            version: version, createdAt: now, features: FailureFeatures.names, trainFrom: histories.map(\.start).min() ?? from, trainTo: end,
            hyperparameters: hyper, metrics: model.metrics, rulInterval: model.remainingLife.wholeInterval.list,
            trigger: job(id)?.trigger ?? "")
        manifest.rulScale = ModelManifest.wholeLifeScale
        manifest.rulIntervalNear = model.remainingLife.nearInterval.list
        // Promote only if it beats the baselines and is not worse than the active model on the
        // same held-out data.
        var promote = true
        if let loss = Self.lossToBaselines(model.metrics) {
            promote = false
            manifest.promotionNote = "kept as a candidate: " + loss
        } else if let current = activeModel {
            if current.manifest.features != manifest.features {
                manifest.promotionNote = "promoted: the active model \(current.manifest.version) uses other features"
            } else if model.testLabels.contains(true) && model.testLabels.contains(false) {
                let old = try current.predict(model.testRows).map(\.within24h)
                let oldAUC = Stats.rocAUC(scores: old, labels: model.testLabels)
                promote = !(model.metrics.rocAUC < oldAUC)
                manifest.promotionNote = String(format: "held-out ROC AUC %.3f vs %.3f for the active %@ on the same devices: %@", model.metrics.rocAUC, oldAUC, current.manifest.version, promote ? "promoted" : "kept as a candidate")
            } else {
                promote = false
                manifest.promotionNote = "kept as a candidate: the held-out devices had no failure to compare on"
            }
        } else {
            manifest.promotionNote = "promoted: no model was active"
        }
        if promote, model.metrics.testFailures < Self.failuresToCompare {
            manifest.promotionNote += "; the held-out devices had \(model.metrics.testFailures) failures, too few (under \(Self.failuresToCompare)) to compare with the baselines"
        }
        update(id) { $0.stage = "saving \(version)"; $0.progress = 0.97 }
        try repository.save(model, manifest: manifest)
        if promote { try activate(version) }
        return (version, promote)
    }

    /// Held-out failures needed before a model is judged against the baselines.
    static let failuresToCompare = 5

    /// Why a model may not be promoted: it loses, on the held-out devices, to the threshold rule
    /// (ROC AUC of failure within 24 h) or to the conditional fleet mean (remaining-life MAE
    /// over the whole service life, by more than two standard errors of the per-device
    /// differences). Nil when it wins or draws, or when the held-out devices had too few
    /// failures to tell.
    static func lossToBaselines(_ m: ModelMetrics) -> String? {
        guard m.testFailures >= failuresToCompare else { return nil }
        if m.rocAUC.isNaN || m.rocAUC < m.baselineRocAUC {
            return String(format: "held-out ROC AUC %.3f loses to the threshold rule's %.3f", m.rocAUC, m.baselineRocAUC)
        }
        // A loss within two standard errors of the per-device differences is not told apart
        // from a draw (a dozen held-out devices cannot tell a few per cent).
        let margin = 2 * (m.rulWholeLifeVersusBaselineSE ?? 0)
        if let mae = m.rulWholeLifeMAEHours, let baseline = m.baselineRulWholeLifeMAEHours, mae.isNaN || mae - baseline > margin {
            return String(format: "held-out remaining-life MAE %.1f h loses to the conditional fleet mean's %.1f h (by more than the %.1f h, two standard errors, its held-out devices can tell)", mae, baseline, margin)
        }
        return nil
    }

    /// Makes a version active (rollback or promotion) and refreshes the predictions.
    @discardableResult
    public func activate(_ version: String) throws(TwinError) -> ModelManifest {
        let loaded = try repository.load(version)
        try repository.activate(version)
        active.withLock { $0 = loaded }
        hooks.activeModel(version, loaded.manifest.metrics.rocAUC, loaded.manifest.metrics.rulMAEHours)
        references.withLock { $0.removeAll() }
        refresh(now: plant.clock.now())
        return loaded.manifest
    }

    // MARK: Serving

    /// Recomputes every device's outlook with the active model.
    public func refresh(now: Nanos) {
        lastRefresh.store(now, ordering: .relaxed)
        guard let model = activeModel else { return }
        let devices = plant.live.devices()
        let events = (try? serviceEvents(since: now - 365 * Time.day)) ?? [:]
        var rows: [[Float]] = [], ids: [String] = [], leads: [String?] = []
        let end = now - now % Time.hour
        for device in devices {
            let e = events[device.id] ?? ([], [])
            // Down between a failure and its repair: no outlook.
            let lastRepair = e.repairs.max()
            if let failure = e.failures.max(), failure > (lastRepair ?? .min) { continue }
            guard let (serviceStart, reference) = reference(for: device, lastRepair: lastRepair, now: end),
                  let recent = try? hourly(device, from: end - Nanos(FailureFeatures.lookback) * Time.hour, to: end)
            else { continue }
            let age = Double(end - serviceStart) / Double(Time.hour)
            let (features, lead) = FailureFeatures.compute(
                recent: recent, reference: reference, specs: device.sensors, lastHourOfDay: FailureFeatures.hourOfDay(end - Time.hour),
                hoursSinceRepair: lastRepair == nil ? .nan : age)
            guard FailureFeatures.usable(features) else { continue }
            rows.append(features)
            ids.append(device.id)
            leads.append(lead)
        }
        guard let predictions = try? model.predict(rows) else { return }
        var fresh: [String: DeviceOutlook] = [:]
        for (i, p) in predictions.enumerated() {
            fresh[ids[i]] = DeviceOutlook(deviceID: ids[i], prediction: p, lead: leads[i], computedAt: now, modelVersion: model.manifest.version)
        }
        outlooks.withLock { $0 = fresh }
    }

    /// The device's normal: hourly means of the 24 h after its last repair, or after its first
    /// reading; cached until the next repair.
    public func reference(for device: Device, lastRepair: Nanos?, now: Nanos) -> (Nanos, [FailureFeatures.Reference])? {
        if let cached = references.withLock({ $0[device.id] }), cached.serviceStart >= (lastRepair ?? .min) { return (cached.serviceStart, cached.reference) }
        var start = lastRepair
        if start == nil {
            // The first hour with readings, within the last year.
            guard let grid = try? hourly(device, from: now - 365 * Time.day, to: now),
                  let first = Self.firstHourWithReadings(grid)
            else { return nil }
            start = now - 365 * Time.day - (now - 365 * Time.day) % Time.hour + Nanos(first) * Time.hour
        }
        let refStart = start! - start! % Time.hour + Time.hour
        guard refStart + Nanos(FailureFeatures.referenceHours) * Time.hour <= now,
              let grid = try? hourly(device, from: refStart, to: refStart + Nanos(FailureFeatures.referenceHours) * Time.hour),
              let reference = FailureFeatures.reference(hourly: grid, specs: device.sensors, firstHourOfDay: FailureFeatures.hourOfDay(refStart))
        else { return nil }
        references.withLock { $0[device.id] = (start!, reference) }
        return (start!, reference)
    }

    let lastRefresh = Atomic<Int64>(0)

    public func refreshIfDue(now: Nanos) {
        if now - lastRefresh.load(ordering: .relaxed) >= options.refreshInterval { refresh(now: now) }
    }

    /// The latest outlook of every device that has one, by device id.
    var outlooksByDevice: [String: DeviceOutlook] { outlooks.withLock { $0 } }

    public func outlook(_ ids: [String]) -> [DeviceOutlook] {
        outlooks.withLock { all in ids.isEmpty ? Array(all.values) : ids.compactMap { all[$0] } }
    }

    // MARK: Scheduler

    public var policy: RetrainPolicy { RetrainPolicy(interval: options.retrainInterval) }

    public var newest: RetrainPolicy.Newest? {
        repository.manifests().models.first.map { RetrainPolicy.Newest(version: $0.version, createdAt: $0.createdAt, trainTo: $0.trainTo) }
    }

    /// When the next scheduled retrain is due (now when there is no model).
    func nextScheduledRetrain(now: Nanos) -> Nanos { newest.map { policy.due(after: $0) } ?? now }

    /// One scheduler step: retrain when due, as soon as there is something new to learn from.
    public func scheduledStep(now: Nanos) {
        let newest = self.newest
        let decision = policy.scheduled(now: now, newest: newest, running: jobs.withLock { $0.running != nil }) { since in
            ((try? serviceEvents(since: since)) ?? [:]).values.reduce(0) { $0 + $1.failures.count }
        }
        switch decision {
        case .wait, .busy:
            return
        case .nothingNew(let due):
            // Said once per due time; the check runs again every step.
            let first = skipLogged.withLock { logged in defer { logged = due }; return logged != due }
            if first {
                logger.info("scheduled retrain waits: no failure recorded since the last model's training window", metadata: ["model": "\(newest?.version ?? "")"])
            }
        case .train:
            _ = try? retrain(trigger: "scheduler", requestedBy: "", window: nil, force: false)
        }
    }
    let skipLogged = Mutex<Nanos?>(nil)
}
