import Foundation

/// A failure of the OPC UA client: the server's StatusCode where it sent one, and words for a person.
public struct UAError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The StatusCode behind the failure (from the server, or the closest one for a local failure).
    public var status: StatusCode
    public var message: String

    public init(_ status: StatusCode, _ message: String) {
        self.status = status
        self.message = message
    }

    /// "BadUserAccessDenied (0x801F0000): …" — the StatusCode's name first, as operators look it up.
    public var description: String { "\(status): \(message)" }

    static func decoding(_ what: String) -> UAError { UAError(.badDecodingError, what) }
}

// MARK: - Built-in types (OPC 10000-6 §5.1)

/// A NodeId: a namespace index and a numeric, string, GUID or opaque identifier.
public struct NodeId: Hashable, Sendable, CustomStringConvertible {
    public enum Identifier: Hashable, Sendable {
        case numeric(UInt32)
        case string(String)
        case guid([UInt8])
        case opaque([UInt8])
    }

    public var namespace: UInt16
    public var identifier: Identifier

    public init(_ namespace: UInt16, _ identifier: Identifier) {
        self.namespace = namespace
        self.identifier = identifier
    }

    public init(_ namespace: UInt16 = 0, _ numeric: UInt32) {
        self.init(namespace, .numeric(numeric))
    }

    public static let null = NodeId(0, 0)
    public var isNull: Bool { self == .null || (namespace == 0 && identifier == .string("")) }

    /// The text form of OPC 10000-6 §5.3.1.10: `i=85`, `ns=2;s=Press1.Force`, `ns=1;g=…`, `ns=1;b=<base64>`.
    public init?(text: String) {
        var rest = Substring(text)
        var ns: UInt16 = 0
        if rest.hasPrefix("ns=") {
            guard let semi = rest.firstIndex(of: ";"), let n = UInt16(rest[rest.index(rest.startIndex, offsetBy: 3)..<semi]) else { return nil }
            ns = n
            rest = rest[rest.index(after: semi)...]
        }
        guard rest.count >= 2, rest[rest.index(after: rest.startIndex)] == "=" else { return nil }
        let kind = rest.first!
        let value = String(rest.dropFirst(2))
        switch kind {
        case "i":
            guard let n = UInt32(value) else { return nil }
            self.init(ns, .numeric(n))
        case "s":
            guard !value.isEmpty, value.utf8.count <= 4096 else { return nil }
            self.init(ns, .string(value))
        case "g":
            let hex = value.filter { $0 != "-" }
            guard hex.count == 32, let bytes = Self.guidBytes(hex) else { return nil }
            self.init(ns, .guid(bytes))
        case "b":
            guard let data = Data(base64Encoded: value), !data.isEmpty, data.count <= 4096 else { return nil }
            self.init(ns, .opaque([UInt8](data)))
        default:
            return nil
        }
    }

    /// The GUID's text `C496578A-0DFE-4B8F-870A-745238C6AEAE` as its 16 wire bytes (Data1–3 little-endian).
    static func guidBytes(_ hex: String) -> [UInt8]? {
        var raw: [UInt8] = []
        var chars = Array(hex.utf8)
        guard chars.count == 32 else { return nil }
        while !chars.isEmpty {
            guard let b = UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16) else { return nil }
            raw.append(b)
            chars.removeFirst(2)
        }
        return [raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6]] + raw[8...]
    }

    static func guidText(_ b: [UInt8]) -> String {
        guard b.count == 16 else { return "" }
        let ordered = [b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]] + b[8...]
        let hex = ordered.map { String(format: "%02X", $0) }.joined()
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20...])
    }

    public var description: String {
        let prefix = namespace == 0 ? "" : "ns=\(namespace);"
        switch identifier {
        case .numeric(let n): return prefix + "i=\(n)"
        case .string(let s): return prefix + "s=" + s
        case .guid(let g): return prefix + "g=" + Self.guidText(g)
        case .opaque(let b): return prefix + "b=" + Data(b).base64EncodedString()
        }
    }
}

/// A NodeId that may name another server's namespace by URI or index.
public struct ExpandedNodeId: Hashable, Sendable, CustomStringConvertible {
    public var nodeId: NodeId
    public var namespaceURI: String?
    public var serverIndex: UInt32

    public init(_ nodeId: NodeId, namespaceURI: String? = nil, serverIndex: UInt32 = 0) {
        self.nodeId = nodeId
        self.namespaceURI = namespaceURI
        self.serverIndex = serverIndex
    }

