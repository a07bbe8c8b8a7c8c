import ArgumentParser
import Foundation
import Proto
import SwiftProtobuf
import TwinCore

/// `twin health [DEVICE]…`: scores, worst first, with the reasons.
struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Health scores (0–100), worst first, with their top reasons.")
    @OptionGroup var global: GlobalOptions
    @Argument var devices: [String] = []
    @Option(help: "Show at most this many devices.") var limit = 20

    func run() async throws {
        var request = Twin_V1_GetHealthRequest()
        request.deviceIds = devices
        let message = request
        let response = try await global.twin { try await $0.getHealth(message) }
        if global.output == .json {
            for d in response.devices { Terminal.out(Format.protoJSON(d.health)) }
            return
        }
        let detailed = !devices.isEmpty
        for d in response.devices.prefix(detailed ? .max : limit) {
            let h = d.health
            Terminal.out(String(format: "%-16@ %3.0f  %-9@ %@", h.deviceID as NSString, h.score, Health.state(h.state) as NSString, (h.factors.first?.description_p ?? "all sensors within their normal") as NSString))
            if detailed {
                for f in h.factors.dropFirst() { Terminal.out(String(format: "%31@ %@ (−%.0f)", "" as NSString, f.description_p as NSString, f.penalty)) }
                Terminal.out("  sensors: " + h.components.map { "\($0.name) \(Int($0.score))" }.joined(separator: ", "))
            }
        }
    }

    static func state(_ s: Twin_V1_HealthState) -> String {
        switch s {
        case .healthy: "healthy"
        case .degraded: "degraded"
        case .critical: "critical"
        default: "unknown"
        }
    }
}

/// `twin recommend`: what to do first.
struct Recommend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Maintenance recommendations across the fleet, most urgent first.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("device"), help: "Only this device (repeatable).") var devices: [String] = []
    @Option(name: .customLong("type"), help: "Only devices of this type (repeatable).") var types: [String] = []
    @Option(help: "Only at or above: low, medium, high, urgent.") var min: String?
    @Option var limit = 100

    func run() async throws {
        var request = Twin_V1_GetRecommendationsRequest()
        request.deviceIds = devices
        request.types = types
        request.limit = Int32(limit)
        if let min {
            guard let p = ["low": Twin_V1_Priority.low, "medium": .medium, "high": .high, "urgent": .urgent][min] else {
                throw ValidationError("--min must be low, medium, high or urgent")
            }
            request.minPriority = p
        }
        let message = request
        let response = try await global.twin { try await $0.getRecommendations(message) }
        if global.printedJSON(response.recommendations) { return }
        if response.recommendations.isEmpty { Terminal.err("nothing to do: no device needs attention"); return }
        for r in response.recommendations {
            let priority = ["", "low", "medium", "HIGH", "URGENT"][max(0, Swift.min(4, r.priority.rawValue))]
            Terminal.out("[\(priority)] \(r.title) — by \(Format.time(r.deadline))\(r.sensorFault ? " (sensor fault)" : "")")
            for e in r.evidence { Terminal.out("    · \(e.description_p)") }
            Terminal.out("    → \(r.expectedEffect)")
        }
    }
}

