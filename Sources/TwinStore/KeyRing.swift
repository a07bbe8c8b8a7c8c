#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import TwinCore

/// The master keys of a data directory, oldest first; the last one seals new data.
///
/// They come from, in order: a key file (`--key-file` / `TWIND_KEY_FILE`), the systemd credential
/// `$CREDENTIALS_DIRECTORY/twind.key` (`LoadCredential=` in the unit), `TWIND_KEY` (base64), and
/// otherwise `<data-dir>/twind.key`, created (0600) on first start. A key file holds one base64 key
/// per line (`#` comments allowed; rotation appends a line) or exactly 32 raw bytes. Key material
/// never appears in an error message.
public struct KeyRing: Sendable {
    public let keys: [MasterKey]
    /// Where the keys came from, for the log: never the keys themselves.
    public let source: String
    /// True when this start created the key file beside the data (the log should warn).
    public let generated: Bool
    /// The key file the keys were read from, when they came from one twind may rewrite.
    public var path: String? = nil

    public var current: MasterKey { keys[keys.count - 1] }

    public static func load(keyFile: String?, environment: [String: String], dataDirectory: String) throws(TwinError) -> KeyRing {
        if let path = keyFile ?? environment["TWIND_KEY_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            return KeyRing(keys: try read(path, what: "key file \(path)"), source: "key file \(path)", generated: false, path: path)
        }
        if let credentials = environment["CREDENTIALS_DIRECTORY"], !credentials.isEmpty,
           access(credentials + "/twind.key", R_OK) == 0 {
            let path = credentials + "/twind.key"
            // systemd owns the credential's permissions; it is readable by the service only.
            return KeyRing(keys: try read(path, what: "systemd credential twind.key", checkMode: false), source: "systemd credential", generated: false)
        }
        if let text = environment["TWIND_KEY"], !text.isEmpty {
            return KeyRing(keys: try parse(Array(text.utf8), what: "TWIND_KEY"), source: "TWIND_KEY", generated: false)
        }
        let path = dataDirectory + "/twind.key"
        if access(path, F_OK) == 0 {
            return KeyRing(keys: try read(path, what: "key file \(path)"), source: "key file \(path)", generated: false, path: path)
        }
        let key = MasterKey.generate()
        try create(path, contents: key.base64 + "\n")
        return KeyRing(keys: [key], source: "key file \(path) (generated)", generated: true, path: path)
    }

    /// Parses a key file's contents: base64 lines, or 32 raw bytes.
    public static func parse(_ bytes: [UInt8], what: String) throws(TwinError) -> [MasterKey] {
        if bytes.count == 32, String(validating: bytes, as: UTF8.self) == nil {
            return [try MasterKey(bytes: bytes)]
        }
        var keys: [MasterKey] = []
        for (n, line) in String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).enumerated() {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty || text.hasPrefix("#") { continue }
            guard let data = Data(base64Encoded: text), data.count == 32 else {
                throw .invalidArgument("\(what), line \(n + 1): not a base64-encoded 32-byte key")
            }
            keys.append(try MasterKey(bytes: Array(data)))
        }
        if keys.isEmpty { throw .invalidArgument("\(what) holds no key") }
        return keys
    }

    static func read(_ path: String, what: String, checkMode: Bool = true) throws(TwinError) -> [MasterKey] {
        var st = stat()
        guard stat(path, &st) == 0 else { throw .invalidArgument("\(what) cannot be read: \(String(cString: strerror(errno)))") }
        if checkMode && st.st_mode & 0o077 != 0 {
            throw .failedPrecondition(
                "\(what) can be read by other users (mode \(String(st.st_mode & 0o777, radix: 8))); run chmod 600 on it")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .invalidArgument("\(what) cannot be read")
        }
        return try parse(Array(data), what: what)
    }

    public static func create(_ path: String, contents: String) throws(TwinError) {
        try PrivateFile.create(path, contents: contents)
    }
}

extension MasterKey {
    /// The key as base64, for writing a key file.
    var base64: String { key.withUnsafeBytes { Data($0).base64EncodedString() } }
}
