import Crypto
import CryptoExtras
import Foundation
import SwiftASN1
import X509

/// The security policies twin speaks (OPC 10000-7): None, and Basic256Sha256 (RSA-PKCS#1 v1.5
/// SHA-256 signatures and RSA-OAEP (SHA-1) encryption for OpenSecureChannel, HMAC-SHA256 and
/// AES-256-CBC for messages, keys derived with P_SHA256).
public enum SecurityPolicy: String, Sendable, CaseIterable {
    case none = "http://opcfoundation.org/UA/SecurityPolicy#None"
    case basic256Sha256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"

    public var name: String { self == .none ? "None" : "Basic256Sha256" }
}

/// MessageSecurityMode: how messages are protected on a secure channel.
public enum MessageSecurityMode: UInt32, Sendable {
    case none = 1
    case sign = 2
    case signAndEncrypt = 3

    public var name: String {
        switch self {
        case .none: return "None"
        case .sign: return "Sign"
        case .signAndEncrypt: return "SignAndEncrypt"
        }
    }
}

extension StatusCode {
    public static let badCertificateUntrusted = StatusCode(0x801A_0000)
    public static let badCertificateTimeInvalid = StatusCode(0x8014_0000)
    public static let badSecureChannelTokenUnknown = StatusCode(0x8087_0000)
    public static let badApplicationSignatureInvalid = StatusCode(0x8058_0000)
}

/// twin's application instance certificate: a self-signed RSA 2048 certificate with the
/// application URI in its subjectAltName, made on first use and kept (key 0600) in a directory.
public struct ApplicationIdentity: Sendable {
    public static let applicationURI = "urn:twin:twind"

    /// The certificate, DER.
    public let certificate: [UInt8]
    let signingKey: _RSA.Signing.PrivateKey

    var keyBytes: Int { signingKey.keySizeInBits / 8 }
    public var thumbprint: [UInt8] { Array(Insecure.SHA1.hash(data: certificate)) }

    init(certificate: [UInt8], key: _RSA.Signing.PrivateKey) throws {
        self.certificate = certificate
        self.signingKey = key
    }

    /// A new certificate and key, valid for 20 years.
    public static func create(hostname: String) throws -> ApplicationIdentity {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let name = try DistinguishedName {
            CommonName("twind@\(hostname.prefix(48))")
            OrganizationName("twin")
        }
        let now = Date()
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true, nonRepudiation: true, keyEncipherment: true, dataEncipherment: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            SubjectAlternativeNames([.uniformResourceIdentifier(applicationURI), .dnsName(hostname)])
            SubjectKeyIdentifier(keyIdentifier: ArraySlice(Insecure.SHA1.hash(data: key.publicKey.derRepresentation)))
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 20 * 365 * 86_400, issuer: name, subject: name,
            signatureAlgorithm: .sha256WithRSAEncryption, extensions: extensions, issuerPrivateKey: .init(key))
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return try ApplicationIdentity(certificate: serializer.serializedBytes, key: key)
    }

    /// The certificate in `directory/own/cert.der` with its key in `directory/own/private/key.pem`,
    /// made there on first use (the key 0600 in a 0700 directory).
    public static func loadOrCreate(directory: String, hostname: String) throws(UAError) -> ApplicationIdentity {
        let certPath = directory + "/own/cert.der", keyPath = directory + "/own/private/key.pem"
        if let der = FileManager.default.contents(atPath: certPath), let pem = try? String(contentsOfFile: keyPath, encoding: .utf8) {
            do {
                return try ApplicationIdentity(certificate: [UInt8](der), key: try _RSA.Signing.PrivateKey(pemRepresentation: pem))
            } catch {
                throw UAError(.badCertificateInvalid, "cannot read the application certificate in \(directory)/own: \(error)")
            }
        }
        do {
            let identity = try create(hostname: hostname)
            for dir in [directory, directory + "/own", directory + "/own/private", directory + "/trusted", directory + "/rejected"] {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
            let keyPEM = identity.signingKey.pemRepresentation
            guard FileManager.default.createFile(atPath: keyPath, contents: Data(keyPEM.utf8), attributes: [.posixPermissions: 0o600]),
                  FileManager.default.createFile(atPath: certPath, contents: Data(identity.certificate), attributes: [.posixPermissions: 0o644]) else {
                throw UAError(.badInternalError, "cannot write to \(directory)/own")
            }
            return identity
        } catch let e as UAError {
            throw e
        } catch {
            throw UAError(.badInternalError, "cannot make the application certificate in \(directory): \(error)")
        }
    }

    func sign(_ data: [UInt8]) throws -> [UInt8] {
        let signature = try signingKey.signature(for: SHA256.hash(data: data), padding: .insecurePKCS1v1_5)
        return Array(signature.rawRepresentation)
    }

    func decrypt(_ data: ArraySlice<UInt8>) throws(UAError) -> [UInt8] {
        guard !data.isEmpty, data.count % keyBytes == 0 else { throw UAError(.badSecurityChecksFailed, "encrypted part of \(data.count) bytes is not whole RSA blocks") }
        guard let decryptionKey = try? _RSA.Encryption.PrivateKey(derRepresentation: signingKey.derRepresentation) else {
            throw UAError(.badSecurityChecksFailed, "the application key cannot decrypt")
        }
        var out: [UInt8] = []
        var i = data.startIndex
        while i < data.endIndex {
            do { out += try decryptionKey.decrypt(data[i..<i + keyBytes], padding: .PKCS1_OAEP) } catch {
                throw UAError(.badSecurityChecksFailed, "cannot decrypt the OpenSecureChannel answer")
            }
            i += keyBytes
        }
        return out
    }
}

