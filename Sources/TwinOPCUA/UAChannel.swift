import NIOCore
import NIOPosix

/// An `opc.tcp://HOST:PORT/path` endpoint URL.
public struct EndpointURL: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var text: String

    public init(_ text: String) throws(UAError) {
        guard text.utf8.count <= 4096, text.hasPrefix("opc.tcp://") else {
            throw UAError(.badTcpEndpointUrlInvalid, "endpoint must be opc.tcp://HOST:PORT[/path], got '\(text.prefix(200))'")
        }
        let rest = text.dropFirst("opc.tcp://".count)
        let authority = rest.prefix { $0 != "/" }
        var host = String(authority)
        var port = 4840
        if authority.hasPrefix("[") {  // [::1]:4840
            guard let close = authority.firstIndex(of: "]") else { throw UAError(.badTcpEndpointUrlInvalid, "unclosed [ in '\(text.prefix(200))'") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw UAError(.badTcpEndpointUrlInvalid, "bad port in '\(text.prefix(200))'") }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                throw UAError(.badTcpEndpointUrlInvalid, "bad port in '\(text.prefix(200))'")
            }
            host = String(authority[..<colon])
            port = p
        }
        guard !host.isEmpty else { throw UAError(.badTcpEndpointUrlInvalid, "no host in '\(text.prefix(200))'") }
        self.host = host
        self.port = port
        self.text = text
    }

    public var description: String { text }
}

/// One UA-TCP message chunk as it came off the wire (OPC 10000-6 §7.1.2).
struct UAFrame {
    var type: String
    var chunk: UInt8
    var body: [UInt8]
}

/// Splits the byte stream into chunks; a chunk over the size twind announced is an error.
final class UAFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = UAFrame
    let maxChunk: Int

    init(maxChunk: Int) { self.maxChunk = maxChunk }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard buffer.readableBytes >= 8, let size = buffer.getInteger(at: buffer.readerIndex + 4, endianness: .little, as: UInt32.self) else {
            return .needMoreData
        }
        guard size >= 8, Int(size) <= maxChunk else {
            throw UAError(.badTcpMessageTooLarge, "the server sent a chunk of \(size) bytes (at most \(maxChunk))")
        }
        guard buffer.readableBytes >= Int(size), let bytes = buffer.readBytes(length: Int(size)) else { return .needMoreData }
        let type = String(decoding: bytes[0..<3], as: UTF8.self)
        context.fireChannelRead(wrapInboundOut(UAFrame(type: type, chunk: bytes[3], body: Array(bytes[8...]))))
        return .continue
    }
}

/// What the server's Acknowledge allowed.
struct UALimits: Sendable {
    var sendChunk: Int
    var maxResponse: Int
}

