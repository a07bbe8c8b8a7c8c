import Testing
@testable import TwinOPCUA

private func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = Array(s.filter { !$0.isWhitespace })
    while chars.count >= 2 {
        out.append(UInt8(String(chars[0..<2]), radix: 16)!)
        chars.removeFirst(2)
    }
    return out
}

private func encoded(_ body: (inout UAWriter) -> Void) -> [UInt8] {
    var w = UAWriter()
    body(&w)
    return w.bytes
}

/// UA Binary as OPC 10000-6 §5.2 gives it in its examples, and as the asyncua server encodes it.
@Suite struct SpecificationExamples {
    @Test func stringIsUTF8WithALengthPrefix() throws {
        // §5.2.2.4: the string "水Boy".
        let bytes = hex("06000000 E6B0B4 426F79")
        #expect(encoded { $0.string("水Boy") } == bytes)
        var r = UAReader(bytes)
        #expect(try r.string() == "水Boy")
        #expect(encoded { $0.string(nil) } == hex("FFFFFFFF"))
    }

    @Test func nodeIdsTakeTheirCompactForms() throws {
        // §5.2.2.9: two-byte i=72, four-byte ns=5;i=1025, string ns=1;s=Hot水.
        let cases: [(NodeId, String)] = [
            (NodeId(0, 72), "0048"),
            (NodeId(5, 1025), "01050104"),
            (NodeId(1, .string("Hot水")), "030100 06000000 486F74E6B0B4"),
            (NodeId(2, 70_000), "020200 70110100"),
            (NodeId(2, .string("Press1.Force")), "0302000c0000005072657373312e466f726365"),  // asyncua's encoding
        ]
        for (node, text) in cases {
            #expect(encoded { $0.nodeId(node) } == hex(text), "\(node)")
            var r = UAReader(hex(text))
            #expect(try r.nodeId() == node)
            #expect(r.remaining == 0)
        }
    }

    @Test func guidsKeepTheirFirstThreeFieldsLittleEndian() throws {
        // §5.2.2.7: {72962B91-FA75-4AE6-8D28-B404DC7DAF63}.
        let node = try #require(NodeId(text: "ns=1;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63"))
        #expect(encoded { $0.nodeId(node) } == hex("040100 912B967275FAE64A8D28B404DC7DAF63"))
        #expect(node.description == "ns=1;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63")
    }

    @Test func floatsAreIEEELittleEndian() throws {
        // §5.2.2.3: -6.5 as a Float.
        #expect(encoded { $0.float(-6.5) } == hex("0000D0C0"))
        var r = UAReader(hex("0000D0C0"))
        #expect(try r.float() == -6.5)
    }

    @Test func dataValueFromTheServerWithBadStatusAndBothTimes() throws {
        // asyncua: Double 12.5, BadSensorFailure, source 2026-12-01T08:30:00Z, server one second later.
        var r = UAReader(hex("0f0b000000000000294000008c8000f47e276e81dd01808a17286e81dd01"))
        let v = try r.dataValue()
        #expect(v.value == .double(12.5))
        #expect(v.status == StatusCode(0x808C_0000))
        #expect(v.status.name == "BadSensorFailure")
        #expect(v.sourceTimestamp.flatMap(UADateTime.unixNanos) == Int64(1_796_113_800_000_000_000))
        #expect(v.serverTimestamp.flatMap(UADateTime.unixNanos) == Int64(1_796_113_801_000_000_000))
        #expect(r.remaining == 0)
    }

    @Test func matrixVariantWithDimensions() throws {
        var r = UAReader(hex("cb06000000000000000000f03f00000000000000400000000000000840000000000000104000000000000014400000000000001840020000000200000003000000"))
        let v = try r.variant()
        #expect(v == .array(type: 11, elements: [1, 2, 3, 4, 5, 6].map { .double($0) }, dimensions: [2, 3]))
        var ints = UAReader(hex("8603000000010000000200000003000000"))
        #expect(try ints.variant() == .array(type: 6, elements: [.int32(1), .int32(2), .int32(3)], dimensions: nil))
    }

