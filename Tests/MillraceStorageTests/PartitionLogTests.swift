import MillraceFormat
import Testing

@testable import MillraceStorage

@Suite struct PartitionLogTests {
    @Test func emptyPartitionEdges() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let empty = try storage.read(topic: "t", partition: 0, from: 0, maxBytes: 1024)
            #expect(empty.batchCount == 0 && empty.bytes.isEmpty && empty.nextOffset == 0 && empty.nextReadOffset == 0)
            #expect(await errorCode { _ = try storage.read(topic: "t", partition: 0, from: 1, maxBytes: 1024) } == .offsetOutOfRange)
            #expect(await errorCode { _ = try storage.read(topic: "t", partition: 0, from: -1, maxBytes: 1024) } == .offsetOutOfRange)
            #expect(try storage.offset(forTimestamp: 0, topic: "t", partition: 0) == TimestampLookup(offset: 0, timestamp: nil))
            #expect(await errorCode { _ = try storage.read(topic: "t", partition: 1, from: 0, maxBytes: 1024) } == .unknownPartition)
            #expect(await errorCode { _ = try storage.read(topic: "nope", partition: 0, from: 0, maxBytes: 1024) } == .unknownTopic)
        }
    }

    @Test func appendsGetContiguousOffsetsAndReadBack() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 2)
            let first = try await storage.append(topic: "t", partition: 0, batch: batch(["a", "b", "c"]))
            let second = try await storage.append(topic: "t", partition: 0, batch: batch(["d"]))
            let third = try await storage.append(topic: "t", partition: 0, batch: batch(["e", "f"]))
            let other = try await storage.append(topic: "t", partition: 1, batch: batch(["x"]))
            #expect([first.baseOffset, second.baseOffset, third.baseOffset] == [0, 3, 4])
            #expect(first.lastOffset == 2 && third.lastOffset == 5)
            #expect(other.baseOffset == 0)
            let all = try storage.read(topic: "t", partition: 0, from: 0, maxBytes: 1 << 20)
            #expect(try values(in: all) == ["a", "b", "c", "d", "e", "f"])
            #expect(all.batchCount == 3 && all.recordCount == 6 && all.nextReadOffset == 6 && all.nextOffset == 6)
            // Offsets inside a batch return the whole batch holding them.
            let middle = try storage.read(topic: "t", partition: 0, from: 1, maxBytes: 1 << 20)
            #expect(try values(in: middle) == ["a", "b", "c", "d", "e", "f"])
            #expect(try values(in: middle, from: 1) == ["b", "c", "d", "e", "f"])
            let fromFour = try storage.read(topic: "t", partition: 0, from: 4, maxBytes: 1 << 20)
            #expect(try values(in: fromFour) == ["e", "f"])
            // A byte limit below one batch still returns one batch, so readers progress.
            let tiny = try storage.read(topic: "t", partition: 0, from: 0, maxBytes: 1)
            #expect(tiny.batchCount == 1 && tiny.nextReadOffset == 3)
            let atEnd = try storage.read(topic: "t", partition: 0, from: 6, maxBytes: 1 << 20)
            #expect(atEnd.batchCount == 0 && atEnd.nextReadOffset == 6)
            #expect(await errorCode { _ = try storage.read(topic: "t", partition: 0, from: 7, maxBytes: 1) } == .offsetOutOfRange)
            // Stored bytes are the producer's bytes with the base offset patched in.
            let stored = try RecordBatch.decode(Array(fromFour.bytes))
            #expect(stored.baseOffset == 4)
        }
    }

    @Test func badBatchesAreRefusedAndNothingIsStored() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            var corrupt = batch(["a"])
            corrupt[corrupt.count - 1] ^= 0xFF
            #expect(await errorCode { _ = try await storage.append(topic: "t", partition: 0, batch: corrupt) } == .corruptBatch)
            #expect(await errorCode { _ = try await storage.append(topic: "t", partition: 0, batch: [1, 2, 3]) } == .corruptBatch)
            #expect(await errorCode { _ = try await storage.append(topic: "t", partition: 5, batch: batch(["a"])) } == .unknownPartition)
            #expect(await errorCode { _ = try await storage.append(topic: "x", partition: 0, batch: batch(["a"])) } == .unknownTopic)
            let huge = batch([String(repeating: "z", count: Limits.batchBytesMax)])
            #expect(await errorCode { _ = try await storage.append(topic: "t", partition: 0, batch: huge) } == .batchTooLarge)
            #expect(try storage.offsets(topic: "t", partition: 0).nextOffset == 0)
            #expect(try storage.verify().problems.isEmpty)
        }
    }

    @Test func logAppendTimeTopicsAreStampedByTheBroker() async throws {
        let clock = TestClock(5_000)
        try await withStorage(clock: clock) { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1, config: TopicConfig(timestampType: .logAppend))
            let placed = try await storage.append(topic: "t", partition: 0, batch: batch(["a"], timestamp: 1))
            #expect(placed.logAppendTimeMs == 5_000)
            let read = try storage.read(topic: "t", partition: 0, from: 0, maxBytes: 1 << 20)
            let header = try read.bytes.withUnsafeBytes { try RecordBatch.verify($0, depth: .records) }
            #expect(header.attributes.timestampType == .logAppend && header.maxTimestamp == 5_000)
            #expect(try storage.offset(forTimestamp: 4_000, topic: "t", partition: 0) == TimestampLookup(offset: 0, timestamp: 5_000))
        }
    }

    @Test func offsetForTimestampMatchesABruteForceAnswer() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            var generator = SystemRandomNumberGenerator()
            var all: [(offset: Int64, timestamp: Int64)] = []
            for index in 0..<60 {
                // Mostly rising timestamps, with stragglers from the past (a gateway resending).
                let base = Int64(index * 100) + (index % 7 == 0 ? -450 : 0)
                let count = Int.random(in: 1...5, using: &generator)
                let deltas = (0..<count).map { _ in Int64.random(in: 0...90, using: &generator) }
                let records = deltas.enumerated().map { Record(timestampDelta: $1, offsetDelta: Int32($0), value: [1]) }
                let bytes = try RecordBatch(baseTimestamp: base, records: records).encoded()
                let placed = try await storage.append(topic: "t", partition: 0, batch: bytes)
                for (index, delta) in deltas.enumerated() { all.append((placed.baseOffset + Int64(index), base + delta)) }
            }
            let end = Int64(all.count)
            for target in stride(from: Int64(-600), through: 6_200, by: 37) {
                let expected = all.first { $0.timestamp >= target }
                let answer = try storage.offset(forTimestamp: target, topic: "t", partition: 0)
                #expect(answer == TimestampLookup(offset: expected?.offset ?? end, timestamp: expected?.timestamp), "T=\(target)")
            }
            // The index is sparse: entries at least `timeIndexIntervalOffsets` apart.
            let entries = try storage.timeIndexOffsets(topic: "t", partition: 0)
            #expect(entries.first == 0 && entries.count <= Int(end / Limits.timeIndexIntervalOffsets) + 1)
            #expect(zip(entries, entries.dropFirst()).allSatisfy { $1 - $0 >= Limits.timeIndexIntervalOffsets })
        }
    }
}
