#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files for the user alone (mode 0600), replaced atomically: written beside, synced, renamed
/// over, and the directory synced, so a crash or a power cut leaves the old file or the new one,
/// never half of one and never neither.
public enum PrivateFile {
    /// fsync of a directory: makes a rename or a new file in it durable.
    public static func syncDirectory(of path: String) throws(TwinError) {
        var dir = path
        if let slash = dir.lastIndex(of: "/") { dir = slash == dir.startIndex ? "/" : String(dir[..<slash]) } else { dir = "." }
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .unavailable("cannot open \(dir) to sync it: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .unavailable("cannot sync \(dir): \(String(cString: strerror(errno)))") }
    }

    public static func replace(_ path: String, with bytes: [UInt8]) throws(TwinError) {
        let temporary = path + ".\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .unavailable("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .unavailable("cannot write \(path): \(reason)")
        }
        try syncDirectory(of: path)
    }
}

extension PrivateFile {
    /// Creates a new file (0600; an existing one is an error) holding `contents`, synced with
    /// its directory.
    public static func create(_ path: String, contents: String) throws(TwinError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .unavailable("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(contents.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            throw .unavailable("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        try syncDirectory(of: path)
    }

    /// A secret kept in a file (a password): refused when group or others can read the file,
    /// when it is empty or longer than `maxBytes`; its trailing newlines dropped.
    public static func readSecret(_ path: String, what: String = "password file", maxBytes: Int = 1024) throws(TwinError) -> String {
        var st = stat()
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .invalidArgument("cannot read the \(what) \(path)") }
        defer { close(fd) }
        guard fstat(fd, &st) == 0 else { throw .invalidArgument("cannot read the \(what) \(path)") }
        guard st.st_mode & 0o077 == 0 else {
            throw .invalidArgument("the \(what) \(path) can be read by other users (mode \(String(st.st_mode & 0o777, radix: 8))); run chmod 600 on it")
        }
        var bytes = [UInt8](repeating: 0, count: maxBytes + 2)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw .invalidArgument("cannot read the \(what) \(path)") }
        var text = String(decoding: bytes[0..<n], as: UTF8.self)
        while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        guard !text.isEmpty, text.utf8.count <= maxBytes else { throw .invalidArgument("the \(what) \(path) is empty or longer than \(maxBytes) bytes") }
        return text
    }
}
