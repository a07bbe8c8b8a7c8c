import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import TwinApp
import TwinCore

/// A small SMTP client (RFC 5321) on SwiftNIO: EHLO, STARTTLS (RFC 3207) or TLS from the first
/// byte, AUTH PLAIN or LOGIN (RFC 4954), MAIL/RCPT/DATA. A 4xx reply or a broken connection is
/// worth a retry; a 5xx reply is the server's refusal.
enum SMTPClient {
    struct Reply {
        var code: Int
        var lines: [String]
        var text: String { "\(code) \(lines.last ?? "")" }
    }

    struct Failure: Error {
        var outcome: DeliveryOutcome
    }

    /// Splits the byte stream into CRLF (or LF) lines.
    final class LineDecoder: ByteToMessageDecoder {
        typealias InboundOut = ByteBuffer
        func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
            guard let i = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
                if buffer.readableBytes > 64 << 10 { throw Failure(outcome: .retry("mail server sent a line longer than 64 KiB", after: nil)) }
                return .needMoreData
            }
            let length = i - buffer.readerIndex + 1
            context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: length)!))
            return .continue
        }
    }

    /// One line of a reply (RFC 5321 4.2): "250-text" (more lines follow) or "250 text" (the
    /// last); nil for anything else.
    static func replyLine(_ raw: String) -> (code: Int, text: String, more: Bool)? {
        let line = Array(raw.trimmingCharacters(in: .newlines).utf8)
        guard line.count >= 3, line[0...2].allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }), line[0] >= UInt8(ascii: "2"), line[0] <= UInt8(ascii: "5")
        else { return nil }
        let code = line[0...2].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        if line.count == 3 { return (code, "", false) }
        guard line[3] == UInt8(ascii: " ") || line[3] == UInt8(ascii: "-") else { return nil }
        return (code, String(decoding: line[4...], as: UTF8.self), line[3] == UInt8(ascii: "-"))
    }

    static func send(
        _ data: [UInt8], channel c: NotifyConfig.Channel, password: [UInt8], timeout: Nanos, group: any EventLoopGroup
    ) async -> DeliveryOutcome {
        do {
            return try await withThrowingTaskGroup(of: DeliveryOutcome.self) { tasks in
                tasks.addTask { try await session(data, channel: c, password: password, group: group) }
                tasks.addTask {
                    try await Task.sleep(for: .nanoseconds(timeout))
                    return .retry("mail server \(c.server):\(c.port) did not finish within \(DurationText.format(timeout))", after: nil)
                }
                let first = try await tasks.next()!
                tasks.cancelAll()
                return first
            }
        } catch let f as Failure {
            return f.outcome
        } catch {
            return .retry("mail server \(c.server):\(c.port): \(describe(error))", after: nil)
        }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? IOError { return e.description }
        if let e = error as? NIOSSLError { return "TLS: \(e)" }
        if let e = error as? BoringSSLError { return "TLS: \(e)" }
        return String(describing: error)
    }

    static func tlsContext(_ c: NotifyConfig.Channel) throws -> NIOSSLContext {
        var config = TLSConfiguration.makeClientConfiguration()
        if let ca = c.caFile { config.trustRoots = .file(ca) }
        return try NIOSSLContext(configuration: config)
    }

    static func session(_ data: [UInt8], channel c: NotifyConfig.Channel, password: [UInt8], group: any EventLoopGroup) async throws -> DeliveryOutcome {
        let context = c.tls == .none ? nil : try tlsContext(c)
        let host = c.server
        let connection = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .connect(host: host, port: c.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if c.tls == .tls, let context {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: host))
                    }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder()))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let raw = connection.channel
        return try await connection.executeThenClose { inbound, outbound in
            var lines = inbound.makeAsyncIterator()
            func reply() async throws -> Reply {
                var texts: [String] = []
                while true {
                    guard var buffer = try await lines.next() else {
                        throw Failure(outcome: .retry("mail server \(host) closed the connection", after: nil))
                    }
                    let line = String(decoding: buffer.readBytes(length: buffer.readableBytes) ?? [], as: UTF8.self)
                    guard let part = SMTPClient.replyLine(line) else {
                        throw Failure(outcome: .retry("mail server \(host) sent '\(line.prefix(80))', not an SMTP reply", after: nil))
                    }
                    texts.append(part.text)
                    if !part.more { return Reply(code: part.code, lines: texts) }
                }
            }
            func command(_ text: String, expect: Set<Int>, what: String) async throws -> Reply {
                try await outbound.write(ByteBuffer(string: text + "\r\n"))
                let r = try await reply()
                guard expect.contains(r.code) else { throw refusal(r, what) }
                return r
            }
            func refusal(_ r: Reply, _ what: String) -> Failure {
                let said = "\(what): \(r.text.prefix(200))"
                return Failure(outcome: r.code >= 500 ? .rejected("mail server refused \(said)") : .retry("mail server deferred \(said)", after: nil))
            }
            let greeting = try await reply()
            guard greeting.code == 220 else { throw refusal(greeting, "the connection") }
            var hello = try await command("EHLO twind", expect: [250], what: "EHLO")
            if c.tls == .starttls {
                guard hello.lines.contains(where: { $0.uppercased().hasPrefix("STARTTLS") }), let context else {
                    throw Failure(outcome: .rejected("mail server \(host) does not offer STARTTLS (set tls: tls for TLS from the start)"))
                }
                _ = try await command("STARTTLS", expect: [220], what: "STARTTLS")
                try await raw.pipeline.addHandler(try NIOSSLClientHandler(context: context, serverHostname: host), position: .first).get()
                hello = try await command("EHLO twind", expect: [250], what: "EHLO after STARTTLS")
            }
            if !c.username.isEmpty {
                let auth = hello.lines.first { $0.uppercased().hasPrefix("AUTH") }?.uppercased() ?? ""
                if auth.contains("PLAIN") || !auth.contains("LOGIN") {
                    let token = Data([0] + Array(c.username.utf8) + [0] + password).base64EncodedString()
                    _ = try await command("AUTH PLAIN \(token)", expect: [235], what: "the login of \(c.username)")
                } else {
                    _ = try await command("AUTH LOGIN", expect: [334], what: "AUTH LOGIN")
                    _ = try await command(Data(c.username.utf8).base64EncodedString(), expect: [334], what: "the user name")
                    _ = try await command(Data(password).base64EncodedString(), expect: [235], what: "the login of \(c.username)")
                }
            }
            _ = try await command("MAIL FROM:<\(c.from)>", expect: [250], what: "the sender \(c.from)")
            for rcpt in c.to { _ = try await command("RCPT TO:<\(rcpt)>", expect: [250, 251], what: "the recipient \(rcpt)") }
            _ = try await command("DATA", expect: [354], what: "DATA")
            try await outbound.write(ByteBuffer(bytes: data))
            let accepted = try await command(".", expect: [250], what: "the message")
            try? await outbound.write(ByteBuffer(string: "QUIT\r\n"))
            return .delivered(accepted.text)
        }
    }
}
