/// Reads protobuf's wire primitives from a buffer, for the few places that read messages by hand
/// (`IngestWire`, the benchmarks' update scanner). Every read is bounds-checked and answers nil
/// at or past the end, or for a malformed value.
public struct WireCursor {
    @usableFromInline let raw: UnsafeRawBufferPointer
    public var position: Int
    public let end: Int

    @inlinable
    public init(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int) {
        self.raw = raw
        position = start
        self.end = end
    }

    @inlinable public var more: Bool { position < end }

    /// A varint of at most 64 bits.
    @inlinable
    public mutating func varint() -> UInt64? {
        // Most varints on the wire (tags, lengths, small numbers) are one byte.
        if position < end {
            let b = raw[position]
            if b < 0x80 {
                position += 1
                return UInt64(b)
            }
        }
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < end {
            let b = raw[position]
            position += 1
            if shift == 63 && b > 1 { return nil }  // more than 64 bits
            value |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return value }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }

    /// A field's number and wire type.
    @inlinable
    public mutating func tag() -> (field: Int, wire: Int)? {
        guard let t = varint(), t >> 3 <= UInt64(Int32.max) else { return nil }
        return (Int(t >> 3), Int(t & 7))
    }

    /// The start and end of a length-delimited field's bytes, which the cursor moves past.
    @inlinable
    public mutating func lengthDelimited() -> (Int, Int)? {
        guard let length = varint(), length <= UInt64(end - position) else { return nil }
        let start = position
        position += Int(length)
        return (start, position)
    }

    /// A little-endian 64-bit field.
    @inlinable
    public mutating func fixed64() -> UInt64? {
        guard end - position >= 8 else { return nil }
        let v = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt64.self))
        position += 8
        return v
    }

    /// Moves past a field of this wire type; false if it does not fit or the type is not one.
    @inlinable
    public mutating func skip(_ wire: Int) -> Bool {
        switch wire {
        case 0: return varint() != nil
        case 1: return fixed64() != nil
        case 2: return lengthDelimited() != nil
        case 5:
            guard end - position >= 4 else { return false }
            position += 4
            return true
        default: return false
        }
    }
}
