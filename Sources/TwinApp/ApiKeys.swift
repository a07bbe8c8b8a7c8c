import Crypto
import Foundation
import TwinCore

/// API keys for gateways: `twk_<id>_<secret>`, shown once at creation, kept as a SHA-256 hash,
/// sent as `authorization: Bearer <key>`. A key has the gateway role: Ingest and nothing else.
extension Identity {
    public static let apiKeyPrefix = "twk_"
    /// The hash an API key secret is stored and looked up by (SHA-256: the secret is 256
    /// random bits, so a slow hash would add nothing but cost per call).
    public static func apiKeyHash(_ secret: String) -> Data { Data(SHA256.hash(data: Array(secret.utf8))) }
    /// How often a key's last use is written to users.db (not on every batch).
    static let apiKeyUseResolution = Time.minute

    func loadApiKeys() throws(TwinError) {
        let live = try users.apiKeys().filter { $0.key.revokedAt == nil }
        apiKeys.withLock { known in
            known = Dictionary(uniqueKeysWithValues: live.map { ($0.secretHash, ApiKeyUse(key: $0.key, lastRecorded: $0.key.lastUsedAt ?? 0)) })
        }
    }

    func authenticate(apiKey secret: String) throws(TwinError) -> Principal {
        let hash = Self.apiKeyHash(secret)
        let now = clock.now()
        let found: (key: ApiKey, record: Bool)? = apiKeys.withLock { known in
            guard var use = known[hash] else { return nil }
            let record = now - use.lastRecorded >= Self.apiKeyUseResolution
            if record { use.lastRecorded = now; known[hash] = use }
            return (use.key, record)
        }
        guard let found else {
            throw .unauthenticated(.tokenInvalid, "the API key is not valid (revoked or unknown); ask an admin for a new one (twin apikeys create)")
        }
        if found.record { try? users.touchApiKey(id: found.key.id, at: now) }
        return Principal(
            username: "apikey:\(found.key.name)", role: found.key.role, expiresAt: .max, issuedAt: found.key.createdAt, tokenID: found.key.id,
            apiKeyID: found.key.id, scope: found.key.scope.isEverything ? nil : found.key.scope)
    }

    /// Creates a key; returns it with its secret, which is not kept anywhere.
    static let scopeLimit = 100

    public static func validateScope(_ scope: ApiKeyScope) throws(TwinError) {
        for (field, values) in [("sites", scope.sites), ("lines", scope.lines), ("devices", scope.devices)] {
            guard values.count <= scopeLimit else { throw .invalidArgument("scope.\(field) has \(values.count) entries; at most \(scopeLimit) are allowed") }
            for v in values where v.isEmpty || v.utf8.count > 128 || v.contains(where: { $0.isNewline || $0 == "\u{0}" }) {
                throw .invalidArgument("scope.\(field): '\(v.prefix(64))' must be 1-128 bytes on one line")
            }
        }
    }

    public func createApiKey(name: String, role: User.Role, scope: ApiKeyScope = .init(), by actor: Principal?, peer: String) throws(TwinError) -> (key: ApiKey, secret: String) {
        try Self.validateScope(scope)
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        guard (1...100).contains(trimmed.count), !trimmed.contains(where: \.isNewline) else {
            throw .invalidArgument("name must be 1–100 characters on one line (what the key is for, e.g. \"gateway line 2\")")
        }
        guard role == .gateway else { throw .invalidArgument("API keys can only have the gateway role (ROLE_GATEWAY); people log in") }
        var bytes = [UInt8](repeating: 0, count: 38)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        let id = bytes[0..<6].map { String(format: "%02x", $0) }.joined()
        let secret = Self.apiKeyPrefix + id + "_" + Data(bytes[6...]).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        let key = try users.createApiKey(
            id: id, name: trimmed, role: role, secret: secret, createdBy: actor?.username ?? "", scope: scope, now: clock.now(),
            audit: .init(time: clock.now(), action: .apiKeyCreated, actor: actor?.username ?? "", peer: peer, detail: "\(id) \"\(trimmed)\" as \(role.rawValue) for \(scope.description)"))
        apiKeys.withLock { $0[Self.apiKeyHash(secret)] = ApiKeyUse(key: key, lastRecorded: 0) }
        return (key, secret)
    }

    /// Revokes a key: calls with it are refused from the next one on.
    public func revokeApiKey(id: String, by actor: Principal?, peer: String) throws(TwinError) {
        guard !id.isEmpty else { throw .invalidArgument("id is required (twin apikeys list shows them)") }
        let entry = AuditEntry(time: clock.now(), action: .apiKeyRevoked, actor: actor?.username ?? "", peer: peer, detail: id)
        guard try users.revokeApiKey(id: id, now: clock.now(), audit: entry) else { throw .missing(.apiKeyNotFound, type: "twin.v1.ApiKey", name: id, "API key '\(id.prefix(40))' not found") }
        apiKeys.withLock { known in known = known.filter { $0.value.key.id != id } }
        accessChanged.fire()
    }
}
