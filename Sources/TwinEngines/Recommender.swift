import TwinCore

/// A maintenance action to take, with the evidence behind it.
public struct Recommendation: Sendable, Equatable {
    public enum Action: String, Sendable { case inspect, lubricate, replacePart, recalibrateSensor, checkSensor, reduceLoad, balance, clean, scheduleMaintenance }
    public enum Priority: Int, Sendable, Comparable {
        case low = 1, medium, high, urgent
        public static func < (a: Priority, b: Priority) -> Bool { a.rawValue < b.rawValue }
    }
    public struct Evidence: Sendable, Equatable {
        public var kind: String
        public var description: String
        public var sensor: String
        public var value: Double?
    }

    public var id: String
    public var deviceID: String
    public var component: String
    public var action: Action
    public var priority: Priority
    public var title: String
    public var deadline: Nanos
    public var evidence: [Evidence]
    public var expectedEffect: String
    public var sensorFault: Bool
}

/// Turns health verdicts and failure outlooks into a short, deduplicated to-do list. Sensor
/// faults get "check the sensor", never a machine repair.
public enum Recommender {
    public struct Input: Sendable {
        public var device: Device
        public var verdict: HealthEngine.Verdict?
        public var within24h: Double?
        public var within7d: Double?
        public var rulHours: (expected: Double, low: Double)?
        public var lead: String?
        public init(device: Device, verdict: HealthEngine.Verdict?, within24h: Double?, within7d: Double?, rulHours: (expected: Double, low: Double)?, lead: String?) {
            self.device = device
            self.verdict = verdict
            self.within24h = within24h
            self.within7d = within7d
            self.rulHours = rulHours
            self.lead = lead
        }
    }

    public static func id(_ device: String, _ component: String, _ action: Recommendation.Action) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in "\(device)|\(component)|\(action.rawValue)".utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return "rec-" + String(h, radix: 16)
    }

    /// The action a machine problem led by `sensor` calls for, from the sensor's name.
    static func machineAction(lead sensor: String, factors: [HealthEngine.Factor], urgent: Bool) -> (Recommendation.Action, String) {
        let s = sensor.lowercased()
        let deviating = Set(factors.filter(\.blamesMachine).map { $0.subject.lowercased() })
        if s.contains("vibration") {
            if deviating.contains(where: { $0.contains("bearing") }) { return (urgent ? .replacePart : .inspect, "bearing") }
            if deviating.contains(where: { $0.contains("gear") }) { return (.inspect, "gearbox") }
            return (urgent ? .inspect : .balance, "rotor")
        }
        if s.contains("bearing") { return (urgent ? .replacePart : .lubricate, "bearing") }
        if s.contains("gear") { return (urgent ? .replacePart : .lubricate, "gearbox") }
        if s.contains("winding") || s.contains("temp") { return (.reduceLoad, "cooling") }
        if s.contains("pressure") || s.contains("flow") { return (.inspect, "seals and piping") }
        if s.contains("current") || s.contains("power") { return (.inspect, "drive") }
        return (.inspect, sensor)
    }

    static func span(_ hours: Double) -> String {
        hours >= 48 ? String(format: "%.1f days", hours / 24) : String(format: "%.0f h", max(1, hours))
    }

    /// Recommendations for the given devices, most urgent first.
    public static func recommend(_ inputs: [Input], now: Nanos) -> [Recommendation] {
        var result: [String: Recommendation] = [:]
        func add(_ r: Recommendation) {
            if let existing = result[r.id], existing.priority >= r.priority { return }
            result[r.id] = r
        }
        for input in inputs {
            let id = input.device.id
            let factors = input.verdict?.factors ?? []
            // Sensor faults: the reading lies, the machine may be fine.
            for f in factors where f.sensorFault {
                add(Recommendation(
                    id: Self.id(id, f.subject, .checkSensor), deviceID: id, component: f.subject, action: .checkSensor, priority: .medium,
                    title: "Check the \(f.subject) sensor of \(id)", deadline: now + 3 * Time.day,
                    evidence: [.init(kind: "reading", description: f.description, sensor: f.subject, value: f.value)],
                    expectedEffect: "trustworthy \(f.subject) readings again; health and predictions for \(id) depend on them", sensorFault: true))
            }
            let p24 = input.within24h ?? 0, p7 = input.within7d ?? 0
            let machineFactors = factors.filter(\.blamesMachine)
            if p24 >= 0.4 || p7 >= 0.5 {
                let urgent = p24 >= 0.7
                let priority: Recommendation.Priority = urgent ? .urgent : p24 >= 0.4 || p7 >= 0.8 ? .high : .medium
                let lead = input.lead ?? machineFactors.first?.subject ?? "machine"
                let (action, component) = machineAction(lead: lead, factors: machineFactors, urgent: urgent)
                let rul = input.rulHours
                let deadline = now + Nanos(max(1, rul.map { $0.low } ?? (urgent ? 12 : p24 >= 0.4 ? 24 : 72)) * Double(Time.hour))
                var evidence = [Recommendation.Evidence(
                    kind: "prediction", description: String(format: "failure within 24 h: %.0f %%, within 7 days: %.0f %%", 100 * p24, 100 * p7) + (rul.map { ", expected in about \(span($0.expected))" } ?? ""),
                    sensor: lead, value: p24)]
                for f in machineFactors.prefix(3) {
                    evidence.append(.init(kind: f.kind == .trend ? "trend" : f.kind == .limit ? "reading" : "anomaly", description: f.description, sensor: f.subject, value: f.value))
                }
                let verb: String = switch action {
                case .replacePart: "Replace the \(component)"
                case .lubricate: "Lubricate the \(component)"
                case .balance: "Balance the \(component)"
                case .reduceLoad: "Reduce the load and check the \(component)"
                default: "Inspect the \(component)"
                }
                add(Recommendation(
                    id: Self.id(id, component, action), deviceID: id, component: component, action: action, priority: priority,
                    title: "\(verb) of \(id)", deadline: deadline, evidence: evidence,
                    expectedEffect: "avoids a failure " + (rul.map { "expected in about \(span($0.expected))" } ?? "predicted within \(p24 >= 0.4 ? "24 hours" : "7 days")") + String(format: " (p=%.2f)", p24 >= 0.4 ? p24 : p7),
                    sensorFault: false))
            } else if let verdict = input.verdict, verdict.score < 80, let worst = machineFactors.first, worst.penalty >= 15 {
                // Unhealthy without a predicted failure: look before it becomes one.
                let priority: Recommendation.Priority = verdict.score < 50 ? .medium : .low
                add(Recommendation(
                    id: Self.id(id, worst.subject, .inspect), deviceID: id, component: worst.subject, action: .inspect, priority: priority,
                    title: "Inspect \(id): \(worst.subject) is off its normal", deadline: now + (priority == .medium ? 3 : 7) * Time.day,
                    evidence: machineFactors.prefix(3).map { .init(kind: $0.kind == .trend ? "trend" : "reading", description: $0.description, sensor: $0.subject, value: $0.value) },
                    expectedEffect: String(format: "finds the cause while health is %.0f/100, before it turns into a failure", verdict.score), sensorFault: false))
            }
        }
        return result.values.sorted { a, b in
            a.priority != b.priority ? a.priority > b.priority : a.deadline != b.deadline ? a.deadline < b.deadline : a.id < b.id
        }
    }
}
