import BuildInfo
import ArgumentParser
import Foundation

/// `twin`: the command-line client of twind.
@main
struct Twin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "twin",
        abstract: "Watch and operate a twin plant from the shell.",
        discussion: """
            twin talks gRPC to twind: --server (or TWIN_SERVER) names it as HOST:PORT or unix:PATH; \
            by default the local daemon's socket, then 127.0.0.1:8946.

            Exit codes: 0 ok, 1 other failure, 3 daemon unreachable or shutting down, 4 invalid \
            argument or bad input, 5 not found, 6 not logged in, 7 permission denied, 8 not \
            available in this twind, 9 refused (precondition, limits), 64 usage.
            """,
        version: BuildInfo.description,
        subcommands: [Login.self, Logout.self, WhoAmI.self, Users.self, ApiKeys.self, Audit.self, Watch.self, Devices.self, DeviceCommand.self, History.self, Events.self, Ingest.self, Import.self, Status.self, Health.self, Patterns.self, Predict.self, Recommend.self, Alerts.self, Ack.self, Shelve.self, Unshelve.self, Record.self, Rules.self, Retrain.self, Job.self, Models.self, Gateways.self, OPCUA.self, Notify.self])

    /// Global options (`--server`, `-o`, TLS) may come before the subcommand too, as kubectl and
    /// etcdctl take them: `twin --server HOST:PORT watch`. They are moved behind the subcommand's
    /// own arguments before parsing.
    static func main() async {
        let arguments = hoistingGlobalOptions(Array(CommandLine.arguments.dropFirst()))
        do {
            var command = try parseAsRoot(arguments)
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    /// Options of `GlobalOptions` with a value, and its flags.
    static let valued: Set<String> = ["--server", "-o", "--output", "--ca", "--cert", "--key"]
    static let flags: Set<String> = ["--tls"]

    static func hoistingGlobalOptions(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
            if flags.contains(a) || (valued.contains(name) && a.contains("=")) {
                leading.append(a)
                i += 1
            } else if valued.contains(a), i + 1 < arguments.count {
                leading += [a, arguments[i + 1]]
                i += 2
            } else {
                break
            }
        }
        guard !leading.isEmpty, i < arguments.count else { return arguments }
        var rest = Array(arguments[i...])
        let end = rest.firstIndex(of: "--") ?? rest.endIndex
        rest.insert(contentsOf: leading, at: end)
        return rest
    }
}
