import Foundation
import PackagePlugin

/// Writes the git commit the binaries are built from into `BuildInfo.commit` (for
/// `twind --version`, `twin --version`). Rewrites the file only when the commit changes, so
/// nothing recompiles otherwise.
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "Generated")
        let file = output.appending(path: "Commit.swift").path
        let root = context.package.directoryURL.path
        let script = """
            mkdir -p '\(output.path)'
            c=$(git -C '\(root)' rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
            if [ "$c" != unknown ] && [ -n "$(git -C '\(root)' status --porcelain --untracked-files=no 2>/dev/null)" ]; then c="$c-modified"; fi
            printf 'extension BuildInfo {\\n    /// The git commit the binary was built from.\\n    public static let commit = "%s"\\n}\\n' "$c" > '\(file).tmp'
            if cmp -s '\(file).tmp' '\(file)'; then rm '\(file).tmp'; else mv '\(file).tmp' '\(file)'; fi
            """
        return [
            .prebuildCommand(
                displayName: "Recording the git commit", executable: URL(fileURLWithPath: "/bin/sh"), arguments: ["-c", script],
                outputFilesDirectory: output)
        ]
    }
}
