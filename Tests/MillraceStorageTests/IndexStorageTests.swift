import Foundation
import MillraceFormat
import Testing

@testable import MillraceStorage

extension Storage {
    /// Appends one batch whose record n holds `values[n]` as its components' lots
    /// (`/components/*/lot`); storage computes the index keys, as a restart does again.
    func appendIndexed(
        _ topic: String, _ partition: Int32, _ values: [[String]], dedupKeys: [String]? = nil
    ) async throws -> AppendResult {
        let bytes = batch(values.map { lots in #"{"components":["# + lots.map { #"{"lot":"\#($0)"}"# }.joined(separator: ",") + "]}" })
        let hashes: [[DedupHash?]]? = dedupKeys.map { [$0.map { DedupHash(Array($0.utf8)) }] }
        return try await withCheckedThrowingContinuation { continuation in
            append(topic: topic, partition: partition, batches: [bytes], dedupHashes: hashes) { continuation.resume(with: $0) }
        }
    }

    func traceAll(_ key: String, topics: [String]? = nil, pageSize: Int = 1_000) throws -> [TraceHit] {
        var hits: [TraceHit] = []
        var cursor: TraceCursor?
        repeat {
            let page = try trace(key: Array(key.utf8), topics: topics, after: cursor, limit: pageSize)
            hits += page.hits
            cursor = page.next
        } while cursor != nil
        return hits
    }
}

@Suite struct IndexStorageTests {
    let policy = IndexPolicy(fields: ["/components/*/lot"])

    /// Hits come in append order across topics and partitions, one per record however many
    /// of its values match, and survive merges and a restart.
    @Test func tracesFollowAppendsAcrossMergesAndARestart() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = TestClock()
        var options = testOptions()
        options.clock = clock
        var storage = try Storage.open(directory: directory.path, options: options)
        _ = try await storage.createTopic("confirmations", partitions: 2, config: TopicConfig(index: policy))
        _ = try await storage.createTopic("shipments", partitions: 1, config: TopicConfig(index: policy))
        _ = try await storage.createTopic("plain", partitions: 1)
        var expected: [(String, Int32, Int64)] = []
        for round in 0..<40 {
            clock.advance(by: 10)
            let topic = round % 3 == 0 ? "shipments" : "confirmations"
            let partition = Int32(round % 2 == 1 && topic == "confirmations" ? 1 : 0)
            // Record 1 holds L-1 twice (two components), record 2 does not hold it.
            let result = try await storage.appendIndexed(topic, partition, [["R-\(round)"], ["L-1", "L-1", "X"], ["L-2"]])
            expected.append((topic, partition, result.baseOffset + 1))
            _ = try await storage.appendIndexed("plain", 0, [["L-1"]])
        }
        let check = { (storage: Storage) throws in
            let hits = try storage.traceAll("L-1", pageSize: 7)
            #expect(hits.map { "\($0.topic)/\($0.partition)/\($0.offset)" } == expected.map { "\($0.0)/\($0.1)/\($0.2)" }, "\(hits.count) hits")
            #expect(hits.allSatisfy { $0.slots == [IndexPolicy.fieldSlot(0)] })
            #expect(zip(hits, hits.dropFirst()).allSatisfy { $0.timeMs <= $1.timeMs })
            #expect(try storage.traceAll("L-1", topics: ["shipments"]).count == expected.filter { $0.0 == "shipments" }.count)
            let seventh = try storage.traceAll("R-7")
            #expect(seventh.map { "\($0.topic)/\($0.partition)/\($0.offset)" } == ["\(expected[7].0)/\(expected[7].1)/\(expected[7].2 - 1)"])
            #expect(try storage.traceAll("nothing").isEmpty)
        }
        try check(storage)
        let status = try #require(try storage.indexStatus(topic: "confirmations"))
        #expect(status.runs < 20 && status.entriesHeld == 40 * 5, "\(status)")
        storage.close()
        storage = try Storage.open(directory: directory.path, options: options)
        defer { storage.close() }
        try check(storage)
        #expect(throws: MillraceError.self) { try storage.trace(key: Array("L-1".utf8), topics: ["missing"]) }
        #expect(throws: MillraceError.self) { try storage.trace(key: Array("L-1".utf8), limit: 0) }
    }

    /// A page deep in a value's hits reads about a page of entries, not every hit before it
    /// (issue 22: each page read and sorted all 200 k, 21.7 s to page through them): runs of
    /// several chunks and the memory table are each entered at the cursor.
    @Test func aPageDeepInAValueReadsAboutAPageOfEntries() async throws {
        let clock = TestClock()
        var options = testOptions(clock: clock)
        options.indexMemoryBytes = 4_000 * MemoryLayout<IndexEntry>.stride
        try await withStorage(options: options) { storage, _ in
            _ = try await storage.createTopic("lots", partitions: 2, config: TopicConfig(index: policy))
            var expected: [String] = []
            for round in 0..<14 {
                clock.advance(by: 1)
                let result = try await storage.appendIndexed("lots", Int32(round % 2), Array(repeating: ["HOT"], count: 1_000))
                expected += (0..<1_000).map { "lots/\(round % 2)/\(result.baseOffset + Int64($0))" }
            }
            #expect(try #require(try storage.indexStatus(topic: "lots")).runs >= 2 && storage.index.memorySnapshot.count > 0)
            for limit in [1_000, 100, 7] {
                var cursor: TraceCursor?
                var hits: [String] = []
                var read = 0
                repeat {
                    let page = try storage.trace(key: Array("HOT".utf8), after: cursor, limit: limit)
                    // A page's hits, and one more to know there is a next page.
                    #expect(page.entriesRead <= limit + 1, "\(page.entriesRead) entries read for \(page.hits.count) hits after \(hits.count)")
                    hits += page.hits.map { "\($0.topic)/\($0.partition)/\($0.offset)" }
                    read += page.entriesRead
                    cursor = page.next
                } while cursor != nil && hits.count <= expected.count
                #expect(hits == expected, "\(hits.count) hits with pages of \(limit)")
                #expect(read <= expected.count + expected.count / limit + 1)
            }
        }
    }

    /// Entries a trace skips (another topic's, a removed record's) count against a page's
    /// read bound too: the trace goes past them a bounded step at a time (pages with no hits
    /// and a cursor), and misses nothing.
    @Test func skippedEntriesCountAgainstAPage() async throws {
        let clock = TestClock()
        try await withStorage(options: testOptions(clock: clock)) { storage, _ in
            _ = try await storage.createTopic("lots", partitions: 1, config: TopicConfig(index: policy))
            _ = try await storage.createTopic("shipments", partitions: 1, config: TopicConfig(index: policy))
            var expected: [Int64] = []
            for round in 0..<4 {
                clock.advance(by: 1)
                _ = try await storage.appendIndexed("lots", 0, Array(repeating: ["HOT"], count: 1_000))
                clock.advance(by: 1)
                let result = try await storage.appendIndexed("shipments", 0, [["HOT"], ["COLD"], ["HOT"]])
                expected += [result.baseOffset, result.baseOffset + 2]
                if round == 0 { #expect(result.baseOffset == 0) }
            }
            var cursor: TraceCursor?
            var offsets: [Int64] = []
            var pages = 0
            repeat {
                let page = try storage.trace(key: Array("HOT".utf8), topics: ["shipments"], after: cursor, limit: 10, entriesMax: 300)
                #expect(page.entriesRead <= 300)
                offsets += page.hits.map(\.offset)
                cursor = page.next
                pages += 1
            } while cursor != nil && pages < 100
            #expect(offsets == expected)
            #expect(pages >= 4_000 / 300)
            #expect(try storage.traceAll("HOT", topics: ["shipments"]).map(\.offset) == expected)
        }
    }

    /// The newest entries live in memory; after a crash the records behind them are indexed
    /// again from the log, in the same places with the same append times, and the index goes
    /// on from there (some entries in runs, some in memory, across topics and partitions).
    @Test func entriesInMemoryComeBackAfterACrash() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = TestClock()
        var options = testOptions(clock: clock)
        options.indexMemoryBytes = 7 * MemoryLayout<IndexEntry>.stride
        var storage = try Storage.open(directory: directory.path, options: options)
        _ = try await storage.createTopic("a", partitions: 2, config: TopicConfig(index: policy))
        _ = try await storage.createTopic("b", partitions: 1, config: TopicConfig(index: policy))
        for round in 0..<9 {
            if round % 4 != 3 { clock.advance(by: 5) }  // some appends share a millisecond
            _ = try await storage.appendIndexed(round % 3 == 0 ? "b" : "a", round % 3 == 0 ? 0 : Int32(round % 2), [["L-1", "R-\(round)"], ["L-1"], ["L-\(round % 2)"]])
        }
        let lots = ["L-0", "L-1", "R-4", "R-8"]
        let before = try lots.map { try storage.traceAll($0) }
        #expect(before[1].count == 22 && before[3].count == 1)
        #expect(storage.index.memorySnapshot.count > 0)
        storage.closeLeavingIndexMemoryForTesting()

        storage = try Storage.open(directory: directory.path, options: options)
        #expect(try lots.map { try storage.traceAll($0) } == before)
        clock.advance(by: 5)
        let next = try await storage.appendIndexed("a", 1, [["L-1"]])
        let after = try storage.traceAll("L-1")
        #expect(after.dropLast().elementsEqual(before[1]) && after.last?.offset == next.baseOffset && after.last?.topic == "a")
        // A graceful close writes memory into a run; nothing is left to index again.
        storage.close()
        var readOnly = options
        readOnly.readOnly = true
        storage = try Storage.open(directory: directory.path, options: readOnly)
        defer { storage.close() }
        #expect(storage.index.memorySnapshot.count == 0)
        #expect(try storage.traceAll("L-1") == after)
    }

    /// A run written from memory knows where each partition it names ended; once retention
    /// has passed all of them (or the topic is gone) the run is deleted whole.
    @Test func retentionDeletesRunsWhoseRecordsAreAllGone() async throws {
        var options = testOptions()
        options.indexMemoryBytes = 6 * MemoryLayout<IndexEntry>.stride
        try await withStorage(options: options) { storage, _ in
            _ = try await storage.createTopic("short", partitions: 2, config: TopicConfig(retentionBytes: 1, index: policy))
            _ = try await storage.createTopic("long", partitions: 1, config: TopicConfig(index: policy))
            _ = try await storage.createTopic("gone", partitions: 1, config: TopicConfig(index: policy))
            // Runs of "short" alone, then runs shared with "long", then runs of "gone" alone.
            for round in 0..<12 { _ = try await storage.appendIndexed("short", Int32(round % 2), [["S-\(round)", "L-1"]]) }
            for round in 0..<6 {
                _ = try await storage.appendIndexed("short", 0, [["S-x\(round)"]])
                _ = try await storage.appendIndexed("long", 0, [["K-\(round)", "L-1"]])
            }
            for round in 0..<6 { _ = try await storage.appendIndexed("gone", 0, [["G-\(round)", "L-1"]]) }
            _ = try await storage.appendIndexed("short", 0, [["S-last"]])
            _ = try await storage.appendIndexed("short", 1, [["S-last"]])
            let before = try #require(try storage.indexStatus(topic: "long"))
            #expect(try storage.traceAll("L-1").count == 24)
            try await storage.deleteTopic("gone")
            let report = try await storage.enforceRetention()
            let after = try #require(try storage.indexStatus(topic: "long"))
            // The runs of "short" alone and of "gone" go; the shared ones and the newest stay.
            #expect(report.indexRunsDeleted >= 3 && after.runs == before.runs - report.indexRunsDeleted, "\(report) \(before) \(after)")
            #expect(after.entriesHeld < before.entriesHeld)
            #expect(try storage.traceAll("L-1").map(\.topic) == Array(repeating: "long", count: 6))
            #expect(try storage.traceAll("K-5").count == 1 && storage.traceAll("S-last").count == 2 && storage.traceAll("S-3").isEmpty)
            // Nothing more to delete: the rest reach records still held.
            #expect(try await storage.enforceRetention().indexRunsDeleted == 0)
        }
    }

    /// Many small transactions leave many segments in memory; past a bound the newest half
    /// merge, and traces see every entry in order throughout.
    @Test func manySmallTransactionsKeepTheTableBounded() async throws {
        let clock = TestClock()
        try await withStorage(clock: clock) { storage, _ in
            _ = try await storage.createTopic("t", partitions: 3, config: TopicConfig(index: policy))
            for round in 0..<600 {
                clock.advance(by: 1)
                _ = try await storage.appendIndexed("t", Int32(round % 3), [["L-1", "R-\(round)"]])
            }
            #expect(storage.index.memorySnapshot.segments.count <= IndexMemory.segmentsMax)
            #expect(storage.index.memorySnapshot.count == 1_200)
            let hits = try storage.traceAll("L-1")
            #expect(hits.map { "\($0.partition)/\($0.offset)" } == (0..<600).map { "\($0 % 3)/\($0 / 3)" })
            #expect(try (0..<600).allSatisfy { try storage.traceAll("R-\($0)").count == 1 })
        }
    }

    /// Batches retention removed are no longer hits at once; their entries go when their
    /// runs merge.
    @Test func retentionRemovesHitsAndMergesDropTheirEntries() async throws {
        var options = testOptions()
        options.indexMemoryBytes = MemoryLayout<IndexEntry>.stride  // a run per transaction, so merges come soon
        try await withStorage(options: options) { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1, config: TopicConfig(retentionBytes: 1, index: policy))
            for round in 0..<20 { _ = try await storage.appendIndexed("t", 0, [["L-1"], ["K-\(round)"]]) }
            #expect(try storage.traceAll("L-1").count == 20)
            _ = try await storage.enforceRetention()
            // Retention keeps the newest batch (at least one byte).
            let kept = try storage.traceAll("L-1")
            #expect(kept.map(\.offset) == [38], "\(kept.map(\.offset))")
            #expect(try storage.traceAll("K-3").isEmpty && storage.traceAll("K-19").count == 1)
            for round in 20..<40 { _ = try await storage.appendIndexed("t", 0, [["M-\(round)"]]) }
            let status = try #require(try storage.indexStatus(topic: "t"))
            #expect(status.entriesWritten == 60 && status.entriesHeld < 60, "\(status)")
        }
    }

