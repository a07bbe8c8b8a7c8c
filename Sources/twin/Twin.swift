import BuildInfo
import ArgumentParser

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
        subcommands: [Login.self, Logout.self, WhoAmI.self, Users.self, ApiKeys.self, Audit.self, Watch.self, Devices.self, DeviceCommand.self, History.self, Events.self, Ingest.self, Status.self, Health.self, Patterns.self, Predict.self, Recommend.self, Alerts.self, Ack.self, Retrain.self, Job.self, Models.self])
}