    @Test func engineeringUnitsAndRangeFromTheServer() throws {
        var range = UAReader(hex("01007603011000000000000000000000000000000000407f40"))
        #expect(EngineeringInfo.range(.extensionObject(try range.extensionObject()))! == (0, 500))
        var eu = UAReader(hex("01007903014d0000002f000000687474703a2f2f7777772e6f7063666f756e646174696f6e2e6f72672f55412f756e6974732f756e2f6365666163744c4b4b0002020000006b4e020a0000006b696c6f6e6577746f6e"))
        #expect(EngineeringInfo.unit(.extensionObject(try eu.extensionObject())) == "kN")
        // Not a Range (the EUInformation's type), or an inverted range: nothing.
        var again = UAReader(hex("01007903014d0000002f000000687474703a2f2f7777772e6f7063666f756e646174696f6e2e6f72672f55412f756e6974732f756e2f6365666163744c4b4b0002020000006b4e020a0000006b696c6f6e6577746f6e"))
        #expect(EngineeringInfo.range(.extensionObject(try again.extensionObject())) == nil)
        let inverted = ExtensionObject(typeId: NodeId(0, UAType.range), encoding: 1, body: encoded { $0.double(5); $0.double(1) })
        #expect(EngineeringInfo.range(.extensionObject(inverted)) == nil)
    }

    @Test func dataChangeNotificationInAPublishResponse() throws {
        // The body of a PublishResponse after its header, with asyncua's DataChangeNotification
        // and an event list the client skips.
        let dcn = hex("01002b03011a0000000100000007000000030b0000000000000a400000000000000000")
        let bytes = encoded { w in
            w.uint32(4)  // subscription
            w.array([UInt32(1)]) { $0.uint32($1) }
            w.boolean(false)
            w.uint32(1)  // sequence
            w.dateTime(UADateTime.ticks(unixNanos: 1_796_113_800_000_000_000))
            w.int32(2)
            w.raw(dcn)
            w.extensionObject(ExtensionObject(typeId: NodeId(0, 916), encoding: 1, body: [0, 0, 0, 0]))
            w.array([StatusCode]()) { $0.statusCode($1) }
            w.array([Int]()) { _, _ in }
        }
        var r = UAReader(bytes)
        let result = try r.publishResult()
        #expect(result.subscriptionId == 4)
        #expect(result.sequenceNumber == 1)
        #expect(result.hasData)
        #expect(result.changes == [MonitoredItemNotification(clientHandle: 7, value: DataValue(value: .double(3.25)))])
        #expect(r.remaining == 0)
    }
}

@Suite struct BuiltInTypes {
    @Test func dataValueWithEveryMaskBit() throws {
        for mask in 0..<64 {
            var v = DataValue()
            if mask & 0x01 != 0 { v.value = .int16(-7) }
            if mask & 0x02 != 0 { v.status = StatusCode(0x4092_0000) }
            if mask & 0x04 != 0 { v.sourceTimestamp = 133_000_000_000_000_000 }
            if mask & 0x08 != 0 { v.serverTimestamp = 133_000_000_000_000_001 }
            if mask & 0x10 != 0 { v.sourcePicoseconds = 9 }
            if mask & 0x20 != 0 { v.serverPicoseconds = 10 }
            let bytes = encoded { $0.dataValue(v) }
            #expect(bytes[0] == UInt8(mask))
            var r = UAReader(bytes)
            #expect(try r.dataValue() == v)
            #expect(r.remaining == 0)
        }
    }

