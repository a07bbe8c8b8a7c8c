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
        abstract: "Notifications: each channel's deliveries, outbox and failures; send a test message; export and import the channels and routes (admins).",
        discussion: "Channels and routes are YAML (see the README, \"Notifications\"). twind reads them from --notify-config (or notify.yaml in its data directory) and again on SIGHUP; 'twin notify import' writes that file and puts it in force.",
        subcommands: [Status.self, Test.self, Export.self, Import.self],
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

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the channels and routes in force as a notifications file (to edit and import; admins).")
        @OptionGroup var global: GlobalOptions
        func run() async throws {
            let response = try await global.twin { try await $0.getNotifyConfig(Twin_V1_GetNotifyConfigRequest()) }
            if global.output == .json {
                Terminal.out(Format.protoJSON(response))
                return
            }
            Terminal.err("notifications \(response.version), file \(response.path)")
            if !response.lastError.isEmpty { Terminal.err("the last reload failed, this stayed in force: \(response.lastError)") }
            FileHandle.standardOutput.write(Data(response.text.utf8))
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a notifications file and put it in force (admins); --check only checks it.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "A YAML notifications file ('-' for standard input). Secret files it names are read by twind, on its machine.") var file: String
        @Flag(help: "Only check the file against twind; change nothing.") var check = false
        @Option(name: .customLong("if-version"), help: "Change only if this version is still in force (from 'twin notify export').") var ifVersion: String?
        func run() async throws {
            let text = try Terminal.readText(file)
            var request = Twin_V1_SetNotifyConfigRequest()
            request.text = text
            request.validateOnly = check
            request.expectedVersion = ifVersion ?? ""
            let message = request
            let response = try await global.twin { try await $0.setNotifyConfig(message) }
            if global.output == .json {
                Terminal.out(Format.protoJSON(response))
                return
            }
            let what = "\(response.channels.count) channels, \(response.routes.count) routes, version \(response.version)"
            Terminal.err(check ? "\(file) checks out: \(what)" : "notifications in force (\(what)), written to \(response.path)")
        }
    }
}
