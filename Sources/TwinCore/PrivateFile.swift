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
