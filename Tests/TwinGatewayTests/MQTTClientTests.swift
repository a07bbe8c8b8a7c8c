import Foundation
import Logging
import Testing
import TwinCore
@testable import TwinGateway

/// The client with no broker behind its address: it keeps trying (backoff), says why, and stops
/// when asked instead of hanging the daemon's drain.
@Suite(.timeLimit(.minutes(1))) struct MQTTClientTests {
    final class Quiet: MQTTHandler {
        func will(for client: MQTTClient) -> MQTTClient.Message? { nil }
        func connected(_ client: MQTTClient, sessionPresent: Bool) {}
        func received(_ client: MQTTClient, topic: String, payload: UnsafeRawBufferPointer, retained: Bool, now: Nanos) {}
        func flush(_ client: MQTTClient, now: Nanos) throws {}
        func disconnected(_ client: MQTTClient, error: String?) {}
        func tick(_ client: MQTTClient, now: Nanos) {}
        func stopping(_ client: MQTTClient) {}
    }

    @Test func noBrokerIsReportedAndStopReturns() async throws {
        // A port nothing listens on: bind one, close it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 } }
        close(fd)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let client = MQTTClient(settings: try MQTTSettings.parse(broker: "mqtt://127.0.0.1:\(port)", clientID: "t"), logger: Logger(label: "test"))
        let handler = Quiet()
        client.start(handler: handler)
        while client.snapshot.lastError.isEmpty { try await Task.sleep(for: .milliseconds(20)) }  // bounded by the time limit
        #expect(!client.snapshot.connected)
        #expect(client.snapshot.lastError.lowercased().contains("refused"), "\(client.snapshot.lastError)")
        await client.stop()
        #expect(!client.snapshot.connected)
    }
}