    @Test func everyScalarTypeRoundTrips() throws {
        let values: [Variant] = [
            .null, .boolean(true), .sbyte(-3), .byte(200), .int16(-300), .uint16(60_000), .int32(-70_000), .uint32(4_000_000_000),
            .int64(-5_000_000_000), .uint64(18_000_000_000_000_000_000), .float(1.5), .double(-2.25), .string("ü"), .string(nil),
            .dateTime(133_000_000_000_000_000), .guid(Array(0..<16)), .byteString([1, 2]), .byteString(nil), .xmlElement(Array("<a/>".utf8)),
            .nodeId(NodeId(3, .opaque([9, 9]))), .expandedNodeId(ExpandedNodeId(NodeId(1, 5), namespaceURI: "urn:x", serverIndex: 2)),
            .statusCode(.badNodeIdUnknown), .qualifiedName(QualifiedName(2, "Press1")), .localizedText(LocalizedText(locale: "en", text: "Force")),
            .localizedText(LocalizedText(text: nil)),
            .extensionObject(ExtensionObject(typeId: NodeId(0, 886), encoding: 1, body: [1, 2, 3])),
            .extensionObject(.empty),
            .dataValue(DataValue(value: .double(1), status: .badTimeout)), .variant(.int32(4)),
            .array(type: 12, elements: [.string("a"), .string(nil)], dimensions: nil),
        ]
        for v in values {
            var r = UAReader(encoded { $0.variant(v) })
            #expect(try r.variant() == v, "\(v)")
            #expect(r.remaining == 0)
        }
    }

    @Test func numbersOfEveryNumericType() {
        #expect(Variant.boolean(true).number == 1)
        #expect(Variant.uint64(7).number == 7)
        #expect(Variant.float(0.5).number == 0.5)
        #expect(Variant.string("5").number == nil)
        #expect(Variant.array(type: 11, elements: [.double(1)], dimensions: nil).number == nil)
    }

    @Test func nodeIdTextForms() {
        for text in ["i=85", "ns=2;i=5", "ns=2;s=Demo.Static/Scalar", "ns=1;b=AQID"] {
            #expect(NodeId(text: text)?.description == text)
        }
        for bad in ["", "i=", "x=1", "ns=70000;i=1", "ns=2;i=-1", "ns=2", "i=99999999999", "ns=1;g=zz", "ns=1;b=!!"] {
            #expect(NodeId(text: bad) == nil, "\(bad)")
        }
        #expect(QualifiedName(text: "2:Press1") == QualifiedName(2, "Press1"))
        #expect(QualifiedName(text: "Objects") == QualifiedName(0, "Objects"))
    }

    @Test func endpointURLs() throws {
        let e = try EndpointURL("opc.tcp://plc.local:4841/UA/Server")
        #expect(e.host == "plc.local" && e.port == 4841)
        #expect(try EndpointURL("opc.tcp://[::1]:4840").host == "::1")
        #expect(try EndpointURL("opc.tcp://10.0.0.5").port == 4840)
        for bad in ["http://x:1", "opc.tcp://:4840", "opc.tcp://h:0", "opc.tcp://h:99999", "opc.tcp://h:x", "opc.tcp://[::1"] {
            #expect(throws: UAError.self) { try EndpointURL(bad) }
        }
    }

    @Test func dateTimesOutsideTwindsRangeAreNoTime() {
        #expect(UADateTime.unixNanos(0) == nil)
        #expect(UADateTime.unixNanos(Int64.max) == nil)
        #expect(UADateTime.unixNanos(UADateTime.unixEpochTicks) == nil)
        #expect(UADateTime.unixNanos(UADateTime.unixEpochTicks + 10) == 1000)
        #expect(UADateTime.unixNanos(Int64.min) == nil)
    }

    @Test func statusCodesByName() {
        #expect(StatusCode.badUserAccessDenied.description == "BadUserAccessDenied (0x801F0000)")
        #expect(StatusCode(0x8034_0400).name == "BadNodeIdUnknown")  // info bits do not change the name
        #expect(StatusCode(0x80FF_0000).name == "0x80FF0000")
        #expect(StatusCode(0x4092_0000).isUncertain && !StatusCode(0x4092_0000).isGood)
    }
}

