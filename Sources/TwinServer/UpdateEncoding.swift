import GRPCCore
import GRPCProtobuf
import GRPCNIOTransportHTTP2Posix
import NIOCore
import Proto
import SwiftProtobuf
import Synchronization
import TwinApp
import TwinCore
import TwinEngines

/// A message already in protobuf wire form, sent as is. One batch message is shared by every
/// subscriber that takes the same batch, so it is held in a `ByteBuffer`: copies share storage.
struct EncodedMessage: Sendable {
    var buffer: ByteBuffer

    init(bytes: [UInt8]) { buffer = ByteBuffer(bytes: bytes) }

    var bytes: [UInt8] { Array(buffer.readableBytesView) }
}

struct EncodedMessageSerializer: MessageSerializer {
    /// The NIO transport's bytes type is a struct holding one `ByteBuffer` (its initialiser from
    /// a buffer is internal). When its layout is exactly that, the shared buffer is handed over
    /// as is: no copy and no allocation per subscriber, which at 1,000 subscribers of a
    /// 1,000-device plant was 200 MB copied into fresh pages every second. Any other transport
    /// (in-process) gets a copy.
    static let sharesBuffers =
        MemoryLayout<GRPCNIOTransportBytes>.size == MemoryLayout<ByteBuffer>.size
        && MemoryLayout<GRPCNIOTransportBytes>.alignment == MemoryLayout<ByteBuffer>.alignment
        && MemoryLayout<GRPCNIOTransportBytes>.stride == MemoryLayout<ByteBuffer>.stride

    func serialize<Bytes: GRPCContiguousBytes>(_ message: EncodedMessage) throws -> Bytes {
        if Bytes.self == GRPCNIOTransportBytes.self && Self.sharesBuffers {
            return unsafeBitCast(message.buffer, to: Bytes.self)
        }
        return Bytes(message.buffer.readableBytesView)
    }
}

extension RPCRouter {
    /// Registers a method over its generated handler, taking one request and answering with
    /// messages already in wire form (`EncodedMessage`): the services that encode their answers
    /// off the transport (live updates, history).
    mutating func registerEncoded<Input: SwiftProtobuf.Message & Sendable>(
        _ descriptor: MethodDescriptor, request: Input.Type,
        _ handler: @Sendable @escaping (_ request: Input, _ context: ServerContext) async throws -> StreamingServerResponse<EncodedMessage>
    ) {
        registerHandler(forMethod: descriptor, deserializer: ProtobufDeserializer<Input>(), serializer: EncodedMessageSerializer()) { request, context in
            try await handler(try await ServerRequest(stream: request).message, context)
        }
    }
}

/// Builds `StreamUpdatesResponse` messages in wire form from snapshots encoded once per device
/// change, so a thousand subscribers of the same device cost one encoding, not a thousand.
///
/// The plant calls `refresh` with every changed snapshot before it publishes the change; a
/// subscriber then only concatenates cached bytes. Wire layout (see twin.proto):
/// StreamUpdatesResponse{ devices(1): DeviceUpdates{ updates(1): DeviceUpdate{ snapshot(1),
/// skipped(2) } }, sent_at(10) }. Repeated and embedded fields may be written by concatenation,
/// which is what makes the sharing possible.
final class SnapshotEncoder: Sendable {
    struct Entry {
        var version: UInt64
        /// The encoded DeviceSnapshot.
        var snapshot: [UInt8]
        /// The snapshot framed as one `updates` entry with skipped = 0.
        var framed: [UInt8]
    }

    /// By device index.
    private let entries = Mutex<[Entry?]>([])
    /// The devices of the last refresh and, once a subscriber built it, their message: most
    /// subscribers take exactly that batch, so it is assembled once and shared.
    private let latest = Mutex<(devices: [Int32], messages: [EncodedMessage]?)>(([], nil))
    /// Most bytes of device updates in one message (far below the 4 MiB default limit).
    static let maxMessageBytes = 1 << 20

    /// Encodes changed snapshots; called by the plant before it publishes them.
    func refresh(_ snapshots: [DeviceSnapshot]) {
        if snapshots.isEmpty { return }
        let encoded = snapshots.map { s in (s.index, Self.entry(s)) }
        defer { latest.withLock { $0 = (snapshots.map(\.index), nil) } }
        entries.withLock { table in
            for (index, entry) in encoded {
                let i = Int(index)
                if i >= table.count { table.append(contentsOf: repeatElement(nil, count: i - table.count + 1)) }
                if (table[i]?.version ?? 0) <= entry.version { table[i] = entry }
            }
        }
    }

    static func entry(_ snapshot: DeviceSnapshot) -> Entry {
        let bytes: [UInt8] = (try? snapshot.proto().serializedBytes()) ?? []
        var update: [UInt8] = []
        update.reserveCapacity(bytes.count + 8)
        Wire.field(1, bytes: bytes, into: &update)
        var framed: [UInt8] = []
        framed.reserveCapacity(update.count + 4)
        Wire.field(1, bytes: update, into: &framed)
        return Entry(version: snapshot.version, snapshot: bytes, framed: framed)
    }

