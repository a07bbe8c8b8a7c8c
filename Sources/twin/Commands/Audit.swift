import ArgumentParser
import Foundation
import GRPCCore
import Proto
import SwiftProtobuf
import TwinCore

/// `twin audit`: the security log, newest first (admins).
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the audit log, newest first: logins, revoked sessions, key rotations (admins; ListAuditEvents).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Only entries in this past window, e.g. 24h.") var since: String?
    @Option(help: "At most this many entries.") var limit = 100

    func validate() throws {
        if let since, DurationText.parse(since) == nil { throw ValidationError("--since '\(since)' is not a duration like 24h") }
        if !(1...10_000).contains(limit) { throw ValidationError("--limit must be from 1 to 10000") }
    }

    func run() async throws {
        var request = Twin_V1_ListAuditEventsRequest()
        request.limit = Int32(limit)
        if let since, let span = DurationText.parse(since) {
            request.since = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(-Double(span) / 1e9))
        }
        let events = try await global.run { client in try await Twin_V1_AuthService.Client(wrapping: client).listAuditEvents(request).events }
        if global.output == .json {
            for e in events { Terminal.out(Format.protoJSON(e)) }
            return
        }
        Terminal.out(Format.table(["TIME", "ACTION", "ACTOR", "PEER", "DETAIL"], events.map { [Format.time($0.time), $0.action, $0.actor, $0.peer, $0.detail] }))
    }
}
