import ArgumentParser
import Foundation
import Proto
import TwinCore

/// `twin apikeys …`: keys for gateways that push data (admins).
struct ApiKeys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apikeys",
        abstract: "Manage API keys for gateways (admins): create, list, revoke.",
        discussion: "A key has the gateway role: it may call Ingest and nothing else. Its secret is shown once, at creation; a gateway sends it as 'authorization: Bearer <key>' (twin itself reads it from TWIN_API_KEY).",
        subcommands: [List.self, Create.self, Revoke.self],
        defaultSubcommand: List.self)

    static func describe(_ scope: Twin_V1_ApiKeyScope) -> String {
        var parts: [String] = []
        if !scope.sites.isEmpty { parts.append("sites " + scope.sites.joined(separator: ",")) }
        if !scope.lines.isEmpty { parts.append("lines " + scope.lines.joined(separator: ",")) }
        if !scope.devices.isEmpty { parts.append("devices " + scope.devices.joined(separator: ",")) }
        return parts.isEmpty ? "whole plant" : parts.joined(separator: "; ")
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List API keys, revoked ones included.")
        @OptionGroup var global: GlobalOptions
        func run() async throws {
            let keys = try await Users.call(global) { try await $0.listApiKeys(Twin_V1_ListApiKeysRequest()).keys }
            if global.printedJSON(keys) { return }
            Terminal.out(Format.table(["ID", "NAME", "ROLE", "STATE", "SCOPE", "CREATED", "LAST USED"], keys.map { k in
                [k.id, k.name, Format.role(k.role), k.revoked ? "revoked" : "active", ApiKeys.describe(k.scope), Format.time(k.createdAt),
                 k.hasLastUsedAt ? Format.time(k.lastUsedAt) : "never"]
            }))
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a gateway key and print its secret (shown this once).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "What the key is for, e.g. \"gateway line 2\".") var name: String
        @Option(name: .customLong("site"), help: "Only devices of this site (repeatable).") var sites: [String] = []
        @Option(name: .customLong("line"), help: "Only devices of this line (repeatable).") var lines: [String] = []
        @Option(name: .customLong("device"), help: "Only devices whose id matches this pattern, '*' and '?' allowed (repeatable), e.g. 'press-*'.")
        var devices: [String] = []
        func run() async throws {
            var request = Twin_V1_CreateApiKeyRequest()
            request.name = name
            request.role = .gateway
            if !(sites.isEmpty && lines.isEmpty && devices.isEmpty) {
                request.scope.sites = sites
                request.scope.lines = lines
                request.scope.devices = devices
            }
            let message = request
            let response = try await Users.call(global) { try await $0.createApiKey(message) }
            if global.output == .json {
                Terminal.out(Format.protoJSON(response))
                return
            }
            // The secret alone on stdout, so `twin apikeys create gw > key` captures just it.
            Terminal.out(response.secret)
            Terminal.err("created API key \(response.key.id) (\(name), gateway, \(ApiKeys.describe(response.key.scope))); the secret above is shown only now: store it where the gateway reads it")
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key: its next call is refused.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The key's id (twin apikeys list).") var id: String
        func run() async throws {
            var request = Twin_V1_RevokeApiKeyRequest()
            request.id = id
            try await Users.send(global, request, done: "revoked API key \(id)") { try await $0.revokeApiKey($1) }
        }
    }
}