    public var description: String {
        var s = ""
        if serverIndex != 0 { s += "svr=\(serverIndex);" }
        if let u = namespaceURI { s += "nsu=\(u);" }
        return s + nodeId.description
    }
}

/// A name qualified by a namespace index: a node's BrowseName (`2:Press1`).
public struct QualifiedName: Hashable, Sendable, CustomStringConvertible {
    public var namespace: UInt16
    public var name: String
    public init(_ namespace: UInt16, _ name: String) {
        self.namespace = namespace
        self.name = name
    }
    /// `2:Press1` or `Press1` (namespace 0).
    public init?(text: String) {
        if let colon = text.firstIndex(of: ":"), let ns = UInt16(text[..<colon]) {
            let name = String(text[text.index(after: colon)...])
            guard !name.isEmpty else { return nil }
            self.init(ns, name)
        } else {
            guard !text.isEmpty else { return nil }
            self.init(0, text)
        }
    }
    public var description: String { namespace == 0 ? name : "\(namespace):\(name)" }
}

public struct LocalizedText: Hashable, Sendable {
    public var locale: String?
    public var text: String?
    public init(locale: String? = nil, text: String?) {
        self.locale = locale
        self.text = text
    }
}

/// A structure the client does not decode in place: its encoding's NodeId and its body.
public struct ExtensionObject: Hashable, Sendable {
    public var typeId: NodeId
    /// 0: no body, 1: binary, 2: XML.
    public var encoding: UInt8
    public var body: [UInt8]
    public init(typeId: NodeId, encoding: UInt8, body: [UInt8]) {
        self.typeId = typeId
        self.encoding = encoding
        self.body = body
    }
    public static let empty = ExtensionObject(typeId: .null, encoding: 0, body: [])
}

/// A value of any built-in type, a scalar or an array (OPC 10000-6 §5.2.2.16).
public indirect enum Variant: Hashable, Sendable {
    case null
    case boolean(Bool)
    case sbyte(Int8)
    case byte(UInt8)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case float(Float)
    case double(Double)
    case string(String?)
    case dateTime(Int64)
    case guid([UInt8])
    case byteString([UInt8]?)
    case xmlElement([UInt8]?)
    case nodeId(NodeId)
    case expandedNodeId(ExpandedNodeId)
    case statusCode(StatusCode)
    case qualifiedName(QualifiedName)
    case localizedText(LocalizedText)
    case extensionObject(ExtensionObject)
    case dataValue(DataValue)
    case variant(Variant)
    case diagnosticInfo
    /// An array of one built-in type (its id), with the dimensions of a matrix when given.
    case array(type: UInt8, elements: [Variant], dimensions: [Int32]?)

    /// The built-in type id (1 Boolean … 25 DiagnosticInfo; 0 for null).
    public var typeId: UInt8 {
        switch self {
        case .null: return 0
        case .boolean: return 1
        case .sbyte: return 2
        case .byte: return 3
        case .int16: return 4
        case .uint16: return 5
        case .int32: return 6
        case .uint32: return 7
        case .int64: return 8
        case .uint64: return 9
        case .float: return 10
        case .double: return 11
        case .string: return 12
        case .dateTime: return 13
        case .guid: return 14
        case .byteString: return 15
        case .xmlElement: return 16
        case .nodeId: return 17
        case .expandedNodeId: return 18
        case .statusCode: return 19
        case .qualifiedName: return 20
        case .localizedText: return 21
        case .extensionObject: return 22
        case .dataValue: return 23
        case .variant: return 24
        case .diagnosticInfo: return 25
        case .array(let type, _, _): return type
        }
    }

    /// The value as a number, for a scalar of a numeric or Boolean type; nil otherwise.
    public var number: Double? {
        switch self {
        case .boolean(let b): return b ? 1 : 0
        case .sbyte(let v): return Double(v)
        case .byte(let v): return Double(v)
        case .int16(let v): return Double(v)
        case .uint16(let v): return Double(v)
        case .int32(let v): return Double(v)
        case .uint32(let v): return Double(v)
        case .int64(let v): return Double(v)
        case .uint64(let v): return Double(v)
        case .float(let v): return Double(v)
        case .double(let v): return v
        default: return nil
        }
    }
}

