import ArgumentParser
import Foundation
import Proto
import SwiftProtobuf
import TwinCore

/// `twin rules …`: the alert rules in force; export them, import a rules file (admins).
struct Rules: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "Alert rules: list the rules in force, export them as a rules file, import one (admins).",
        discussion: "Rules are YAML: for the fleet, per device type and per device (see the README, \"Alert rules\"). twind reads them from --alert-rules (or alert-rules.yaml in its data directory) and again on SIGHUP; 'twin rules import' writes that file and puts it in force.",
        subcommands: [List.self, Export.self, Import.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The rules in force, every field resolved.")
        @OptionGroup var global: GlobalOptions
        func run() async throws {
            let response = try await global.twin { try await $0.getAlertRules(Twin_V1_GetAlertRulesRequest()) }
            if global.output == .json {
                Terminal.out(Format.protoJSON(response))
                return
            }
            Terminal.err("rules \(response.version) from \(response.source), loaded \(Format.time(response.loadedAt)); file \(response.path)")
            if !response.lastError.isEmpty { Terminal.err("the last reload failed, these rules stayed: \(response.lastError)") }
            Terminal.out(Format.table(["NAME", "SCOPE", "CONDITION", "SENSORS", "SETTING", "HOLD", "CLEAR", "SEVERITY", "ENABLED", "ORIGIN"], response.rules.map(Rules.row)))
        }
    }

    static func row(_ r: Twin_V1_AlertRule) -> [String] {
        var setting: [String] = []
        if r.hasValue { setting.append(r.condition == "rate" ? "≥ \(Format.number(r.value))/day" : Format.number(r.value)) }
        if r.condition == "predicted_failure" { setting.append("p ≥ \(Format.number(r.probability)) in \(r.horizon.seconds == 86_400 ? "24h" : "7d")") }
        if r.deadband > 0 { setting.append("deadband \(Format.number(r.deadband))") }
        if !r.kinds.isEmpty { setting.append(r.kinds.joined(separator: ",")) }
        return [
            r.name, r.scope, r.condition, r.sensors.isEmpty ? "*" : r.sensors.joined(separator: ","), setting.joined(separator: "; "),
            DurationText.format(Rules.nanos(r.hold)), DurationText.format(Rules.nanos(r.clearAfter_p)),
            ["", "info", "warning", "critical"][max(0, min(3, r.severity.rawValue))], r.enabled ? "yes" : "no", r.origin,
        ]
    }

    static func nanos(_ d: Google_Protobuf_Duration) -> Nanos { d.seconds.multipliedReportingOverflow(by: Time.second).partialValue &+ Nanos(d.nanos) }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the rules in force as a rules file (to edit and import).")
        @OptionGroup var global: GlobalOptions
        func run() async throws {
            let response = try await global.twin { try await $0.getAlertRules(Twin_V1_GetAlertRulesRequest()) }
            FileHandle.standardOutput.write(Data(response.text.utf8))
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a rules file and put it in force (admins); --check only checks it.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "A YAML rules file ('-' for standard input).") var file: String
        @Flag(help: "Only check the file against twind; change nothing.") var check = false
        @Option(name: .customLong("if-version"), help: "Change the rules only if this version is still in force (from 'twin rules').") var ifVersion: String?
        func run() async throws {
            let text = try Terminal.readText(file)
            var request = Twin_V1_SetAlertRulesRequest()
            request.text = text
            request.validateOnly = check
            request.expectedVersion = ifVersion ?? ""
            let message = request
            let response = try await global.twin { try await $0.setAlertRules(message) }
            if global.output == .json {
                Terminal.out(Format.protoJSON(response))
                return
            }
            if check {
                Terminal.err("\(file) checks out: \(response.rules.count) rules, version \(response.version)")
            } else {
                Terminal.err("rules \(response.version) in force (\(response.rules.count) rules), written to \(response.path)")
            }
        }
    }
}