/// `twin patterns DEVICE`: trends, level shifts, anomalies, broken correlations.
struct Patterns: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Trends, level shifts, anomalies and broken correlations of a device.")
    @OptionGroup var global: GlobalOptions
    @Argument var device: String
    @Argument var sensors: [String] = []
    @Option(help: "Window, e.g. 7d.") var since = "7d"

    func run() async throws {
        guard let window = DurationText.parse(since) else { throw ValidationError("--since '\(since)' is not a duration like 7d") }
        var request = Twin_V1_GetPatternsRequest()
        request.deviceID = device
        request.sensors = sensors
        request.from = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(-Double(window) / 1e9))
        let message = request
        let r = try await global.twin { try await $0.getPatterns(message) }
        if global.output == .json { Terminal.out(Format.protoJSON(r)); return }
        Terminal.out("trends (per day, 95 % interval):")
        for t in r.trends {
            let ttl = t.hasTimeToLimit ? ", reaches its limit in \(DurationText.format(t.timeToLimit.seconds * Time.second))" : ""
            Terminal.out("  \(t.sensor): \(Format.number(t.slopePerDay)) (\(Format.number(t.slopeLow)) … \(Format.number(t.slopeHigh)))\(ttl)")
        }
        if !r.changePoints.isEmpty { Terminal.out("level shifts:") }
        for c in r.changePoints { Terminal.out("  \(c.sensor) at \(Format.time(c.time)): \(Format.number(c.levelBefore)) → \(Format.number(c.levelAfter))") }
        if !r.anomalies.isEmpty { Terminal.out("anomalies:") }
        for a in r.anomalies.prefix(30) { Terminal.out("  \(Format.time(a.start)) – \(a.hasEnd ? Format.time(a.end) : "now"): \(a.description_p)") }
        if !r.correlationBreaks.isEmpty { Terminal.out("broken correlations:") }
        for c in r.correlationBreaks { Terminal.out(String(format: "  %@ ~ %@: %.2f normally, %.2f in the last day", c.sensorA, c.sensorB, c.normalCorrelation, c.recentCorrelation)) }
    }
}

/// `twin alerts`: open and acknowledged alerts (or --all).
struct Alerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Alerts: open and acknowledged ones, most severe first; an alarm-management report.",
        subcommands: [List.self, Report.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open and acknowledged alerts, most severe first (--all: resolved too; --shelved: shelved too).")
        @OptionGroup var global: GlobalOptions
        @Option(name: .customLong("device"), help: "Only this device (repeatable).") var devices: [String] = []
        @Flag(help: "Include resolved alerts.") var all = false
        @Flag(help: "Include shelved alerts.") var shelved = false

        func run() async throws {
            var request = Twin_V1_ListAlertsRequest()
            request.deviceIds = devices
            request.includeShelved = shelved
            if all { request.states = [.open, .acknowledged, .resolved] }
            let message = request
            let response = try await global.twin { try await $0.listAlerts(message) }
            if global.printedJSON(response.alerts) { return }
            if response.alerts.isEmpty { Terminal.err("no alerts"); return }
            Terminal.out(Format.table(["ID", "DEVICE", "SEVERITY", "STATE", "SINCE", "MESSAGE"], response.alerts.map { a in
                var state = ["", "open", "acknowledged", "resolved"][max(0, min(3, a.state.rawValue))]
                if a.hasShelvedUntil { state += ", shelved until \(Format.time(a.shelvedUntil))" }
                if a.chattering { state += ", chattering (back \(a.reopened)×)" }
                return [a.id, a.deviceID, ["", "info", "warning", "critical"][max(0, min(3, a.severity.rawValue))], state, Format.time(a.openedAt), a.message]
            }))
        }
    }

    /// `twin alerts report`: ISA-18.2 figures over a period.
    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Alarm-management figures (ISA-18.2): alerts per hour, peak 10-minute rate and floods, top rules and devices, standing and chattering alerts (GetAlertReport).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The period: the last 24h, 7d, … (at most 30d).") var since = "7d"

        func validate() throws {
            guard let d = DurationText.parse(since), d >= Time.minute, d <= 30 * Time.day else { throw ValidationError("--since is a duration from 1m to 30d, e.g. 7d") }
        }

        func run() async throws {
            var request = Twin_V1_GetAlertReportRequest()
            request.since = .init(nanos: DurationText.parse(since) ?? 7 * Time.day)
            let message = request
            let r = try await global.twin { try await $0.getAlertReport(message) }
            if global.output == .json {
                Terminal.out(Format.protoJSON(r))
                return
            }
            func rate(_ v: Double) -> String { String(format: "%.1f", v) }
            let verdict = r.perHour <= 6 ? "acceptable" : r.perHour <= 12 ? "manageable" : "over the limit"
            Terminal.out("alerts from \(Format.time(r.from)) to \(Format.time(r.to))")
            Terminal.out("  opened:           \(r.opened) (\(r.reopened) more times reopened)")
            Terminal.out("  per hour:         \(rate(r.perHour)) — \(verdict) (ISA-18.2: about 6 acceptable, 12 at most)")
            Terminal.out("  peak 10 minutes:  \(r.peak10M)\(r.hasPeak10MAt ? " from \(Format.time(r.peak10MAt))" : "")")
            Terminal.out("  floods:           \(r.floodWindows) ten-minute windows with more than 10 (\(String(format: "%.2f", r.floodPercent)) % of the period; target under 1 %)")
            Terminal.out("  shelved now:      \(r.shelved)")
            func counts(_ title: String, _ list: [Twin_V1_AlertCount]) {
                guard !list.isEmpty else { return }
                Terminal.out("")
                Terminal.out(Format.table([title, "ALERTS"], list.map { [$0.name, "\($0.count)"] }))
            }
            counts("RULE", r.topRules)
            counts("DEVICE", r.topDevices)
            func alerts(_ title: String, _ list: [Twin_V1_Alert]) {
                guard !list.isEmpty else { return }
                Terminal.out("")
                Terminal.out(title)
                Terminal.out(Format.table(["ID", "DEVICE", "RULE", "OPENED", "REOPENED", "MESSAGE"], list.map {
                    [$0.id, $0.deviceID, $0.rule, Format.time($0.openedAt), "\($0.reopened)", $0.message]
                }))
            }
            alerts("standing (not resolved after 24 h):", r.standing)
            alerts("chattering (back again and again):", r.chattering)
        }
    }
}

