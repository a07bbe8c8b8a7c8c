import Proto
import TwinApp
import TwinCore

/// `GetHistoryResponse` in protobuf wire form, written straight from the store's columns: the
/// same bytes SwiftProtobuf writes for the message `HistoryRequest.answer` builds (the tests
/// compare them), without building a `HistoryPoint` and a `Timestamp` per reading first. A 24 h
/// raw answer per point (17,280 points) took ~6 ms built and serialized; most of it was the
/// messages, not the bytes.
///
/// Layout (twin.proto): GetHistoryResponse{ device_id(1), step(2) Duration, series(3) }
/// SensorSeries{ sensor(1), unit(2), points(3) HistoryPoint, columns(4) HistoryColumns }
/// HistoryPoint{ time(1) Timestamp, value(2), min(3), max(4), mean(5), count(6) uint64, last(7) }
/// HistoryColumns{ time_deltas(1) packed sint64, values(2), min(3), max(4), mean(5) packed
/// double, count(6) packed uint64, last(7) packed double }. Proto3 leaves out fields at their
/// default (a double whose bits are all zero, a zero count, an empty string or list); a message
/// field that is set is written even when empty.
enum HistoryWire {
    struct Series {
        var unit: String
        var history: SeriesHistory
    }

    /// Nil only if the sizes computed first disagree with the bytes written (a bug; the caller
    /// then serializes the message instead).
    static func encode(deviceID: String, step: Nanos, series: [Series], aggregate: Twin_V1_Aggregate, columnar: Bool) -> [UInt8]? {
        let bodies = series.map { seriesSize($0, step: step, aggregate: aggregate, columnar: columnar) }
        let stepParts = step > 0 ? durationParts(step) : nil
        var total = stringFieldSize(deviceID)
        if let (s, n) = stepParts { total += messageFieldSize(secondsNanosSize(s, n)) }
        for body in bodies { total += messageFieldSize(body) }

        var exact = false
        let bytes = [UInt8](unsafeUninitializedCapacity: total) { buffer, count in
            var w = Writer(buffer)
            w.string(1, deviceID)
            if let (s, n) = stepParts {
                w.header(2, length: secondsNanosSize(s, n))
                w.secondsNanos(s, n)
            }
            for (item, body) in zip(series, bodies) {
                w.header(3, length: body)
                writeSeries(item, step: step, aggregate: aggregate, columnar: columnar, into: &w)
            }
            exact = !w.overflowed && w.position == total
            count = exact ? total : 0
        }
        return exact ? bytes : nil
    }

    // MARK: Sizes

