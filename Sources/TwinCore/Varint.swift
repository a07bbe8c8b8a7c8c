/// LEB128 varints, as protobuf and the chunk codec write them.
public enum Varint {
    /// Appends `value` in 7-bit groups, least significant first.
    @inlinable
    public static func append(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }
}
