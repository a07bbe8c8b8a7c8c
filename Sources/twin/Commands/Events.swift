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
