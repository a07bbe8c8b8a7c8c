import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SwiftProtobuf
import Proto
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

    @Option(help: ArgumentHelp("Use TLS, trusting the CA certificate in this PEM file (TWIN_CA).", valueName: "file"))
    var ca: String?

    @Flag(help: "Use TLS with the system's trust store (implied by --ca, --cert).")
    var tls = false

    @Option(help: ArgumentHelp("Client certificate (PEM) for a twind that asks for one (TWIN_CERT).", valueName: "file"))
    var cert: String?

    @Option(help: ArgumentHelp("Private key (PEM) of the client certificate (TWIN_KEY).", valueName: "file"))
    var key: String?

    /// TLS settings from flags, else `TWIN_CA`/`TWIN_CERT`/`TWIN_KEY`; nil for plaintext.
    func clientTLS() throws -> ClientTLS? {
        let env = ProcessInfo.processInfo.environment
        func pick(_ flag: String?, _ name: String) -> String? { flag ?? env[name].flatMap { $0.isEmpty ? nil : $0 } }
        let tls = ClientTLS(ca: pick(ca, "TWIN_CA"), certificate: pick(cert, "TWIN_CERT"), privateKey: pick(key, "TWIN_KEY"))
        for path in [tls.ca, tls.certificate, tls.privateKey].compactMap({ $0 }) where access(path, R_OK) != 0 {
            throw ValidationError("cannot read \(path)")
        }
        if (tls.certificate == nil) != (tls.privateKey == nil) { throw ValidationError("--cert and --key go together") }
        return self.tls || tls != ClientTLS() ? tls : nil
    }

    /// An API key from `TWIN_API_KEY` (gateways): sent instead of the logged-in session.
    var apiKey: String? { ProcessInfo.processInfo.environment["TWIN_API_KEY"].flatMap { $0.isEmpty ? nil : $0 } }

    /// The logged-in session for `address` (nil when an API key is used instead).
    func credentials(_ address: NetworkAddress) throws -> Credentials? {
        apiKey == nil ? Credentials(server: address, tls: try clientTLS()) : nil
    }

    /// Connects to `address` with the TLS settings and the session or API key.
    func connect<R: Sendable>(
        _ address: NetworkAddress, credentials: Credentials?, _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> R
    ) async throws -> R {
        try await TwinConnection.with(address, tls: try clientTLS(), credentials: credentials, bearer: apiKey, body)
    }

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
            return try await connect(address, credentials: try credentials(address), body)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error, address: address)
        }
    }
}

extension GlobalOptions {
    /// Calls the plant service (see `run`).
    func twin<R: Sendable>(_ body: (Twin_V1_TwinService.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await run { try await body(Twin_V1_TwinService.Client(wrapping: $0)) }
    }

    /// Calls the model service (see `run`).
    func models<R: Sendable>(_ body: (Twin_V1_ModelService.Client<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await run { try await body(Twin_V1_ModelService.Client(wrapping: $0)) }
    }

    /// With `-o json`, prints one proto-JSON object per line and returns true.
    func printedJSON(_ messages: [some SwiftProtobuf.Message]) -> Bool {
        guard output == .json else { return false }
        for m in messages { Terminal.out(Format.protoJSON(m)) }
        return true
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
    /// A text file's contents ('-': standard input); exit 66 when it cannot be read as UTF-8.
    static func readText(_ file: String) throws -> String {
        let data = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: file)
        guard let data, let text = String(data: data, encoding: .utf8) else {
            Terminal.err("cannot read \(file)")
            throw ExitCode(66)
        }
        return text
    }

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