    @inline(__always) static func varintSize(_ v: UInt64) -> Int { (64 - (v | 1).leadingZeroBitCount + 6) / 7 }
    @inline(__always) static func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }
    @inline(__always) static func messageFieldSize(_ body: Int) -> Int { 1 + varintSize(UInt64(body)) + body }
    static func stringFieldSize(_ s: String) -> Int { s.isEmpty ? 0 : messageFieldSize(s.utf8.count) }
    @inline(__always) static func doubleSize(_ v: Double) -> Int { v.bitPattern == 0 ? 0 : 9 }
    static func packedDoublesSize(_ n: Int) -> Int { n == 0 ? 0 : messageFieldSize(8 * n) }

    /// A Timestamp's fields as `Google_Protobuf_Timestamp(nanos:)` sets them (nanos in [0, 1e9)).
    @inline(__always) static func timestampParts(_ t: Nanos) -> (Int64, Int32) {
        var seconds = t / Time.second, nanos = t % Time.second
        if nanos < 0 { seconds -= 1; nanos += Time.second }
        return (seconds, Int32(nanos))
    }

    /// A Duration's fields as `Google_Protobuf_Duration(nanos:)` sets them (both of one sign).
    static func durationParts(_ d: Nanos) -> (Int64, Int32) { (d / Time.second, Int32(d % Time.second)) }

    @inline(__always) static func secondsNanosSize(_ s: Int64, _ n: Int32) -> Int {
        (s == 0 ? 0 : 1 + varintSize(UInt64(bitPattern: s))) + (n == 0 ? 0 : 1 + varintSize(UInt64(bitPattern: Int64(n))))
    }

    @inline(__always) static func timeFieldSize(_ t: Nanos) -> Int {
        let (s, n) = timestampParts(t)
        return messageFieldSize(secondsNanosSize(s, n))
    }

    static func rawPointSize(_ t: Nanos, _ v: Double) -> Int { timeFieldSize(t) + doubleSize(v) }

    static func bucketPointSize(_ b: Bucket, _ aggregate: Twin_V1_Aggregate) -> Int {
        var size = timeFieldSize(b.start) + doubleSize(SeriesHistory.value(b, aggregate))
        size += doubleSize(b.min) + doubleSize(b.max) + doubleSize(b.mean) + doubleSize(b.last)
        let count = UInt64(clamping: b.count)
        if count != 0 { size += 1 + varintSize(count) }
        return size
    }

    static func deltasSize(_ times: some Sequence<Nanos>) -> Int {
        var previous: Nanos = 0, size = 0
        for t in times {
            size += varintSize(zigzag(t &- previous))
            previous = t
        }
        return size
    }

    static func columnsSize(_ h: SeriesHistory, step: Nanos) -> Int {
        if step > 0 {
            let n = h.buckets.count
            guard n > 0 else { return 0 }
            let counts = h.buckets.reduce(0) { $0 + varintSize(UInt64(clamping: $1.count)) }
            return messageFieldSize(deltasSize(h.buckets.lazy.map(\.start))) + 5 * packedDoublesSize(n) + messageFieldSize(counts)
        }
        guard !h.times.isEmpty else { return 0 }
        return messageFieldSize(deltasSize(h.times)) + packedDoublesSize(h.values.count)
    }

    static func seriesSize(_ s: Series, step: Nanos, aggregate: Twin_V1_Aggregate, columnar: Bool) -> Int {
        var size = stringFieldSize(s.history.sensor) + stringFieldSize(s.unit)
        let h = s.history
        if columnar {
            size += messageFieldSize(columnsSize(h, step: step))
        } else if step > 0 {
            for b in h.buckets { size += messageFieldSize(bucketPointSize(b, aggregate)) }
        } else {
            for (t, v) in zip(h.times, h.values) { size += messageFieldSize(rawPointSize(t, v)) }
        }
        return size
    }

    // MARK: Writing

    static func writeSeries(_ s: Series, step: Nanos, aggregate: Twin_V1_Aggregate, columnar: Bool, into w: inout Writer) {
        let h = s.history
        w.string(1, h.sensor)
        w.string(2, s.unit)
        if columnar {
            w.header(4, length: columnsSize(h, step: step))
            if step > 0 {
                guard !h.buckets.isEmpty else { return }
                w.deltas(1, h.buckets.lazy.map(\.start))
                w.doubles(2, h.buckets.lazy.map { SeriesHistory.value($0, aggregate) }, count: h.buckets.count)
                w.doubles(3, h.buckets.lazy.map(\.min), count: h.buckets.count)
                w.doubles(4, h.buckets.lazy.map(\.max), count: h.buckets.count)
                w.doubles(5, h.buckets.lazy.map(\.mean), count: h.buckets.count)
                let counts = h.buckets.reduce(0) { $0 + varintSize(UInt64(clamping: $1.count)) }
                w.header(6, length: counts)
                for b in h.buckets { w.varint(UInt64(clamping: b.count)) }
                w.doubles(7, h.buckets.lazy.map(\.last), count: h.buckets.count)
            } else if !h.times.isEmpty {
                w.deltas(1, h.times)
                w.doubles(2, h.values)
            }
        } else if step > 0 {
            for b in h.buckets {
                w.header(3, length: bucketPointSize(b, aggregate))
                w.time(1, b.start)
                w.double(2, SeriesHistory.value(b, aggregate))
                w.double(3, b.min)
                w.double(4, b.max)
                w.double(5, b.mean)
                let count = UInt64(clamping: b.count)
                if count != 0 {
                    w.varint(6 << 3)
                    w.varint(count)
                }
                w.double(7, b.last)
            }
        } else {
            for (t, v) in zip(h.times, h.values) {
                w.header(3, length: rawPointSize(t, v))
                w.time(1, t)
                w.double(2, v)
            }
        }
    }

    /// Writes into a buffer sized beforehand; past its end it writes nothing and says so.
    struct Writer {
        let base: UnsafeMutablePointer<UInt8>?
        let capacity: Int
        var position = 0
        var overflowed = false

        init(_ buffer: UnsafeMutableBufferPointer<UInt8>) {
            base = buffer.baseAddress
            capacity = buffer.count
        }

        @inline(__always) mutating func byte(_ b: UInt8) {
            guard position < capacity, let base else { overflowed = true; return }
            base[position] = b
            position += 1
        }

        @inline(__always) mutating func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                byte(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            byte(UInt8(v))
        }

        mutating func bytes(_ raw: UnsafeRawBufferPointer) {
            guard raw.count <= capacity - position, let base else { overflowed = true; return }
            if let source = raw.baseAddress { (base + position).update(from: source.assumingMemoryBound(to: UInt8.self), count: raw.count) }
            position += raw.count
        }

        /// A length-delimited field's tag and length.
        @inline(__always) mutating func header(_ field: UInt64, length: Int) {
            varint(field << 3 | 2)
            varint(UInt64(length))
        }

        mutating func string(_ field: UInt64, _ s: String) {
            guard !s.isEmpty else { return }
            header(field, length: s.utf8.count)
            var copy = s
            copy.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
        }

        @inline(__always) mutating func rawDouble(_ v: Double) {
            guard capacity - position >= 8, let base else { overflowed = true; return }
            UnsafeMutableRawPointer(base + position).storeBytes(of: v.bitPattern.littleEndian, as: UInt64.self)
            position += 8
        }

        @inline(__always) mutating func double(_ field: UInt64, _ v: Double) {
            guard v.bitPattern != 0 else { return }
            byte(UInt8(field << 3 | 1))
            rawDouble(v)
        }

        @inline(__always) mutating func secondsNanos(_ s: Int64, _ n: Int32) {
            if s != 0 { byte(1 << 3); varint(UInt64(bitPattern: s)) }
            if n != 0 { byte(2 << 3); varint(UInt64(bitPattern: Int64(n))) }
        }

        @inline(__always) mutating func time(_ field: UInt64, _ t: Nanos) {
            let (s, n) = HistoryWire.timestampParts(t)
            header(field, length: HistoryWire.secondsNanosSize(s, n))
            secondsNanos(s, n)
        }

        mutating func deltas(_ field: UInt64, _ times: some Sequence<Nanos>) {
            header(field, length: HistoryWire.deltasSize(times))
            var previous: Nanos = 0
            for t in times {
                varint(HistoryWire.zigzag(t &- previous))
                previous = t
            }
        }

        mutating func doubles(_ field: UInt64, _ values: some Sequence<Double>, count: Int) {
            guard count > 0 else { return }
            header(field, length: 8 * count)
            for v in values { rawDouble(v) }
        }

        /// Stored doubles copied as they lie in memory (little-endian, as the wire has them).
        mutating func doubles(_ field: UInt64, _ values: [Double]) {
            guard !values.isEmpty else { return }
            header(field, length: 8 * values.count)
            #if _endian(little)
            values.withUnsafeBytes { bytes($0) }
            #else
            for v in values { rawDouble(v) }
            #endif
        }
    }
}
