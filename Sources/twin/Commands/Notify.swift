import ArgumentParser
import Foundation
import Proto
import SwiftProtobuf
import TwinClient
import TwinCore

/// `twin notify …`: the notification channels' state; a test message on one channel.
struct Notify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notify",
        abstract: "Notifications: each channel's deliveries, outbox and failures; send a test message (admins).",
        discussion: "Channels and routes are YAML (see the README, \"Notifications\"). twind reads them from --notify-config (or notify.yaml in its data directory) and again on SIGHUP.",
        subcommands: [Status.self, Test.self],
        defaultSubcommand: Status.self)

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every channel: delivered, pending, failed, and its last error (GetNotificationStatus).")
        @OptionGroup var global: GlobalOptions
        func run() async throws {
            let response = try await global.twin { try await $0.getNotificationStatus(Twin_V1_GetNotificationStatusRequest()) }
            if global.output == .json {
                Terminal.out(Format.protoJSON(response))
                return
            }
            if response.path.isEmpty {
                Terminal.out("no notifications: twind runs without --notify-config (and its data directory has no notify.yaml)")
                return
            }
            Terminal.err("notifications \(response.version) from \(response.path); routes: \(response.routes.isEmpty ? "none" : response.routes.joined(separator: ", "))")
            if !response.lastError.isEmpty { Terminal.err("the last reload failed, this configuration stayed: \(response.lastError)") }
            func when(_ has: Bool, _ t: Google_Protobuf_Timestamp) -> String { has ? Format.time(t) : "-" }
            Terminal.out(Format.table(
                ["CHANNEL", "TYPE", "TARGET", "STATE", "DELIVERED", "PENDING", "FAILED", "SUMMARIES", "LAST DELIVERED", "LAST ERROR"],
                response.channels.map { c in
                    let state = c.consecutiveFailures > 0 ? "failing (\(c.consecutiveFailures))" : c.rateLimited ? "rate limited" : "ok"
                    return [c.name, c.type, c.target, state, "\(c.delivered)", "\(c.pending)", "\(c.failed)", "\(c.summaries)",
                            when(c.hasLastDeliveredAt, c.lastDeliveredAt), c.lastError.isEmpty ? "-" : c.lastError]
                }))
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a test message on a channel now and say what the receiver answered (TestNotification).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The channel's name (twin notify status lists them).") var channel: String
        func run() async throws {
            var request = Twin_V1_TestNotificationRequest()
            request.channel = channel
            let response = try await global.twin { try await $0.testNotification(request) }
            if global.output == .json {
                Terminal.out(Format.protoJSON(response))
            } else {
                let ms = Double(response.took.seconds) * 1000 + Double(response.took.nanos) / 1e6
                Terminal.out("\(channel): \(response.delivered ? "delivered" : "not delivered") — \(response.result) (\(String(format: "%.0f", ms)) ms)")
            }
            if !response.delivered { throw ExitCode(TwinExitCode.failure) }
        }
    }
}
