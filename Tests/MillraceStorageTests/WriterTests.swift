import Foundation
import MillraceFormat
import TestSupport
import Testing

@testable import MillraceStorage

@Suite struct WriterTests {
    @Test func concurrentAppendsShareTransactions() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 4)
            let before = storage.writerStatistics
            let offsets = try await withThrowingTaskGroup(of: (Int32, Int64).self) { group in
                for index in 0..<400 {
                    group.addTask {
                        let partition = Int32(index % 4)
                        return (partition, try await storage.append(topic: "t", partition: partition, batch: batch(["\(index)"])).baseOffset)
                    }
                }
                return try await group.reduce(into: [Int32: [Int64]]()) { $0[$1.0, default: []].append($1.1) }
            }
            for partition in 0..<Int32(4) { #expect(offsets[partition]!.sorted() == Array(0..<100)) }
            let after = storage.writerStatistics
            let transactions = after.transactions - before.transactions
            #expect(after.appends - before.appends == 400)
            #expect(transactions < 400, "400 appends took \(transactions) transactions")
        }
    }

    @Test func aFailedTransactionFailsExactlyTheCallersItHeld() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let writer = try #require(storage.writerForTesting)
            writer.setPausedForTesting(true)
            writer.failNextCommitForTesting(errno: EIO)
            let results = Locked<[Result<AppendResult, MillraceError>]>([])
            for index in 0..<5 {
                storage.append(topic: "t", partition: 0, batch: batch(["doomed-\(index)"])) { result in
                    results.withLock { $0.append(result) }
                }
            }
            try #require(try await eventually("five appends queued") { writer.queuedCountForTesting == 5 })
            writer.setPausedForTesting(false)
            try #require(try await eventually("five appends answered") { results.withLock { $0.count } == 5 })
            let survivor = try await storage.append(topic: "t", partition: 0, batch: batch(["kept"]))
            let seen = results.withLock { $0 }
            #expect(seen.count == 5)
            #expect(seen.allSatisfy { if case .failure(let error) = $0 { return error.code == .storageError } else { return false } })
            #expect(survivor.baseOffset == 0)
            #expect(try values(in: storage.read(topic: "t", partition: 0, from: 0, maxBytes: 1 << 20)) == ["kept"])
            #expect(storage.writerStatistics.failedTransactions == 1)
            #expect(try storage.verify().problems.isEmpty)
        }
    }

    @Test func aFullQueueAppliesBackPressure() async throws {
        var options = testOptions()
        options.pendingWritesMax = 4
        try await withStorage(options: options) { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let writer = try #require(storage.writerForTesting)
            writer.setPausedForTesting(true)
            let refused = Locked<[ErrorCode]>([])
            for _ in 0..<5 {
                storage.append(topic: "t", partition: 0, batch: batch(["x"])) { result in
                    if case .failure(let error) = result { refused.withLock { $0.append(error.code) } }
                }
            }
            #expect(refused.withLock { $0 } == [.writerBusy])
            // The async path waits for room instead of failing.
            async let waited = storage.append(topic: "t", partition: 0, batch: batch(["waited"]))
            // It waits (it is not queued past the limit, nor refused) until there is room.
            #expect(try await eventually("the append waits for room") { writer.spaceWaiterCountForTesting == 1 })
            #expect(writer.queuedCountForTesting == 4)
            writer.setPausedForTesting(false)
            #expect(try await waited.baseOffset == 4)
        }
    }

    @Test func closeFinishesQueuedWorkAndRefusesMore() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let storage = try Storage.open(directory: directory.path, options: testOptions())
        _ = try await storage.createTopic("t", partitions: 1)
        let done = Locked(0)
        for _ in 0..<50 {
            storage.append(topic: "t", partition: 0, batch: batch(["x"])) { result in
                if case .success = result { done.withLock { $0 += 1 } }
            }
        }
        storage.close()
        #expect(done.withLock { $0 } == 50)
        let reopened = try Storage.open(directory: directory.path, options: testOptions())
        defer { reopened.close() }
        #expect(try reopened.offsets(topic: "t", partition: 0).nextOffset == 50)
    }
}
