import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import TwinApp
import TwinCore

/// twind's `NoticeSender`: webhooks over AsyncHTTPClient (no redirects followed: the body and
/// its signature go only where configured), e-mail over `SMTPClient`.
///
/// A webhook request carries `Content-Type: application/json`, `Idempotency-Key`,
/// `X-Twin-Event` and, when the channel has a signing key, `X-Twin-Signature:
/// t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
public final class ChannelSender: NoticeSender {
    let client: HTTPClient
    let userAgent: String

    public init(userAgent: String = "twind") {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
        self.userAgent = userAgent
    }

    /// Closes the HTTP connections (at shutdown).
    public func shutdown() async {
        try? await client.shutdown()
    }

    public func deliver(_ message: OutgoingMessage, on channel: NotifyConfig.Channel) async -> DeliveryOutcome {
        switch channel.kind {
        case .email:
            let id = "\(UInt64(truncatingIfNeeded: stableHash(message.idempotencyKey)))@twind"
            let data = Payloads.email(message, from: channel.from, to: channel.to, messageID: id)
            return await SMTPClient.send(data, channel: channel, password: channel.secret, timeout: channel.timeout, group: MultiThreadedEventLoopGroup.singleton)
        case .webhook, .slack, .teams:
            return await post(message, on: channel)
        }
    }

    func post(_ message: OutgoingMessage, on channel: NotifyConfig.Channel) async -> DeliveryOutcome {
        let body: [UInt8]
        switch channel.kind {
        case .slack: body = Payloads.slack(message)
        case .teams: body = Payloads.teams(message)
        default: body = Payloads.webhook(message)
        }
        var request = HTTPClientRequest(url: channel.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: userAgent)
        request.headers.add(name: "Idempotency-Key", value: message.idempotencyKey)
        request.headers.add(name: "X-Twin-Event", value: message.isSummary ? "summary" : message.notices[0].event.rawValue)
        if channel.kind == .webhook && !channel.secret.isEmpty {
            let signature = Payloads.signature(body: body, key: channel.secret, timestamp: message.sentAt / Time.second)
            request.headers.add(name: "X-Twin-Signature", value: signature)
        }
        request.body = .bytes(ByteBuffer(bytes: body))
        let target = channel.target
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(channel.timeout))
            let said = String(buffer: try await response.body.collect(upTo: 4096)).prefix(200)
            let code = Int(response.status.code)
            let detail = "HTTP \(code)\(said.isEmpty ? "" : ": \(said.split(whereSeparator: \.isNewline).joined(separator: " "))")"
            switch code {
            case 200..<300:
                return .delivered("HTTP \(code)")
            case 408, 425, 429, 500...:
                let after = response.headers.first(name: "Retry-After").flatMap { Int64($0) }.map { min($0, 3600) * Time.second }
                return .retry("\(target) answered \(detail)", after: after)
            default:
                return .rejected("\(target) answered \(detail)")
            }
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return .retry("\(target) did not answer within \(DurationText.format(channel.timeout))", after: nil)
        } catch {
            return .retry("\(target): \(Self.describe(error))", after: nil)
        }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? NIOConnectionError {
            return e.connectionErrors.first.map { "cannot connect (\($0.error))" } ?? "cannot connect"
        }
        return String(describing: error)
    }
}
