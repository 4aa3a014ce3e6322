import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import TestSupport
import Testing

@Suite(.serialized, .stopsLiveServers) struct GroupConsumerTests {
    typealias Seen = (name: String, member: String, generation: Int32, partition: Int32, offset: Int64, value: String)

    /// Reads with `consumer` until cancelled, noting each record with the generation it came in.
    static func read(_ name: String, _ consumer: GroupConsumer, into seen: Locked<[Seen]>, limit: Int? = nil) async throws {
        var taken = 0
        for try await record in consumer {
            seen.withLock {
                $0.append((name, consumer.memberID, consumer.generation, record.partition, record.offset, String(decoding: record.value ?? [], as: UTF8.self)))
            }
            taken += 1
            if let limit, taken >= limit { break }
        }
    }

    static func fill(_ client: MillraceClient, _ topic: String, partitions: Int32, records: Int) async throws {
        try await client.createTopic(CreateTopicRequest(name: topic, partitions: partitions))
        let producer = Producer(client: client)
        for index in 0..<records { try await producer.send(topic: topic, key: Array("K\(index)".utf8), value: Array("\(index)".utf8)) { _ in } }
        try await producer.flush()
    }

    /// Three members on six partitions; one goes silent (as if killed). Time is driven by
    /// hand: past its session its partitions move to the others, every record is processed,
    /// within one generation no partition is read by two members, and nothing the silent one
    /// committed is read again.
    @Test func aSilentMembersPartitionsAreTakenOverAndEveryRecordIsProcessed() async throws {
        let clock = ManualClock()
        let live = try await LiveServer(clock: clock)
        defer { live.remove() }
        let admin = MillraceClient(host: "127.0.0.1", port: live.port)
        try await Self.fill(admin, "orders", partitions: 6, records: 600)
        let seen = Locked<[Seen]>([])

        // The victim's background session sleeps on a clock nobody moves: it never heartbeats.
        var victimConfiguration = GroupConsumer.Configuration()
        victimConfiguration.sessionTimeoutMs = 1_000
        victimConfiguration.clock = ManualClock()
        let victimClient = MillraceClient(host: "127.0.0.1", port: live.port)
        let victim = GroupConsumer(client: victimClient, group: "erp", topic: "orders", configuration: victimConfiguration)
        try await Self.read("victim", victim, into: seen, limit: 30)
        try await victim.commitNow()
        let committed = try await admin.committedOffsets(group: "erp", topic: "orders", partitions: Array(0..<6))
        #expect(committed.contains { $0.offset > 0 })

        var configuration = GroupConsumer.Configuration()
        configuration.sessionTimeoutMs = 300_000
        configuration.heartbeatInterval = .milliseconds(500)
        configuration.clock = clock
        let survivors = ["a", "b"].map { name in
            (name, GroupConsumer(client: MillraceClient(host: "127.0.0.1", port: live.port), group: "erp", topic: "orders", configuration: configuration))
        }
        let readers = survivors.map { name, consumer in Task { try await Self.read(name, consumer, into: seen) } }
        let everything = try await eventually {
            clock.advance(by: .milliseconds(100))
            live.server.tick()
            return Set(seen.withLock { $0.map(\.value) }).count == 600
        }
        #expect(everything, "only \(Set(seen.withLock { $0.map(\.value) }).count) of 600 records were processed")
        for reader in readers { reader.cancel() }
        for reader in readers { _ = await reader.result }

        // No (generation, partition) was read by two members.
        var owners: [String: Set<String>] = [:]
        for entry in seen.withLock({ $0 }) { owners["\(entry.generation)/\(entry.partition)", default: []].insert(entry.member) }
        #expect(owners.values.allSatisfy { $0.count == 1 }, "\(owners.filter { $0.value.count > 1 })")
        // Nothing the victim committed was read again (what it read and did not commit may be).
        var committedBy: [Int32: Int64] = [:]
        for entry in committed { committedBy[entry.partition] = entry.offset }
        let reread = seen.withLock { $0.filter { $0.name != "victim" && $0.offset < committedBy[$0.partition, default: -1] } }
        #expect(reread.isEmpty, "committed records read again: \(reread.prefix(5))")
        for (_, consumer) in survivors {
            await consumer.close()
            await consumer.client.close()
        }
        await victimClient.close()
        await admin.close()
        await live.stop()
    }

