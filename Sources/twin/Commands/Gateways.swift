import ArgumentParser
import GRPCCore
import Proto
import SwiftProtobuf

/// `twin gateways`: the MQTT connections, Sparkplug B edge nodes and OPC UA servers feeding twind.
struct Gateways: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "MQTT connections, Sparkplug B edge nodes and OPC UA servers, with their state and counts (ListGateways).")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let response = try await global.run { client in
            try await Twin_V1_TwinService.Client(wrapping: client).listGateways(Twin_V1_ListGatewaysRequest())
        }
        if global.output == .json {
            Terminal.out(Format.protoJSON(response))
            return
        }
        if response.connections.isEmpty && response.opcuaConnections.isEmpty {
            Terminal.out("no gateways: twind runs without --mqtt-broker and --opcua-config")
            return
        }
        func when(_ has: Bool, _ t: Google_Protobuf_Timestamp) -> String { has ? Format.time(t) : "-" }
        if !response.opcuaConnections.isEmpty {
            Terminal.out(Format.table(
                ["OPC UA ENDPOINT", "URL", "STATE", "SINCE", "ITEMS", "FAILED", "NOTIFICATIONS", "READINGS", "BAD", "ERRORS", "RECONNECTS", "LOGIN", "LAST ERROR"],
                response.opcuaConnections.map { c in
                    [c.name, c.endpoint, c.connected ? "connected" : "disconnected", when(c.hasSince, c.since), "\(c.monitoredItems)", "\(c.failedItems)",
                     "\(c.notifications)", "\(c.readings)", "\(c.badReadings)", "\(c.errors)", "\(c.reconnects)", c.identity, c.lastError.isEmpty ? "-" : c.lastError]
                }))
            if response.connections.isEmpty { return }
            Terminal.out("")
        }
        if response.connections.isEmpty { return }
        Terminal.out(Format.table(
            ["BROKER", "CLIENT ID", "STATE", "SINCE", "MESSAGES", "READINGS", "ERRORS", "RECONNECTS", "SPARKPLUG HOST", "LAST ERROR"],
            response.connections.map { c in
                [c.broker, c.clientID, c.connected ? "connected" : "disconnected", when(c.hasSince, c.since), "\(c.messages)", "\(c.readings)",
                 "\(c.errors)", "\(c.reconnects)", c.sparkplugHostID.isEmpty ? "-" : c.sparkplugHostID, c.lastError.isEmpty ? "-" : c.lastError]
            }))
        if response.edgeNodes.isEmpty { return }
        Terminal.out("")
        Terminal.out(Format.table(
            ["GROUP", "EDGE NODE", "STATE", "LAST BIRTH", "LAST DEATH", "BDSEQ", "MESSAGES", "READINGS", "REBIRTHS", "ERRORS", "IGNORED", "DEVICES"],
            response.edgeNodes.map { n in
                [n.groupID, n.edgeNodeID, n.online ? "online" : "offline", when(n.hasLastBirth, n.lastBirth), when(n.hasLastDeath, n.lastDeath),
                 "\(n.bdSeq)", "\(n.messages)", "\(n.readings)", "\(n.rebirthsRequested)", "\(n.errors)", "\(n.ignoredMetrics)",
                 n.devices.joined(separator: ",")]
            }))
    }
}
