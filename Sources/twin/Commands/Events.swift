import ArgumentParser
import Foundation
import GRPCCore
import Proto
import SwiftProtobuf
import TwinCore

/// `twin events`: the maintenance log — failures, repairs, inspections, simulator ground truth.
struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List maintenance-log events, newest first (ListEvents).")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Only this device (repeatable).") var device: [String] = []
    @Option(help: "Only this kind (repeatable): failure, repair, inspection, part_replaced, fault_onset, sensor_serviced, maintenance, note.")
    var kind: [String] = []
    @Option(help: "Only events in this past window, e.g. 24h or 30d.") var since: String?
    @Option(help: "At most this many events.") var limit: Int = 100

    static let kinds: [String: Twin_V1_EventKind] = [
        "failure": .failure, "repair": .repair, "inspection": .inspection, "part_replaced": .partReplaced,
        "fault_onset": .faultOnset, "sensor_serviced": .sensorServiced, "maintenance": .maintenance, "note": .note,
    ]

    func validate() throws {
        for k in kind where Self.kinds[k] == nil {
            throw ValidationError("unknown kind '\(k)'; use one of \(Self.kinds.keys.sorted().joined(separator: ", "))")
        }
        if let since, DurationText.parse(since) == nil { throw ValidationError("--since '\(since)' is not a duration like 24h") }
        if !(1...10_000).contains(limit) { throw ValidationError("--limit must be from 1 to 10000") }
    }

    func run() async throws {
        var request = Twin_V1_ListEventsRequest()
        request.deviceIds = device
        request.kinds = kind.compactMap { Self.kinds[$0] }
        request.pageSize = Int32(limit)
        if let since, let span = DurationText.parse(since) {
            let from = Date().addingTimeInterval(-Double(span) / 1e9)
            request.from = Google_Protobuf_Timestamp(date: from)
        }
        let events = try await global.run { client in
            try await Twin_V1_TwinService.Client(wrapping: client).listEvents(request).events
        }
        if global.output == .json {
            for e in events { Terminal.out(Format.protoJSON(e)) }
            return
        }
        let names = Dictionary(Self.kinds.map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        Terminal.out(Format.table(
            ["TIME", "DEVICE", "KIND", "COMPONENT", "FAULT", "SOURCE", "NOTES"],
            events.map { e in
                let source = e.source == .simulator ? "simulator" : e.source == .operator ? "operator" : "import"
                let expected = e.hasExpectedFailureAt ? " (failure expected \(Format.time(e.expectedFailureAt)))" : ""
                return [Format.time(e.time), e.deviceID, names[e.kind] ?? "?", e.component, e.fault, source, e.notes + expected]
            }))
    }
}

/// `twin record DEVICE KIND [--time T] [--duration 4h] …`: a maintenance-log entry (operators).
struct Record: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record a maintenance-log event (RecordEvent, operators); with --duration the device's alerts are suppressed meanwhile.",
        discussion: "e.g. twin record pump-001 maintenance --duration 4h --component bearing --notes 'bearing change'. A repair on a simulated device repairs it in the simulation.")
    @OptionGroup var global: GlobalOptions
    @Argument var device: String
    @Argument(help: "failure, repair, inspection, part_replaced, sensor_serviced, maintenance or note.") var kind: String
    @Option(help: "When it happened or starts (RFC 3339); default now.") var time: String?
    @Option(help: "How long the work takes the machine out of service, e.g. 4h (at most 90d): its alerts are suppressed meanwhile.") var duration: String?
    @Option(help: "Component, e.g. bearing.") var component = ""
    @Option(help: "Fault or failure mode, e.g. bearing_wear.") var fault = ""
    @Option(help: "Free text.") var notes = ""

    func validate() throws {
        guard Events.kinds[kind] != nil else { throw ValidationError("unknown kind '\(kind)'; use one of \(Events.kinds.keys.sorted().joined(separator: ", "))") }
        if let time, History.parseTime(time) == nil { throw ValidationError("--time '\(time)' is not RFC 3339, e.g. 2026-12-03T06:00:00Z") }
        if let duration, DurationText.parse(duration) == nil { throw ValidationError("--duration '\(duration)' is not a duration like 4h") }
    }

    func run() async throws {
        var event = Twin_V1_Event()
        event.deviceID = device
        event.kind = Events.kinds[kind] ?? .note
        event.time = Google_Protobuf_Timestamp(date: time.flatMap(History.parseTime) ?? Date())
        if let duration, let d = DurationText.parse(duration) { event.duration = .init(nanos: d) }
        event.component = component
        event.fault = fault
        event.notes = notes
        var request = Twin_V1_RecordEventRequest()
        request.event = event
        let message = request
        let response = try await global.twin { try await $0.recordEvent(message) }
        if global.output == .json {
            Terminal.out(Format.protoJSON(response.event))
        } else {
            Terminal.err("recorded event \(response.event.id) for \(device)\(duration.map { "; its alerts are suppressed for \($0)" } ?? "")")
        }
    }
}
