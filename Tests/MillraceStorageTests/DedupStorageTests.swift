import Foundation
import MillraceFormat
import Testing

@testable import MillraceStorage

extension Storage {
    /// Appends one batch of `keys` (each record's value is its key) with their dedup hashes.
    func appendKeyed(_ topic: String, _ partition: Int32, _ keys: [String]) async throws -> AppendResult {
        let bytes = batch(keys)
        let hashes: [[DedupHash?]] = [keys.map { DedupHash(Array($0.utf8)) }]
        return try await withCheckedThrowingContinuation { continuation in
            append(topic: topic, partition: partition, batches: [bytes], dedupHashes: hashes) { continuation.resume(with: $0) }
        }
    }
}

@Suite struct DedupStorageTests {
    let policy = DedupPolicy(key: .recordKey, windowMs: 3_600_000)

    @Test func aHeldKeyIsNotAppendedAgainAndNamesItsOriginal() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 2, config: TopicConfig(dedup: policy))
            let first = try await storage.appendKeyed("t", 0, ["a", "b", "a"])
            #expect(first.baseOffset == 0 && first.lastOffset == 1)
            #expect(first.duplicates == [DuplicateRecord(batch: 0, record: 2, partition: 0, offset: 0)])
            // Another partition, another transaction: still the same topic's keys.
            let second = try await storage.appendKeyed("t", 1, ["b", "c"])
            #expect(second.duplicates == [DuplicateRecord(batch: 0, record: 0, partition: 0, offset: 1)])
            #expect(second.baseOffset == 0 && second.lastOffset == 0)
            let all = try await storage.appendKeyed("t", 1, ["a", "c"])
            #expect(all.baseOffset == -1 && all.duplicates.map(\.offset) == [0, 0] && all.duplicates.map(\.partition) == [0, 1])
            #expect(try values(in: storage.read(topic: "t", partition: 0, from: 0, maxBytes: 1 << 20)) == ["a", "b"])
            #expect(try values(in: storage.read(topic: "t", partition: 1, from: 0, maxBytes: 1 << 20)) == ["c"])
            #expect(try storage.dedupLookup(topic: "t", key: Array("c".utf8)) == DedupHit(partition: 1, offset: 0, firstSeenMs: 1_700_000_000_000))
            #expect(try storage.dedupLookup(topic: "t", key: Array("z".utf8)) == nil)
            let status = try #require(storage.dedupStatus(topic: "t"))
            #expect(status.keysHeld == 3 && status.duplicatesTotal == 4 && status.duplicatesRecent == 4)
        }
    }

    /// Hundreds of small transactions make runs that merge; every key is still found, with
    /// its original offset, and across a restart.
    @Test func keysSurviveMergesAndARestart() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let options = testOptions()
        var storage = try Storage.open(directory: directory.path, options: options)
        _ = try await storage.createTopic("t", partitions: 1, config: TopicConfig(dedup: policy))
        for round in 0..<200 {
            let result = try await storage.appendKeyed("t", 0, (0..<7).map { "key-\(round)-\($0)" })
            #expect(result.duplicates.isEmpty && result.baseOffset == Int64(round * 7))
        }
        let runs = try #require(storage.dedupStatus(topic: "t")).runs
        #expect(runs < 40, "\(runs) runs for 200 transactions: merges did not happen")
        storage.close()
        storage = try Storage.open(directory: directory.path, options: options)
        defer { storage.close() }
        #expect(try #require(storage.dedupStatus(topic: "t")).keysHeld == 1_400)
        for round in stride(from: 0, to: 200, by: 13) {
            let again = try await storage.appendKeyed("t", 0, (0..<7).map { "key-\(round)-\($0)" } + ["fresh-\(round)"])
            #expect(again.duplicates.map(\.offset) == (0..<7).map { Int64(round * 7 + $0) })
            #expect(again.baseOffset == again.lastOffset)
        }
    }

    @Test func keysExpireWithTheirWindow() async throws {
        let clock = TestClock()
        try await withStorage(clock: clock) { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1, config: TopicConfig(dedup: policy))
            _ = try await storage.appendKeyed("t", 0, ["a"])
            clock.advance(by: 1_800_000)
            _ = try await storage.appendKeyed("t", 0, ["b"])
            clock.advance(by: 1_801_000)
            // "a" is past the window (kept to the second) even before its run goes; "b" is not.
            #expect(try await storage.appendKeyed("t", 0, ["a", "b"]).duplicates.map(\.record) == [1])
            clock.advance(by: 3_600_000)
            #expect(try await storage.enforceRetention().dedupKeysExpired >= 1)
            #expect(try await storage.appendKeyed("t", 0, ["b"]).duplicates.isEmpty)
        }
    }

    @Test func turningDedupOffForgetsTheKeys() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            // Without a policy nothing is checked, hashes or not.
            #expect(try await storage.appendKeyed("t", 0, ["a", "a"]).duplicates.isEmpty)
            _ = try await storage.setDedupPolicy(topic: "t", policy: policy)
            #expect(try await storage.appendKeyed("t", 0, ["a", "a"]).duplicates.count == 1)
            _ = try await storage.setDedupPolicy(topic: "t", policy: nil)
            #expect(storage.dedupStatus(topic: "t") == nil)
            _ = try await storage.setDedupPolicy(topic: "t", policy: policy)
            #expect(try await storage.appendKeyed("t", 0, ["a"]).duplicates.isEmpty)
            #expect(await errorCode { _ = try await storage.setDedupPolicy(topic: "t", policy: DedupPolicy(key: .recordKey, windowMs: 31 * 86_400_000)) } == .invalidConfig)
        }
    }

    /// Each dedup topic holds a fixed filter in memory, so a broker holds a bounded number.
    @Test func dedupTopicsAreBounded() async throws {
        try await withStorage { storage, _ in
            for index in 0..<Limits.dedupTopicsMax { _ = try await storage.createTopic("t\(index)", partitions: 1, config: TopicConfig(dedup: policy)) }
            #expect(await errorCode { _ = try await storage.createTopic("more", partitions: 1, config: TopicConfig(dedup: policy)) } == .limitReached)
            _ = try await storage.createTopic("plain", partitions: 1)
            #expect(await errorCode { _ = try await storage.setDedupPolicy(topic: "plain", policy: policy) } == .limitReached)
            // Changing a topic that has it is fine; turning one off makes room.
            _ = try await storage.setDedupPolicy(topic: "t0", policy: DedupPolicy(key: .header("id")))
            _ = try await storage.setDedupPolicy(topic: "t1", policy: nil)
            _ = try await storage.setDedupPolicy(topic: "plain", policy: policy)
        }
    }

    @Test func runsAndFiltersFindEveryKeyAndFewOthers() throws {
        var entries: [DedupEntry] = []
        for index in 0..<5_000 {
            entries.append(DedupEntry(hash: DedupHash(Array("k\(index)".utf8)), partition: 0, timeSeconds: 1, offset: Int64(index)))
        }
        let bytes = BlockedBloom.bytes(forKeys: entries.count)
        for ordered in [false, true] {
            var filter = [UInt8](repeating: 0, count: bytes)
            filter.withUnsafeMutableBytes { memory in for entry in entries { BlockedBloom.insert(entry.hash, into: memory, ordered: ordered) } }
            filter.withUnsafeBytes { memory in
                #expect(entries.allSatisfy { BlockedBloom.mayContain($0.hash, in: memory, ordered: ordered) })
                let others = (0..<5_000).filter { BlockedBloom.mayContain(DedupHash(Array("other\($0)".utf8)), in: memory, ordered: ordered) }.count
                #expect(others < 150, "\(others) false positives in 5,000 (ordered: \(ordered))")
            }
        }
        #expect(DedupHash(Array("abc".utf8)) == DedupHash(Array("abc".utf8)) && DedupHash(Array("abc".utf8)) != DedupHash(Array("abd".utf8)))
        #expect(Set((0..<10_000).map { DedupHash(Array("\($0)".utf8)) }).count == 10_000)
    }

    /// Interpolation then a gallop finds what a plain binary search finds, from any guess,
    /// for evenly spread hashes and for hashes crafted to share their high word.
    @Test func searchFromAGuessAgreesWithBinarySearch() {
        var generator = SystemRandomNumberGenerator()
        let spread = (0..<3_000).map { _ in DedupHash(high: generator.next(), low: generator.next()) }.sorted()
        let clustered = (0..<3_000).map { _ in DedupHash(high: 42, low: generator.next()) }.sorted()
        for hashes in [spread, clustered, [spread[0]], []] {
            func reference(_ target: DedupHash) -> Int { (hashes.lastIndex { $0 <= target }) ?? -1 }
            var targets = hashes.prefix(200) + [DedupHash(high: 0, low: 0), DedupHash(high: .max, low: .max), DedupHash(high: 42, low: 7)]
            targets += (0..<200).map { _ in DedupHash(high: generator.next(), low: generator.next()) }
            for target in targets {
                let expected = reference(target)
                let interpolated = HashSearch.interpolate(target.high, from: 0, to: .max, count: hashes.count)
                #expect(HashSearch.lastNotAbove(target, count: hashes.count, guess: interpolated) { hashes[$0] } == expected)
                for guess in [0, hashes.count - 1, hashes.count / 3, -5, hashes.count + 9] {
                    #expect(HashSearch.lastNotAbove(target, count: hashes.count, guess: guess) { hashes[$0] } == expected)
                }
            }
        }
        #expect(HashSearch.interpolate(.max, from: 0, to: .max, count: 10) == 9)
        #expect(HashSearch.interpolate(1 << 63, from: 0, to: .max, count: 10) == 5)
        #expect(HashSearch.interpolate(5, from: 10, to: 20, count: 10) == 0)
    }

    /// Runs larger than one chunk merge (read in place from the map, and the transaction's
    /// own run copied), keep every key, and answer after a restart.
    @Test func runsOfManyChunksMergeAndAnswer() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let options = testOptions()
        var storage = try Storage.open(directory: directory.path, options: options)
        _ = try await storage.createTopic("t", partitions: 1, config: TopicConfig(dedup: policy))
        let perRound = DedupLayout.chunkEntries + 500
        for round in 0..<16 {
            let result = try await storage.appendKeyed("t", 0, (0..<perRound).map { "key-\(round)-\($0)" })
            #expect(result.duplicates.isEmpty)
        }
        let status = try #require(storage.dedupStatus(topic: "t"))
        #expect(status.keysHeld == 16 * perRound && status.runs == 1, "\(status.runs) runs holding \(status.keysHeld) keys after sixteen")
        storage.close()
        storage = try Storage.open(directory: directory.path, options: options)
        defer { storage.close() }
        for round in [0, 7, 15] {
            let keys = stride(from: 0, to: perRound, by: 97).map { "key-\(round)-\($0)" }
            let again = try await storage.appendKeyed("t", 0, keys + ["fresh-\(round)"])
            #expect(again.duplicates.map(\.offset) == stride(from: 0, to: perRound, by: 97).map { Int64(round * perRound + $0) })
            #expect(again.baseOffset == again.lastOffset)
        }
    }
}