/// A peer's certificate and the public key it carries.
struct PeerCertificate: Sendable {
    let der: [UInt8]
    let verifyKey: _RSA.Signing.PublicKey
    let notBefore: Date
    let notAfter: Date

    var keyBytes: Int { verifyKey.keySizeInBits / 8 }
    var thumbprint: [UInt8] { Array(Insecure.SHA1.hash(data: der)) }

    init(der: [UInt8]) throws(UAError) {
        do {
            let certificate = try Certificate(derEncoded: der)
            guard let key = _RSA.Signing.PublicKey(certificate.publicKey) else {
                throw UAError(.badCertificateInvalid, "the server certificate's key is not RSA")
            }
            guard (2048...4096).contains(key.keySizeInBits) else {
                throw UAError(.badCertificateInvalid, "the server certificate's key has \(key.keySizeInBits) bits (Basic256Sha256: 2048–4096)")
            }
            self.der = der
            self.verifyKey = key
            self.notBefore = certificate.notValidBefore
            self.notAfter = certificate.notValidAfter
        } catch let e as UAError {
            throw e
        } catch {
            throw UAError(.badCertificateInvalid, "the server certificate does not parse: \(error)")
        }
    }

    func verify(_ signature: ArraySlice<UInt8>, for data: [UInt8]) -> Bool {
        verifyKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: data), padding: .insecurePKCS1v1_5)
    }

    /// RSA-OAEP (SHA-1) in as many blocks as the data needs.
    func encrypt(_ data: [UInt8]) throws -> [UInt8] {
        let encryptKey = try _RSA.Encryption.PublicKey(derRepresentation: verifyKey.derRepresentation)
        let block = keyBytes - 42
        var out: [UInt8] = []
        var i = 0
        while i < data.count {
            out += try encryptKey.encrypt(data[i..<min(data.count, i + block)], padding: .PKCS1_OAEP)
            i += block
        }
        return out
    }
}

/// Which server certificates twin trusts: those whose DER files are in `directory/trusted`
/// (copied there by an administrator). One it does not know is saved in `directory/rejected`
/// and refused with BadCertificateUntrusted, so moving that file is all it takes to trust it.
public struct TrustList: Sendable {
    public let directory: String
    public init(directory: String) { self.directory = directory }

