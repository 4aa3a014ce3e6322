import Foundation
import MillraceFormat
import Testing

@testable import MillraceStorage

/// A batch from an idempotent producer.
func producerBatch(_ values: [String], producer: ProducerIdentity, sequence: Int32) -> [UInt8] {
    var batch = RecordBatch(timestamp: 1_700_000_000_000, values: values.map { Array($0.utf8) })
    batch.producerId = producer.producerId
    batch.producerEpoch = producer.epoch
    batch.baseSequence = sequence
    return try! batch.encoded()
}

extension Storage {
    func append(_ topic: String, _ partition: Int32, _ batch: [UInt8]) async throws -> AppendResult {
        try await withCheckedThrowingContinuation { continuation in
            append(topic: topic, partition: partition, batches: [batch]) { continuation.resume(with: $0) }
        }
    }
}

/// The sequence rules, as a pure function of the state held.
@Suite struct SequencePlacementTests {
    let span = { (first: Int32, count: Int32, epoch: Int16) in SequenceSpan(producerId: 7, epoch: epoch, firstSequence: first, count: count) }

    @Test func aPartitionStartsAtZero() {
        #expect(ProducerPartitionState.place(span(0, 3, 0), state: nil, producerEpoch: 0) == .append)
        guard case .refuse(let error) = ProducerPartitionState.place(span(5, 3, 0), state: nil, producerEpoch: 0) else {
            Issue.record("a first batch at 5 was placed")
            return
        }
        #expect(error.code == .outOfOrderSequence && error.message.contains("expected sequence 0"))
    }

    @Test func retriesOfTheLastFiveGetTheirOffsetsAndGapsAreRefused() {
        var state = ProducerPartitionState(epoch: 0)
        for batch in 0..<7 {
            let next = span(Int32(batch * 10), 10, 0)
            #expect(ProducerPartitionState.place(next, state: state, producerEpoch: 0) == .append)
            state = state.recording(next, baseOffset: Int64(batch * 10), lastOffset: Int64(batch * 10 + 9))
        }
        #expect(state.batches.count == ProducerPartitionState.batchesKept)
        #expect(ProducerPartitionState.place(span(60, 10, 0), state: state, producerEpoch: 0) == .duplicate(baseOffset: 60, lastOffset: 69))
        #expect(ProducerPartitionState.place(span(20, 10, 0), state: state, producerEpoch: 0) == .duplicate(baseOffset: 20, lastOffset: 29))
        #expect(ProducerPartitionState.place(span(70, 5, 0), state: state, producerEpoch: 0) == .append)
        for (first, count, words) in [(10 as Int32, 10 as Int32, "older than"), (80, 1, "a gap"), (60, 5, "older than")] {
            guard case .refuse(let error) = ProducerPartitionState.place(span(first, count, 0), state: state, producerEpoch: 0) else {
                Issue.record("\(first)+\(count) was placed")
                continue
            }
            #expect(error.code == .outOfOrderSequence && error.message.contains(words), "\(error)")
        }
    }

    @Test func epochsFenceAndRestartTheSequence() {
        let state = ProducerPartitionState(epoch: 1).recording(span(0, 5, 1), baseOffset: 0, lastOffset: 4)
        guard case .refuse(let fenced) = ProducerPartitionState.place(span(5, 1, 0), state: state, producerEpoch: 1) else {
            Issue.record("an old epoch was placed")
            return
        }
        #expect(fenced.code == .producerFenced)
        #expect(ProducerPartitionState.place(span(0, 1, 2), state: state, producerEpoch: 2) == .append)
        if case .append = ProducerPartitionState.place(span(5, 1, 2), state: state, producerEpoch: 2) { Issue.record("a new epoch went on at 5") }
        let next = state.recording(span(0, 2, 2), baseOffset: 5, lastOffset: 6)
        #expect(next.epoch == 2 && next.batches.count == 1)
    }

    @Test func sequencesWrapAfterInt32Max() {
        let high = span(Int32.max - 1, 2, 0)
        #expect(high.lastSequence == Int32.max)
        let state = ProducerPartitionState(epoch: 0).recording(high, baseOffset: 0, lastOffset: 1)
        #expect(ProducerPartitionState.place(span(0, 3, 0), state: state, producerEpoch: 0) == .append)
        #expect(span(Int32.max, 3, 0).lastSequence == 1)
    }

    @Test func statesRoundTrip() throws {
        let state = ProducerPartitionState(epoch: 3).recording(span(0, 5, 3), baseOffset: 10, lastOffset: 14).recording(span(5, 1, 3), baseOffset: -1, lastOffset: -1)
        let decoded = try state.encoded().withUnsafeBytes { try ProducerPartitionState(decoding: $0) }
        #expect(decoded == state)
        let record = ProducerRecord(epoch: 2, lastActiveMs: 123, wrote: true)
        #expect(try record.encoded().withUnsafeBytes { try ProducerRecord(decoding: $0) } == record)
    }
}

