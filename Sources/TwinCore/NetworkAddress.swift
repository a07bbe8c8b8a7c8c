/// Where a server listens or a client connects: `HOST:PORT`, `[IPv6]:PORT` or `unix:PATH`.
public enum NetworkAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    /// The port twind listens on by default (T9 for "twin").
    public static let defaultPort = 8946
    public static let defaultTCP = NetworkAddress.tcp(host: "127.0.0.1", port: defaultPort)

    /// Parses `HOST:PORT`, `[V6]:PORT`, `unix:PATH` (or `unix://PATH`). Port 0 asks for a free port.
    public static func parse(_ text: String) throws(TwinError) -> NetworkAddress {
        if text.hasPrefix("unix:") {
            var path = String(text.dropFirst(5))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
            if path.isEmpty { throw .invalidArgument("address '\(text)': unix socket path is empty") }
            if path.utf8.count > 107 { throw .invalidArgument("address '\(text)': unix socket path is longer than 107 bytes") }
            return .unix(path: path)
        }
        guard let colon = text.lastIndex(of: ":") else {
            throw .invalidArgument("address '\(text)' is not HOST:PORT, [IPv6]:PORT or unix:PATH")
        }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw .invalidArgument("address '\(text)': port '\(portText)' is not a number from 0 to 65535")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { throw .invalidArgument("address '\(text)': host is empty (use 0.0.0.0 for every interface)") }
        return .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}
