/// Where twin keeps things by default; shared by the daemon and the CLI.
public enum Paths {
    /// `$STATE_DIRECTORY` under systemd, else `$XDG_STATE_HOME/twin`, else `~/.local/state/twin`.
    public static func defaultDataDirectory(environment: [String: String]) -> String {
        if let dir = environment["STATE_DIRECTORY"], !dir.isEmpty {
            // systemd may pass several, colon-separated; the first is ours.
            return String(dir.split(separator: ":").first ?? Substring(dir))
        }
        if let xdg = environment["XDG_STATE_HOME"], !xdg.isEmpty { return xdg + "/twin" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return home + "/.local/state/twin"
    }

    /// The data directory of the packaged systemd unit.
    public static let systemDataDirectory = "/var/lib/twin"
}
