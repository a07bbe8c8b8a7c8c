/// The console's files, compiled into the binary (`resources: [.embedInCode("Assets")]`), so
/// twind serves them with no files beside it and no internet.
enum ConsoleAssets {
    struct File: Sendable {
        let type: String
        let bytes: [UInt8]
    }

    static let files: [String: File] = [
        "index.html": File(type: "text/html; charset=utf-8", bytes: PackageResources.index_html),
        "app.js": File(type: "text/javascript; charset=utf-8", bytes: PackageResources.app_js),
        "style.css": File(type: "text/css; charset=utf-8", bytes: PackageResources.style_css),
    ]
}
