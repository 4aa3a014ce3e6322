import MillraceFormat
import MillraceWire
import TestSupport
import Testing

@testable import MillraceServer
@testable import MillraceStorage

/// Parking invalid records: however many there are and however long their reasons, the
/// quarantine batches stay within the batch limits, in order, with every record in them.
@Suite struct QuarantineBatchTests {
    static let timestamp: Int64 = 1_700_000_000_000

    /// The longest reason the headers can carry: a path, rule and message past their limits,
    /// with multi-byte characters where the cut falls, the longest topic name and numbers.
    static let worstOutcome = RecordOutcome(
        index: .min, kind: .invalid, schemaVersion: .max, path: "/" + String(repeating: "é", count: 2_000),
        rule: String(repeating: "r", count: 200), message: "xy" + String(repeating: "€", count: 2_000))
    static let longestTopic = String(repeating: "t", count: Limits.topicNameBytesMax)

    static func incompressible(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// A one-record batch of exactly `bytes`, its value incompressible.
    static func batch(ofBytes bytes: Int, seed: UInt64) throws -> RecordBatch {
        let probe = 500_000
        let overhead = try RecordBatch(timestamp: timestamp, values: [incompressible(probe, seed: seed)]).encoded().count - probe
        let batch = RecordBatch(timestamp: timestamp, values: [incompressible(bytes - overhead, seed: seed)])
        #expect(try batch.encoded().count == bytes)
        return batch
    }

    @Test func theHeadersParkingAddsAreBoundedAndCutAtACharacterBoundary() throws {
        let original = Record(offsetDelta: 0, key: Array("K".utf8), value: Array("{}".utf8))
        let parked = RequestDispatcher.parkedRecord(original, Self.worstOutcome, topic: Self.longestTopic, partition: .min)
        let added = RecordBatch.encodedBytesMax(parked) - RecordBatch.encodedBytesMax(original)
        #expect(added > 3_500 && added <= Limits.quarantineHeadersBytesMax, "\(added)")
        let headers = Dictionary(parked.headers.map { ($0.key, $0.value ?? []) }, uniquingKeysWith: { first, _ in first })
        let path = try #require(headers["millrace-error-path"])
        let rule = try #require(headers["millrace-error-rule"])
        // Byte 1,024 of the path and of the message falls inside a character: cut before it.
        #expect(path.count == Limits.outcomePathBytesMax - 1)
        #expect(rule.count == Limits.outcomeRuleBytesMax)
        // Whole characters only: the text decodes as it was written, a prefix of the reason.
        let pathText = String(decoding: path, as: UTF8.self)
        #expect(Array(pathText.utf8) == path && Self.worstOutcome.path.hasPrefix(pathText))
        let error = String(decoding: try #require(headers["millrace-error"]), as: UTF8.self)
        #expect(error == "record -2147483648: \(pathText): xy" + String(repeating: "€", count: (Limits.outcomeMessageBytesMax - 2) / 3))
        #expect(Array(error.utf8) == headers["millrace-error"] && !error.contains("\u{FFFD}"))
        #expect(headers["millrace-source-partition"] == Array("-2147483648".utf8))
        #expect(headers[schemaVersionHeader] == Array(String(Int32.max).utf8))
    }

    /// A record whose batch of its own left `quarantineHeadersBytesMax` under the limit
    /// parks, whatever its reason, uncompressed.
    @Test func aRecordWithRoomForTheHeadersAlwaysParks() throws {
        let original = try Self.batch(ofBytes: Limits.batchBytesMax - Limits.quarantineHeadersBytesMax, seed: 7)
        let parking = try RequestDispatcher.quarantineBatches(
            [(0, 0, Self.worstOutcome)], hashes: nil, from: [original], topic: Self.longestTopic, partition: .min)
        #expect(parking.counts == [1] && parking.batches.count == 1)
        let bytes = try #require(parking.batches.first)
        #expect(bytes.count <= Limits.batchBytesMax)
        let header = try RecordBatch.verify(bytes, depth: .records)
        #expect(header.attributes.codec == CompressionCodec.none)
        #expect(try RecordBatch.decode(bytes).records.first?.value == original.records[0].value)
    }

    /// A record at the very limit cannot take the headers: compressed when that makes it fit
    /// (it may have come compressed), else refused with a reason — never a trap.
    @Test func aRecordAtTheLimitIsCompressedOrRefused() throws {
        let full = try Self.batch(ofBytes: Limits.batchBytesMax, seed: 11)
        let error = #expect(throws: MillraceError.self) {
            try RequestDispatcher.quarantineBatches([(0, 0, Self.worstOutcome)], hashes: nil, from: [full], topic: "t", partition: 0)
        }
        #expect(error?.code == .batchTooLarge && error?.message.contains("cannot be parked") == true, "\(String(describing: error))")
        // 2 MiB of one letter, as a zstd batch would have brought it.
        let repetitive = RecordBatch(timestamp: Self.timestamp, values: [[UInt8](repeating: UInt8(ascii: "a"), count: 2 << 20)])
        let parking = try RequestDispatcher.quarantineBatches([(0, 0, Self.worstOutcome)], hashes: nil, from: [repetitive], topic: "t", partition: 0)
        let bytes = try #require(parking.batches.first)
        #expect(parking.batches.count == 1 && bytes.count <= Limits.batchBytesMax)
        #expect(try RecordBatch.verify(bytes, depth: .records).attributes.codec == .zstd)
        #expect(try RecordBatch.decode(bytes).records.first?.value == repetitive.records[0].value)
    }

    /// More records than one batch may hold, and more bytes: split into batches each within
    /// both limits, every record once, in order, with its timestamp and its dedup hash.
    @Test func manyRecordsSplitIntoBatchesWithinBothLimits() throws {
        let values = (0..<40_000).map { Array("\($0)".utf8) }
        let sources = [
            RecordBatch(timestamp: Self.timestamp, values: Array(values[..<20_000])),
            RecordBatch(timestamp: Self.timestamp + 5, values: Array(values[20_000...])),
        ]
        var invalid: [(batch: Int, record: Int, outcome: RecordOutcome)] = []
        for index in 0..<40_000 where index % 7 != 3 {
            invalid.append((index / 20_000, index % 20_000, RecordOutcome(index: Int32(index), kind: .invalid, path: "/", rule: "json", message: "not JSON")))
        }
        let hashes = invalid.map { DedupHash(Array("key-\($0.outcome.index)".utf8)) }
        let parking = try RequestDispatcher.quarantineBatches(invalid, hashes: hashes, from: sources, topic: "confirmations", partition: 3)
        #expect(parking.batches.count > 1)
        #expect(parking.counts.reduce(0, +) == invalid.count)
        #expect(parking.hashes?.flatMap { $0 } == hashes)
        #expect(parking.hashes?.map(\.count) == parking.counts)
        var parked: [(value: [UInt8]?, timestamp: Int64)] = []
        for (bytes, count) in zip(parking.batches, parking.counts) {
            #expect(bytes.count <= Limits.batchBytesMax)
            #expect(try Int(RecordBatch.verify(bytes, depth: .records).recordCount) == count)
            let batch = try RecordBatch.decode(bytes)
            parked += batch.records.map { ($0.value, batch.baseTimestamp + $0.timestampDelta) }
        }
        #expect(parked.map(\.value) == invalid.map { values[Int($0.outcome.index)] })
        #expect(parked.map(\.timestamp) == invalid.map { $0.batch == 0 ? Self.timestamp : Self.timestamp + 5 })
    }

    /// Timestamps a peer chose at the ends of Int64 park without an overflow.
    @Test func extremeTimestampsParkWithoutOverflow() throws {
        let sources = [
            // As decoded from a peer's bytes: the header's max timestamp, not one worked out.
            RecordBatch(
                baseTimestamp: .max, maxTimestamp: .max,
                records: [Record(timestampDelta: 5, offsetDelta: 0, value: [1]), Record(timestampDelta: 0, offsetDelta: 1, value: [2])]),
            RecordBatch(baseTimestamp: .min, maxTimestamp: .min, records: [Record(timestampDelta: -5, offsetDelta: 0, value: [3])]),
        ]
        let outcome = RecordOutcome(index: 0, kind: .invalid, rule: "json", message: "not JSON")
        let parking = try RequestDispatcher.quarantineBatches([(0, 0, outcome), (0, 1, outcome), (1, 0, outcome)], hashes: nil, from: sources, topic: "t", partition: 0)
        #expect(parking.counts == [2, 1])
        for bytes in parking.batches { _ = try RecordBatch.verify(bytes, depth: .records) }
        #expect(try parking.batches.flatMap { try RecordBatch.decode($0).records.map(\.value) } == [[1], [2], [3]])
    }

    /// The answer across several quarantine batches: new records take the offsets in order,
    /// one the quarantine held (found in the second batch) is answered with the original.
    @Test func parkedOutcomesSpanTheBatches() {
        let outcomes = (0..<5).map { RecordOutcome(index: Int32($0 * 2), kind: .invalid) }
        var appended = AppendResult(baseOffset: 100, lastOffset: 103, logStartOffset: 0)
        appended.duplicates = [DuplicateRecord(batch: 1, record: 1, partition: 0, offset: 7)]
        let placed = RequestDispatcher.parkedOutcomes(outcomes, appended, counts: [2, 3])
        #expect(placed.outcomes.map(\.offset) == [100, 101, 102, 7, 103])
        #expect(placed.outcomes.allSatisfy { $0.kind == .quarantined })
        #expect(placed.parked == 4)
    }
}