    func check(_ certificate: PeerCertificate, now: Date = Date()) throws(UAError) {
        let thumbprint = certificate.thumbprint.map { String(format: "%02x", $0) }.joined()
        let trusted = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/trusted")) ?? []
        let known = trusted.contains { name in
            guard let data = FileManager.default.contents(atPath: directory + "/trusted/" + name) else { return false }
            return [UInt8](data) == certificate.der || Self.pemBody(data) == certificate.der
        }
        guard known else {
            try? FileManager.default.createDirectory(atPath: directory + "/rejected", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let path = directory + "/rejected/\(thumbprint).der"
            _ = FileManager.default.createFile(atPath: path, contents: Data(certificate.der), attributes: [.posixPermissions: 0o644])
            throw UAError(.badCertificateUntrusted, "the server certificate (SHA-1 \(thumbprint)) is not trusted; it was saved as \(path): move it to \(directory)/trusted/ to trust it")
        }
        guard certificate.notBefore <= now, now <= certificate.notAfter else {
            throw UAError(.badCertificateTimeInvalid, "the server certificate is valid from \(certificate.notBefore) to \(certificate.notAfter)")
        }
    }

    /// The DER inside a PEM file, if it is one.
    static func pemBody(_ data: Data) -> [UInt8]? {
        guard let text = String(data: data, encoding: .utf8), text.contains("-----BEGIN CERTIFICATE-----") else { return nil }
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        return Data(base64Encoded: body).map { [UInt8]($0) }
    }
}

/// One direction's keys of a secure channel token (OPC 10000-6 §6.7.5).
struct SymmetricKeys: Sendable {
    let signing: SymmetricKey
    let encrypting: SymmetricKey
    let iv: [UInt8]

    /// P_SHA256(secret, seed) cut into a 32-byte signing key, a 32-byte encrypting key and a 16-byte IV.
    init(secret: [UInt8], seed: [UInt8]) {
        let bytes = Self.pSHA256(secret: secret, seed: seed, length: 80)
        signing = SymmetricKey(data: bytes[0..<32])
        encrypting = SymmetricKey(data: bytes[32..<64])
        iv = Array(bytes[64..<80])
    }

    static func pSHA256(secret: [UInt8], seed: [UInt8], length: Int) -> [UInt8] {
        let key = SymmetricKey(data: secret)
        var a = Array(HMAC<SHA256>.authenticationCode(for: seed, using: key))
        var out: [UInt8] = []
        while out.count < length {
            out += HMAC<SHA256>.authenticationCode(for: a + seed, using: key)
            a = Array(HMAC<SHA256>.authenticationCode(for: a, using: key))
        }
        return Array(out.prefix(length))
    }
}

/// What a client needs to secure a channel beyond None.
public struct ChannelSecurity: Sendable {
    public var policy: SecurityPolicy
    public var mode: MessageSecurityMode
    public var identity: ApplicationIdentity?
    /// Server certificates trusted; nil: any (only for looking around, as `twin opcua browse --trust-any-server` does).
    public var trust: TrustList?

    public init(policy: SecurityPolicy, mode: MessageSecurityMode, identity: ApplicationIdentity?, trust: TrustList?) {
        self.policy = policy
        self.mode = mode
        self.identity = identity
        self.trust = trust
    }

    public static let none = ChannelSecurity(policy: .none, mode: .none, identity: nil, trust: nil)
    public var isNone: Bool { policy == .none }
}

/// The security state of one channel: the peer certificate and the keys of each token.
/// Confined to the channel's event loop.
final class SecureChannelState {
    let security: ChannelSecurity
    let server: PeerCertificate?
    /// Keys by token id: what twin sends with, what the server sends with.
    var tokens: [UInt32: (local: SymmetricKeys, remote: SymmetricKeys)] = [:]

    init(security: ChannelSecurity, server: PeerCertificate?) {
        self.security = security
        self.server = server
    }

    var secured: Bool { security.policy != .none }

