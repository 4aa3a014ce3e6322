import MillraceFormat
import Testing
import TestSupport

@Suite struct CRC32CTests {
    @Test func knownVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        // RFC 3720 (iSCSI) B.4 test vectors.
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum(Array(0..<32)) == 0x46DD_794E)
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test func hardwareAndPortablePathsAgree() {
        var generator = SeededGenerator(seed: 7)
        for length in [1, 3, 7, 8, 9, 15, 16, 63, 64, 65, 1000, 4099] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let portable = bytes.withUnsafeBytes { CRC32C.portableChecksum($0) }
            #expect(CRC32C.checksum(bytes) == portable, "length \(length)")
        }
    }
}
