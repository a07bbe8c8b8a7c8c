import Foundation
import TwinCore
import TwinOPCUA
import Yams

/// The OPC UA mapping file (`--opcua-config FILE`): the servers twind reads and which of their
/// variables are which device's sensors.
///
///     endpoints:
///       - url: opc.tcp://10.0.4.20:4840/        # the server
///         name: press-line                      # shown in `twin gateways` (default: the URL)
///         security_policy: Basic256Sha256        # None (default) or Basic256Sha256
///         security_mode: SignAndEncrypt          # Sign or SignAndEncrypt (default with Basic256Sha256)
///         username: twin-reader                 # absent: anonymous
///         password_file: /etc/twin/opcua-pass   # chmod 600; with username
///         sampling_interval: 500ms              # default 1s (per node too)
///         publishing_interval: 1s               # default: the shortest sampling interval
///         type: press                           # device type of devices registered from here
///         site: plant-1                         # and their site and line
///         line: line-4
///         nodes:
///           - node: ns=2;s=Press1.Force         # by NodeId, or:
///             path: 2:Plant/2:Press1/2:Force    # BrowseNames from Objects (root: NODEID to start elsewhere)
///             device: press-1
///             sensor: force
///             unit: kN                          # else the server's EngineeringUnits
///             nominal: [0, 500]                 # else the server's EURange
public struct OPCUAConfig: Sendable {
    public struct Node: Sendable, Equatable {
        public enum Address: Sendable, Equatable {
            case nodeId(NodeId)
            case path(root: NodeId, [QualifiedName])
        }
        public var address: Address
        public var device: String
        public var sensor: String
        public var unit: String?
        public var nominal: (low: Double, high: Double)?
        public var type: String?
        public var samplingInterval: Nanos

        public static func == (a: Node, b: Node) -> Bool {
            a.address == b.address && a.device == b.device && a.sensor == b.sensor && a.unit == b.unit
                && a.nominal?.low == b.nominal?.low && a.nominal?.high == b.nominal?.high && a.type == b.type && a.samplingInterval == b.samplingInterval
        }

        /// How the node is named in the file, for messages.
        public var addressText: String {
            switch address {
            case .nodeId(let n): return n.description
            case .path(let root, let names): return (root == UANode.objects ? "" : "\(root): ") + names.map(\.description).joined(separator: "/")
            }
        }
    }

    public struct Endpoint: Sendable {
        public var url: String
        public var name: String
        public var identity: UAClient.Identity
        public var policy: SecurityPolicy
        public var mode: MessageSecurityMode
        public var samplingInterval: Nanos
        public var publishingInterval: Nanos
        public var type: String
        public var site: String
        public var line: String
        public var nodes: [Node]

        /// The user the session logs in as, for status (never the password).
        public var identityText: String {
            if case .userName(let u, _) = identity { return "user \(u)" }
            return "anonymous"
        }
    }

    public var endpoints: [Endpoint]
    /// The certificate directory (`pki:`): own/ (twind's application certificate), trusted/
    /// (server certificates trusted), rejected/ (ones met and not trusted). nil: `<data-dir>/opcua/pki`.
    public var pki: String?

    /// "None", or "Basic256Sha256 SignAndEncrypt".
    public static func securityText(_ policy: SecurityPolicy, _ mode: MessageSecurityMode) -> String {
        policy == .none ? "None" : "\(policy.name) \(mode.name)"
    }

    static let endpointKeys: Set<String> = ["url", "name", "security_policy", "security_mode", "username", "password_file", "sampling_interval", "publishing_interval", "type", "site", "line", "nodes"]
    static let nodeKeys: Set<String> = ["node", "path", "root", "device", "sensor", "unit", "nominal", "type", "sampling_interval"]
    /// Monitored items in one file, over every endpoint.
    public static let maxNodes = 100_000

