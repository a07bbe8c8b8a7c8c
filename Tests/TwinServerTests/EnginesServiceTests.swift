import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Proto
import SwiftProtobuf
import Testing
import TwinClient
import TwinCore
import TwinServer

/// The engines through twind: a backfilled plant is trained on, its predictions rank the
/// machines the ground truth says will fail above the healthy ones, recommendations name them;
/// an alert opens, is acknowledged and resolves itself.
@Suite(.tearsDownDaemons, .serialized, .timeLimit(.minutes(5))) struct EnginesServiceTests {
    /// Polls `body` until it returns a value (a state change twind makes in the background).
    func eventually<T>(within seconds: Double = 120, _ body: () async throws -> T?) async throws -> T? {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if let value = try await body() { return value }
            try await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    @Test func retrainPredictRecommendAndPatterns() async throws {
        let d = try await RunningDaemon.start { c in
            c.simulatedDevices = 36
            c.seed = 11
            c.interval = 120 * Time.second
            c.backfill = 28 * Time.day
            c.healthInterval = 200 * Time.millisecond
        }
        let now = Time.now()
        try await d.connect { client in
            let twin = Twin_V1_TwinService.Client(wrapping: client)
            let models = Twin_V1_ModelService.Client(wrapping: client)
            // No model yet: no predictions, and a reason.
            let before = try await twin.getPrediction(Twin_V1_GetPredictionRequest())
            #expect(before.predictions.isEmpty && before.modelVersion.isEmpty && before.note.contains("retrain"))

            let started = try await models.retrain(Twin_V1_RetrainRequest()).job
            let second = await expectRPCError(.failedPrecondition) { _ = try await models.retrain(Twin_V1_RetrainRequest()) }
            #expect(second?.contains(started.id) == true)
            var get = Twin_V1_GetTrainingJobRequest()
            get.jobID = started.id
            let job = try #require(try await eventually {
                let j = try await models.getTrainingJob(get).job
                return j.state == .succeeded || j.state == .failed ? j : nil
            })
            #expect(job.state == .succeeded, "\(job.error)")
            #expect(!job.modelVersion.isEmpty)
            let list = try await models.listModels(Twin_V1_ListModelsRequest())
            let m = try #require(list.models.first)
            #expect(m.features.count > 5)
            // Promoted; or, when this small plant's nine held-out devices show it losing to a
            // baseline (the history depends on the hour the backfill ends), kept as a candidate
            // saying which: the activation by hand below makes it serve either way.
            if job.promoted {
                #expect(list.activeVersion == job.modelVersion && m.status == .active && m.promotionNote.contains("promoted"), "\(m.promotionNote)")
            } else {
                #expect(list.activeVersion.isEmpty && m.status == .candidate && m.promotionNote.contains("loses to"), "\(m.promotionNote)")
            }
            #expect(m.metrics.testDevices > 0 && m.metrics.trainDevices > m.metrics.testDevices)
            #expect(m.metrics.rocAuc > 0.75, "held-out ROC AUC \(m.metrics.rocAuc)")
            #expect(m.metrics.rocAuc > m.metrics.baselineRocAuc)
            // The same history again is refused without force (nothing new to learn), unless the
            // hour turned since the job began (then the history is new).
            var retrains = [started.id]
            do {
                retrains.append(try await models.retrain(Twin_V1_RetrainRequest()).job.id)
                #expect(Time.now() / Time.hour != started.startedAt.seconds / 3600, "a retrain on the same history was not refused")
            } catch let error as RPCError {
                #expect(error.code == .failedPrecondition && error.twinReason == .notEnoughData, "\(error)")
            }
            let files = try FileManager.default.contentsOfDirectory(atPath: d.directory + "/models/" + job.modelVersion)
            #expect(Set(files) == ["manifest.json", "failure_24h.json", "failure_7d.json", "remaining_life.json", "remaining_life_near.json"])
            // Remaining life over the whole service life, beside its baseline, with the
            // interval's held-out coverage.
            #expect(m.metrics.rulWholeLifeMaeHours > 0 && m.metrics.baselineRulWholeLifeMaeHours > 0)
            #expect((0...1).contains(m.metrics.rulIntervalCoverage) && (0...1).contains(m.metrics.rulIntervalCoverage7D))
            #expect(m.metrics.meanLifetimeHours > 24 && m.metrics.testFailures > 0)
            // Activation by hand: audited; an unknown version is refused and leaves no entry. The
            // retrain has one entry, written before its job started; the refused ones have none.
            var activate = Twin_V1_ActivateModelRequest()
            activate.version = job.modelVersion
            #expect(try await models.activateModel(activate).model.version == job.modelVersion)
            activate.version = "v-nope"
            await expectReason(.notFound, .modelNotFound) { _ = try await models.activateModel(activate) }
            let audit = try await Twin_V1_AuthService.Client(wrapping: client).listAuditEvents(.init()).events
            #expect(Set(audit.filter { $0.action == "model.retrain" }.map(\.detail)) == Set(retrains), "\(audit.map(\.action))")
            #expect(audit.filter { $0.action == "model.retrain" }.count == retrains.count)
            #expect(audit.filter { $0.action == "model.activated" }.map(\.detail) == [job.modelVersion])

            // Ground truth (the simulator's log): machines with a fault under way.
            var events = Twin_V1_ListEventsRequest()
            events.from = .init(seconds: (now - 45 * Time.day) / Time.second)  // machines may start mid-fault, onset before the backfill
            events.pageSize = 10_000
            let log = try await twin.listEvents(events).events
            var failing = Set<String>(), soon = Set<String>()
            for e in log where e.kind == .faultOnset && e.hasExpectedFailureAt && e.expectedFailureAt.seconds > now / Time.second {
                let repaired = log.contains { $0.deviceID == e.deviceID && $0.kind == .repair && $0.time.seconds > e.time.seconds }
                if !repaired {
                    failing.insert(e.deviceID)
                    // Within 3 days of failing, a developing fault shows in the data; earlier it may not.
                    if e.expectedFailureAt.seconds - now / Time.second <= 3 * 86_400 { soon.insert(e.deviceID) }
                }
            }
            let prediction = try await twin.getPrediction(Twin_V1_GetPredictionRequest())
            #expect(prediction.modelVersion == job.modelVersion && prediction.predictions.count >= 18)
            let p7 = Dictionary(uniqueKeysWithValues: prediction.predictions.map { ($0.deviceID, $0.failureProbabilities[1].probability) })
            // Every machine in service has a remaining life, with its 80 % interval around it,
            // also the ones far from a failure.
            for p in prediction.predictions {
                #expect(p.hasRemainingLife, "\(p.deviceID) has no remaining life")
                let r = p.remainingLife
                #expect(r.confidence == 0.8 && r.lower.seconds <= r.expected.seconds && r.expected.seconds <= r.upper.seconds, "\(p.deviceID): \(r)")
            }
            let risky = p7.filter { soon.contains($0.key) }.map(\.value), calm = p7.filter { !failing.contains($0.key) }.map(\.value)
            try #require(!risky.isEmpty, "seed 11 has machines within 3 days of a failure at the end of its backfill")
            // Ranked above: the chance that a machine with a fault under way gets the higher
            // 7-day probability than one without (ties half).
            var wins = 0.0
            for r in risky { for c in calm { wins += r > c ? 1 : r == c ? 0.5 : 0 } }
            let auc = wins / Double(risky.count * max(1, calm.count))
            // A snapshot holds only a few machines about to fail, and some faults barely show a day
            // ahead: better than chance by a margin, not perfect (held-out metrics are above).
            #expect(auc >= 0.6, "failing soon \(soon), later \(failing.subtracting(soon)): \(p7); onsets: \(log.filter { $0.kind == .faultOnset }.map { "\($0.deviceID) \($0.time.seconds) \($0.hasExpectedFailureAt) \($0.expectedFailureAt.seconds) now \(now / Time.second)" })")

            let recs = try await twin.getRecommendations(Twin_V1_GetRecommendationsRequest()).recommendations
            let machineRecs = recs.filter { !$0.sensorFault }
            // Recommendations name the failing machines the model sees.
            let named = machineRecs.filter { failing.contains($0.deviceID) }
            #expect(!named.isEmpty, "\(recs.map { "\($0.deviceID) \($0.title)" })")
            #expect(named.first?.evidence.contains { $0.kind == "prediction" } == true)

            // Health: every device scored, worst first, with reasons.
            let health = try await twin.getHealth(Twin_V1_GetHealthRequest()).devices.map(\.health)
            let scores: [Double] = health.map(\.score)
            #expect(health.count == 36)
            #expect(scores == scores.sorted())
            let worst = try #require(health.first)
            #expect(worst.score < 80 && !worst.factors.isEmpty)

            // Patterns of one device over its last week.
            var patterns = Twin_V1_GetPatternsRequest()
            patterns.deviceID = "pump-001"
            let p = try await twin.getPatterns(patterns)
            var getPump = Twin_V1_GetDeviceRequest()
            getPump.deviceID = "pump-001"
            #expect(p.trends.count == (try await twin.getDevice(getPump).device.sensors.count))
            #expect(p.profiles.contains { $0.period == .daily && $0.mean.count == 24 })
            patterns.sensors = ["no_such_sensor"]
            #expect(await expectRPCError(.invalidArgument) { _ = try await twin.getPatterns(patterns) }?.contains("flow") == true)

            // Acted on: a repair recorded for the first recommended device retires its recommendation.
            if let first = named.first {
                var record = Twin_V1_RecordEventRequest()
                record.event.deviceID = first.deviceID
                record.event.kind = .inspection
                record.event.time = .init(seconds: Time.now() / Time.second)
                _ = try await twin.recordEvent(record)
                let after = try await twin.getRecommendations(Twin_V1_GetRecommendationsRequest()).recommendations
                #expect(!after.contains { $0.id == first.id })
            }
        }
        try await d.stop()
    }

    @Test func anAlertOpensIsAcknowledgedAndResolvesItself() async throws {
        let d = try await RunningDaemon.start { c in
            c.simulator = false
            c.healthInterval = 50 * Time.millisecond
            c.alertMinimumDuration = 0
            c.alertClearTime = 200 * Time.millisecond
        }
        try await d.connect { client in
            let twin = Twin_V1_TwinService.Client(wrapping: client)
            var upsert = Twin_V1_UpsertDeviceRequest()
            upsert.device = gatewayDevice("press-1")
            _ = try await twin.upsertDevice(upsert)
            func send(_ values: [Double]) async throws {
                var batch = Twin_V1_IngestRequest()
                let now = Time.now()
                batch.readings = values.enumerated().map { Twin_V1_Reading("press-1", "force", now - Nanos(values.count - $0) * Time.millisecond, $1) }
                let message = batch
                _ = try await twin.ingest(request: StreamingClientRequest { try await $0.write(message) })
            }
            // A live stream of this device, open before anything happens: it must see the alert.
            let (synced, syncedTap) = AsyncStream.makeStream(of: Void.self)
            var subscribe = Twin_V1_StreamUpdatesRequest()
            subscribe.deviceIds = ["press-1"]
            let streamed = Task {
                try await twin.streamUpdates(subscribe) { response -> [Twin_V1_Alert] in
                    var seen: [Twin_V1_Alert] = []
                    for try await message in response.messages {
                        switch message.update {
                        case .syncComplete: syncedTap.yield()
                        case .alert(let a):
                            seen.append(a)
                            if a.state == .acknowledged { return seen }
                        default: break
                        }
                    }
                    return seen
                }
            }
            for await _ in synced { break }
            // Force above its alarm limit (950 kN).
            try await send([980, 990, 1000, 995])
            var list = Twin_V1_ListAlertsRequest()
            list.deviceIds = ["press-1"]
            let alert = try #require(try await eventually(within: 20) { try await twin.listAlerts(list).alerts.first { $0.rule == "force.high" } })
            #expect(alert.severity == .critical && alert.state == .open && alert.sensor == "force")
            var get = Twin_V1_GetDeviceRequest()
            get.deviceID = "press-1"
            #expect(try await twin.getDevice(get).snapshot.openAlerts >= 1)

            var ack = Twin_V1_AckAlertRequest()
            ack.alertID = alert.id
            ack.comment = "crew on the way"
            let acked = try await twin.ackAlert(ack).alert
            #expect(acked.state == .acknowledged && acked.acknowledgedBy == "admin")
            #expect(acked.ackComment == "crew on the way")
            await expectReason(.failedPrecondition, .alertStateConflict) { _ = try await twin.ackAlert(ack) }
            // The acknowledgement is in the audit log (kept in health_data.db, committed with it).
            let audit = try await Twin_V1_AuthService.Client(wrapping: client).listAuditEvents(.init()).events
            #expect(audit.first { $0.action == "alert.acked" }?.detail.hasPrefix(alert.id) == true, "\(audit.map(\.action))")
            #expect(audit.filter { $0.action == "alert.acked" }.count == 1)
            // The stream carried the alert as it opened and as it was acknowledged.
            // (Other rules of the device may open alerts too; this one's messages are what count.)
            let everything = try await streamed.value
            let fromStream = everything.filter { $0.id == alert.id }
            #expect(fromStream.first?.state == .open, "\(everything.map { "\($0.rule) \($0.state)" })")
            #expect(fromStream.last?.state == .acknowledged && fromStream.last?.acknowledgedBy == "admin")
            ack.alertID = "alert-nope"
            await expectReason(.notFound, .alertNotFound) { _ = try await twin.ackAlert(ack) }

            // Back to normal: it resolves itself once clear for a while.
            try await send(Array(repeating: 400, count: 40))
            list.states = [.resolved]
            let resolved = try #require(try await eventually(within: 20) { try await twin.listAlerts(list).alerts.first { $0.id == alert.id } })
            #expect(resolved.resolvedBy == "system" && resolved.hasResolvedAt)
        }
        try await d.stop()
    }
}
