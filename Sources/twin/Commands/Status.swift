import ArgumentParser
import GRPCCore
import Proto

/// `twin status`: is twind serving? (the standard gRPC health check).
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that twind is serving (grpc.health.v1 Check); exit 0 if SERVING, 3 if not.")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Service to check, e.g. twin.v1.TwinService (default: the whole server).") var service: String = ""

    func run() async throws {
        let address = try global.address()
        let status = try await global.run { client in
            var request = Grpc_Health_V1_HealthCheckRequest()
            request.service = service
            return try await Grpc_Health_V1_Health.Client(wrapping: client).check(request).status
        }
        let name = status == .serving ? "SERVING" : status == .notServing ? "NOT_SERVING" : "UNKNOWN"
        if global.output == .json {
            Terminal.out(Format.json(["server": "\(address)", "status": name]))
        } else {
            Terminal.out("\(address): \(name)")
        }
        if status != .serving { throw ExitCode(3) }
    }
}
