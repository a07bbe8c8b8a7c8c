import Crypto
import TwinCore

/// A 32-byte master key and its public id (the first 4 bytes of a hash of it, so a store can say
/// which key a block needs without revealing anything about the key).
public struct MasterKey: Sendable {
    public let key: SymmetricKey
    public let id: UInt32

    /// Throws `invalidArgument` unless `bytes` is exactly 32 bytes.
    public init(bytes: [UInt8]) throws(TwinError) {
        guard bytes.count == 32 else {
            throw .invalidArgument("a master key must be 32 bytes, got \(bytes.count)")
        }
        key = SymmetricKey(data: bytes)
        var hash = SHA256()
        hash.update(data: Array("twin-key-id/v1".utf8))
        hash.update(data: bytes)
        let digest = Array(hash.finalize())
        id = UInt32(digest[0]) << 24 | UInt32(digest[1]) << 16 | UInt32(digest[2]) << 8 | UInt32(digest[3])
    }

    /// A new random key.
    public static func generate() -> MasterKey {
        let key = SymmetricKey(size: .bits256)
        let bytes = key.withUnsafeBytes { Array($0) }
        // A freshly generated 32-byte key always has the right length.
        return try! MasterKey(bytes: bytes)
    }
}

/// AES-256-GCM sealing of stored values, one data key per purpose derived from each master key
/// (HKDF-SHA256), with the key id in every block so keys can rotate without downtime.
///
/// `context` is the associated data: callers pass the block's place (database, table, row
/// identity), so a block copied to another row, or replayed there, fails to open.
///
/// Block layout: format byte, key id (4 bytes, big-endian), nonce (12), ciphertext, tag (16).
public struct Sealer: Sendable {
    public enum OpenError: Error, Equatable {
        /// The block needs a key this store does not have.
        case unknownKey(UInt32)
        /// The block was altered, moved to another place, or is not a sealed block.
        case tampered
    }

    static let format: UInt8 = 1
    static let overhead = 1 + 4 + 12 + 16
    let keys: [UInt32: SymmetricKey]
    public let currentKeyID: UInt32

    /// `keys` are all keys the store knows (old ones stay readable); new blocks use `current`.
    public init(purpose: String, keys: [MasterKey], current: MasterKey) {
        var derived: [UInt32: SymmetricKey] = [:]
        for k in keys + [current] {
            derived[k.id] = HKDF<SHA256>.deriveKey(
                inputKeyMaterial: k.key, salt: Array("twin/v1".utf8), info: Array("twin/v1/\(purpose)".utf8),
                outputByteCount: 32)
        }
        self.keys = derived
        currentKeyID = current.id
    }

    /// Seals `plaintext` bound to `context`.
    public func seal(_ plaintext: [UInt8], context: [UInt8]) -> [UInt8] {
        let id = currentKeyID
        var header: [UInt8] = [Self.format, UInt8(id >> 24), UInt8(id >> 16 & 0xff), UInt8(id >> 8 & 0xff), UInt8(id & 0xff)]
        // AES-GCM with a random nonce and a 32-byte key does not fail.
        let box = try! AES.GCM.seal(plaintext, using: keys[id]!, authenticating: header + context)
        header.append(contentsOf: box.combined!)
        return header
    }

    /// Opens a block sealed for `context`.
    public func open(_ block: [UInt8], context: [UInt8]) throws(OpenError) -> [UInt8] {
        guard block.count >= Self.overhead, block[0] == Self.format else { throw .tampered }
        let id = UInt32(block[1]) << 24 | UInt32(block[2]) << 16 | UInt32(block[3]) << 8 | UInt32(block[4])
        guard let key = keys[id] else { throw .unknownKey(id) }
        do {
            let box = try AES.GCM.SealedBox(combined: block[5...])
            return Array(try AES.GCM.open(box, using: key, authenticating: Array(block[0..<5]) + context))
        } catch {
            throw .tampered
        }
    }
}
