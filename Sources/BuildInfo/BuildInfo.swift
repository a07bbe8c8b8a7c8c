/// What `--version` prints: the release and the git commit of the build (`commit` is written
/// at build time by the BuildInfoPlugin).
public enum BuildInfo {
    public static let version = "0.4.0"

    public static var description: String { "\(version) (commit \(commit))" }
}
