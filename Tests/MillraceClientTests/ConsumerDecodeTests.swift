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

    func position(after entry: FetchPartitionResult, from position: Int64) throws -> Int64 {
        var unknown: Set<UInt32> = []
        return try Consumer.Iterator.scan(entry, from: position, unknownDictionaries: &unknown)
    }

    @Test func thePositionAfterAResponseIsWhereItsLastBatchEnds() throws {
        let two = try batch(baseOffset: 10, values: ["a", "b"]) + batch(baseOffset: 12, values: ["c", "d", "e"])
        #expect(try position(after: result(two), from: 11) == 15)
        // A response that starts before the position (its first batch holds it) never moves back.
        #expect(try position(after: result(two), from: 40) == 40)
        #expect(try position(after: result([]), from: 7) == 7)
    }

    @Test func aScanNamesTheDictionariesNotLoadedYet() throws {
        var events: [[UInt8]] = []
        for index in 0..<500 { events.append(Array(#"{"event":"confirmation","lot":"L\#(index * 7_919 % 10_007)","qty":\#(index % 97)}"#.utf8)) }
        let id = try ZstdDictionaries.shared.add(try Zstd.trainDictionary(samples: events, capacity: 2_048))
        var plain = try RecordBatch(timestamp: 1, values: [Array("x".utf8)]).encoded()
        var loaded = try RecordBatch(timestamp: 1, values: [events[0]], codec: .zstd).encoded(dictionary: id)
        plain.withUnsafeMutableBytes { RecordBatch.patchBaseOffset(0, in: $0) }
        loaded.withUnsafeMutableBytes { RecordBatch.patchBaseOffset(1, in: $0) }
        // The same frame naming an id nobody holds (after the frame's magic and descriptor).
        var foreign = loaded
        let other = id &+ 1
        foreign.replaceSubrange((RecordBatchLayout.recordsAt + 5)..<(RecordBatchLayout.recordsAt + 9), with: withUnsafeBytes(of: other.littleEndian, Array.init))
        foreign.withUnsafeMutableBytes { RecordBatch.patchBaseOffset(2, in: $0) }
        var unknown: Set<UInt32> = []
        #expect(try Consumer.Iterator.scan(result(plain + loaded + foreign), from: 0, unknownDictionaries: &unknown) == 3)
        #expect(unknown == [other])
    }

    @Test func aBatchLongerThanTheResponseIsAnErrorNotATrap() throws {
        var bytes = try batch(baseOffset: 0, values: ["x", "y"])
        for claimed in [Int32(bytes.count), Int32.max, -1, 0, 48] {
            var broken = bytes
            broken.replaceSubrange(8..<12, with: withUnsafeBytes(of: claimed.bigEndian, Array.init))
            #expect(throws: MillraceError.self) { try position(after: result(broken), from: 0) }
        }
        bytes.removeLast()
        #expect(throws: MillraceError.self) { try position(after: result(bytes), from: 0) }
    }
}
