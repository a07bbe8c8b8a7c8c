#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where twin keeps things by default; shared by the daemon and the CLI.
public enum Paths {
    /// `$STATE_DIRECTORY` under systemd, else `$XDG_STATE_HOME/twin`, else `~/.local/state/twin`.
    public static func defaultDataDirectory(environment: [String: String]) -> String {
        if let dir = environment["STATE_DIRECTORY"], !dir.isEmpty {
            // systemd may pass several, colon-separated; the first is ours.
            return String(dir.split(separator: ":").first ?? Substring(dir))
        }
        if let xdg = environment["XDG_STATE_HOME"], !xdg.isEmpty { return xdg + "/twin" }
        return home(environment: environment) + "/.local/state/twin"
    }

    /// `$HOME`, else the account's home from the password database; never a shared directory
    /// such as /tmp (where another user could plant a socket or read sessions). Without either,
    /// a path that does not exist, so that nothing is found or created by accident.
    public static func home(environment: [String: String]) -> String {
        if let home = environment["HOME"], !home.isEmpty { return home }
        if let entry = getpwuid(getuid()), let dir = entry.pointee.pw_dir {
            let home = String(cString: dir)
            if !home.isEmpty && home != "/" { return home }
        }
        return "/nonexistent"
    }

    /// The data directory of the packaged systemd unit.
    public static let systemDataDirectory = "/var/lib/twin"
}