    /// Two members reading to the end: the second joins while the first holds every
    /// partition. The moved partitions reach the second only after the first has committed
    /// and let them go, so every record is read exactly once.
    @Test func aJoiningMemberGetsPartitionsHandedOverWithoutRereads() async throws {
        let clock = ManualClock()
        let live = try await LiveServer(clock: clock)
        defer { live.remove() }
        let admin = MillraceClient(host: "127.0.0.1", port: live.port)
        try await Self.fill(admin, "genealogy", partitions: 4, records: 400)
        let seen = Locked<[Seen]>([])
        var configuration = GroupConsumer.Configuration()
        configuration.sessionTimeoutMs = 300_000
        configuration.heartbeatInterval = .seconds(1)
        configuration.stopAtEnd = true
        configuration.clock = clock
        let first = GroupConsumer(client: MillraceClient(host: "127.0.0.1", port: live.port), group: "trace", topic: "genealogy", configuration: configuration)
        var firstIterator = first.makeAsyncIterator()
        for _ in 0..<50 {
            let record = try #require(try await firstIterator.next())
            seen.withLock { $0.append(("first", first.memberID, first.generation, record.partition, record.offset, String(decoding: record.value ?? [], as: UTF8.self))) }
        }
        #expect(first.assignment.map(\.partition) == [0, 1, 2, 3])

        let second = GroupConsumer(client: MillraceClient(host: "127.0.0.1", port: live.port), group: "trace", topic: "genealogy", configuration: configuration)
        let secondReader = Task { try await Self.read("second", second, into: seen) }
        let handedOver = try await eventually {
            clock.advance(by: .milliseconds(200))
            return seen.withLock { $0.contains { $0.name == "second" } }
        }
        #expect(handedOver, "the second member never got a partition")
        #expect(first.assignment.count == 2)
        let firstReader = Task {
            while let record = try await firstIterator.next() {
                seen.withLock { $0.append(("first", first.memberID, first.generation, record.partition, record.offset, String(decoding: record.value ?? [], as: UTF8.self))) }
            }
        }
        let done = try await eventually {
            clock.advance(by: .milliseconds(200))
            return Set(seen.withLock { $0.map(\.value) }).count == 400
        }
        #expect(done, "only \(Set(seen.withLock { $0.map(\.value) }).count) of 400 records were read")
        _ = try await firstReader.value
        let values = seen.withLock { $0.map(\.value) }
        #expect(values.count == 400, "\(values.count - Set(values).count) records were read twice")
        secondReader.cancel()
        _ = await secondReader.result
        for consumer in [first, second] {
            await consumer.close()
            await consumer.client.close()
        }
        await admin.close()
        await live.stop()
    }

