import Foundation
import Testing
@testable import TwinOPCUA

/// The asyncua server (Python, PyPI; scripts/bootstrap installs it) on a free loopback port.
final class UAServer: @unchecked Sendable {
    let process = Process()
    let port: Int
    private let output = Pipe()

    var url: String { "opc.tcp://127.0.0.1:\(port)/twin/" }

    init(user: String? = nil, items: Int = 0, port fixed: Int? = nil, extra: [String] = []) async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var lastError = ""
        var chosen = 0
        for _ in 0..<5 {
            chosen = try fixed ?? Self.freePort()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", root.appendingPathComponent("Tests/Python/opcua_server.py").path, "\(chosen)"]
                + (user.map { ["--user", $0] } ?? []) + (items > 0 ? ["--items", "\(items)"] : []) + extra
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            if let line = await Self.firstLine(out.fileHandleForReading, timeout: 60), line.hasPrefix("ready") {
                self.port = chosen
                self.process.executableURL = p.executableURL
                self.started = p
                return
            }
            lastError = "no 'ready' line"
            p.terminate()
            p.waitUntilExit()
        }
        throw UAError(.badNotConnected, "the asyncua server did not start on \(chosen): \(lastError)")
    }

    private var started: Process?

    func stop() {
        guard let p = started else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    deinit { stop() }

    static func firstLine(_ h: FileHandle, timeout: Int) async -> String? {
        await withCheckedContinuation { (c: CheckedContinuation<String?, Never>) in
            DispatchQueue.global().async {
                var data = Data()
                let deadline = Date().addingTimeInterval(TimeInterval(timeout))
                while Date() < deadline {
                    let chunk = h.availableData
                    if chunk.isEmpty { break }
                    data.append(chunk)
                    if let nl = data.firstIndex(of: 10) {
                        c.resume(returning: String(decoding: data[..<nl], as: UTF8.self))
                        return
                    }
                }
                c.resume(returning: nil)
            }
        }
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { throw UAError(.badNotConnected, "no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// The client against a server someone else wrote: every service twin uses, both logins.
@Suite(.serialized, .timeLimit(.minutes(2))) struct PeerTests {
    @Test func browseTranslateReadAndSubscribe() async throws {
        let server = try await UAServer()
        defer { server.stop() }
        let client = try await UAClient.connect(server.url)
        let top = try await client.browse(UANode.objects)
        let plant = try #require(top.first { $0.browseName == QualifiedName(2, "Plant") })
        #expect(plant.nodeClassName == "Object")
        let machines = try await client.browse(plant.nodeId.nodeId)
        #expect(Set(machines.map(\.browseName.name)) == ["Press1", "Pump1"])

        let force = try await client.translate([QualifiedName(2, "Plant"), QualifiedName(2, "Press1"), QualifiedName(2, "Force")])
        #expect(force == NodeId(2, .string("Press1.Force")))
        let missing = try await client.translate([(UANode.objects, [QualifiedName(2, "Plant"), QualifiedName(2, "Nope")])])
        #expect(throws: UAError.self) { try missing[0].get() }

        let properties = try await client.translate([(force, [QualifiedName(0, "EURange")]), (force, [QualifiedName(0, "EngineeringUnits")])], reference: UANode.hasProperty)
        let values = try await client.read(try properties.map { try $0.get() })
        #expect(EngineeringInfo.range(values[0].value)! == (0, 500))
        #expect(EngineeringInfo.unit(values[1].value) == "kN")
        let now = try await client.read([force])
        #expect((now[0].value?.number).map { (150...350).contains($0) } == true)

        let flow = try await client.translate([QualifiedName(2, "Plant"), QualifiedName(2, "Pump1"), QualifiedName(2, "Flow")])
        let subscription = try await client.createSubscription(publishingInterval: 100)
        let statuses = try await client.createMonitoredItems(subscription: subscription.id, [
            .init(node: force, handle: 1, samplingInterval: 100), .init(node: flow, handle: 2, samplingInterval: 100),
            .init(node: NodeId(2, .string("no.such.node")), handle: 3, samplingInterval: 100),
        ])
        #expect(statuses[0].isGood && statuses[1].isGood)
        #expect(statuses[2].name == "BadNodeIdUnknown")
        var seen = Set<UInt32>()
        var acks: [(subscription: UInt32, sequence: UInt32)] = []
        for _ in 0..<20 where seen.count < 2 {
            let result = try await client.publish(acknowledging: acks, timeout: .seconds(10))
            acks = result.hasData ? [(result.subscriptionId, result.sequenceNumber)] : []
            for c in result.changes {
                seen.insert(c.clientHandle)
                #expect(c.value.value?.number != nil)
                #expect(c.value.sourceTimestamp.flatMap(UADateTime.unixNanos) != nil)
            }
        }
        #expect(seen == [1, 2])
        await client.close()
        #expect(await client.isOpen == false)
    }

    @Test func userNameLoginAndAWrongPassword() async throws {
        let server = try await UAServer(user: "reader:secret-pass-1")
        defer { server.stop() }
        let client = try await UAClient.connect(server.url, identity: .userName("reader", password: "secret-pass-1"))
        #expect(try await client.browse(UANode.objects).isEmpty == false)
        await client.close()
        do {
            _ = try await UAClient.connect(server.url, identity: .userName("reader", password: "wrong"))
            Issue.record("a wrong password was taken")
        } catch let e as UAError {
            #expect(e.status.isBad)
            #expect(e.description.contains("refused the login of 'reader'"))
            #expect(!e.description.contains("wrong"))
        }
    }

    @Test func aServerThatGoesAwayFailsWaitingRequests() async throws {
        let server = try await UAServer()
        let client = try await UAClient.connect(server.url)
        let subscription = try await client.createSubscription(publishingInterval: 1000, keepAliveCount: 30)
        async let waiting = client.publish(acknowledging: [], timeout: .seconds(60))
        _ = subscription
        server.stop()
        do {
            _ = try await waiting
            // A publish may have been answered before the server died; the next must fail.
            _ = try await client.publish(acknowledging: [], timeout: .seconds(60))
            Issue.record("publish succeeded on a dead server")
        } catch let e as UAError {
            #expect(e.status.isBad)
        }
        let reason = await client.closed()
        #expect(reason.status.isBad)
        do {
            _ = try await UAClient.connect(server.url, timeout: .seconds(2))
            Issue.record("connected to a dead server")
        } catch let e as UAError {
            #expect(e.status == .badNotConnected)
        }
    }
}

/// Basic256Sha256 against asyncua: the trust list, Sign and SignAndEncrypt, an encrypted password.
@Suite(.serialized, .timeLimit(.minutes(2))) struct SecurePeerTests {
    static let identity: ApplicationIdentity = try! ApplicationIdentity.create(hostname: "localhost")

    func directory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ua-pki-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/trusted", withIntermediateDirectories: true)
        return dir
    }

    @Test func anUntrustedServerIsRefusedThenTrusted() async throws {
        let pki = try directory()
        defer { try? FileManager.default.removeItem(atPath: pki) }
        let server = try await UAServer(extra: ["--secure", pki + "/server"])
        defer { server.stop() }
        let security = ChannelSecurity(policy: .basic256Sha256, mode: .signAndEncrypt, identity: Self.identity, trust: TrustList(directory: pki))
        do {
            _ = try await UAClient.connect(server.url, security: security)
            Issue.record("an untrusted server was taken")
        } catch let e as UAError {
            #expect(e.status == .badCertificateUntrusted, "\(e)")
        }
        let rejected = try FileManager.default.contentsOfDirectory(atPath: pki + "/rejected")
        #expect(rejected.count == 1)
        try FileManager.default.moveItem(atPath: pki + "/rejected/" + rejected[0], toPath: pki + "/trusted/" + rejected[0])
        for mode in [MessageSecurityMode.signAndEncrypt, .sign] {
            let client = try await UAClient.connect(server.url, security: ChannelSecurity(policy: .basic256Sha256, mode: mode, identity: Self.identity, trust: TrustList(directory: pki)))
            let force = try await client.translate([QualifiedName(2, "Plant"), QualifiedName(2, "Press1"), QualifiedName(2, "Force")])
            // Enough to need several chunks both ways (64 KiB each): 5,000 reads in one request.
            let values = try await client.read(Array(repeating: force, count: 5_000))
            #expect(values.count == 5_000 && values.allSatisfy { $0.value?.number != nil })
            let subscription = try await client.createSubscription(publishingInterval: 100)
            _ = try await client.createMonitoredItems(subscription: subscription.id, [.init(node: force, handle: 1, samplingInterval: 100)])
            var changes = 0
            for _ in 0..<10 where changes == 0 { changes += try await client.publish(acknowledging: [], timeout: .seconds(10)).changes.count }
            #expect(changes > 0)
            await client.close()
        }
    }

    @Test func anEncryptedPasswordOnASecureOnlyServer() async throws {
        let pki = try directory()
        defer { try? FileManager.default.removeItem(atPath: pki) }
        let server = try await UAServer(user: "reader:secret-pass-1", extra: ["--secure", pki + "/server", "--secure-only"])
        defer { server.stop() }
        try FileManager.default.copyItem(atPath: pki + "/server/server.der", toPath: pki + "/trusted/server.der")
        // SignAndEncrypt: the password travels inside the encrypted channel; Sign: encrypted for the server's key.
        for mode in [MessageSecurityMode.signAndEncrypt, .sign] {
            let security = ChannelSecurity(policy: .basic256Sha256, mode: mode, identity: Self.identity, trust: TrustList(directory: pki))
            let client = try await UAClient.connect(server.url, identity: .userName("reader", password: "secret-pass-1"), security: security)
            #expect(try await client.browse(UANode.objects).isEmpty == false)
            await client.close()
            do {
                _ = try await UAClient.connect(server.url, identity: .userName("reader", password: "wrong"), security: security)
                Issue.record("a wrong password was taken")
            } catch let e as UAError {
                #expect(e.status.isBad && e.description.contains("refused the login"))
            }
        }
        // None is not offered for sessions there.
        do {
            _ = try await UAClient.connect(server.url, identity: .userName("reader", password: "secret-pass-1"))
            Issue.record("a None session on a secure-only server")
        } catch let e as UAError {
            #expect(e.status.isBad)
        }
    }

    @Test func theChannelIsRenewedBeforeItsTokenExpires() async throws {
        let pki = try directory()
        defer { try? FileManager.default.removeItem(atPath: pki) }
        let server = try await UAServer(extra: ["--secure", pki + "/server"])
        defer { server.stop() }
        let security = ChannelSecurity(policy: .basic256Sha256, mode: .signAndEncrypt, identity: Self.identity, trust: nil)
        // A 10 s lifetime (the shortest twin asks for): renewed at 7.5 s with new keys.
        let client = try await UAClient.connect(server.url, security: security, channelLifetime: .seconds(10))
        let first = await client.tokenId
        let deadline = ContinuousClock.now + .seconds(30)
        var reads = 0
        while await client.tokenId == first, ContinuousClock.now < deadline {
            _ = try await client.read([UANode.server])  // the channel keeps serving meanwhile
            reads += 1
            try await Task.sleep(for: .milliseconds(200))  // pacing the reads; the loop ends on the renewal
        }
        #expect(await client.tokenId != first, "no renewal within 30 s")
        // Under the new token's keys, both ways.
        for _ in 0..<5 { #expect(try await client.read([UANode.server]).count == 1) }
        #expect(reads >= 1)  // read before the renewal (how many depends on the machine's load)
        await client.close()
    }

    /// Hostile bytes where a secured message is expected: refused with a StatusCode, never a trap.
    @Test func hostileSecuredFramesAreRefused() throws {
        let identity = Self.identity
        for mode in [MessageSecurityMode.sign, .signAndEncrypt] {
            let state = SecureChannelState(security: ChannelSecurity(policy: .basic256Sha256, mode: mode, identity: identity, trust: nil), server: nil)
            state.install(token: 7, clientNonce: Array(repeating: 1, count: 32), serverNonce: Array(repeating: 2, count: 32))
            var rng = SystemRandomNumberGenerator()
            for n in 0..<2_000 {
                var body: [UInt8] = [1, 0, 0, 0, 7, 0, 0, 0]
                body += (0..<(n % 3 == 0 ? n % 200 : 16 * (n % 12))).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let header = SecureChannelState.header("MSG", UInt8(ascii: "F"), size: body.count + 8)
                #expect(throws: UAError.self) { _ = try state.openSymmetric(header: header, body: body, tokenId: 7) }
            }
            #expect(throws: UAError.self) { _ = try state.openSymmetric(header: [], body: [0, 0, 0, 0, 9, 0, 0, 0], tokenId: 9) }
            // What twin seals, twin's peer opens: the same keys seen from the other side.
            let peer = SecureChannelState(security: ChannelSecurity(policy: .basic256Sha256, mode: mode, identity: identity, trust: nil), server: nil)
            peer.tokens[7] = (state.tokens[7]!.remote, state.tokens[7]!.local)
            let sealed = try state.sealSymmetric(type: "MSG", chunk: UInt8(ascii: "F"), channelId: 1, tokenId: 7, sequence: 5, requestId: 9, body: ArraySlice(Array("hello".utf8)))
            let opened = try peer.openSymmetric(header: Array(sealed[0..<8]), body: Array(sealed[8...]), tokenId: 7)
            #expect(Array(opened.dropFirst(8)) == Array("hello".utf8))
            var tampered = sealed
            tampered[tampered.count - 1] ^= 1
            #expect(throws: UAError.self) { _ = try peer.openSymmetric(header: Array(tampered[0..<8]), body: Array(tampered[8...]), tokenId: 7) }
        }
        // An OPN answer whose encrypted part is not whole RSA blocks, or garbage in whole blocks.
        let secured = SecureChannelState(security: ChannelSecurity(policy: .basic256Sha256, mode: .signAndEncrypt, identity: identity, trust: nil),
                                         server: try PeerCertificate(der: identity.certificate))
        for size in [0, 1, 255, 256, 512] {
            let body = [UInt8](repeating: 0x5A, count: 10) + [UInt8](repeating: 0xA5, count: size)
            #expect(throws: UAError.self) {
                _ = try secured.openAsymmetric(header: [], body: body, securityEnd: 10, senderCertificate: identity.certificate, receiverThumbprint: identity.thumbprint)
            }
        }
        #expect(throws: UAError.self) { _ = try PeerCertificate(der: [0x30, 0x03, 0x02, 0x01, 0x01]) }
        #expect(throws: UAError.self) { _ = try PeerCertificate(der: []) }
    }

    @Test func keyDerivationMatchesTheSpecificationsConstruction() {
        // P_SHA256 of RFC 5246 §5, as OPC 10000-6 §6.7.5 uses it: output block 1 is HMAC(secret, A(1) + seed).
        let secret: [UInt8] = Array(repeating: 0x0b, count: 32), seed = Array("seed".utf8)
        let out = SymmetricKeys.pSHA256(secret: secret, seed: seed, length: 80)
        #expect(out.count == 80)
        #expect(SymmetricKeys.pSHA256(secret: secret, seed: seed, length: 32) == Array(out.prefix(32)))
        #expect(SymmetricKeys.pSHA256(secret: seed, seed: secret, length: 32) != Array(out.prefix(32)))
    }
}