/// A value with its quality and times, as Read and DataChange notifications carry it.
public struct DataValue: Hashable, Sendable {
    public var value: Variant?
    public var status: StatusCode
    /// 100-nanosecond ticks since 1601-01-01 UTC (the UA DateTime).
    public var sourceTimestamp: Int64?
    public var sourcePicoseconds: UInt16?
    public var serverTimestamp: Int64?
    public var serverPicoseconds: UInt16?

    public init(value: Variant? = nil, status: StatusCode = .good, sourceTimestamp: Int64? = nil, sourcePicoseconds: UInt16? = nil,
                serverTimestamp: Int64? = nil, serverPicoseconds: UInt16? = nil) {
        self.value = value
        self.status = status
        self.sourceTimestamp = sourceTimestamp
        self.sourcePicoseconds = sourcePicoseconds
        self.serverTimestamp = serverTimestamp
        self.serverPicoseconds = serverPicoseconds
    }
}

/// UA DateTime (100 ns ticks since 1601-01-01) and Unix nanoseconds.
public enum UADateTime {
    /// Ticks from 1601-01-01 to 1970-01-01.
    public static let unixEpochTicks: Int64 = 116_444_736_000_000_000

    /// Unix nanoseconds for a UA DateTime; nil for 0 and Int64.max ("no time" and "end of time")
    /// and for anything before 1970 or past the year 2200 (outside the times twind keeps).
    public static func unixNanos(_ ticks: Int64) -> Int64? {
        guard ticks > unixEpochTicks else { return nil }
        let since = ticks - unixEpochTicks
        guard since <= 7_258_118_400 * 10_000_000 else { return nil }  // 2200-01-01
        return since * 100
    }

    public static func ticks(unixNanos: Int64) -> Int64 {
        unixNanos / 100 + unixEpochTicks
    }
}

// MARK: - Reading

/// Reads UA Binary from bytes a peer sent. Every read is bounds-checked and throws
/// `BadDecodingError` on truncated or impossible input; lengths are checked against what is
/// left before anything is allocated, and nesting is bounded.
public struct UAReader {
    public let bytes: [UInt8]
    public private(set) var position: Int

    /// Deepest nesting of Variants, DataValues and DiagnosticInfos taken.
    static let maxDepth = 16

