#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// sd_notify(3) without libsystemd: one datagram to `$NOTIFY_SOCKET`. A no-op outside systemd.
enum SystemdNotifier {
    /// With `WatchdogSec=` set, systemd expects WATCHDOG=1 at least every WATCHDOG_USEC; this
    /// sends it at half that from a task on the cooperative pool, so a daemon whose pool is stuck
    /// stops pinging and is restarted.
    static func startWatchdog(environment: [String: String]) {
        guard let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0 else { return }
        if let pid = environment["WATCHDOG_PID"].flatMap(Int32.init), pid != getpid() { return }
        let interval = Duration.microseconds(Int64(usec / 2))
        Task.detached {
            while !Task.isCancelled {
                notify("WATCHDOG=1")
                try? await Task.sleep(for: interval)
            }
        }
    }

    static func notify(_ state: String) {
        guard let path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        _ = state.withCString { message in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, message, strlen(message), 0, $0, length)
                }
            }
        }
        #endif
    }
}
