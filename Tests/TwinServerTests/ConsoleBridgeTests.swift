import Foundation
import GRPCCore
import NIOCore
import Proto
import Testing
import TwinCore
import TwinFuzz
@testable import TwinConsole
@testable import TwinServer

/// The console's Connect bridge over the in-process transport: every method of the contract is
/// served, JSON goes in and out, errors keep their gRPC code and reason, the caller's address
/// reaches the audit log, and hostile bodies and envelopes are refused cleanly.
@Suite(.tearsDownDaemons, .timeLimit(.minutes(2))) struct ConsoleBridgeTests {
    func json(_ bytes: [UInt8]) -> [String: Any] { (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:] }

    @Test func everyMethodIsServedAndAnswersAsGRPCDoes() async throws {
        let d = try await RunningDaemon.start { $0.simulator = false }
        defer { Task { try? await d.stop() } }
        try await d.daemon.withInProcessClient { client in
            let bridge = ConnectBridge(client: client)
            let contract = Set(Contract.twin.methods.filter { $0.service.hasPrefix("twin.v1.") }.map { "/" + $0.fullName })
            #expect(Set(bridge.paths) == contract)

            var metadata = Metadata()
            metadata.addString("Bearer \(try #require(d.token))", forKey: "authorization")
            metadata.addString("ipv4:192.0.2.7:5555", forKey: "x-twin-peer")
            let answers = Answers()
            try await bridge.call(path: "/twin.v1.TwinService/ListDevices", inputs: [Array("{}".utf8)], metadata: metadata) { await answers.add($0) }
            let listed = json(await answers.all[0])
            #expect(await answers.all.count == 1)
            #expect(listed["totalCount"] == nil || listed["totalCount"] as? Int == 0, "no devices: the simulator is off")

            // Errors: the code by name, the HTTP status Connect gives it, the reason in the details.
            do {
                try await bridge.call(path: "/twin.v1.TwinService/GetDevice", inputs: [Array(#"{"deviceId":"nope"}"#.utf8)], metadata: metadata) { _ in }
                Issue.record("expected not_found")
            } catch let error as ConnectError {
                #expect(error.code == "not_found" && error.httpStatus == 404)
                let body = json(error.json)
                let details = body["details"] as? [[String: Any]] ?? []
                #expect(details.contains { ($0["debug"] as? [String: Any])?["reason"] as? String == "DEVICE_NOT_FOUND" })
            }
            // Bodies that are not the message: invalid_argument naming the message, no call made.
            for body in [#"{"bogus":1}"#, "{", "[]", #"{"pageSize":"x"}"#, String(repeating: "[", count: 10_000)] {
                do {
                    try await bridge.call(path: "/twin.v1.TwinService/ListDevices", inputs: [Array(body.utf8)], metadata: metadata) { _ in }
                    Issue.record("accepted \(body.prefix(20))")
                } catch let error as ConnectError {
                    #expect(error.code == "invalid_argument", "\(body.prefix(20)): \(error.code) \(error.message)")
                }
            }
            do {
                try await bridge.call(path: "/twin.v1.Nope/Nope", inputs: [], metadata: metadata) { _ in }
                Issue.record("expected unimplemented")
            } catch let error as ConnectError {
                #expect(error.code == "unimplemented")
            }
            // The browser's address (forwarded by the bridge) is who the audit log names.
            var login = Metadata()
            login.addString("ipv4:192.0.2.7:5555", forKey: "x-twin-peer")
            try? await bridge.call(path: "/twin.v1.AuthService/Login", inputs: [Array(#"{"username":"admin","password":"wrong-password-1"}"#.utf8)], metadata: login) { _ in }
            let audit = Answers()
            try await bridge.call(path: "/twin.v1.AuthService/ListAuditEvents", inputs: [Array("{}".utf8)], metadata: metadata) { await audit.add($0) }
            let events = json(await audit.all[0])["events"] as? [[String: Any]] ?? []
            #expect(events.contains { $0["action"] as? String == "login.failed" && $0["peer"] as? String == "ipv4:192.0.2.7:5555" })
        }
    }

    @Test func envelopesThatDoNotHoldTogetherAreRefused() throws {
        #expect(throws: Never.self) { try Envelope.split([]).get() }
        for bad: [UInt8] in [[0], [0, 0, 0, 0, 9, 1], [1, 0, 0, 0, 1, 0x7b], [0, 0xff, 0xff, 0xff, 0xff]] {
            #expect(throws: ConnectError.self) { try Envelope.split(bad).get() }
        }
        var buffer = ByteBuffer()
        Envelope.write(flags: 0, json: Array("{}".utf8), to: &buffer)
        #expect(try Envelope.split(Array(buffer.readableBytesView)).get() == [Array("{}".utf8)])
    }
}

actor Answers {
    var all: [[UInt8]] = []
    func add(_ a: [UInt8]) { all.append(a) }
}