    public static func load(path: String) throws(TwinError) -> OPCUAConfig {
        var st = stat()
        guard stat(path, &st) == 0, st.st_size <= 8 << 20, let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw .invalidArgument("opcua config \(path): cannot read it (or it is over 8 MiB)")
        }
        return try parse(text, source: path)
    }

    public static func parse(_ text: String, source: String = "opcua config", readFile: (String) throws(TwinError) -> String = OPCUAConfig.readSecret) throws(TwinError) -> OPCUAConfig {
        let root: Yams.Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw .invalidArgument("\(source): not YAML (\(String("\(error)".prefix(200))))")
        }
        guard let list = root?["endpoints"]?.sequence else {
            throw .invalidArgument("\(source): expected 'endpoints:' with a list of servers (url, nodes, …)")
        }
        for key in root?.mapping?.keys.compactMap(\.string) ?? [] where !["endpoints", "pki"].contains(key) {
            throw .invalidArgument("\(source): unknown key '\(key.prefix(40))' (known: endpoints, pki)")
        }
        let pki = root?["pki"]?.string
        if let pki, pki.isEmpty || !pki.hasPrefix("/") { throw .invalidArgument("\(source): pki must be an absolute directory path") }
        var endpoints: [Endpoint] = []
        var total = 0
        var names = Set<String>()
        for (n, node) in list.enumerated() {
            guard let e = node.mapping else { throw .invalidArgument("\(source), endpoint \(n): not a mapping of url, nodes, …") }
            for key in e.keys.compactMap(\.string) where !endpointKeys.contains(key) {
                throw .invalidArgument("\(source), endpoint \(n): unknown key '\(key.prefix(40))' (known: \(endpointKeys.sorted().joined(separator: ", ")))")
            }
            guard let url = e["url"]?.string else { throw .invalidArgument("\(source), endpoint \(n): url is required (opc.tcp://HOST:PORT/path)") }
            let at = "\(source), endpoint \(n) (\(url.prefix(120)))"
            do { _ = try EndpointURL(url) } catch { throw .invalidArgument("\(at): \(error.message)") }
            let name = e["name"]?.string ?? url
            guard !name.isEmpty, name.utf8.count <= 128 else { throw .invalidArgument("\(at): name must be 1–128 characters") }
            guard names.insert(name).inserted else { throw .invalidArgument("\(at): a second endpoint named '\(name.prefix(128))'") }
            let policyText = (e["security_policy"]?.string ?? "None").lowercased()
            guard let policy = SecurityPolicy.allCases.first(where: { $0.name.lowercased() == policyText }) else {
                throw .invalidArgument("\(at): security_policy must be None or Basic256Sha256")
            }
            let modeText = e["security_mode"]?.string?.lowercased() ?? (policy == .none ? "none" : "signandencrypt")
            guard let mode = [MessageSecurityMode.none, .sign, .signAndEncrypt].first(where: { $0.name.lowercased() == modeText }) else {
                throw .invalidArgument("\(at): security_mode must be None, Sign or SignAndEncrypt")
            }
            guard (policy == .none) == (mode == .none) else {
                throw .invalidArgument("\(at): security_mode \(mode.name) does not go with security_policy \(policy.name) (None goes with None)")
            }
            var identity = UAClient.Identity.anonymous
            if let user = e["username"]?.string {
                guard !user.isEmpty, user.utf8.count <= 256 else { throw .invalidArgument("\(at): username must be 1–256 characters") }
                guard let file = e["password_file"]?.string else { throw .invalidArgument("\(at): username needs password_file") }
                let password: String
                do { password = try readFile(file) } catch { throw .invalidArgument("\(at): \(error.message)") }
                identity = .userName(user, password: password)
            } else if e["password_file"] != nil {
                throw .invalidArgument("\(at): password_file needs username")
            }
            let sampling = try duration(e["sampling_interval"], default: Time.second, at: at, key: "sampling_interval")
            let type = e["type"]?.string ?? "opcua"
            guard !type.isEmpty, type.utf8.count <= 64 else { throw .invalidArgument("\(at): type must be 1–64 characters") }
            let site = e["site"]?.string ?? ""
            let line = e["line"]?.string ?? ""
            guard site.utf8.count <= 128, line.utf8.count <= 128 else { throw .invalidArgument("\(at): site and line are at most 128 characters") }
            guard let nodeList = e["nodes"]?.sequence, !nodeList.isEmpty else { throw .invalidArgument("\(at): nodes is required: a list of node/path, device, sensor") }
            var nodes: [Node] = []
            var seen = Set<String>()
            for (k, item) in nodeList.enumerated() {
                let nat = "\(at), node \(k)"
                guard let m = item.mapping else { throw .invalidArgument("\(nat): not a mapping of node, device, sensor, …") }
                for key in m.keys.compactMap(\.string) where !nodeKeys.contains(key) {
                    throw .invalidArgument("\(nat): unknown key '\(key.prefix(40))' (known: \(nodeKeys.sorted().joined(separator: ", ")))")
                }
                let address: Node.Address
                switch (m["node"]?.string, m["path"]?.string) {
                case (let text?, nil):
                    guard let id = NodeId(text: text) else { throw .invalidArgument("\(nat): node '\(text.prefix(120))' is not a NodeId (i=85, ns=2;s=Name, ns=1;g=GUID, ns=1;b=BASE64)") }
                    address = .nodeId(id)
                case (nil, let text?):
                    var rootNode = UANode.objects
                    if let r = m["root"]?.string {
                        guard let id = NodeId(text: r) else { throw .invalidArgument("\(nat): root '\(r.prefix(120))' is not a NodeId") }
                        rootNode = id
                    }
                    let parts = text.split(separator: "/", omittingEmptySubsequences: true)
                    let names = parts.compactMap { QualifiedName(text: String($0)) }
                    guard !names.isEmpty, names.count == parts.count, names.count <= 32 else {
                        throw .invalidArgument("\(nat): path '\(text.prefix(120))' must be 1–32 BrowseNames separated by '/', each NS:Name or Name")
                    }
                    address = .path(root: rootNode, names)
                case (nil, nil):
                    throw .invalidArgument("\(nat): node (a NodeId) or path (BrowseNames from Objects) is required")
                default:
                    throw .invalidArgument("\(nat): give node or path, not both")
                }
                guard let device = m["device"]?.string else { throw .invalidArgument("\(nat): device is required") }
                guard let sensor = m["sensor"]?.string else { throw .invalidArgument("\(nat): sensor is required") }
                do { try Identifier.validateDeviceID(device) } catch { throw .invalidArgument("\(nat): \(error.message)") }
                do { try Identifier.validateSensorName(sensor, device: device) } catch { throw .invalidArgument("\(nat): \(error.message)") }
                guard seen.insert(device + "\u{0}" + sensor).inserted else { throw .invalidArgument("\(nat): \(device)/\(sensor) is mapped twice") }
                let unit = m["unit"]?.string
                if let unit, unit.utf8.count > 32 { throw .invalidArgument("\(nat): unit is at most 32 characters") }
                var nominal: (Double, Double)?
                if let range = m["nominal"] {
                    guard let pair = range.sequence, pair.count == 2, let low = pair[0].string.flatMap(Double.init), let high = pair[1].string.flatMap(Double.init),
                          low.isFinite, high.isFinite, low <= high else {
                        throw .invalidArgument("\(nat): nominal must be [low, high], finite numbers with low ≤ high")
                    }
                    nominal = (low, high)
                }
                let nodeType = m["type"]?.string
                if let nodeType, nodeType.isEmpty || nodeType.utf8.count > 64 { throw .invalidArgument("\(nat): type must be 1–64 characters") }
                let nodeSampling = try duration(m["sampling_interval"], default: sampling, at: nat, key: "sampling_interval")
                nodes.append(Node(address: address, device: device, sensor: sensor, unit: unit, nominal: nominal, type: nodeType, samplingInterval: nodeSampling))
            }
            total += nodes.count
            guard total <= maxNodes else { throw .invalidArgument("\(source): more than \(maxNodes) nodes") }
            let publishing = try duration(e["publishing_interval"], default: nodes.map(\.samplingInterval).min() ?? sampling, at: at, key: "publishing_interval")
            endpoints.append(Endpoint(url: url, name: name, identity: identity, policy: policy, mode: mode, samplingInterval: sampling, publishingInterval: publishing,
                                      type: type, site: site, line: line, nodes: nodes))
        }
        if endpoints.isEmpty { throw .invalidArgument("\(source): no endpoints") }
        // A device read from two servers would have its sensors split between them.
        var owner: [String: String] = [:]
        for e in endpoints {
            for n in e.nodes {
                if let other = owner[n.device], other != e.name {
                    throw .invalidArgument("\(source): device \(n.device) is mapped on two endpoints (\(other), \(e.name)); give each device one server")
                }
                owner[n.device] = e.name
            }
        }
        return OPCUAConfig(endpoints: endpoints, pki: pki)
    }

    static func duration(_ node: Yams.Node?, default value: Nanos, at: String, key: String) throws(TwinError) -> Nanos {
        guard let node else { return value }
        guard let text = node.string, let d = DurationText.parse(text), d >= 10 * Time.millisecond, d <= Time.hour else {
            throw .invalidArgument("\(at): \(key) must be a duration from 10ms to 1h (e.g. 500ms, 2s)")
        }
        return d
    }

    /// A password file: readable by its owner only, 1–1024 bytes, its trailing newline dropped.
    public static func readSecret(_ path: String) throws(TwinError) -> String {
        try PrivateFile.readSecret(path)
    }
}
