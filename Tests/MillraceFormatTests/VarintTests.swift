import MillraceFormat
import Testing
import TestSupport

@Suite struct VarintTests {
    @Test func zigzagEncodingsMatchTheSpec() {
        let cases: [(Int64, String)] = [
            (0, "00"), (-1, "01"), (1, "02"), (-2, "03"), (63, "7e"), (-64, "7f"), (64, "80 01"), (300, "d8 04"),
            (Int64(Int32.max), "fe ff ff ff 0f"), (Int64(Int32.min), "ff ff ff ff 0f"),
            (Int64.max, "fe ff ff ff ff ff ff ff ff 01"), (Int64.min, "ff ff ff ff ff ff ff ff ff 01"),
        ]
        for (value, hex) in cases {
            var writer = ByteWriter()
            writer.writeVarint(value)
            #expect(writer.bytes == hexBytes(hex), "\(value)")
            #expect(ByteWriter.varintSize(value) == writer.bytes.count)
            writer.bytes.withUnsafeBytes { raw in
                var reader = ByteReader(raw)
                #expect((try? reader.readVarint("test")) == value)
                #expect(reader.remaining == 0)
            }
        }
    }

    @Test func roundTripOfRandomValues() {
        var generator = SeededGenerator(seed: 11)
        for _ in 0..<10_000 {
            let value = Int64(bitPattern: generator.next()) >> Int64.random(in: 0...63, using: &generator)
            var writer = ByteWriter()
            writer.writeVarint(value)
            writer.bytes.withUnsafeBytes { raw in
                var reader = ByteReader(raw)
                #expect((try? reader.readVarint("test")) == value)
            }
        }
    }

    @Test func truncatedAndOverlongVarintsThrow() {
        for hex in ["80", "ff ff", "ff ff ff ff ff ff ff ff ff", "ff ff ff ff ff ff ff ff ff 02", ""] {
            hexBytes(hex).withUnsafeBytes { raw in
                var reader = ByteReader(raw)
                #expect(throws: MillraceError.self) { try reader.readVarint("test") }
            }
        }
        // A varlong that does not fit the 32-bit fields.
        hexBytes("80 80 80 80 10").withUnsafeBytes { raw in
            var reader = ByteReader(raw)
            #expect(throws: MillraceError.self) { try reader.readVarint32("test") }
        }
    }
}
