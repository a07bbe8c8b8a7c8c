import Testing
import TwinCore
import TwinGateway
import TwinOPCUA

/// The OPC UA mapping file: what it takes, and every refusal naming the endpoint and node.
@Suite struct OPCUAConfigTests {
    static let example = """
        pki: /var/lib/twin/opcua-pki
        endpoints:
          - url: opc.tcp://10.0.4.20:4840/
            name: press-line
            security_policy: Basic256Sha256
            security_mode: Sign
            username: twin-reader
            password_file: /run/secret
            sampling_interval: 500ms
            type: press
            site: plant-1
            line: line-4
            nodes:
              - {node: "ns=2;s=Press1.Force", device: press-1, sensor: force, unit: kN, nominal: [0, 500]}
              - {path: "2:Plant/2:Press1/2:Temperature", device: press-1, sensor: temperature, sampling_interval: 2s}
              - {path: "Line/2:Pump", root: "ns=3;i=1000", device: pump-1, sensor: flow, type: pump}
          - url: opc.tcp://[::1]:4841
            nodes:
              - {node: i=2258, device: server-1, sensor: time}
        """

    static func secret(_ path: String) throws(TwinError) -> String {
        guard path == "/run/secret" else { throw .invalidArgument("cannot read the password file \(path)") }
        return "pw"
    }

    @Test func aFullFile() throws {
        let c = try OPCUAConfig.parse(Self.example, readFile: Self.secret)
        #expect(c.endpoints.count == 2)
        let e = c.endpoints[0]
        #expect(e.name == "press-line" && e.type == "press" && e.site == "plant-1" && e.line == "line-4")
        #expect(e.identity == .userName("twin-reader", password: "pw"))
        #expect(e.identityText == "user twin-reader")
        #expect(e.policy == .basic256Sha256 && e.mode == .sign && c.pki == "/var/lib/twin/opcua-pki")
        #expect(c.endpoints[1].policy == .none && c.endpoints[1].mode == .none)
        #expect(OPCUAConfig.securityText(.basic256Sha256, .signAndEncrypt) == "Basic256Sha256 SignAndEncrypt")
        #expect(e.samplingInterval == 500 * Time.millisecond && e.publishingInterval == 500 * Time.millisecond)
        #expect(e.nodes[0].address == .nodeId(NodeId(2, .string("Press1.Force"))))
        #expect(e.nodes[0].unit == "kN" && e.nodes[0].nominal! == (0, 500))
        #expect(e.nodes[1].address == .path(root: UANode.objects, [QualifiedName(2, "Plant"), QualifiedName(2, "Press1"), QualifiedName(2, "Temperature")]))
        #expect(e.nodes[1].samplingInterval == 2 * Time.second)
        #expect(e.nodes[2].address == .path(root: NodeId(3, 1000), [QualifiedName(0, "Line"), QualifiedName(2, "Pump")]))
        #expect(e.nodes[2].type == "pump")
        #expect(c.endpoints[1].name == "opc.tcp://[::1]:4841" && c.endpoints[1].identity == .anonymous && c.endpoints[1].type == "opcua")
    }