/// `twin shelve ID --for 2h --reason R`, `twin unshelve ID` (operators).
struct Shelve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Shelve an alert for a while with a reason: off the list, not notified, back by itself when the time is up (operators).")
    @OptionGroup var global: GlobalOptions
    @Argument var id: String
    @Option(name: .customLong("for"), help: "How long, from 1m to 7d.") var duration: String
    @Option(help: "Why (required), for the next shift and the audit log.") var reason: String

    func validate() throws {
        guard let d = DurationText.parse(duration), d >= Time.minute, d <= 7 * Time.day else { throw ValidationError("--for is a duration from 1m to 7d, e.g. 2h") }
    }

    func run() async throws {
        var request = Twin_V1_ShelveAlertRequest()
        request.alertID = id
        request.duration = .init(nanos: DurationText.parse(duration) ?? 0)
        request.reason = reason
        let message = request
        let response = try await global.twin { try await $0.shelveAlert(message) }
        Terminal.err("shelved \(id) until \(Format.time(response.alert.shelvedUntil))")
    }
}

struct Unshelve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Take an alert off the shelf before its time (operators).")
    @OptionGroup var global: GlobalOptions
    @Argument var id: String

    func run() async throws {
        var request = Twin_V1_UnshelveAlertRequest()
        request.alertID = id
        let message = request
        _ = try await global.twin { try await $0.unshelveAlert(message) }
        Terminal.err("unshelved \(id)")
    }
}

/// `twin ack ID`: acknowledge an alert (operators).
struct Ack: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Acknowledge an alert (operators).")
    @OptionGroup var global: GlobalOptions
    @Argument var id: String
    @Option(help: "A comment, e.g. what you are doing about it.") var comment = ""
    @Flag(help: "Resolve it instead (close it by hand).") var resolve = false

    func run() async throws {
        let id = id, comment = comment
        if resolve {
            var request = Twin_V1_ResolveAlertRequest()
            request.alertID = id
            request.comment = comment
            let message = request
            _ = try await global.twin { try await $0.resolveAlert(message) }
            Terminal.err("resolved \(id)")
        } else {
            var request = Twin_V1_AckAlertRequest()
            request.alertID = id
            request.comment = comment
            let message = request
            _ = try await global.twin { try await $0.ackAlert(message) }
            Terminal.err("acknowledged \(id)")
        }
    }
}