/// The secure channel (SecurityPolicy None) over one TCP connection: Hello/Acknowledge, message
/// chunks out and in, requests matched to responses by request id, timeouts. All of its state is
/// touched on the channel's event loop only.
final class UAChannelHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = UAFrame
    typealias OutboundOut = ByteBuffer

    /// The chunk size twind announces and takes.
    static let receiveChunk: UInt32 = 65_536
    /// The largest response twind reassembles.
    static let maxMessage = 16 << 20

    private struct Pending {
        var promise: EventLoopPromise<[UInt8]>
        var partial: [UInt8] = []
        var timeout: Scheduled<Void>?
    }

    private var context: ChannelHandlerContext?
    private var hello: EventLoopPromise<UALimits>?
    private var pending: [UInt32: Pending] = [:]
    private var lastRequestId: UInt32 = 0
    private var sequence: UInt32 = 0
    private var limits = UALimits(sendChunk: 8192, maxResponse: UAChannelHandler.maxMessage)
    private var failure: UAError?
    var channelId: UInt32 = 0
    var tokenId: UInt32 = 0
    /// Policy, mode, certificates and token keys; set before the channel opens.
    var secure = SecureChannelState(security: .none, server: nil)

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func sayHello(endpoint: String, promise: EventLoopPromise<UALimits>) {
        hello = promise
        var w = UAWriter()
        w.uint32(0)  // protocol version
        w.uint32(Self.receiveChunk)  // receive buffer size
        w.uint32(Self.receiveChunk)  // send buffer size
        w.uint32(UInt32(Self.maxMessage))  // max message size
        w.uint32(0)  // max chunk count: no limit
        w.string(endpoint)
        write(type: "HEL", chunk: UInt8(ascii: "F"), w.bytes)
    }

    /// Sends a request (the message body after the sequence header) and completes `promise`
    /// with the response body, or fails it after `timeout`.
    func send(type: String, body: [UInt8], timeout: TimeAmount, promise: EventLoopPromise<[UInt8]>) {
        guard let context, failure == nil else {
            promise.fail(failure ?? UAError(.badNotConnected, "not connected"))
            return
        }
        lastRequestId = lastRequestId == UInt32.max ? 1 : lastRequestId + 1
        let id = lastRequestId
        let timer = context.eventLoop.scheduleTask(in: timeout) { [weak self] () -> Void in
            self?.complete(id, .failure(UAError(.badTimeout, "no answer within \(timeout.nanoseconds / 1_000_000) ms")))
        }
        pending[id] = Pending(promise: promise, timeout: timer)
        do {
            if secure.secured {
                if type == "OPN" {
                    sequence = nextSequence()
                    writeRaw(try secure.sealAsymmetric(channelId: channelId, sequence: sequence, requestId: id, body: body), flush: true)
                } else {
                    let room = max(1, secure.symmetricRoom(chunkSize: limits.sendChunk))
                    var offset = 0
                    repeat {
                        let end = min(body.count, offset + room)
                        let last = end == body.count
                        sequence = nextSequence()
                        writeRaw(try secure.sealSymmetric(type: type, chunk: UInt8(ascii: last ? "F" : "C"), channelId: channelId, tokenId: tokenId,
                                                          sequence: sequence, requestId: id, body: body[offset..<end]), flush: last)
                        offset = end
                    } while offset < body.count
                }
                return
            }
        } catch {
            complete(id, .failure(error as? UAError ?? UAError(.badEncodingError, "cannot secure the request: \(error)")))
            return
        }
        var security = UAWriter()
        if type == "OPN" {
            security.string(SecurityPolicy.none.rawValue)
            security.byteString(nil)
            security.byteString(nil)
        } else {
            security.uint32(tokenId)
        }
        let overhead = 8 + 4 + security.bytes.count + 8
        let room = max(1, limits.sendChunk - overhead)
        var offset = 0
        repeat {
            let end = min(body.count, offset + room)
            let last = end == body.count
            sequence = nextSequence()
            var w = UAWriter()
            w.uint32(channelId)
            w.raw(security.bytes)
            w.uint32(sequence)
            w.uint32(id)
            w.raw(body[offset..<end])
            write(type: type, chunk: UInt8(ascii: last ? "F" : "C"), w.bytes, flush: last)
            offset = end
        } while offset < body.count
    }

    private func nextSequence() -> UInt32 {
        sequence >= UInt32.max - 1024 ? 1 : sequence + 1
    }

    private func writeRaw(_ bytes: [UInt8], flush: Bool) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        if flush {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        } else {
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
    }

    private func write(type: String, chunk: UInt8, _ payload: [UInt8], flush: Bool = true) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: payload.count + 8)
        buffer.writeBytes(Array(type.utf8))
        buffer.writeInteger(chunk)
        buffer.writeInteger(UInt32(payload.count + 8), endianness: .little)
        buffer.writeBytes(payload)
        if flush {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        } else {
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        do {
            try handle(frame)
        } catch {
            fail(error)
            context.close(promise: nil)
        }
    }

    private func handle(_ frame: UAFrame) throws(UAError) {
        var r = UAReader(frame.body)
        switch frame.type {
        case "ACK":
            guard let hello else { throw UAError(.badTcpMessageTypeInvalid, "an Acknowledge nobody asked for") }
            self.hello = nil
            _ = try r.uint32()  // protocol version
            let serverReceive = try r.uint32()
            _ = try r.uint32()  // server send buffer
            let serverMaxMessage = try r.uint32()
            _ = try r.uint32()
            guard serverReceive >= 8192 else { throw UAError(.badTcpNotEnoughResources, "server receive buffer of \(serverReceive) bytes (at least 8192)") }
            limits.sendChunk = Int(min(serverReceive, Self.receiveChunk))
            _ = serverMaxMessage
            hello.succeed(limits)
        case "ERR":
            let code = StatusCode(try r.uint32())
            let reason = try r.string() ?? ""
            throw UAError(code, reason.isEmpty ? "the server closed the connection" : "the server closed the connection: \(reason.prefix(300))")
        case "OPN", "MSG":
            let header = SecureChannelState.header(frame.type, frame.chunk, size: frame.body.count + 8)
            let channel = try r.uint32()
            let plain: ArraySlice<UInt8>
            if frame.type == "OPN" {
                let policy = try r.string()
                let sender = try r.byteString()
                let receiver = try r.byteString()
                guard policy == secure.security.policy.rawValue else { throw UAError(.badSecurityPolicyRejected, "the server answered with policy \((policy ?? "").prefix(80))") }
                plain = try secure.openAsymmetric(header: header, body: frame.body, securityEnd: r.position, senderCertificate: sender, receiverThumbprint: receiver)
            } else {
                guard channel == channelId else { throw UAError(.badTcpSecureChannelUnknown, "message for secure channel \(channel), not \(channelId)") }
                let token = try r.uint32()
                plain = try secure.openSymmetric(header: header, body: frame.body, tokenId: token)
            }
            var p = UAReader(Array(plain))
            _ = try p.uint32()  // sequence number
            let requestId = try p.uint32()
            let rest = p.bytes[p.position...]
            guard var p = pending[requestId] else { return }  // timed out before: dropped
            switch frame.chunk {
            case UInt8(ascii: "A"):
                var abort = UAReader(Array(rest))
                let code = StatusCode(try abort.uint32())
                let reason = try abort.string() ?? ""
                complete(requestId, .failure(UAError(code, "the server aborted the response: \(reason.prefix(300))")))
            case UInt8(ascii: "C"), UInt8(ascii: "F"):
                guard p.partial.count + rest.count <= limits.maxResponse else {
                    complete(requestId, .failure(UAError(.badResponseTooLarge, "response over \(limits.maxResponse) bytes")))
                    return
                }
                p.partial.append(contentsOf: rest)
                if frame.chunk == UInt8(ascii: "F") {
                    pending[requestId] = p
                    complete(requestId, .success(p.partial))
                } else {
                    pending[requestId] = p
                }
            default:
                throw UAError(.badTcpMessageTypeInvalid, "chunk type \(frame.chunk)")
            }
        default:
            throw UAError(.badTcpMessageTypeInvalid, "message type '\(frame.type.prefix(3))'")
        }
    }

    private func complete(_ id: UInt32, _ result: Result<[UInt8], UAError>) {
        guard let p = pending.removeValue(forKey: id) else { return }
        p.timeout?.cancel()
        switch result {
        case .success(let bytes): p.promise.succeed(bytes)
        case .failure(let error): p.promise.fail(error)
        }
    }

    private func fail(_ error: UAError) {
        if failure == nil { failure = error }
        hello?.fail(error)
        hello = nil
        let all = pending
        pending = [:]
        for p in all.values {
            p.timeout?.cancel()
            p.promise.fail(error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(failure ?? UAError(.badConnectionClosed, "the server closed the connection"))
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error as? UAError ?? UAError(.badCommunicationError, "\(error)"))
        context.close(promise: nil)
    }

    var isOpen: Bool { failure == nil && context != nil }
    var closedReason: UAError? { failure }
}
