import CArgon2
import Foundation
import Crypto
import TwinCore

/// Argon2id password hashes (libargon2), in the standard encoded form
/// `$argon2id$v=19$m=…,t=…,p=…$salt$hash`, which carries its parameters: a hash made with a lower
/// cost than the configured one is recognised (`needsRehash`) and replaced at the next login.
public struct PasswordHasher: PasswordHashing, Equatable {
    /// Iterations, memory in KiB, lanes.
    public var iterations: UInt32
    public var memoryKiB: UInt32
    public var parallelism: UInt32

    /// OWASP's Argon2id minimum is m=19 MiB, t=2, p=1; the default goes above it.
    public static let standard = PasswordHasher(iterations: 3, memoryKiB: 64 * 1024, parallelism: 1)
    /// Cheap parameters for tests only.
    public static let testing = PasswordHasher(iterations: 1, memoryKiB: 1024, parallelism: 1)

    public init(iterations: UInt32, memoryKiB: UInt32, parallelism: UInt32) {
        self.iterations = iterations
        self.memoryKiB = memoryKiB
        self.parallelism = parallelism
    }

    /// Hashes a password with a fresh 16-byte salt.
    public func hash(_ password: String) throws(TwinError) -> String {
        let salt = SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) }
        let pw = Array(password.utf8)
        let length = argon2_encodedlen(iterations, memoryKiB, parallelism, UInt32(salt.count), 32, Argon2_id)
        var encoded = [CChar](repeating: 0, count: length)
        let status = argon2id_hash_encoded(iterations, memoryKiB, parallelism, pw, pw.count, salt, salt.count, 32, &encoded, length)
        guard status == ARGON2_OK.rawValue else {
            throw .internalError("password hashing failed: \(String(cString: argon2_error_message(status)))")
        }
        return String(decoding: encoded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// True when `password` matches the encoded hash (constant time inside libargon2).
    public static func verify(_ password: String, against encoded: String) -> Bool {
        let pw = Array(password.utf8)
        return argon2id_verify(encoded, pw, pw.count) == ARGON2_OK.rawValue
    }

    public func verify(_ password: String, against encoded: String) -> Bool { Self.verify(password, against: encoded) }

    /// With the standard cost, a hash made once with it (of a random string nobody knows)
    /// serves; other costs (tests) make theirs now.
    public func decoy() throws(TwinError) -> String { self == .standard ? Self.standardDecoy : try hash(UUID().uuidString) }
    /// A one-off `PasswordHasher.standard.hash` of a random string nobody knows.
    public static let standardDecoy = "$argon2id$v=19$m=65536,t=3,p=1$3NMZuZ1nbjMTNOWOit1uxQ$MOG+APaEDA3djtSMVBHmtP/5/Qwb2RlaXZPAo1BqsuE"

    /// True when the hash was made with weaker parameters than these.
    public func needsRehash(_ encoded: String) -> Bool {
        guard let parameters = Self.parameters(encoded) else { return true }
        return parameters.m < memoryKiB || parameters.t < iterations || parameters.p < parallelism
    }

    /// m, t and p of an encoded hash.
    static func parameters(_ encoded: String) -> (m: UInt32, t: UInt32, p: UInt32)? {
        let parts = encoded.split(separator: "$")
        guard parts.count >= 4, parts[0] == "argon2id" else { return nil }
        var values: [Substring: UInt32] = [:]
        for pair in parts[2].split(separator: ",") {
            let kv = pair.split(separator: "=")
            if kv.count == 2, let v = UInt32(kv[1]) { values[kv[0]] = v }
        }
        guard let m = values["m"], let t = values["t"], let p = values["p"] else { return nil }
        return (m, t, p)
    }
}
