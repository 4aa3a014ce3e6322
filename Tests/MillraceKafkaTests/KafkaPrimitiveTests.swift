import MillraceFormat
import MillraceKafka
import MillraceWire
import NIOCore
import Testing

/// Kafka's primitives and headers: golden bytes written out by hand from the protocol guide
/// and KIP-482, round trips, and bad input that must throw, never trap.
@Suite struct KafkaPrimitiveTests {
    static func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

    @Test func unsignedVarintsAtTheirBoundaries() throws {
        let cases: [(UInt32, [UInt8])] = [
            (0, [0x00]), (1, [0x01]), (127, [0x7F]), (128, [0x80, 0x01]), (300, [0xAC, 0x02]), (16_383, [0xFF, 0x7F]),
            (16_384, [0x80, 0x80, 0x01]), (UInt32.max, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ]
        for (value, encoded) in cases {
            var buffer = ByteBuffer()
            buffer.writeKafkaUnsignedVarint(value)
            #expect(Self.bytes(buffer) == encoded, "\(value)")
            #expect(try buffer.readKafkaUnsignedVarint("v") == value)
            #expect(buffer.readableBytes == 0)
        }
        var tooLong = ByteBuffer(bytes: [0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
        #expect(throws: MillraceError.self) { try tooLong.readKafkaUnsignedVarint("v") }
        var over32 = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0x1F])
        #expect(throws: MillraceError.self) { try over32.readKafkaUnsignedVarint("v") }
        var cut = ByteBuffer(bytes: [0x80])
        #expect(throws: MillraceError.self) { try cut.readKafkaUnsignedVarint("v") }
    }

    @Test func compactAndNullableFields() throws {
        var buffer = ByteBuffer()
        buffer.writeKafkaCompactString("lot")
        buffer.writeKafkaCompactString(nil)
        buffer.writeKafkaNullableString(nil)
        buffer.writeKafkaNullableString("L1")
        buffer.writeKafkaCompactBytes(ByteBuffer(bytes: [1, 2]))
        buffer.writeKafkaCompactArray([Int16(7), 9]) { $0.writeInteger($1) }
        #expect(Self.bytes(buffer) == [0x04, 0x6C, 0x6F, 0x74, 0x00, 0xFF, 0xFF, 0x00, 0x02, 0x4C, 0x31, 0x03, 1, 2, 0x03, 0x00, 0x07, 0x00, 0x09])
        #expect(try buffer.readKafkaCompactString("a") == "lot")
        #expect(try buffer.readKafkaCompactNullableString("b") == nil)
        #expect(try buffer.readKafkaNullableString("c") == nil)
        #expect(try buffer.readKafkaNullableString("d") == "L1")
        #expect(try buffer.readKafkaCompactBytes("e").map(Self.bytes) == [1, 2])
        #expect(try buffer.readKafkaCompactArray("f", minimumElementBytes: 2) { try $0.readMillraceInteger("x", as: Int16.self) } == [7, 9])
        #expect(buffer.readableBytes == 0)
    }

    /// A count the bytes left cannot hold is refused before anything is allocated, whatever
    /// the count (a 4-byte frame claiming four billion elements).
    @Test func impossibleCountsAndLengthsAreRefused() {
        var huge = ByteBuffer()
        huge.writeKafkaUnsignedVarint(UInt32.max)
        #expect(throws: MillraceError.self) { _ = try huge.readKafkaCompactArray("a", minimumElementBytes: 1) { try $0.readMillraceInteger("x", as: UInt8.self) } }
        var long = ByteBuffer(bytes: [0x10, 0x41])
        #expect(throws: MillraceError.self) { _ = try long.readKafkaCompactString("s") }
        var overLimit = ByteBuffer()
        overLimit.writeKafkaCompactString(String(repeating: "x", count: 300))
        #expect { _ = try overLimit.readKafkaCompactString("s", maxBytes: 255) } throws: { ($0 as? MillraceError)?.code == .invalidRequest }
        var nullRequired = ByteBuffer(bytes: [0x00])
        #expect(throws: MillraceError.self) { _ = try nullRequired.readKafkaCompactString("s") }
    }

    @Test func taggedFieldsAreSkippedByTheirSizeAndMustRise() throws {
        // Two fields: tag 0 with 2 bytes, tag 5 with 1 byte; then a marker byte.
        var rising = ByteBuffer(bytes: [0x02, 0x00, 0x02, 0xAA, 0xBB, 0x05, 0x01, 0xCC, 0x7E])
        try rising.skipKafkaTaggedFields("t")
        #expect(rising.readableBytes == 1)
        var falling = ByteBuffer(bytes: [0x02, 0x05, 0x00, 0x01, 0x00])
        #expect(throws: MillraceError.self) { try falling.skipKafkaTaggedFields("t") }
        var oversized = ByteBuffer(bytes: [0x01, 0x00, 0x7F, 0x00])
        #expect(throws: MillraceError.self) { try oversized.skipKafkaTaggedFields("t") }
        var manyClaimed = ByteBuffer(bytes: [0xFF, 0xFF, 0x03])
        #expect(throws: MillraceError.self) { try manyClaimed.skipKafkaTaggedFields("t") }
    }

    /// librdkafka's first request, ApiVersions v3 (flexible: header v2), written out by hand.
    static let apiVersionsV3Request: [UInt8] =
        [0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x07] + Array("rdkafka".utf8) + [0x00]
        + [0x0B] + Array("librdkafka".utf8) + [0x06] + Array("2.0.2".utf8) + [0x00]

    @Test func aFlexibleHeaderAndItsApiVersionsRequest() throws {
        var buffer = ByteBuffer(bytes: Self.apiVersionsV3Request)
        let header = try KafkaRequestHeader(from: &buffer)
        #expect(header == KafkaRequestHeader(apiKey: 18, apiVersion: 3, correlationID: 1, clientID: "rdkafka"))
        #expect(header.api == .apiVersions)
        let request = try KafkaApiVersions.Request(from: &buffer, version: 3)
        #expect(request == KafkaApiVersions.Request(clientSoftwareName: "librdkafka", clientSoftwareVersion: "2.0.2"))
        #expect(buffer.readableBytes == 0)
        var written = ByteBuffer()
        header.write(to: &written)
        request.write(to: &written, version: 3)
        #expect(Self.bytes(written) == Self.apiVersionsV3Request)
    }

    @Test func aHeaderBeforeFlexibleVersionsHasNoTags() throws {
        // Metadata v1 (flexible from v9), null client id, then a body byte.
        var buffer = ByteBuffer(bytes: [0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2A, 0xFF, 0xFF, 0x99])
        let header = try KafkaRequestHeader(from: &buffer)
        #expect(header == KafkaRequestHeader(apiKey: 3, apiVersion: 1, correlationID: 42, clientID: nil))
        #expect(buffer.readableBytes == 1)
        // An api not served is still read, to be answered.
        var unknown = ByteBuffer(bytes: [0x00, 0x45, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x01, 0x63])
        let other = try KafkaRequestHeader(from: &unknown)
        #expect(other.api == nil && other.apiKey == 0x45 && other.clientID == "c")
    }

    @Test func responseHeadersFollowTheApiAndVersion() {
        func header(_ api: Int16, _ version: Int16) -> [UInt8] {
            var buffer = ByteBuffer()
            writeKafkaResponseHeader(for: KafkaRequestHeader(apiKey: api, apiVersion: version, correlationID: 5, clientID: nil), into: &buffer)
            return Self.bytes(buffer)
        }
        #expect(header(3, 8) == [0, 0, 0, 5])
        #expect(header(3, 9) == [0, 0, 0, 5, 0])
        // ApiVersions answers with header v0 even when flexible.
        #expect(header(18, 3) == [0, 0, 0, 5])
    }

    @Test func apiVersionsResponsesAtEveryVersion() throws {
        let response = KafkaApiVersions.Response(
            apis: [KafkaApiVersions.Range(apiKey: 0, minVersion: 3, maxVersion: 9), KafkaApiVersions.Range(apiKey: 18, minVersion: 0, maxVersion: 3)],
            throttleTimeMs: 0)
        var v3 = ByteBuffer()
        response.write(to: &v3, version: 3)
        #expect(Self.bytes(v3) == [0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03, 0x00, 0x09, 0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
        var v0 = ByteBuffer()
        response.write(to: &v0, version: 0)
        #expect(Self.bytes(v0) == [0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x09, 0x00, 0x12, 0x00, 0x00, 0x00, 0x03])
        for version in KafkaApiVersions.versions {
            var buffer = ByteBuffer()
            response.write(to: &buffer, version: version)
            #expect(try KafkaApiVersions.Response(from: &buffer, version: version) == response, "v\(version)")
            #expect(buffer.readableBytes == 0)
        }
    }

    /// Every cut of librdkafka's request throws; none traps.
    @Test func everyTruncationThrows() {
        for length in 0..<Self.apiVersionsV3Request.count {
            var buffer = ByteBuffer(bytes: Self.apiVersionsV3Request[..<length])
            #expect(throws: MillraceError.self, "cut at \(length)") {
                _ = try KafkaRequestHeader(from: &buffer)
                _ = try KafkaApiVersions.Request(from: &buffer, version: 3)
            }
        }
    }
}
