import MillraceFormat
import MillraceWire
import NIOCore
import Testing

@testable import MillraceClient

/// What the consumer reads from a fetch response before decoding it (the positions its next
/// fetch asks from), and how it takes batches that do not fit the response.
@Suite struct ConsumerDecodeTests {
    func batch(baseOffset: Int64, values: [String]) throws -> [UInt8] {
        var bytes = try RecordBatch(timestamp: 1_700_000_000_000, values: values.map { Array($0.utf8) }).encoded()
        bytes.withUnsafeMutableBytes { RecordBatch.patchBaseOffset(baseOffset, in: $0) }
        return bytes
    }

    func result(_ bytes: [UInt8]) -> FetchPartitionResult {
        FetchPartitionResult(partition: 0, logStartOffset: 0, logEndOffset: 100, records: ByteBuffer(bytes: bytes))
    }

    @Test func thePositionAfterAResponseIsWhereItsLastBatchEnds() throws {
        let two = try batch(baseOffset: 10, values: ["a", "b"]) + batch(baseOffset: 12, values: ["c", "d", "e"])
        #expect(try Consumer.Iterator.position(after: result(two), from: 11) == 15)
        // A response that starts before the position (its first batch holds it) never moves back.
        #expect(try Consumer.Iterator.position(after: result(two), from: 40) == 40)
        #expect(try Consumer.Iterator.position(after: result([]), from: 7) == 7)
    }

    @Test func aBatchLongerThanTheResponseIsAnErrorNotATrap() throws {
        var bytes = try batch(baseOffset: 0, values: ["x", "y"])
        for claimed in [Int32(bytes.count), Int32.max, -1, 0, 48] {
            var broken = bytes
            broken.replaceSubrange(8..<12, with: withUnsafeBytes(of: claimed.bigEndian, Array.init))
            #expect(throws: MillraceError.self) { try Consumer.Iterator.position(after: result(broken), from: 0) }
        }
        bytes.removeLast()
        #expect(throws: MillraceError.self) { try Consumer.Iterator.position(after: result(bytes), from: 0) }
    }
}