    func install(token: UInt32, clientNonce: [UInt8], serverNonce: [UInt8]) {
        tokens[token] = (SymmetricKeys(secret: serverNonce, seed: clientNonce), SymmetricKeys(secret: clientNonce, seed: serverNonce))
        // Keep the two newest: the server may still answer with the previous token for a while.
        if tokens.count > 2, let oldest = tokens.keys.min() { tokens[oldest] = nil }
    }

    static func sequenceHeader(_ sequence: UInt32, _ requestId: UInt32) -> [UInt8] {
        var w = UAWriter()
        w.uint32(sequence)
        w.uint32(requestId)
        return w.bytes
    }

    static func header(_ type: String, _ chunk: UInt8, size: Int) -> [UInt8] {
        var w = UAWriter()
        w.raw(Array(type.utf8))
        w.byte(chunk)
        w.uint32(UInt32(size))
        return w.bytes
    }

    // MARK: OpenSecureChannel (asymmetric)

    /// The whole OPN message, signed with twin's key and encrypted for the server.
    func sealAsymmetric(channelId: UInt32, sequence: UInt32, requestId: UInt32, body: [UInt8]) throws -> [UInt8] {
        guard let identity = security.identity, let server else { throw UAError(.badSecurityChecksFailed, "no certificate for a secured channel") }
        var securityHeader = UAWriter()
        securityHeader.uint32(channelId)
        securityHeader.string(security.policy.rawValue)
        securityHeader.byteString(identity.certificate)
        securityHeader.byteString(server.thumbprint)
        let plainBlock = server.keyBytes - 42
        let signatureSize = identity.keyBytes
        let extra = server.keyBytes > 256
        var plain = Self.sequenceHeader(sequence, requestId) + body
        let used = plain.count + 1 + (extra ? 1 : 0) + signatureSize
        let padding = (plainBlock - used % plainBlock) % plainBlock
        plain.append(UInt8(padding & 0xFF))
        plain += [UInt8](repeating: UInt8(padding & 0xFF), count: padding)
        if extra { plain.append(UInt8(padding >> 8)) }
        let blocks = (plain.count + signatureSize) / plainBlock
        let size = 8 + securityHeader.bytes.count + blocks * server.keyBytes
        let prefix = Self.header("OPN", UInt8(ascii: "F"), size: size) + securityHeader.bytes
        let signature = try identity.sign(prefix + plain)
        return prefix + (try server.encrypt(plain + signature))
    }

    /// The OPN answer's plaintext from its sequence header on (padding and signature removed).
    func openAsymmetric(header: [UInt8], body: [UInt8], securityEnd: Int, senderCertificate: [UInt8]?, receiverThumbprint: [UInt8]?) throws(UAError) -> ArraySlice<UInt8> {
        guard secured else { return body[securityEnd...] }
        guard let identity = security.identity, let server else { throw UAError(.badSecurityChecksFailed, "no certificate for a secured channel") }
        guard senderCertificate == server.der else { throw UAError(.badCertificateInvalid, "the server answered with another certificate than its endpoint's") }
        guard receiverThumbprint == identity.thumbprint else { throw UAError(.badCertificateInvalid, "the answer was encrypted for another certificate") }
        let plain = try identity.decrypt(body[securityEnd...])
        let signatureSize = server.keyBytes
        guard plain.count >= 8 + 1 + signatureSize else { throw UAError(.badSecurityChecksFailed, "OpenSecureChannel answer too short") }
        let signed = header + body[..<securityEnd] + plain[..<(plain.count - signatureSize)]
        guard server.verify(plain[(plain.count - signatureSize)...], for: signed) else {
            throw UAError(.badSecurityChecksFailed, "the OpenSecureChannel answer's signature does not verify with the server certificate")
        }
        return try Self.unpad(plain, end: plain.count - signatureSize, extra: identity.keyBytes > 256)
    }

