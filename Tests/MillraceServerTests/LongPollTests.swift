import Foundation
import Logging
import MillraceFormat
import MillraceStorage
import MillraceWire
import NIOCore
import NIOPosix
import TestSupport
import Testing

@testable import MillraceServer

/// Long-poll fetches: bounded in how long and for how many bytes they wait, woken only by
/// commits to their own partitions, and cancelled the moment their connection goes.
@Suite struct LongPollTests {
    static func fetch(_ partitions: [Int32], maxWaitMs: Int32, minBytes: Int32, maxBytes: Int32 = 1 << 20, partitionMaxBytes: Int32 = 1 << 20) -> FetchRequest {
        FetchRequest(
            maxWaitMs: maxWaitMs, minBytes: minBytes, maxBytes: maxBytes,
            topics: [TopicEntries(topic: "t", partitions.map { FetchPartition(partition: $0, offset: 0, maxBytes: partitionMaxBytes) })])
    }

    /// A storage with topic `t` of `partitions` partitions, a dispatcher over it and a loop.
    static func withBroker(partitions: Int32 = 2, _ body: (Storage, RequestDispatcher, any EventLoop) async throws -> Void) async throws {
        try await withTemporaryStorage("longpoll") { storage in
            try await withBroker(storage, partitions: partitions, body)
        }
    }

    private static func withBroker(
        _ storage: Storage, partitions: Int32, _ body: (Storage, RequestDispatcher, any EventLoop) async throws -> Void
    ) async throws {
        _ = try await storage.createTopic("t", partitions: partitions)
        let dispatcher = RequestDispatcher(storage: storage, advertisedHost: "127.0.0.1", advertisedPort: 0, logger: Logger(label: "test"))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var failure: (any Error)?
        do { try await body(storage, dispatcher, group.next()) } catch { failure = error }
        await dispatcher.validationLanes.shutdown()
        await dispatcher.schemas.shutdown()
        try? await group.shutdownGracefully()
        if let failure { throw failure }
    }

    static func append(_ storage: Storage, partition: Int32, _ value: String) async throws {
        let bytes = try RecordBatch(timestamp: 1_700_000_000_000, values: [Array(value.utf8)]).encoded()
        let _: AppendResult = try await withCheckedThrowingContinuation { continuation in
            storage.append(topic: "t", partition: partition, batches: [bytes]) { continuation.resume(with: $0) }
        }
    }

    @Test func aWaitIsCappedByFetchWaitMsMax() {
        #expect(ParkedFetch.waitMs(Self.fetch([0], maxWaitMs: .max, minBytes: 1)) == Int64(Limits.fetchWaitMsMax))
        #expect(ParkedFetch.waitMs(Self.fetch([0], maxWaitMs: 500, minBytes: 1)) == 500)
        #expect(ParkedFetch.waitMs(Self.fetch([0], maxWaitMs: -5, minBytes: 1)) == 0)
        // A client's own deadline for a fetch is its request timeout plus the wait it asked for:
        // the cap must be long enough for the waits clients use (500 ms by default).
        #expect(Limits.fetchWaitMsMax >= 30_000)
    }

    @Test func minBytesIsClampedToWhatTheFetchMayCarry() {
        #expect(RequestDispatcher.minBytes(Self.fetch([0], maxWaitMs: 1, minBytes: .max, maxBytes: 4_096)) == 4_096)
        #expect(RequestDispatcher.minBytes(Self.fetch([0, 1], maxWaitMs: 1, minBytes: .max, partitionMaxBytes: 100)) == 200)
        #expect(RequestDispatcher.minBytes(Self.fetch([0], maxWaitMs: 1, minBytes: .max, maxBytes: .max, partitionMaxBytes: .max)) == Limits.fetchBytesMax)
        #expect(RequestDispatcher.minBytes(Self.fetch([0], maxWaitMs: 1, minBytes: 10)) == 10)
    }

    /// A min bytes no answer could reach (here 2 GiB against a partition limit of 100 bytes)
    /// is answered by the first batch, not held to its deadline.
    @Test func anUnreachableMinBytesIsAnsweredByTheFirstBatch() async throws {
        try await Self.withBroker { storage, dispatcher, loop in
            let answer = loop.flatSubmit { dispatcher.handle(.fetch(Self.fetch([0], maxWaitMs: .max, minBytes: .max, partitionMaxBytes: 100)), on: loop) }
            #expect(try await eventually { dispatcher.waiters.count == 1 })
            try await Self.append(storage, partition: 0, String(repeating: "x", count: 200))
            guard case .fetch(let results) = try await answer.get() else { Issue.record("not a fetch answer"); return }
            #expect(results.first?.entries.first?.records.readableBytes ?? 0 > 200)
            #expect(dispatcher.waiters.count == 0)
        }
    }