    @Test func refusalsNameWhereAndWhat() {
        let cases: [(String, String)] = [
            ("endpoints: []", "no endpoints"),
            ("x: 1", "expected 'endpoints:'"),
            ("endpoints:\n  - nodes: []", "url is required"),
            ("endpoints:\n  - url: http://x/\n    nodes: []", "opc.tcp://"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    bogus: 1", "unknown key 'bogus'"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    security_policy: Basic128Rsa15\n    nodes: [{node: i=1, device: d, sensor: s}]", "security_policy must be None or Basic256Sha256"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    security_mode: Sign\n    nodes: [{node: i=1, device: d, sensor: s}]", "does not go with security_policy None"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    security_policy: Basic256Sha256\n    security_mode: Encrypt\n    nodes: [{node: i=1, device: d, sensor: s}]", "security_mode must be"),
            ("pki: relative/dir\nendpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{node: i=1, device: d, sensor: s}]", "pki must be an absolute"),
            ("endpoint: []\nendpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{node: i=1, device: d, sensor: s}]", "unknown key 'endpoint'"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    username: u\n    nodes: [{node: i=1, device: d, sensor: s}]", "username needs password_file"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    username: u\n    password_file: /nope\n    nodes: [{node: i=1, device: d, sensor: s}]", "cannot read the password file /nope"),
            ("endpoints:\n  - url: opc.tcp://h:1/", "nodes is required"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{node: 'x=1', device: d, sensor: s}]", "node 0: node 'x=1' is not a NodeId"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{device: d, sensor: s}]", "node (a NodeId) or path"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{node: i=1, path: a, device: d, sensor: s}]", "not both"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{node: i=1, device: 'bad id', sensor: s}]", "node 0"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{node: i=1, device: d, sensor: Bad}]", "node 0"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{node: i=1, device: d, sensor: s}, {node: i=2, device: d, sensor: s}]", "d/s is mapped twice"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{node: i=1, device: d, sensor: s, nominal: [5, 1]}]", "nominal must be [low, high]"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{node: i=1, device: d, sensor: s, nominal: [.nan, 1]}]", "nominal must be"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    sampling_interval: 1ms\n    nodes: [{node: i=1, device: d, sensor: s}]", "sampling_interval must be a duration from 10ms to 1h"),
            ("endpoints:\n  - url: opc.tcp://h:1/\n    nodes: [{path: '2:A//', device: d, sensor: s}, {path: '2:A/3:', device: d, sensor: t}]", "path '2:A/3:'"),
            ("endpoints:\n  - {url: 'opc.tcp://h:1/', nodes: [{node: i=1, device: d, sensor: s}]}\n  - {url: 'opc.tcp://h:2/', nodes: [{node: i=1, device: d, sensor: t}]}", "device d is mapped on two endpoints"),
            ("endpoints:\n  - {url: 'opc.tcp://h:1/', name: a, nodes: [{node: i=1, device: d, sensor: s}]}\n  - {url: 'opc.tcp://h:2/', name: a, nodes: [{node: i=1, device: e, sensor: t}]}", "a second endpoint named 'a'"),
        ]
        for (text, words) in cases {
            do {
                _ = try OPCUAConfig.parse(text, readFile: Self.secret)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.message.contains(words), "\(text) → \(error.message)")
            }
        }
    }

    /// The parser's fuzz tier: truncated, mutated and random texts are taken or refused, never a crash.
    @Test func hostileTextsNeverCrashTheParser() {
        var rng = SystemRandomNumberGenerator()
        let base = Array(Self.example.utf8)
        let odd: [String] = ["\u{0}", "*a", "&a", "[", "{", ": :", "\n  - ", "ns=65535;s=", String(repeating: "9", count: 400), ".nan", "-.inf", "1e309", "'\\u{202e}'"]
        for i in 0..<2_000 {
            var text: String
            switch i % 4 {
            case 0: text = String(decoding: base.prefix(Int.random(in: 0...base.count, using: &rng)), as: UTF8.self)
            case 1:
                var bytes = base
                for _ in 0..<4 { bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...127, using: &rng) }
                text = String(decoding: bytes, as: UTF8.self)
            case 2:
                var s = Self.example
                let at = s.index(s.startIndex, offsetBy: Int.random(in: 0..<s.count, using: &rng))
                s.insert(contentsOf: odd.randomElement(using: &rng)!, at: at)
                text = s
            default: text = String(decoding: (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...127, using: &rng) }, as: UTF8.self)
            }
            if let c = try? OPCUAConfig.parse(text, readFile: Self.secret) {
                for e in c.endpoints {
                    #expect(!e.nodes.isEmpty)
                    for n in e.nodes { #expect((try? Identifier.validateDeviceID(n.device)) != nil) }
                }
            }
        }
    }
}
