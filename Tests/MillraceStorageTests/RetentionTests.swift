import MillraceFormat
import Testing

@testable import MillraceStorage

@Suite struct RetentionTests {
    @Test func policyByTimeAndBytes() {
        let byTime = TopicConfig(retentionMs: 1_000)
        #expect(RetentionPolicy.shouldDelete(batchMaxTimestamp: 0, batchBytes: 10, partitionBytes: 10, config: byTime, nowMs: 1_001))
        #expect(!RetentionPolicy.shouldDelete(batchMaxTimestamp: 1, batchBytes: 10, partitionBytes: 10, config: byTime, nowMs: 1_001))
        let byBytes = TopicConfig(retentionBytes: 100)
        #expect(RetentionPolicy.shouldDelete(batchMaxTimestamp: 0, batchBytes: 10, partitionBytes: 110, config: byBytes, nowMs: 0))
        #expect(!RetentionPolicy.shouldDelete(batchMaxTimestamp: 0, batchBytes: 10, partitionBytes: 109, config: byBytes, nowMs: 0))
        #expect(!RetentionPolicy.shouldDelete(batchMaxTimestamp: 0, batchBytes: 10, partitionBytes: 1 << 40, config: TopicConfig(), nowMs: .max))
    }

    @Test func retentionByTimeDeletesOldBatchesFromTheHead() async throws {
        let clock = TestClock(10_500)  // retention cut-off 9,500: older batches go
        try await withStorage(clock: clock) { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1, config: TopicConfig(retentionMs: 1_000))
            _ = try await storage.append(topic: "t", partition: 0, batch: batch(["a", "b"], timestamp: 9_000))
            _ = try await storage.append(topic: "t", partition: 0, batch: batch(["c"], timestamp: 9_500))
            _ = try await storage.append(topic: "t", partition: 0, batch: batch(["d"], timestamp: 10_000))
            var report = try await storage.enforceRetention()
            #expect(report.batchesDeleted == 1)
            var offsets = try storage.offsets(topic: "t", partition: 0)
            #expect(offsets.logStartOffset == 2 && offsets.nextOffset == 4 && offsets.batchCount == 2)
            #expect(await errorCode { _ = try storage.read(topic: "t", partition: 0, from: 1, maxBytes: 1 << 20) } == .offsetOutOfRange)
            #expect(try values(in: storage.read(topic: "t", partition: 0, from: 2, maxBytes: 1 << 20)) == ["c", "d"])
            // Time look-ups below the log start land on the first record still stored.
            #expect(try storage.offset(forTimestamp: 0, topic: "t", partition: 0) == TimestampLookup(offset: 2, timestamp: 9_500))
            clock.advance(by: 5_000)
            report = try await storage.enforceRetention()
            #expect(report.batchesDeleted == 2)
            offsets = try storage.offsets(topic: "t", partition: 0)
            #expect(offsets.logStartOffset == 4 && offsets.nextOffset == 4 && offsets.bytes == 0)
            #expect(try storage.read(topic: "t", partition: 0, from: 4, maxBytes: 1 << 20).batchCount == 0)
            let next = try await storage.append(topic: "t", partition: 0, batch: batch(["e"], timestamp: 15_000))
            #expect(next.baseOffset == 4 && next.logStartOffset == 4)
            #expect(try storage.verify().problems.isEmpty)
        }
    }

    @Test func retentionByBytesKeepsAtLeastTheLimit() async throws {
        try await withStorage { storage, _ in
            let one = batch(["0123456789"])
            let limit = Int64(one.count * 3)
            _ = try await storage.createTopic("t", partitions: 1, config: TopicConfig(retentionBytes: limit))
            for _ in 0..<10 { _ = try await storage.append(topic: "t", partition: 0, batch: one) }
            _ = try await storage.enforceRetention()
            let offsets = try storage.offsets(topic: "t", partition: 0)
            #expect(offsets.bytes == limit && offsets.logStartOffset == 7 && offsets.nextOffset == 10)
            #expect(try storage.verify().problems.isEmpty)
        }
    }

    /// Under steady load with retention, LMDB reuses freed pages: the file stops growing.
    @Test func theDataFileReachesASteadySize() async throws {
        try await withStorage { storage, directory in
            let payload = batch(Array(repeating: String(repeating: "p", count: 250), count: 100))
            _ = try await storage.createTopic("t", partitions: 1, config: TopicConfig(retentionBytes: Int64(payload.count * 20)))
            var sizes: [Int64] = []
            for round in 0..<40 {
                for _ in 0..<20 { _ = try await storage.append(topic: "t", partition: 0, batch: payload) }
                _ = try await storage.enforceRetention()
                if round % 10 == 9 { sizes.append(storage.info.fileBytes) }
            }
            // 800 batches (~21 MB) went through; the file holds ~20 of them plus free pages.
            #expect(sizes.last! == sizes[1], "file sizes by round: \(sizes)")
            #expect(sizes.last! < Int64(payload.count * 200), "file sizes by round: \(sizes)")
            _ = directory
        }
    }
}
