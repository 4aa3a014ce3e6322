import Foundation
import MillraceFormat
import Testing

@testable import MillraceStorage

/// The error `body` throws, if any.
func caughtError(_ body: () async throws -> Void) async -> MillraceError? {
    do {
        try await body()
        return nil
    } catch {
        return error as? MillraceError ?? MillraceError(.unexpected, "\(error)")
    }
}

/// Idempotent producers against careless or hostile peers (issue 22): epochs the broker never
/// gave out, floods of InitProducer, and expiry that reads only the ids that fall due.
@Suite struct ProducerExpiryTests {
    func options(_ clock: TestClock, unusedMax: Int = Limits.producerIdsUnusedMax) -> Storage.Options {
        var options = testOptions(clock: clock)
        options.producerIdleMs = 3_600_000
        options.producerUnusedIdleMs = 600_000
        options.producerIdsUnusedMax = unusedMax
        return options
    }

    @Test func placementRefusesAnEpochNeverGivenOut() {
        let span = SequenceSpan(producerId: 7, epoch: 4, firstSequence: 0, count: 1)
        guard case .refuse(let error) = ProducerPartitionState.place(span, state: nil, producerEpoch: 2) else {
            Issue.record("epoch 4 was placed while the newest given out is 2")
            return
        }
        #expect(error.code == .unknownProducerId && error.message.contains("no epoch 4"), "\(error)")
        // One ahead is the producer's own bump: only from sequence 0.
        #expect(ProducerPartitionState.place(SequenceSpan(producerId: 7, epoch: 3, firstSequence: 0, count: 1), state: nil, producerEpoch: 2) == .append)
        guard case .refuse = ProducerPartitionState.place(SequenceSpan(producerId: 7, epoch: 3, firstSequence: 5, count: 1), state: nil, producerEpoch: 2) else {
            Issue.record("epoch 3 at sequence 5 was placed")
            return
        }
        guard case .refuse = ProducerPartitionState.place(SequenceSpan(producerId: 7, epoch: .max, firstSequence: 0, count: 1), state: nil, producerEpoch: .max - 2) else {
            Issue.record("an epoch two ahead was placed")
            return
        }
    }