    /// Offsets are committed in the background, however long the caller takes; before a
    /// rebalance takes partitions away, what was processed is committed; the caller hears
    /// of both sides of the rebalance; `close()` commits and leaves.
    @Test func commitsRunInTheBackgroundAndBeforeARebalance() async throws {
        let clock = ManualClock()
        let live = try await LiveServer(clock: clock)
        defer { live.remove() }
        let admin = MillraceClient(host: "127.0.0.1", port: live.port)
        try await Self.fill(admin, "lots", partitions: 2, records: 40)
        let events = Locked<[GroupConsumer.Rebalance]>([])
        var configuration = GroupConsumer.Configuration()
        configuration.sessionTimeoutMs = 300_000
        configuration.heartbeatInterval = .seconds(1)
        configuration.commitInterval = .seconds(5)
        configuration.clock = clock
        configuration.onRebalance = { change in events.withLock { $0.append(change) } }
        let first = GroupConsumer(client: MillraceClient(host: "127.0.0.1", port: live.port), group: "posting", topic: "lots", configuration: configuration)
        var iterator = first.makeAsyncIterator()
        // What the caller is done with: a record counts once it asks for the next one (the
        // last one handed out is still being processed).
        var processed: [Int32: Int64] = [:]
        var inHand: ConsumedRecord?
        for _ in 0..<10 {
            if let done = inHand { processed[done.partition] = done.offset + 1 }
            let record = try #require(try await iterator.next())
            inHand = record
        }
        #expect(events.withLock { $0 } == [.assigned([0, 1].map { TopicPartition(topic: "lots", partition: $0) })])
        func committed() async throws -> [Int32: Int64] {
            Dictionary(uniqueKeysWithValues: try await admin.committedOffsets(group: "posting", topic: "lots", partitions: [0, 1]).map { ($0.partition, $0.offset) })
        }
        #expect(try await committed() == [0: -1, 1: -1])
        // The caller is busy (not iterating); the background session commits on its interval.
        let backgroundCommit = try await eventually {
            clock.advance(by: .seconds(1))
            return try await committed().filter { $0.value >= 0 } == processed
        }
        #expect(backgroundCommit)

        // A second member joins; the first hands out more, then learns of the rebalance at its
        // next heartbeat and commits everything it processed before letting a partition go.
        configuration.onRebalance = nil
        let second = GroupConsumer(client: MillraceClient(host: "127.0.0.1", port: live.port), group: "posting", topic: "lots", configuration: configuration)
        var secondIterator = second.makeAsyncIterator()
        let secondGotARecord = Locked(false)
        let secondTask = Task {
            let record = try await secondIterator.next()
            secondGotARecord.withLock { $0 = true }
            return record
        }
        #expect(try await eventually { (try? await admin.describeGroup("posting").members.count) == 2 })
        for _ in 0..<5 {
            if let done = inHand { processed[done.partition] = done.offset + 1 }
            let record = try #require(try await iterator.next())
            inHand = record
        }
        let rebalanced = try await eventually {
            clock.advance(by: .seconds(1))
            return events.withLock { $0.count } >= 2
        }
        #expect(rebalanced)
        let kept = first.assignment.map(\.partition)
        #expect(kept.count == 1)
        #expect(events.withLock { Array($0.dropFirst()) } == [.revoked([0, 1].filter { !kept.contains($0) }.map { TopicPartition(topic: "lots", partition: $0) })])
        let afterRebalance = try await committed()
        for (partition, offset) in processed where !kept.contains(partition) {
            #expect(afterRebalance[partition] == offset, "partition \(partition): processed up to \(offset), committed \(afterRebalance[partition] ?? -1)")
        }
        // The second member reads its partition once the first has let it go (the first says
        // so at once; the second hears it at its next heartbeat).
        #expect(try await eventually {
            clock.advance(by: .seconds(1))
            return secondGotARecord.withLock { $0 }
        })
        let firstOfSecond = try #require(try await secondTask.value)
        #expect(!kept.contains(firstOfSecond.partition))
        await second.close()
        await first.close()
        let described = try await admin.describeGroup("posting")
        #expect(described.members.isEmpty && described.state == "empty")
        await first.client.close()
        await second.client.close()
        await admin.close()
        await live.stop()
    }

    /// Issue 23, item 17: one member over two topics reads both from one sequence, each
    /// record naming its topic; it commits per topic, and a second member joining later takes
    /// partitions of either topic from those commits with nothing read twice.
    @Test func aMemberReadsSeveralTopicsAndCommitsEach() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let admin = try TestClient(port: live.port)
        for (topic, partitions) in [("confirmations", Int32(2)), ("genealogy", Int32(3))] {
            _ = try admin.call(.createTopic(CreateTopicRequest(name: topic, partitions: partitions)))
            for partition in 0..<partitions { _ = try admin.call(produce(topic, partition, (0..<5).map { "\(topic)-\(partition)-\($0)" })) }
        }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        var configuration = GroupConsumer.Configuration()
        configuration.stopAtEnd = true
        let first = GroupConsumer(client: client, group: "plant", topics: ["confirmations", "genealogy"], configuration: configuration)
        var read: [String] = []
        for try await record in first {
            let value = String(decoding: record.value ?? [], as: UTF8.self)
            #expect(value.hasPrefix("\(record.topic)-\(record.partition)-"))
            read.append(value)
            first.commit(record)
        }
        #expect(read.count == 25 && Set(read).count == 25)
        #expect(first.assignment.count == 5 && Set(first.assignment.map(\.topic)) == ["confirmations", "genealogy"])
        await first.close()
        #expect(try await client.committedOffsets(group: "plant", topic: "confirmations", partitions: [0, 1]).map(\.offset) == [5, 5])
        #expect(try await client.committedOffsets(group: "plant", topic: "genealogy", partitions: [0, 1, 2]).map(\.offset) == [5, 5, 5])

        // More records; a new member continues from the commits of both topics.
        _ = try admin.call(produce("confirmations", 1, ["late-c"]))
        _ = try admin.call(produce("genealogy", 2, ["late-g"]))
        let second = GroupConsumer(client: client, group: "plant", topics: ["genealogy", "confirmations"], configuration: configuration)
        var later: [String] = []
        for try await record in second { later.append("\(record.topic):\(String(decoding: record.value ?? [], as: UTF8.self))") }
        #expect(later.sorted() == ["confirmations:late-c", "genealogy:late-g"])
        await second.close()
        await client.close()
        await live.stop()
    }
}

@Suite(.serialized, .stopsLiveServers) struct ReplayTests {
    /// A committed offset that retention removed: the member resumes at the log start and
    /// says how many records it skipped.
    @Test func aCommitBelowTheLogStartIsSkippedForwardWithAWarning() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        // One byte: retention keeps only the newest batch (it goes while the rest hold ≥ 1 byte).
        try await client.createTopic(CreateTopicRequest(name: "short", partitions: 1, retentionBytes: 1))
        let producer = Producer(client: client)
        for index in 0..<10 { _ = try await producer.send(topic: "short", value: Array("v\(index)".utf8)).delivery() }
        try await client.commitOffsets(group: "slow", topic: "short", offsets: [OffsetEntry(partition: 0, offset: 2)])
        _ = try await live.storage.enforceRetention()
        let logStart = try live.storage.offsets(topic: "short", partition: 0).logStartOffset
        #expect(logStart == 9)

