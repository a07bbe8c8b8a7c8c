import ArgumentParser
import GRPCCore
import Proto

/// `twin devices`: the registered devices.
struct Devices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List devices (ListDevices).")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Only devices of this type (repeatable).") var type: [String] = []
    @Option(help: "Only devices at this site.") var site: String = ""
    @Option(help: "Only devices on this line.") var line: String = ""

    func run() async throws {
        let devices = try await global.run { client in
            let twin = Twin_V1_TwinService.Client(wrapping: client)
            var all: [Twin_V1_Device] = []
            var request = Twin_V1_ListDevicesRequest()
            request.types = type
            request.site = site
            request.line = line
            request.pageSize = 10_000
            repeat {
                let page = try await twin.listDevices(request)
                all += page.devices
                request.pageToken = page.nextPageToken
            } while !request.pageToken.isEmpty
            return all
        }
        switch global.output {
        case .json:
            for d in devices { Terminal.out(Format.protoJSON(d)) }
        case .csv:
            Terminal.out("id,type,name,site,line,sensors")
            for d in devices { Terminal.out([d.id, d.type, d.name, d.site, d.line, d.sensors.map(\.name).joined(separator: " ")].map(Format.csv).joined(separator: ",")) }
        case .table:
            Terminal.out(Format.table(
                ["ID", "TYPE", "NAME", "SITE", "LINE", "SENSORS"],
                devices.map { [$0.id, $0.type, $0.name, $0.site, $0.line, $0.sensors.map(\.name).joined(separator: ",")] }))
        }
    }
}