    public init(_ bytes: [UInt8], position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    public var remaining: Int { bytes.count - position }

    mutating func take(_ n: Int) throws(UAError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= remaining else { throw .decoding("message ends early: \(n) bytes wanted, \(remaining) left") }
        defer { position += n }
        return bytes[position..<position + n]
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(UAError) -> T {
        let slice = try take(MemoryLayout<T>.size)
        var v: T = 0
        for (i, b) in slice.enumerated() { v |= T(truncatingIfNeeded: b) << (8 * i) }
        return v
    }

    public mutating func byte() throws(UAError) -> UInt8 { try integer(UInt8.self) }
    public mutating func boolean() throws(UAError) -> Bool { try byte() != 0 }
    public mutating func uint16() throws(UAError) -> UInt16 { try integer(UInt16.self) }
    public mutating func int32() throws(UAError) -> Int32 { try integer(Int32.self) }
    public mutating func uint32() throws(UAError) -> UInt32 { try integer(UInt32.self) }
    public mutating func int64() throws(UAError) -> Int64 { try integer(Int64.self) }
    public mutating func uint64() throws(UAError) -> UInt64 { try integer(UInt64.self) }
    public mutating func float() throws(UAError) -> Float { Float(bitPattern: try integer(UInt32.self)) }
    public mutating func double() throws(UAError) -> Double { Double(bitPattern: try integer(UInt64.self)) }
    public mutating func dateTime() throws(UAError) -> Int64 { try int64() }
    public mutating func statusCode() throws(UAError) -> StatusCode { StatusCode(try uint32()) }

    /// A length-prefixed run of bytes; nil for the null ByteString (length -1).
    public mutating func byteString() throws(UAError) -> [UInt8]? {
        let n = try int32()
        if n < 0 {
            guard n == -1 else { throw .decoding("length \(n)") }
            return nil
        }
        return Array(try take(Int(n)))
    }

    public mutating func string() throws(UAError) -> String? {
        guard let b = try byteString() else { return nil }
        return String(decoding: b, as: UTF8.self)
    }

    /// An array: its count (-1 is null, read as empty) and its elements. Every element takes at
    /// least one byte, so a count beyond the bytes left is refused before anything is allocated.
    public mutating func array<T>(_ element: (inout UAReader) throws(UAError) -> T) throws(UAError) -> [T] {
        let n = try int32()
        if n < 0 {
            guard n == -1 else { throw .decoding("array length \(n)") }
            return []
        }
        guard Int(n) <= remaining else { throw .decoding("array of \(n) elements in \(remaining) bytes") }
        var out: [T] = []
        out.reserveCapacity(Int(n))
        for _ in 0..<n { out.append(try element(&self)) }
        return out
    }

    public mutating func guid() throws(UAError) -> [UInt8] { Array(try take(16)) }

    public mutating func nodeId() throws(UAError) -> NodeId {
        let encoding = try byte()
        return try nodeIdBody(encoding & 0x3F)
    }

    mutating func nodeIdBody(_ kind: UInt8) throws(UAError) -> NodeId {
        switch kind {
        case 0x00: return NodeId(0, UInt32(try byte()))
        case 0x01:
            let ns = try byte()
            return NodeId(UInt16(ns), UInt32(try uint16()))
        case 0x02:
            let ns = try uint16()
            return NodeId(ns, try uint32())
        case 0x03:
            let ns = try uint16()
            return NodeId(ns, .string(try string() ?? ""))
        case 0x04:
            let ns = try uint16()
            return NodeId(ns, .guid(try guid()))
        case 0x05:
            let ns = try uint16()
            return NodeId(ns, .opaque(try byteString() ?? []))
        default:
            throw .decoding("NodeId encoding \(kind)")
        }
    }

    public mutating func expandedNodeId() throws(UAError) -> ExpandedNodeId {
        let encoding = try byte()
        let node = try nodeIdBody(encoding & 0x3F)
        let uri = encoding & 0x80 != 0 ? try string() : nil
        let server = encoding & 0x40 != 0 ? try uint32() : 0
        return ExpandedNodeId(node, namespaceURI: uri, serverIndex: server)
    }

    public mutating func qualifiedName() throws(UAError) -> QualifiedName {
        let ns = try uint16()
        return QualifiedName(ns, try string() ?? "")
    }

    public mutating func localizedText() throws(UAError) -> LocalizedText {
        let mask = try byte()
        let locale = mask & 0x01 != 0 ? try string() : nil
        let text = mask & 0x02 != 0 ? try string() : nil
        return LocalizedText(locale: locale, text: text)
    }

    public mutating func extensionObject() throws(UAError) -> ExtensionObject {
        let type = try nodeId()
        let encoding = try byte()
        switch encoding {
        case 0: return ExtensionObject(typeId: type, encoding: 0, body: [])
        case 1, 2: return ExtensionObject(typeId: type, encoding: encoding, body: try byteString() ?? [])
        default: throw .decoding("ExtensionObject encoding \(encoding)")
        }
    }

    /// Skips a DiagnosticInfo (the client reports StatusCodes, not server diagnostics).
    public mutating func skipDiagnosticInfo(depth: Int = 0) throws(UAError) {
        guard depth < Self.maxDepth else { throw .decoding("DiagnosticInfo nested deeper than \(Self.maxDepth)") }
        let mask = try byte()
        for bit in [0x01, 0x02, 0x04, 0x08] as [UInt8] where mask & bit != 0 { _ = try int32() }
        if mask & 0x10 != 0 { _ = try byteString() }
        if mask & 0x20 != 0 { _ = try uint32() }
        if mask & 0x40 != 0 { try skipDiagnosticInfo(depth: depth + 1) }
    }

    public mutating func dataValue(depth: Int = 0) throws(UAError) -> DataValue {
        guard depth < Self.maxDepth else { throw .decoding("DataValue nested deeper than \(Self.maxDepth)") }
        let mask = try byte()
        var v = DataValue()
        if mask & 0x01 != 0 { v.value = try variant(depth: depth + 1) }
        if mask & 0x02 != 0 { v.status = try statusCode() }
        if mask & 0x04 != 0 { v.sourceTimestamp = try dateTime() }
        if mask & 0x10 != 0 { v.sourcePicoseconds = try uint16() }
        if mask & 0x08 != 0 { v.serverTimestamp = try dateTime() }
        if mask & 0x20 != 0 { v.serverPicoseconds = try uint16() }
        return v
    }

    public mutating func variant(depth: Int = 0) throws(UAError) -> Variant {
        guard depth < Self.maxDepth else { throw .decoding("Variant nested deeper than \(Self.maxDepth)") }
        let mask = try byte()
        let type = mask & 0x3F
        guard type <= 25 else { throw .decoding("Variant of unknown built-in type \(type)") }
        if mask & 0x80 == 0 {
            if mask & 0x40 != 0 { throw .decoding("Variant scalar with array dimensions") }
            return try scalar(type, depth: depth)
        }
        let elements = try array { (r: inout UAReader) throws(UAError) -> Variant in try r.scalar(type, depth: depth) }
        var dimensions: [Int32]? = nil
        if mask & 0x40 != 0 {
            let dims = try array { (r: inout UAReader) throws(UAError) -> Int32 in try r.int32() }
            var product = 1
            for d in dims {
                guard d >= 0 else { throw .decoding("negative array dimension") }
                product = product.multipliedReportingOverflow(by: Int(d)).overflow ? Int.max : product * Int(d)
            }
            guard product == elements.count else { throw .decoding("array dimensions \(dims) do not match \(elements.count) elements") }
            dimensions = dims
        }
        return .array(type: type, elements: elements, dimensions: dimensions)
    }

    mutating func scalar(_ type: UInt8, depth: Int) throws(UAError) -> Variant {
        switch type {
        case 0: return .null
        case 1: return .boolean(try boolean())
        case 2: return .sbyte(Int8(bitPattern: try byte()))
        case 3: return .byte(try byte())
        case 4: return .int16(Int16(bitPattern: try uint16()))
        case 5: return .uint16(try uint16())
        case 6: return .int32(try int32())
        case 7: return .uint32(try uint32())
        case 8: return .int64(try int64())
        case 9: return .uint64(try uint64())
        case 10: return .float(try float())
        case 11: return .double(try double())
        case 12: return .string(try string())
        case 13: return .dateTime(try dateTime())
        case 14: return .guid(try guid())
        case 15: return .byteString(try byteString())
        case 16: return .xmlElement(try byteString())
        case 17: return .nodeId(try nodeId())
        case 18: return .expandedNodeId(try expandedNodeId())
        case 19: return .statusCode(try statusCode())
        case 20: return .qualifiedName(try qualifiedName())
        case 21: return .localizedText(try localizedText())
        case 22: return .extensionObject(try extensionObject())
        case 23: return .dataValue(try dataValue(depth: depth + 1))
        case 24: return .variant(try variant(depth: depth + 1))
        case 25:
            try skipDiagnosticInfo(depth: depth + 1)
            return .diagnosticInfo
        default: throw .decoding("Variant of unknown built-in type \(type)")
        }
    }
}

// MARK: - Writing

/// Writes UA Binary.
public struct UAWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func raw<S: Sequence>(_ b: S) where S.Element == UInt8 { bytes.append(contentsOf: b) }

    mutating func integer<T: FixedWidthInteger>(_ v: T) {
        var x = v.littleEndian
        withUnsafeBytes(of: &x) { bytes.append(contentsOf: $0) }
    }

    public mutating func byte(_ v: UInt8) { bytes.append(v) }
    public mutating func boolean(_ v: Bool) { bytes.append(v ? 1 : 0) }
    public mutating func uint16(_ v: UInt16) { integer(v) }
    public mutating func int32(_ v: Int32) { integer(v) }
    public mutating func uint32(_ v: UInt32) { integer(v) }
    public mutating func int64(_ v: Int64) { integer(v) }
    public mutating func uint64(_ v: UInt64) { integer(v) }
    public mutating func float(_ v: Float) { integer(v.bitPattern) }
    public mutating func double(_ v: Double) { integer(v.bitPattern) }
    public mutating func dateTime(_ v: Int64) { integer(v) }
    public mutating func statusCode(_ v: StatusCode) { integer(v.rawValue) }

    public mutating func byteString(_ b: [UInt8]?) {
        guard let b else { return int32(-1) }
        int32(Int32(b.count))
        bytes.append(contentsOf: b)
    }

    public mutating func string(_ s: String?) { byteString(s.map { Array($0.utf8) }) }

    public mutating func array<T>(_ items: [T], _ element: (inout UAWriter, T) -> Void) {
        int32(Int32(items.count))
        for item in items { element(&self, item) }
    }

    /// The most compact encoding the NodeId allows (two-byte, four-byte, then the full forms).
    public mutating func nodeId(_ n: NodeId, flags: UInt8 = 0) {
        switch n.identifier {
        case .numeric(let v) where n.namespace == 0 && v <= 0xFF:
            byte(0x00 | flags); byte(UInt8(v))
        case .numeric(let v) where n.namespace <= 0xFF && v <= 0xFFFF:
            byte(0x01 | flags); byte(UInt8(n.namespace)); uint16(UInt16(v))
        case .numeric(let v):
            byte(0x02 | flags); uint16(n.namespace); uint32(v)
        case .string(let s):
            byte(0x03 | flags); uint16(n.namespace); string(s)
        case .guid(let g):
            byte(0x04 | flags); uint16(n.namespace); raw(g.count == 16 ? g : [UInt8](repeating: 0, count: 16))
        case .opaque(let b):
            byte(0x05 | flags); uint16(n.namespace); byteString(b)
        }
    }

    public mutating func expandedNodeId(_ e: ExpandedNodeId) {
        nodeId(e.nodeId, flags: (e.namespaceURI != nil ? 0x80 : 0) | (e.serverIndex != 0 ? 0x40 : 0))
        if let u = e.namespaceURI { string(u) }
        if e.serverIndex != 0 { uint32(e.serverIndex) }
    }

    public mutating func qualifiedName(_ q: QualifiedName) {
        uint16(q.namespace)
        string(q.name)
    }

    public mutating func localizedText(_ t: LocalizedText) {
        byte((t.locale != nil ? 0x01 : 0) | (t.text != nil ? 0x02 : 0))
        if let l = t.locale { string(l) }
        if let s = t.text { string(s) }
    }

    public mutating func extensionObject(_ e: ExtensionObject) {
        nodeId(e.typeId)
        byte(e.encoding)
        if e.encoding != 0 { byteString(e.body) }
    }

    /// An ExtensionObject with a binary body written by `body`.
    public mutating func extensionObject(type: UInt32, _ body: (inout UAWriter) -> Void) {
        var w = UAWriter()
        body(&w)
        extensionObject(ExtensionObject(typeId: NodeId(0, type), encoding: 1, body: w.bytes))
    }

    public mutating func dataValue(_ v: DataValue) {
        var mask: UInt8 = 0
        if v.value != nil { mask |= 0x01 }
        if v.status != .good { mask |= 0x02 }
        if v.sourceTimestamp != nil { mask |= 0x04 }
        if v.serverTimestamp != nil { mask |= 0x08 }
        if v.sourcePicoseconds != nil { mask |= 0x10 }
        if v.serverPicoseconds != nil { mask |= 0x20 }
        byte(mask)
        if let value = v.value { variant(value) }
        if v.status != .good { statusCode(v.status) }
        if let t = v.sourceTimestamp { dateTime(t) }
        if let p = v.sourcePicoseconds { uint16(p) }
        if let t = v.serverTimestamp { dateTime(t) }
        if let p = v.serverPicoseconds { uint16(p) }
    }

    public mutating func variant(_ v: Variant) {
        if case .array(let type, let elements, let dimensions) = v {
            byte(type | 0x80 | (dimensions != nil ? 0x40 : 0))
            array(elements) { $0.scalar($1) }
            if let dimensions { array(dimensions) { $0.int32($1) } }
            return
        }
        byte(v.typeId)
        scalar(v)
    }

    mutating func scalar(_ v: Variant) {
        switch v {
        case .null, .array: break
        case .boolean(let b): boolean(b)
        case .sbyte(let x): byte(UInt8(bitPattern: x))
        case .byte(let x): byte(x)
        case .int16(let x): integer(x)
        case .uint16(let x): uint16(x)
        case .int32(let x): int32(x)
        case .uint32(let x): uint32(x)
        case .int64(let x): int64(x)
        case .uint64(let x): uint64(x)
        case .float(let x): float(x)
        case .double(let x): double(x)
        case .string(let s): string(s)
        case .dateTime(let t): dateTime(t)
        case .guid(let g): raw(g.count == 16 ? g : [UInt8](repeating: 0, count: 16))
        case .byteString(let b), .xmlElement(let b): byteString(b)
        case .nodeId(let n): nodeId(n)
        case .expandedNodeId(let e): expandedNodeId(e)
        case .statusCode(let s): statusCode(s)
        case .qualifiedName(let q): qualifiedName(q)
        case .localizedText(let t): localizedText(t)
        case .extensionObject(let e): extensionObject(e)
        case .dataValue(let d): dataValue(d)
        case .variant(let inner): variant(inner)
        case .diagnosticInfo: byte(0)
        }
    }
}