        var configuration = GroupConsumer.Configuration()
        configuration.stopAtEnd = true
        let consumer = GroupConsumer(client: client, group: "slow", topic: "short", configuration: configuration)
        var values: [String] = []
        for try await record in consumer { values.append(String(decoding: record.value ?? [], as: UTF8.self)) }
        #expect(values == (Int(logStart)..<10).map { "v\($0)" })
        #expect(consumer.warnings == ["short/0: committed offset 2 was removed by retention; resuming at the earliest offset \(logStart), \(logStart - 2) records skipped"])
        await consumer.close()

        // With the latest policy, such a member goes to the log end instead.
        try await client.commitOffsets(group: "late", topic: "short", offsets: [OffsetEntry(partition: 0, offset: 2)])
        configuration.resetPolicy = .latest
        let late = GroupConsumer(client: client, group: "late", topic: "short", configuration: configuration)
        var lateValues: [String] = []
        for try await record in late { lateValues.append(String(decoding: record.value ?? [], as: UTF8.self)) }
        #expect(lateValues.isEmpty)
        #expect(late.warnings == ["short/0: committed offset 2 was removed by retention; resuming at the latest offset 10, 8 records skipped"])
        await late.close()
        await client.close()
        await live.stop()
    }

    /// Replay by time: the group lands on the first record at or after T.
    @Test func replayByTimeLandsOnTheFirstRecordAtOrAfterT() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 1))
        let producer = Producer(client: client)
        // Event times chosen, not read from the clock: T falls between the two runs.
        let cut: Int64 = 1_700_000_050_000
        for index in 0..<5 {
            let record = ProducerRecord(topic: "confirmations", value: Array("before-\(index)".utf8), timestampMs: cut - 10_000 + Int64(index))
            _ = try await producer.send(record).delivery()
        }
        for index in 0..<5 {
            let record = ProducerRecord(topic: "confirmations", value: Array("after-\(index)".utf8), timestampMs: cut + Int64(index))
            _ = try await producer.send(record).delivery()
        }

        let target = try await client.listOffsets("confirmations", partitions: [0], timestamp: cut)
        #expect(target.first?.offset == 5 && (target.first?.timestamp ?? 0) >= cut)
        try await client.commitOffsets(group: "replay", topic: "confirmations", offsets: [OffsetEntry(partition: 0, offset: target[0].offset)])
        var configuration = GroupConsumer.Configuration()
        configuration.stopAtEnd = true
        let consumer = GroupConsumer(client: client, group: "replay", topic: "confirmations", configuration: configuration)
        var values: [String] = []
        for try await record in consumer { values.append(String(decoding: record.value ?? [], as: UTF8.self)) }
        #expect(values == (0..<5).map { "after-\($0)" })
        await consumer.close()
        await client.close()
        await live.stop()
    }

    /// Issue 23, item 16: with autoCommit (the default) a record counts as processed only
    /// once the caller asks for the next one. A member that "crashes" while processing its
    /// fifth record (it commits what is marked and is gone) leaves that record to be read
    /// again; the four before it are not.
    @Test func autoCommitMarksARecordOnlyWhenTheNextIsAskedFor() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let admin = try TestClient(port: live.port)
        _ = try admin.call(.createTopic(CreateTopicRequest(name: "postings", partitions: 1)))
        _ = try admin.call(produce("postings", 0, (0..<10).map { "r\($0)" }))
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        let consumer = GroupConsumer(client: client, group: "erp", topic: "postings")
        var processing: ConsumedRecord?
        for try await record in consumer {
            processing = record
            if record.offset == 4 { break }  // the crash, while posting r4
        }
        #expect(processing?.offset == 4)
        try await consumer.commitNow()
        let committed = try await client.committedOffsets(group: "erp", topic: "postings", partitions: [0])
        #expect(committed.first?.offset == 4, "r0…r3 were processed; r4 was not and must be read again")

        // Marking the last one explicitly is how a caller says it is done with it.
        if let processing { consumer.commit(processing) }
        try await consumer.commitNow()
        #expect(try await client.committedOffsets(group: "erp", topic: "postings", partitions: [0]).first?.offset == 5)
        await consumer.close()
        await client.close()
        await live.stop()
    }
}