    /// A duplicate is not appended, so not indexed; indexing turned on later covers records
    /// appended from then on, and the policy survives a restart.
    @Test func onlyAppendedRecordsAreIndexedAndThePolicyPersists() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        var storage = try Storage.open(directory: directory.path, options: testOptions())
        _ = try await storage.createTopic("d", partitions: 1, config: TopicConfig(dedup: DedupPolicy(key: .recordKey), index: policy))
        _ = try await storage.appendIndexed("d", 0, [["L-9"], ["L-9"]], dedupKeys: ["e1", "e2"])
        let again = try await storage.appendIndexed("d", 0, [["L-9"], ["L-9"], ["L-9"]], dedupKeys: ["e2", "e3", "e1"])
        #expect(again.duplicates.map(\.record) == [0, 2])
        #expect(try storage.traceAll("L-9").map(\.offset) == [0, 1, 2])
        _ = try await storage.createTopic("late", partitions: 1)
        _ = try await storage.appendIndexed("late", 0, [["L-9"]])
        let info = try await storage.setIndexPolicy(topic: "late", policy: IndexPolicy(recordKey: true, fields: ["/components/*/lot"], links: [IndexLink(parent: "/a", child: "/b")]))
        #expect(info.config.index?.links.first?.description == "/a:/b")
        _ = try await storage.appendIndexed("late", 0, [["L-9"]])
        #expect(try storage.traceAll("L-9", topics: ["late"]).map(\.offset) == [1])
        storage.close()
        storage = try Storage.open(directory: directory.path, options: testOptions())
        defer { storage.close() }
        #expect(storage.topicInfo("late")?.config.index == IndexPolicy(recordKey: true, fields: ["/components/*/lot"], links: [IndexLink(parent: "/a", child: "/b")]))
        #expect(storage.topicInfo("d")?.config.index == policy && storage.topicInfo("d")?.config.dedup != nil)
        let off = try await storage.setIndexPolicy(topic: "late", policy: IndexPolicy())
        #expect(off.config.index == nil)
        await #expect(throws: MillraceError.self) {
            _ = try await storage.setIndexPolicy(topic: "late", policy: IndexPolicy(fields: (0...8).map { "/f\($0)" }))
        }
        await #expect(throws: MillraceError.self) { _ = try await storage.setIndexPolicy(topic: "late", policy: IndexPolicy(fields: ["lot"])) }
        #expect(throws: MillraceError.self) { try IndexLink(parsing: "/a-/b") }
        #expect(try IndexLink(parsing: " /parentLot -> /childLot ") == IndexLink(parent: "/parentLot", child: "/childLot"))
        // Issue 23, item 7: the form safe unquoted in a shell, wildcards and colons in names too.
        #expect(try IndexLink(parsing: "/parentLot:/childLot") == IndexLink(parent: "/parentLot", child: "/childLot"))
        #expect(try IndexLink(parsing: "/components/*/lot:/serial") == IndexLink(parent: "/components/*/lot", child: "/serial"))
        #expect(try IndexLink(parsing: "/plant:lot:/child") == IndexLink(parent: "/plant:lot", child: "/child"))
        #expect(throws: MillraceError.self) { try IndexLink(parsing: "/a:/b:/c") }
        #expect(throws: MillraceError.self) { try IndexLink(parsing: "/parentLot-") }
    }

    /// The bucket sort puts entries in the same order as a comparison sort, shared values too.
    @Test func entriesSortByHashThenPlace() {
        var generator = SystemRandomNumberGenerator()
        for count in [0, 5, 33, 1_000, 20_000] {
            let shared = (0..<20).map { _ in DedupHash(high: generator.next(), low: generator.next()) }
            var entries: [IndexEntry] = []
            for index in 0..<count {
                let hash = index % 3 == 0 ? shared[index % 20] : DedupHash(high: generator.next(), low: generator.next())
                let place = (topic: UInt32(index % 4), partition: UInt16(index % 5), slot: UInt8(index % 3))
                entries.append(
                    IndexEntry(hash: hash, timeMs: Int64(index % 7), offset: Int64(index), topicID: place.topic, partition: place.partition, slot: place.slot))
            }
            let expected = entries.sorted(by: <)
            IndexEntry.sort(&entries)
            #expect(entries == expected, "\(count) entries")
        }
    }

    /// Entries take their records' offsets, skipping records the writer took out as
    /// duplicates; a batch that lost records no longer knows where the others start.
    @Test func entriesFollowTheRecordsThatWentIn() {
        let hash = DedupHash(high: 1, low: 2)
        let keys = [
            [IndexKey(record: 0, slot: 1, hash: hash, position: 61), IndexKey(record: 1, slot: 1, hash: hash, position: 90)],
            [IndexKey(record: 0, slot: 1, hash: hash, position: 61), IndexKey(record: 2, slot: 2, hash: hash, position: 120), IndexKey(record: 7, slot: 1, hash: hash)],
            [IndexKey(record: 0, slot: 1, hash: hash, position: 61)],
        ]
        let taken = [DuplicateRecord(batch: 1, record: 0, partition: 0, offset: 3)]
        let entries = WriteContext.indexEntries(keys, counts: [2, 3, 2], duplicates: taken, firstOffset: 10, topicID: 4, partition: 1, nowMs: 5)
        #expect(entries.map(\.offset) == [10, 11, 13, 14])
        #expect(entries.map(\.position) == [61, 90, IndexKey.unknownPosition, 61])
        #expect(entries.map(\.slot) == [1, 1, 2, 1] && entries.allSatisfy { $0.topicID == 4 && $0.partition == 1 && $0.timeMs == 5 })
    }
}

