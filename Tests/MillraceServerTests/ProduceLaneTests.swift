import Foundation
import Logging
import MillraceFormat
import MillraceStorage
import MillraceWire
import NIOCore
import NIOPosix
import Testing

@testable import MillraceServer

/// Where a produce's batches are checked: on the event loop only when small; larger ones, and
/// every batch of a topic with a schema, dedup or index, on the partition's lane, once; and a
/// partition's produces still reach the writer in the order they came.
@Suite struct ProduceLaneTests {
    final class Calls: @unchecked Sendable {
        let lock = NSLock()
        var calls: [(name: String, onLoop: Bool)] = []
        func add(_ name: String, onLoop: Bool) { lock.withLock { calls.append((name, onLoop)) } }
        var all: [(name: String, onLoop: Bool)] { lock.withLock { calls } }
    }

    static func batch(bytes: Int, codec: CompressionCodec = .none) throws -> [UInt8] {
        let values = Array(repeating: [UInt8](repeating: 0x61, count: 200), count: max(1, bytes / 210))
        return try RecordBatch(timestamp: 1_700_000_000_000, values: values, codec: codec).encoded()
    }

    /// Produces `sizes` to partition 0 of `topic` from the loop in one turn; which `append`
    /// calls ran on the loop, in the order they were made.
    static func produce(
        _ sizes: [(String, Int)], topic: String, config: TopicConfig = TopicConfig(), codec: CompressionCodec = .none
    ) async throws -> [(name: String, onLoop: Bool)] {
        let calls = Calls()
        try await withTemporaryStorage("lanes") { storage in
            _ = try await storage.createTopic(topic, partitions: 1, config: config)
            let dispatcher = RequestDispatcher(storage: storage, advertisedHost: "127.0.0.1", advertisedPort: 0, logger: Logger(label: "test"))
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let loop = group.next()
            let batches = try sizes.map { ($0.0, try Self.batch(bytes: $0.1, codec: codec)) }
            let done = try await loop.submit {
                batches.map { name, bytes in
                    dispatcher.appendValidated(topic, ProducePartition(partition: 0, records: bytes), batches: [bytes], on: loop) { _, _, _, _, _, _, _, completion in
                        calls.add(name, onLoop: loop.inEventLoop)
                        completion(.failure(MillraceError(.unexpected, "not stored in this test")))
                    }
                }
            }.get()
            for future in done { _ = try await future.get() }
            await dispatcher.validationLanes.shutdown()
            await dispatcher.schemas.shutdown()
            try await group.shutdownGracefully()
        }
        return calls.all
    }

    @Test func smallBatchesAreCheckedOnTheLoopAndLargeOnesOnTheLane() async throws {
        let calls = try await Self.produce([("small", 1_000), ("large", 64 << 10)], topic: "t")
        #expect(calls.map(\.name) == ["small", "large"])
        #expect(calls.map(\.onLoop) == [true, false])
    }

    /// A zstd batch a few hundred bytes long may hold megabytes of records: checked on the lane.
    @Test func compressedBatchesAreCheckedOnTheLaneWhateverTheirSize() async throws {
        let calls = try await Self.produce([("small-zstd", 1_000)], topic: "t", codec: .zstd)
        #expect(calls.map(\.onLoop) == [false])
        #expect(RequestDispatcher.isCompressed([1, 2, 3]))
    }

    @Test func aSmallBatchBehindALargeOneOfItsPartitionFollowsItThroughTheLane() async throws {
        let calls = try await Self.produce([("large", 256 << 10), ("small-1", 1_000), ("small-2", 1_000)], topic: "t")
        #expect(calls.map(\.name) == ["large", "small-1", "small-2"])
        #expect(calls.first?.onLoop == false)
    }

    @Test func aTopicWithDedupHasEveryBatchCheckedOnTheLane() async throws {
        let config = TopicConfig(dedup: DedupPolicy(key: .recordKey, windowMs: 60_000))
        let calls = try await Self.produce([("small", 1_000), ("large", 64 << 10)], topic: "d", config: config)
        #expect(calls.map(\.name) == ["small", "large"])
        #expect(calls.map(\.onLoop) == [false, false])
    }

    @Test func theBacklogCountsOnlyWhatWentThroughTheLane() {
        let backlog = LaneBacklog()
        let partition = TopicPartition(topic: "t", partition: 0)
        #expect(backlog.enter(partition, wantsLane: false) == false)
        #expect(backlog.enter(partition, wantsLane: true) == true)
        #expect(backlog.enter(partition, wantsLane: false) == true)
        #expect(backlog.enter(TopicPartition(topic: "t", partition: 1), wantsLane: false) == false)
        backlog.leave(partition)
        backlog.leave(partition)
        #expect(backlog.partitions == 0)
        #expect(backlog.enter(partition, wantsLane: false) == false)
    }
}
