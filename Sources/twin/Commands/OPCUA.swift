import ArgumentParser
import Foundation
import TwinCore
import TwinOPCUA

/// `twin opcua browse`: what an OPC UA server offers, for the person writing `--opcua-config`.
/// Speaks OPC UA to the server itself (not through twind).
struct OPCUA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "opcua", abstract: "Look into an OPC UA server directly (for writing twind's --opcua-config).",
        subcommands: [Browse.self])

    struct Browse: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a node's children on an OPC UA server: browse name, node class, NodeId, and a variable's value and unit.",
            discussion: """
                NODE is a NodeId (ns=2;s=Press1, i=85) or a path of BrowseNames from Objects (2:Plant/2:Press1); \
                without it, Objects. The BROWSE PATH column is what a mapping's `path:` takes, the NODE ID what its `node:` takes.
                With --security sign or sign-and-encrypt the channel uses SecurityPolicy Basic256Sha256 and twin's own \
                certificate (made in --pki DIR/own on first use); a server certificate not in DIR/trusted is refused and \
                saved in DIR/rejected, from where moving it to trusted/ trusts it.
                Exit codes: 3 server unreachable, 4 bad endpoint or node, 5 no such node, 7 login refused or server not trusted.
                """)

        @Argument(help: "The server: opc.tcp://HOST:PORT[/path].") var endpoint: String
        @Argument(help: "Where to start (default: Objects).") var node: String?
        @Option(help: "Levels below NODE to list (1–10).") var depth = 1
        @Option(help: "Log in with this user name (default: anonymous).") var username: String?
        @Option(help: "File holding the password (with --username; chmod 600).") var passwordFile: String?
        @Option(name: [.short, .long], help: "table, or json (one object per node and line).") var output: String = "table"
        @Option(help: "none, sign or sign-and-encrypt (the last two with SecurityPolicy Basic256Sha256).") var security = "none"
        @Option(help: "Certificate directory for a secured channel: own/ (twin's application certificate, made on first use), trusted/ (server certificates to trust), rejected/ (default: ~/.config/twin/opcua-pki).") var pki: String?
        @Flag(help: "Trust whatever certificate the server shows (to look around; twind never does).") var trustAnyServer = false

        func validate() throws {
            guard (1...10).contains(depth) else { throw ValidationError("--depth goes from 1 to 10") }
            guard ["table", "json"].contains(output) else { throw ValidationError("-o takes table or json") }
            guard ["none", "sign", "sign-and-encrypt"].contains(security) else { throw ValidationError("--security takes none, sign or sign-and-encrypt") }
            if (username == nil) != (passwordFile == nil) { throw ValidationError("--username and --password-file go together") }
        }

        struct Row {
            var path: String
            var reference: ReferenceDescription
            var value: DataValue?
            var unit: String?
        }

        func run() async throws {
            var identity = UAClient.Identity.anonymous
            if let username, let passwordFile {
                do { identity = .userName(username, password: try PrivateFile.readSecret(passwordFile)) } catch {
                    Terminal.err("twin: \(error.message)")
                    throw ExitCode(4)
                }
            }
            do {
                var channel = ChannelSecurity.none
                if security != "none" {
                    let home = ProcessInfo.processInfo.environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
                        ?? FileManager.default.homeDirectoryForCurrentUser.path + "/.config"
                    let directory = pki ?? home + "/twin/opcua-pki"
                    let own = try ApplicationIdentity.loadOrCreate(directory: directory, hostname: ProcessInfo.processInfo.hostName)
                    channel = ChannelSecurity(policy: .basic256Sha256, mode: security == "sign" ? .sign : .signAndEncrypt, identity: own,
                                              trust: trustAnyServer ? nil : TrustList(directory: directory))
                }
                let client = try await UAClient.connect(endpoint, identity: identity, security: channel)
                defer { Task { await client.close() } }
                var start = UANode.objects
                var prefix: [QualifiedName] = []
                if let node {
                    if let id = NodeId(text: node) {
                        start = id
                    } else {
                        let names = node.split(separator: "/").compactMap { QualifiedName(text: String($0)) }
                        guard !names.isEmpty, names.count == node.split(separator: "/").count else {
                            throw UAError(.badNodeIdInvalid, "'\(node.prefix(200))' is neither a NodeId (ns=2;s=Name) nor a path of BrowseNames (2:Plant/2:Press1)")
                        }
                        start = try await client.translate(names)
                        prefix = names
                    }
                }
                var rows: [Row] = []
                try await walk(client, start, prefix, level: 1, into: &rows)
                // The values and units of the variables, in one Read each.
                let variables = rows.indices.filter { rows[$0].reference.nodeClass == 2 && rows[$0].reference.nodeId.serverIndex == 0 }
                let values = try await client.read(variables.map { rows[$0].reference.nodeId.nodeId })
                for (i, v) in zip(variables, values) { rows[i].value = v }
                let units = try await client.translate(variables.map { (rows[$0].reference.nodeId.nodeId, [QualifiedName(0, "EngineeringUnits")]) }, reference: UANode.hasProperty)
                let found = zip(variables, units).compactMap { i, r -> (Int, NodeId)? in (try? r.get()).map { (i, $0) } }
                for ((i, _), v) in zip(found, try await client.read(found.map(\.1))) { rows[i].unit = EngineeringInfo.unit(v.value) }
                print(rows)
            } catch {
                let e = UAError.from(error)
                Terminal.err("twin: \(endpoint.prefix(200)): \(e)")
                throw ExitCode(Self.exitCode(e.status))
            }
        }

        func walk(_ client: UAClient, _ node: NodeId, _ path: [QualifiedName], level: Int, into rows: inout [Row]) async throws {
            for r in try await client.browse(node, maxReferences: 5_000) {
                let here = path + [r.browseName]
                rows.append(Row(path: here.map(\.description).joined(separator: "/"), reference: r))
                if level < depth, r.nodeClass == 1, r.nodeId.serverIndex == 0, rows.count < 20_000 {
                    try await walk(client, r.nodeId.nodeId, here, level: level + 1, into: &rows)
                }
            }
        }

        static func valueText(_ v: DataValue?) -> String {
            guard let v else { return "" }
            if !v.status.isGood { return v.status.name }
            switch v.value {
            case .double(let d)?: return String(format: "%g", d)
            case .float(let f)?: return String(format: "%g", Double(f))
            case .boolean(let b)?: return b ? "true" : "false"
            case .string(let s)?: return "\"\((s ?? "").prefix(40))\""
            case .localizedText(let t)?: return "\"\((t.text ?? "").prefix(40))\""
            case .array(_, let e, _)?: return "[\(e.count) values]"
            case let x?: return x.number.map { String(format: "%g", $0) } ?? "(\(Self.typeName(x.typeId)))"
            case nil: return ""
            }
        }

        static func typeName(_ id: UInt8) -> String {
            ["Null", "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double", "String", "DateTime",
             "Guid", "ByteString", "XmlElement", "NodeId", "ExpandedNodeId", "StatusCode", "QualifiedName", "LocalizedText", "ExtensionObject",
             "DataValue", "Variant", "DiagnosticInfo"][Int(min(id, 25))]
        }

        func print(_ rows: [Row]) {
            if output == "json" {
                for r in rows {
                    var o: [String: Any] = ["path": r.path, "node_id": r.reference.nodeId.description, "node_class": r.reference.nodeClassName,
                                            "browse_name": r.reference.browseName.description, "display_name": r.reference.displayName]
                    if let v = r.value {
                        o["status"] = v.status.name
                        if v.status.isGood, let n = v.value?.number { o["value"] = n }
                    }
                    if let u = r.unit { o["unit"] = u }
                    if let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]) {
                        Terminal.out(String(decoding: data, as: UTF8.self))
                    }
                }
                return
            }
            if rows.isEmpty {
                Terminal.out("no children")
                return
            }
            Terminal.out(Format.table(["BROWSE PATH", "CLASS", "NODE ID", "VALUE", "UNIT"], rows.map { r in
                [r.path, r.reference.nodeClassName, r.reference.nodeId.description, Self.valueText(r.value), r.unit ?? ""]
            }))
        }

        static func exitCode(_ s: StatusCode) -> Int32 {
            switch s {
            case .badNotConnected, .badConnectionClosed, .badTimeout, .badCommunicationError, .badSecureChannelClosed, .badRequestTimeout: return 3
            case .badTcpEndpointUrlInvalid, .badNodeIdInvalid: return 4
            case .badNodeIdUnknown, .badNoMatch: return 5
            case .badUserAccessDenied, .badIdentityTokenRejected, .badIdentityTokenInvalid, .badSecurityPolicyRejected, .badCertificateUntrusted: return 7
            default: return 1
            }
        }
    }
}