    /// `devices` messages for these devices, at most `maxMessageBytes` of updates each. Devices
    /// never encoded yet (or with a sensor filter) are encoded from `live` on the spot.
    func devicesMessages(
        _ items: [(device: Int32, skipped: UInt64)], sensors: Set<String>, live: LivePlant, sentAt: Nanos
    ) -> [EncodedMessage] {
        guard sensors.isEmpty, items.allSatisfy({ $0.skipped == 0 }) else {
            return assemble(items, sensors: sensors, live: live, sentAt: sentAt)
        }
        let devices = items.map(\.device)
        if let shared = latest.withLock({ $0.devices == devices ? $0.messages : nil }) { return shared }
        let built = assemble(items, sensors: sensors, live: live, sentAt: sentAt)
        latest.withLock { if $0.devices == devices && $0.messages == nil { $0.messages = built } }
        return built
    }

    private func assemble(
        _ items: [(device: Int32, skipped: UInt64)], sensors: Set<String>, live: LivePlant, sentAt: Nanos
    ) -> [EncodedMessage] {
        var parts: [[UInt8]] = []
        parts.reserveCapacity(items.count)
        if sensors.isEmpty {
            var missing: [Int] = []
            entries.withLock { table in
                for (n, item) in items.enumerated() {
                    let i = Int(item.device)
                    guard i < table.count, let entry = table[i] else {
                        missing.append(n)
                        parts.append([])
                        continue
                    }
                    parts.append(item.skipped == 0 ? entry.framed : Self.framed(entry.snapshot, skipped: item.skipped))
                }
            }
            if !missing.isEmpty {
                let snapshots = live.snapshots(missing.map { items[$0].device })
                refresh(snapshots)
                var byIndex: [Int32: DeviceSnapshot] = [:]
                for s in snapshots { byIndex[s.index] = s }
                for n in missing {
                    if let s = byIndex[items[n].device] { parts[n] = Self.entry(s).framed }
                }
            }
        } else {
            var skipped: [Int32: UInt64] = [:]
            for item in items where item.skipped > 0 { skipped[item.device] = item.skipped }
            for s in live.snapshots(items.map(\.device)) {
                let bytes: [UInt8] = (try? s.proto(only: sensors).serializedBytes()) ?? []
                parts.append(Self.framed(bytes, skipped: skipped[s.index] ?? 0))
            }
        }
        return Self.messages(parts, sentAt: sentAt)
    }

    static func framed(_ snapshot: [UInt8], skipped: UInt64) -> [UInt8] {
        var update: [UInt8] = []
        update.reserveCapacity(snapshot.count + 16)
        Wire.field(1, bytes: snapshot, into: &update)
        if skipped > 0 {
            Wire.varint(2 << 3, into: &update)
            Wire.varint(skipped, into: &update)
        }
        var framed: [UInt8] = []
        Wire.field(1, bytes: update, into: &framed)
        return framed
    }

    /// Concatenates framed updates into as few messages as the size cap allows.
    static func messages(_ parts: [[UInt8]], sentAt: Nanos) -> [EncodedMessage] {
        let timestamp = Wire.timestamp(sentAt)
        var result: [EncodedMessage] = []
        var start = 0
        while start < parts.count {
            var end = start
            var size = 0
            while end < parts.count && (end == start || size + parts[end].count <= maxMessageBytes) {
                size += parts[end].count
                end += 1
            }
            if size > 0 {
                var out: [UInt8] = []
                out.reserveCapacity(size + timestamp.count + 16)
                Wire.varint(1 << 3 | 2, into: &out)
                Wire.varint(UInt64(size), into: &out)
                for part in parts[start..<end] { out.append(contentsOf: part) }
                Wire.field(10, bytes: timestamp, into: &out)
                result.append(EncodedMessage(bytes: out))
            }
            start = end
        }
        return result
    }

    /// Any other message (sync marker, heartbeat), encoded normally.
    func message(_ response: Twin_V1_StreamUpdatesResponse) -> EncodedMessage {
        EncodedMessage(bytes: (try? response.serializedBytes()) ?? [])
    }
}

/// The few protobuf wire-format primitives the encoder needs.
enum Wire {
    static func varint(_ value: UInt64, into out: inout [UInt8]) {
        Varint.append(value, to: &out)
    }

    /// A length-delimited field: tag, length, bytes.
    static func field(_ number: UInt64, bytes: [UInt8], into out: inout [UInt8]) {
        varint(number << 3 | 2, into: &out)
        varint(UInt64(bytes.count), into: &out)
        out.append(contentsOf: bytes)
    }

    static func timestamp(_ nanos: Nanos) -> [UInt8] {
        (try? Google_Protobuf_Timestamp(nanos: nanos).serializedBytes()) ?? []
    }
}
