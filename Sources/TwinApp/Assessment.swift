import Foundation
import Synchronization
import TwinApp
import TwinCore
import TwinEngines

/// Ties the engines together for the plant: scores every device's health periodically (the
/// verdicts go into the live snapshots, so StreamUpdates and twin watch show them), and answers
/// GetHealth and GetRecommendations from the latest verdicts and failure outlooks.
public final class Assessment: Sendable {
    public let plant: Plant
    public let prognostics: Prognostics
    public let alerts: AlertBook?
    let verdicts = Mutex<[String: HealthEngine.Verdict]>([:])
    /// When each recommendation was first made, so acting on it (an event) retires it.
    let firstSeen = Mutex<[String: Nanos]>([:])

    public init(plant: Plant, prognostics: Prognostics, alerts: AlertBook?) {
        self.plant = plant
        self.prognostics = prognostics
        self.alerts = alerts
    }

    /// The verdict of one device now.
    public func verdict(_ device: Device, index: Int32, state: DeviceState, outlook: DeviceOutlook?, now: Nanos) -> HealthEngine.Verdict? {
        plant.health.score(device: index, state: state, outlook: outlook.map { ($0.within24h, $0.within7d, $0.lead) }, now: now)
    }

    /// Scores every device, updates the snapshots, keeps the hourly score history, evaluates alerts.
    public func tick(now: Nanos) {
        let devices = plant.live.devices()
        let indices = devices.compactMap { plant.live.index(of: $0.id) }
        guard indices.count == devices.count else { return }
        let states = plant.live.states(indices)
        let outlooks = prognostics.outlooksByDevice
        var fresh: [String: HealthEngine.Verdict] = [:]
        var scored: [(device: Device, index: Int32, state: DeviceState, verdict: HealthEngine.Verdict?, outlook: DeviceOutlook?)] = []
        for (k, device) in devices.enumerated() {
            let v = verdict(device, index: indices[k], state: states[k], outlook: outlooks[device.id], now: now)
            if let v {
                fresh[device.id] = v
                plant.health.record(score: v.score, device: indices[k], at: now)
            }
            scored.append((device, indices[k], states[k], v, outlooks[device.id]))
        }
        verdicts.withLock { $0 = fresh }
        let reported = Set(plant.live.reported(indices))
        let open = alerts?.evaluate(scored.map {
            .init(device: $0.device, state: $0.state, verdict: $0.verdict, outlook: $0.outlook, reported: reported.contains($0.index))
        }) ?? [:]
        var marks: [(index: Int32, health: HealthSummary?, openAlerts: UInt32)] = []
        for s in scored where s.verdict != nil || open[s.device.id] != nil {
            marks.append((s.index, s.verdict?.summary, open[s.device.id] ?? 0))
        }
        plant.annotate(marks)
    }

    /// Health of the given devices (all when empty), worst first.
    public func health(_ ids: [String], now: Nanos) throws(TwinError) -> [(device: Device, index: Int32, verdict: HealthEngine.Verdict)] {
        try plant.checkDevices(ids, field: "device_ids")
        let devices = ids.isEmpty ? plant.live.devices() : ids.compactMap { plant.live.device($0) }
        let outlooks = prognostics.outlooksByDevice
        let known = devices.compactMap { d in plant.live.index(of: d.id).map { (device: d, index: $0) } }
        let states = plant.live.states(known.map(\.index))
        var result: [(device: Device, index: Int32, verdict: HealthEngine.Verdict)] = []
        for (k, d) in known.enumerated() {
            if let v = verdict(d.device, index: d.index, state: states[k], outlook: outlooks[d.device.id], now: now) { result.append((d.device, d.index, v)) }
        }
        return result.sorted { $0.verdict.score != $1.verdict.score ? $0.verdict.score < $1.verdict.score : $0.device.id < $1.device.id }
    }

    /// The to-do list: from the latest verdicts and outlooks; one acted on (a maintenance event
    /// recorded for the device since it was first made) is gone.
    public func recommendations(ids: [String], types: [String], minimum: Recommendation.Priority?, limit: Int, now: Nanos) throws(TwinError) -> [Recommendation] {
        try plant.checkDevices(ids, field: "device_ids")
        let wanted = Set(ids), kinds = Set(types)
        let devices = plant.live.devices().filter { (wanted.isEmpty || wanted.contains($0.id)) && (kinds.isEmpty || kinds.contains($0.type)) }
        let verdicts = verdicts.withLock { $0 }
        let outlooks = prognostics.outlooksByDevice
        let inputs = devices.map { d in
            let o = outlooks[d.id]
            return Recommender.Input(
                device: d, verdict: verdicts[d.id], within24h: o?.within24h, within7d: o?.within7d,
                rulHours: o.flatMap { $0.within7d >= 0.5 ? ($0.rulHours, $0.rulLow) : nil }, lead: o?.lead)
        }
        var all = Recommender.recommend(inputs, now: now)
        // Acted on: an event of work on the device after the recommendation was first made.
        var query = EventQuery()
        query.kinds = [.repair, .inspection, .partReplaced, .maintenance, .sensorServiced]
        query.from = now - 2 * Time.day
        query.limit = 100_000
        var lastWork: [String: Nanos] = [:]
        for e in try plant.store.events(query) { lastWork[e.deviceID] = max(lastWork[e.deviceID] ?? .min, e.time) }
        firstSeen.withLock { seen in
            for r in all where seen[r.id] == nil { seen[r.id] = now }
            all.removeAll { r in
                guard let work = lastWork[r.deviceID], let first = seen[r.id] else { return false }
                return work >= first - Time.minute
            }
            if seen.count > 100_000 { seen = seen.filter { now - $0.value < 7 * Time.day } }
        }
        if let minimum { all.removeAll { $0.priority < minimum } }
        return Array(all.prefix(limit))
    }

    public func firstSeenTime(_ id: String) -> Nanos? { firstSeen.withLock { $0[id] } }
}
