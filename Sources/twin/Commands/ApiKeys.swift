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

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List API keys, revoked ones included.")
        @OptionGroup var global: GlobalOptions
        func run() async throws {
            let keys = try await Users.call(global) { try await $0.listApiKeys(Twin_V1_ListApiKeysRequest()).keys }
            if global.printedJSON(keys) { return }
            Terminal.out(Format.table(["ID", "NAME", "ROLE", "STATE", "CREATED", "LAST USED"], keys.map { k in
                [k.id, k.name, Format.role(k.role), k.revoked ? "revoked" : "active", Format.time(k.createdAt), k.hasLastUsedAt ? Format.time(k.lastUsedAt) : "never"]
            }))
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a gateway key and print its secret (shown this once).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "What the key is for, e.g. \"gateway line 2\".") var name: String
        func run() async throws {
            var request = Twin_V1_CreateApiKeyRequest()
            request.name = name
            request.role = .gateway
            let message = request
            let response = try await Users.call(global) { try await $0.createApiKey(message) }
            if global.output == .json {
                Terminal.out(Format.protoJSON(response))
                return
            }
            // The secret alone on stdout, so `twin apikeys create gw > key` captures just it.
            Terminal.out(response.secret)
            Terminal.err("created API key \(response.key.id) (\(name), gateway); the secret above is shown only now: store it where the gateway reads it")
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
