#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files for the user alone (mode 0600), replaced atomically: written beside, synced, renamed
/// over, so a crash leaves the old file or the new one, never half of one.
public enum PrivateFile {
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
    }
}
