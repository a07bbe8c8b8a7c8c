import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import TwinClient
import TwinCore

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json, csv
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(help: ArgumentHelp("twind address: HOST:PORT or unix:PATH (TWIN_SERVER).", valueName: "addr"))
    var server: String?

    @Option(name: [.short, .long], help: "Output format: table, json (one JSON object per line) or csv (history, devices).")
    var output: OutputFormat = .table

    func address() throws -> NetworkAddress {
        do {
            return try TwinConnection.resolve(flag: server, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError(error.message)
        }
    }

    /// Runs `body` against the server; any failure becomes one line on stderr and its exit code.
    func run<R: Sendable>(_ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        let address = try address()
        do {
            return try await TwinConnection.with(address, credentials: Credentials(server: address), body)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error, address: address)
        }
    }
}

/// Prints one line for an error and returns the exit to throw.
func fail(_ error: any Error, address: NetworkAddress) -> ExitCode {
    let (code, message) = TwinExitCode.describe(error, server: address)
    Terminal.err("twin: \(message)")
    return ExitCode(code)
}

/// Unbuffered output (print is buffered when piped, which would stall `twin watch | jq`).
enum Terminal {
    static func out(_ line: String) { write(1, line + "\n") }
    static func raw(_ text: String) { write(1, text) }
    static func err(_ line: String) { write(2, line + "\n") }

    /// Writes everything; a closed pipe (`twin history … | head`) ends twin quietly, as for any
    /// Unix filter.
    static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                exit(errno == EPIPE ? 0 : 1)
            }
            offset += n
        }
    }
    static var stdoutIsTTY: Bool { isatty(1) == 1 }
    static var stderrIsTTY: Bool { isatty(2) == 1 }

    static var width: Int {
        var size = winsize()
        if ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return 120
    }
}