    /// Strips PaddingSize, the padding and (for keys over 2048 bits) ExtraPaddingSize before `end`.
    static func unpad(_ plain: [UInt8], end: Int, extra: Bool) throws(UAError) -> ArraySlice<UInt8> {
        guard end >= 10 else { throw UAError(.badSecurityChecksFailed, "message too short for its padding") }
        let size = extra ? Int(plain[end - 1]) << 8 | Int(plain[end - 2]) : Int(plain[end - 1])
        let bodyEnd = end - (extra ? 2 : 1) - size
        guard bodyEnd >= 8 else { throw UAError(.badSecurityChecksFailed, "padding of \(size) bytes does not fit") }
        return plain[0..<bodyEnd]
    }

    // MARK: Messages (symmetric)

    /// Room for the body in one chunk of `chunkSize` bytes.
    func symmetricRoom(chunkSize: Int) -> Int {
        switch security.mode {
        case .none: return chunkSize - 16 - 8
        case .sign: return chunkSize - 16 - 8 - 32
        case .signAndEncrypt: return (chunkSize - 16) / 16 * 16 - 8 - 32 - 1
        }
    }

    func sealSymmetric(type: String, chunk: UInt8, channelId: UInt32, tokenId: UInt32, sequence: UInt32, requestId: UInt32, body: ArraySlice<UInt8>) throws -> [UInt8] {
        guard let keys = tokens[tokenId]?.local else { throw UAError(.badSecureChannelTokenUnknown, "no keys for token \(tokenId)") }
        var plain = Self.sequenceHeader(sequence, requestId) + body
        if security.mode == .signAndEncrypt {
            let used = plain.count + 1 + 32
            let padding = (16 - used % 16) % 16
            plain.append(UInt8(padding))
            plain += [UInt8](repeating: UInt8(padding), count: padding)
        }
        var ids = UAWriter()
        ids.uint32(channelId)
        ids.uint32(tokenId)
        let prefix = Self.header(type, chunk, size: 8 + 8 + plain.count + 32) + ids.bytes
        let signature = Array(HMAC<SHA256>.authenticationCode(for: prefix + plain, using: keys.signing))
        if security.mode == .sign { return prefix + plain + signature }
        let encrypted = try AES._CBC.encrypt(plain + signature, using: keys.encrypting, iv: try AES._CBC.IV(ivBytes: keys.iv), noPadding: true)
        return prefix + [UInt8](encrypted)
    }

    /// A message's plaintext from its sequence header on, checked and decrypted.
    func openSymmetric(header: [UInt8], body: [UInt8], tokenId: UInt32) throws(UAError) -> ArraySlice<UInt8> {
        guard secured else { return body[8...] }
        guard let keys = tokens[tokenId]?.remote else { throw UAError(.badSecureChannelTokenUnknown, "a message under token \(tokenId), which twin does not hold") }
        var rest = Array(body[8...])
        if security.mode == .signAndEncrypt {
            guard !rest.isEmpty, rest.count % 16 == 0 else { throw UAError(.badSecurityChecksFailed, "encrypted part of \(rest.count) bytes is not whole AES blocks") }
            do {
                rest = [UInt8](try AES._CBC.decrypt(rest, using: keys.encrypting, iv: try AES._CBC.IV(ivBytes: keys.iv), noPadding: true))
            } catch {
                throw UAError(.badSecurityChecksFailed, "cannot decrypt a message")
            }
        }
        guard rest.count >= 8 + 32 else { throw UAError(.badSecurityChecksFailed, "message too short for its signature") }
        let signed = header + body[0..<8] + rest[..<(rest.count - 32)]
        guard HMAC<SHA256>.isValidAuthenticationCode(rest[(rest.count - 32)...], authenticating: signed, using: keys.signing) else {
            throw UAError(.badSecurityChecksFailed, "a message's signature does not verify")
        }
        if security.mode == .signAndEncrypt {
            let end = rest.count - 32
            let padding = Int(rest[end - 1])
            guard end - 1 - padding >= 8 else { throw UAError(.badSecurityChecksFailed, "padding of \(padding) bytes does not fit") }
            return rest[0..<(end - 1 - padding)]
        }
        return rest[0..<(rest.count - 32)]
    }
}