@Suite struct IdempotentAppendTests {
    @Test func aRetriedBatchIsStoredOnceAndAnsweredWithItsOffsets() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 2)
            let producer = try await storage.initProducer()
            let other = try await storage.initProducer()
            #expect(producer.epoch == 0 && other.producerId == producer.producerId + 1)
            let first = try await storage.append("t", 0, producerBatch(["a", "b"], producer: producer, sequence: 0))
            let again = try await storage.append("t", 0, producerBatch(["a", "b"], producer: producer, sequence: 0))
            #expect(again.duplicate && again.baseOffset == first.baseOffset && again.lastOffset == first.lastOffset)
            // The same numbers from another producer, or on another partition, are new.
            #expect(try await !storage.append("t", 0, producerBatch(["x"], producer: other, sequence: 0)).duplicate)
            #expect(try await !storage.append("t", 1, producerBatch(["y"], producer: producer, sequence: 0)).duplicate)
            #expect(try storage.describeTopic("t").partitions[0].recordCount == 3)
        }
    }

    /// The same batch sent ten times at once: stored once, every sender told the same offsets.
    @Test func aRetryStormStoresOnce() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let producer = try await storage.initProducer()
            let batch = producerBatch(["confirmation"], producer: producer, sequence: 0)
            let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
                for _ in 0..<10 { group.addTask { try await storage.append("t", 0, batch) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(results.map(\.baseOffset)) == [0] && results.filter { !$0.duplicate }.count == 1)
            #expect(try storage.describeTopic("t").partitions[0].recordCount == 1)
        }
    }

    @Test func gapsFencesAndUnknownProducersAreRefused() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let producer = try await storage.initProducer()
            _ = try await storage.append("t", 0, producerBatch(["a"], producer: producer, sequence: 0))
            #expect(await errorCode { _ = try await storage.append("t", 0, producerBatch(["c"], producer: producer, sequence: 2)) } == .outOfOrderSequence)
            let unknown = ProducerIdentity(producerId: 99, epoch: 0)
            #expect(await errorCode { _ = try await storage.append("t", 0, producerBatch(["c"], producer: unknown, sequence: 0)) } == .unknownProducerId)
            let bumped = try await storage.initProducer(producerId: producer.producerId, epoch: producer.epoch)
            #expect(bumped == ProducerIdentity(producerId: producer.producerId, epoch: 1))
            #expect(await errorCode { _ = try await storage.append("t", 0, producerBatch(["b"], producer: producer, sequence: 1)) } == .producerFenced)
            #expect(await errorCode { _ = try await storage.initProducer(producerId: producer.producerId, epoch: 0) } == .producerFenced)
            // The new epoch starts again at 0.
            #expect(try await storage.append("t", 0, producerBatch(["b"], producer: bumped, sequence: 0)).baseOffset == 1)
            #expect(try storage.describeTopic("t").partitions[0].recordCount == 2)
        }
    }

    /// A batch refused as a whole still uses up its numbers, so the next one follows on.
    @Test func recordedSequencesKeepTheProducerInStep() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let producer = try await storage.initProducer()
            let refused = SequenceSpan(producerId: producer.producerId, epoch: producer.epoch, firstSequence: 0, count: 3)
            let nothing = try await withCheckedThrowingContinuation { continuation in
                storage.recordSequences(topic: "t", partition: 0, sequences: [refused]) { continuation.resume(with: $0) }
            }
            #expect(nothing.baseOffset == -1)
            #expect(try await storage.append("t", 0, producerBatch(["d"], producer: producer, sequence: 3)).baseOffset == 0)
        }
    }

    @Test func sequencesSurviveARestartAndExpireWhenIdle() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = TestClock()
        var options = testOptions(clock: clock)
        options.producerIdleMs = 3_600_000
        var storage = try Storage.open(directory: directory.path, options: options)
        _ = try await storage.createTopic("t", partitions: 1)
        let producer = try await storage.initProducer()
        let stored = try await storage.append("t", 0, producerBatch(["a"], producer: producer, sequence: 0))
        storage.close()
        storage = try Storage.open(directory: directory.path, options: options)
        defer { storage.close() }
        let retried = try await storage.append("t", 0, producerBatch(["a"], producer: producer, sequence: 0))
        #expect(retried.duplicate && retried.baseOffset == stored.baseOffset)
        // Just inside the idle time nothing expires; past it the producer is forgotten.
        clock.advance(by: 3_599_999)
        #expect(try await storage.enforceRetention().producersExpired == 0)
        clock.advance(by: 1)
        #expect(try await storage.enforceRetention().producersExpired == 1)
        #expect(await errorCode { _ = try await storage.append("t", 0, producerBatch(["b"], producer: producer, sequence: 1)) } == .unknownProducerId)
        #expect(try await storage.initProducer(producerId: producer.producerId, epoch: producer.epoch).producerId == producer.producerId + 1)
        #expect(try storage.describeTopic("t").partitions[0].recordCount == 1)
    }
}
