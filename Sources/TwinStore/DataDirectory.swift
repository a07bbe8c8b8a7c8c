#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization
import TwinCore

/// The daemon's data directory: `users.db`, `health_data.db`, `models/`, the socket and the key.
///
/// Created with mode 0700 and locked (`flock`) for as long as the daemon runs, so two daemons can
/// never write the same files.
public final class DataDirectory: Sendable {
    public let path: String
    private let lockFD: Mutex<Int32>

    /// Creates (0700) and locks the directory. Throws `failedPrecondition` if another process
    /// holds it, and `unavailable` if it cannot be created.
    public init(path: String) throws(TwinError) {
        self.path = path
        try Self.makeDirectory(path)
        let lockPath = path + "/twind.lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 {
            throw .unavailable("cannot open \(lockPath): \(Self.errnoText())")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            close(fd)
            throw .failedPrecondition("data directory \(path) is in use by another twind (lock \(lockPath) is held)")
        }
        lockFD = Mutex(fd)
    }

    /// Releases the lock (when the daemon has stopped); another daemon may then open the directory.
    public func unlock() {
        lockFD.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    deinit { unlock() }

    /// A file or folder inside the directory.
    public func file(_ name: String) -> String { path + "/" + name }

    /// Creates `path` and its parents; the last component gets mode 0700, and an existing
    /// directory that others can read is tightened to 0700.
    public static func makeDirectory(_ path: String) throws(TwinError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw .unavailable("cannot create data directory \(current): \(errnoText())")
            }
        }
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw .unavailable("data directory \(path) is not a directory")
        }
        if st.st_mode & 0o077 != 0, chmod(path, 0o700) != 0 {
            throw .unavailable("cannot restrict data directory \(path) to mode 0700: \(errnoText())")
        }
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