    @Test func closingTheConnectionCancelsItsParkedFetchesAtOnce() async throws {
        try await Self.withBroker { _, dispatcher, loop in
            let waiting = ConnectionWaits()
            let answers = (0..<3).map { _ in
                loop.flatSubmit { dispatcher.handle(.fetch(Self.fetch([0, 1], maxWaitMs: 600_000, minBytes: 1)), on: loop, waiting: waiting) }
            }
            #expect(try await eventually { dispatcher.waiters.count == 3 && waiting.count == 3 })
            try await loop.submit { waiting.cancelAll() }.get()
            for answer in answers {
                guard case .fetch(let results) = try await answer.get() else { Issue.record("not a fetch answer"); return }
                #expect(results.isEmpty)
            }
            #expect(dispatcher.waiters.count == 0 && waiting.count == 0)
            // A fetch that would park on a connection already gone is not parked at all.
            let late = loop.flatSubmit { dispatcher.handle(.fetch(Self.fetch([0], maxWaitMs: 600_000, minBytes: 1)), on: loop, waiting: waiting) }
            _ = try await late.get()
            #expect(dispatcher.waiters.count == 0)
        }
    }

    /// A drain has parked fetches answer now with what there is, and one parked after it too.
    @Test func aDrainingConnectionsFetchesAnswerNow() async throws {
        try await Self.withBroker { storage, dispatcher, loop in
            try await Self.append(storage, partition: 0, "LOT-1")
            let waiting = ConnectionWaits()
            // Waits for more than there is.
            let parked = loop.flatSubmit { dispatcher.handle(.fetch(Self.fetch([0], maxWaitMs: 600_000, minBytes: 1 << 20)), on: loop, waiting: waiting) }
            #expect(try await eventually { dispatcher.waiters.count == 1 })
            try await loop.submit { waiting.answerAll() }.get()
            guard case .fetch(let results) = try await parked.get() else { Issue.record("not a fetch answer"); return }
            #expect(results.first?.entries.first?.records.readableBytes ?? 0 > 0)
            let late = loop.flatSubmit { dispatcher.handle(.fetch(Self.fetch([1], maxWaitMs: 600_000, minBytes: 1)), on: loop, waiting: waiting) }
            guard case .fetch(let lateResults) = try await late.get() else { Issue.record("not a fetch answer"); return }
            #expect(lateResults.first?.entries.first?.errorCode == ErrorCode.none)
            #expect(dispatcher.waiters.count == 0 && waiting.count == 0)
        }
    }

    @Test func aFetchAnsweredByACommitLeavesItsConnection() async throws {
        try await Self.withBroker { storage, dispatcher, loop in
            let waiting = ConnectionWaits()
            let onZero = loop.flatSubmit { dispatcher.handle(.fetch(Self.fetch([0], maxWaitMs: 600_000, minBytes: 1)), on: loop, waiting: waiting) }
            let onOne = loop.flatSubmit { dispatcher.handle(.fetch(Self.fetch([1], maxWaitMs: 600_000, minBytes: 1)), on: loop, waiting: waiting) }
            #expect(try await eventually { dispatcher.waiters.count == 2 })
            try await Self.append(storage, partition: 0, "LOT-1")
            guard case .fetch(let results) = try await onZero.get() else { Issue.record("not a fetch answer"); return }
            #expect(results.first?.entries.first?.records.readableBytes ?? 0 > 0)
            // The fetch on partition 1 still waits; only the answered one left.
            #expect(dispatcher.waiters.count == 1 && waiting.count == 1)
            try await loop.submit { waiting.cancelAll() }.get()
            _ = try await onOne.get()
        }
    }

    /// A commit wakes each waiter once, with only the partitions of it that moved.
    @Test func aCommitWakesEachWaiterOnceWithItsMovedPartitions() {
        let waiters = FetchWaiters()
        final class Woken: @unchecked Sendable {
            let lock = NSLock()
            var byWaiter: [String: [Set<Int32>]] = [:]
            func add(_ name: String, _ moved: Set<TopicPartition>) { lock.withLock { byWaiter[name, default: []].append(Set(moved.map(\.partition))) } }
        }
        let woken = Woken()
        func tp(_ partition: Int32) -> TopicPartition { TopicPartition(topic: "t", partition: partition) }
        _ = waiters.add([tp(0), tp(1), tp(2)]) { woken.add("a", $0) }
        _ = waiters.add([tp(3)]) { woken.add("b", $0) }
        let c = waiters.add([tp(1)]) { woken.add("c", $0) }
        waiters.remove(c)
        waiters.wake([tp(0), tp(1), tp(5)])
        #expect(woken.lock.withLock { woken.byWaiter } == ["a": [[0, 1]]])
        #expect(waiters.count == 2)
    }
}