/// The fuzz tier of the decoders: whatever a server sends, the client throws BadDecodingError
/// or decodes; it never traps, never allocates what the bytes cannot hold.
@Suite struct HostileBytes {
    struct SplitMix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func decodeEverything(_ bytes: [UInt8]) {
        var a = UAReader(bytes); _ = try? a.variant()
        var b = UAReader(bytes); _ = try? b.dataValue()
        var c = UAReader(bytes); _ = try? c.publishResult()
        var d = UAReader(bytes); _ = try? d.responseHeader()
        var e = UAReader(bytes); _ = try? e.endpointDescription()
        var f = UAReader(bytes); _ = try? f.referenceDescription()
        var g = UAReader(bytes); _ = try? g.expandedNodeId()
        var h = UAReader(bytes); _ = try? h.skipDiagnosticInfo()
        _ = EngineeringInfo.unit(.extensionObject(ExtensionObject(typeId: NodeId(0, UAType.euInformation), encoding: 1, body: bytes)))
        _ = EngineeringInfo.range(.extensionObject(ExtensionObject(typeId: NodeId(0, UAType.range), encoding: 1, body: bytes)))
    }

    @Test func everyTruncationOfRealMessagesThrows() {
        let samples: [([UInt8], (inout UAReader) throws -> Void)] = [
            (hex("0f0b000000000000294000008c8000f47e276e81dd01808a17286e81dd01"), { _ = try $0.dataValue() }),
            (hex("cb06000000000000000000f03f00000000000000400000000000000840000000000000104000000000000014400000000000001840020000000200000003000000"), { _ = try $0.variant() }),
            (hex("01007903014d0000002f000000687474703a2f2f7777772e6f7063666f756e646174696f6e2e6f72672f55412f756e6974732f756e2f6365666163744c4b4b0002020000006b4e020a0000006b696c6f6e6577746f6e"), { _ = try $0.extensionObject() }),
        ]
        for (sample, decode) in samples {
            for n in 0..<sample.count {
                let cut = Array(sample.prefix(n))
                var r = UAReader(cut)
                #expect(throws: UAError.self) { try decode(&r) }
                Self.decodeEverything(cut)
            }
        }
    }

    @Test func hugeCountsAndDeepNestingAreRefused() {
        // An array claiming 2^31-1 elements in 4 bytes; a string claiming 1 GiB.
        var a = UAReader(hex("8b FFFFFF7F"))
        #expect(throws: UAError.self) { _ = try a.variant() }
        var s = UAReader(hex("0c 00000040 41"))
        #expect(throws: UAError.self) { _ = try s.variant() }
        // Variants in Variants, 10,000 deep.
        var deep = UAReader([UInt8](repeating: 24, count: 10_000) + [0])
        #expect(throws: UAError.self) { _ = try deep.variant() }
        var diag = UAReader([UInt8](repeating: 0x40, count: 10_000))
        #expect(throws: UAError.self) { try diag.skipDiagnosticInfo() }
        // Dimensions that do not multiply to the element count, and ones that overflow.
        var dims = UAReader(hex("c6 02000000 01000000 02000000 02000000 FFFFFF7F FFFFFF7F"))
        #expect(throws: UAError.self) { _ = try dims.variant() }
    }

    @Test func randomAndMutatedBytesNeverCrash() {
        var rng = SplitMix(state: 20_261_205)
        let seeds = [
            hex("0f0b000000000000294000008c8000f47e276e81dd01808a17286e81dd01"),
            hex("01002b03011a0000000100000007000000030b0000000000000a400000000000000000"),
        ]
        for i in 0..<5_000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<Int(rng.next() % 96)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                bytes = seeds[i % seeds.count]
                for _ in 0..<(1 + rng.next() % 4) where !bytes.isEmpty {
                    bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            Self.decodeEverything(bytes)
        }
    }
}