    /// `producer_epochs.py`: epoch 7 while the current was 0 was stored, and then fenced the
    /// producer that InitProducer gave epoch 1.
    @Test func anEpochNeverGivenOutIsRefusedAndFencesNobody() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let producer = try await storage.initProducer()
            let forged = ProducerIdentity(producerId: producer.producerId, epoch: 7)
            let error = await caughtError { _ = try await storage.append("t", 0, producerBatch(["forged"], producer: forged, sequence: 0)) }
            #expect(error?.code == .unknownProducerId && error?.message.contains("no epoch 7") == true, "\(String(describing: error))")
            let next = try await storage.initProducer(producerId: producer.producerId, epoch: producer.epoch)
            #expect(next.epoch == 1)
            #expect(try await storage.append("t", 0, producerBatch(["real"], producer: next, sequence: 0)).baseOffset == 0)
            #expect(try storage.describeTopic("t").partitions[0].recordCount == 1)
        }
    }

    /// librdkafka's idempotent producer, after a batch fails for good (a schema refusal), bumps
    /// its own epoch by one and starts again at sequence 0 without asking the broker (KIP-360):
    /// stored, and the epoch before it is fenced from then on; one further ahead is not.
    @Test func aProducersOwnEpochBumpStartsAgainAtZeroAndFencesTheEpochBefore() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 2)
            let producer = try await storage.initProducer()
            #expect(try await storage.append("t", 0, producerBatch(["a"], producer: producer, sequence: 0)).baseOffset == 0)
            let bumped = ProducerIdentity(producerId: producer.producerId, epoch: producer.epoch + 1)
            // Not at sequence 0: refused; at 0 on each partition: stored.
            #expect(await caughtError { _ = try await storage.append("t", 0, producerBatch(["x"], producer: bumped, sequence: 1)) }?.code == .unknownProducerId)
            #expect(try await storage.append("t", 0, producerBatch(["b"], producer: bumped, sequence: 0)).baseOffset == 1)
            #expect(try await storage.append("t", 1, producerBatch(["c"], producer: bumped, sequence: 0)).baseOffset == 0)
            // The retry of a bumped batch is a duplicate; the old epoch is fenced.
            #expect(try await storage.append("t", 0, producerBatch(["b"], producer: bumped, sequence: 0)).duplicate)
            let fenced = await caughtError { _ = try await storage.append("t", 0, producerBatch(["old"], producer: producer, sequence: 1)) }
            #expect(fenced?.code == .producerFenced, "\(String(describing: fenced))")
            // Two ahead was never given out.
            let forged = ProducerIdentity(producerId: producer.producerId, epoch: producer.epoch + 3)
            #expect(await caughtError { _ = try await storage.append("t", 1, producerBatch(["f"], producer: forged, sequence: 0)) }?.code == .unknownProducerId)
            // InitProducer continues from the bumped epoch.
            #expect(try await storage.initProducer(producerId: producer.producerId, epoch: bumped.epoch).epoch == bumped.epoch + 1)
            #expect(try storage.describeTopic("t").partitions.map(\.recordCount) == [2, 1])
        }
    }

    /// It said "epoch 5 was replaced by epoch 0".
    @Test func initProducerWithAFutureEpochSaysItWasNeverGivenOut() async throws {
        try await withStorage { storage, _ in
            let producer = try await storage.initProducer()
            let error = await caughtError { _ = try await storage.initProducer(producerId: producer.producerId, epoch: 5) }
            #expect(error?.code == .unknownProducerId, "\(String(describing: error))")
            #expect(error?.message.contains("no epoch 5") == true && error?.message.contains("replaced") == false, "\(String(describing: error))")
            #expect(try await storage.initProducer(producerId: producer.producerId, epoch: 0).epoch == 1)
        }
    }

    /// `initproducer_flood.py`: every id given out was kept 7 days whether or not it wrote.
    @Test func idsNeverUsedExpireSoonAndUsedOnesAfterTheIdleTime() async throws {
        let clock = TestClock()
        try await withStorage(clock: clock, options: options(clock)) { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let unused = try await storage.initProducer()
            let used = try await storage.initProducer()
            _ = try await storage.append("t", 0, producerBatch(["a"], producer: used, sequence: 0))
            clock.advance(by: 599_999)
            #expect(try await storage.enforceRetention().producersExpired == 0)
            clock.advance(by: 1)
            #expect(try await storage.enforceRetention().producersExpired == 1)
            let code = await caughtError { _ = try await storage.append("t", 0, producerBatch(["b"], producer: unused, sequence: 0)) }?.code
            #expect(code == .unknownProducerId)
            #expect(try await storage.append("t", 0, producerBatch(["b"], producer: used, sequence: 1)).baseOffset == 1)
            clock.advance(by: 3_599_999)
            #expect(try await storage.enforceRetention().producersExpired == 0)
            clock.advance(by: 1)
            #expect(try await storage.enforceRetention().producersExpired == 1)
        }
    }

    /// A flood of InitProducer holds at most `producerIdsUnusedMax` unused ids: the oldest
    /// unused go first; an id that wrote is not pushed out.
    @Test func unusedIdsAreBoundedOldestFirst() async throws {
        let clock = TestClock()
        try await withStorage(clock: clock, options: options(clock, unusedMax: 3)) { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let writer = try await storage.initProducer()
            _ = try await storage.append("t", 0, producerBatch(["w"], producer: writer, sequence: 0))
            var flood: [ProducerIdentity] = []
            for _ in 0..<5 {
                clock.advance(by: 1)
                flood.append(try await storage.initProducer())
            }
            for (index, producer) in flood.enumerated() {
                let code = await caughtError { _ = try await storage.append("t", 0, producerBatch(["x"], producer: producer, sequence: 0)) }?.code
                #expect(code == (index < 2 ? .unknownProducerId : nil), "id \(index) of the flood")
            }
            #expect(try await !storage.append("t", 0, producerBatch(["w"], producer: writer, sequence: 1)).duplicate)
        }
    }

    /// `producer_scan_stall.py`: the pass read every id held to find the idle ones.
    @Test func expiryReadsOnlyWhatFallsDue() async throws {
        let clock = TestClock()
        try await withStorage(clock: clock, options: options(clock)) { storage, _ in
            _ = try await storage.initProducer()
            clock.advance(by: 600_000)
            for _ in 0..<100 { _ = try await storage.initProducer() }
            let report = try await storage.enforceRetention()
            #expect(report.producersExpired == 1)
            // The one forgotten and the next, not yet due; the other index is empty.
            #expect(report.producerExpiryEntriesRead == 2)
        }
    }

    @Test func recordsRoundTripAndOldOnesCountAsHavingWritten() throws {
        let record = ProducerRecord(epoch: 2, lastActiveMs: 123, wrote: false)
        #expect(try record.encoded().withUnsafeBytes { try ProducerRecord(decoding: $0) } == record)
        let old = Array(record.encoded().dropLast())
        #expect(try old.withUnsafeBytes { try ProducerRecord(decoding: $0) } == ProducerRecord(epoch: 2, lastActiveMs: 123, wrote: true))
    }

    /// A directory written before the expiry index: on open, a producer that wrote is listed
    /// in it and expires after the idle time; one that never did (no sequence states) is
    /// forgotten, as an unused id would have been by then.
    @Test func producersStoredBeforeTheExpiryIndexStillExpire() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let clock = TestClock()
        var storage = try Storage.open(directory: directory.path, options: options(clock))
        _ = try await storage.createTopic("t", partitions: 1)
        let producer = try await storage.initProducer()
        let idle = try await storage.initProducer()
        _ = try await storage.append("t", 0, producerBatch(["a"], producer: producer, sequence: 0))
        storage.close()
        do {
            let env = try LMDBEnvironment(
                directory: directory.path, mapSizeBytes: 64 << 20, maxDatabases: Limits.partitionsMax + 16, maxReaders: 16, readOnly: false)
            defer { env.close() }
            let txn = try LMDBTransaction.begin(env, readOnly: false)
            for name in ["producerunused", "produceractive"] { try txn.dropDatabase(try #require(try txn.openDatabase(name, create: false))) }
            for id in [producer.producerId, idle.producerId] {
                var old = ByteWriter()
                old.writeInteger(Int16(0))
                old.writeInteger(clock.nowMilliseconds())
                try txn.put(try #require(try txn.openDatabase("producers", create: false)), Keys.producer(id), old.bytes)
            }
            try txn.commit()
        }
        storage = try Storage.open(directory: directory.path, options: options(clock))
        defer { storage.close() }
        let code = await caughtError { _ = try await storage.append("t", 0, producerBatch(["b"], producer: idle, sequence: 0)) }?.code
        #expect(code == .unknownProducerId)
        #expect(try await storage.append("t", 0, producerBatch(["a"], producer: producer, sequence: 0)).duplicate)
        clock.advance(by: 3_599_999)
        #expect(try await storage.enforceRetention().producersExpired == 0)
        clock.advance(by: 1)
        #expect(try await storage.enforceRetention().producersExpired == 1)
    }
}

extension ProducerExpiryTests {
    /// `producer_epochs.py`: epoch -1 was "replaced by epoch 1".
    @Test func aNegativeEpochIsNeverGivenOut() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let producer = try await storage.initProducer()
            let negative = ProducerIdentity(producerId: producer.producerId, epoch: -1)
            let error = await caughtError { _ = try await storage.append("t", 0, producerBatch(["x"], producer: negative, sequence: 0)) }
            #expect(error?.code == .invalidRequest && error?.message.contains("never given out") == true, "\(String(describing: error))")
            let initError = await caughtError { _ = try await storage.initProducer(producerId: producer.producerId, epoch: -1) }
            #expect(initError?.code == .invalidRequest && initError?.message.contains("current epoch") == true, "\(String(describing: initError))")
        }
    }
}
