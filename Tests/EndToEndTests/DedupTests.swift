import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import Testing

/// Business-key duplicate detection through a live broker: a gateway restarted with a new
/// identity resends, keys from headers and record keys, duplicates mixed with new records in
/// one batch, and duplicates beside a schema's quarantine.
@Suite(.serialized, .stopsLiveServers) struct DedupEndToEndTests {
    static func confirmation(_ id: Int, yield: Int = 1) -> [UInt8] {
        Array(#"{"event_id":"E-\#(id)","order_id":"\#(100 + id % 7)","yield_qty":\#(yield)}"#.utf8)
    }

    typealias Outcome = Result<(partition: Int32, offset: Int64), any Error>

    /// Sends `values` (keyed by order) and returns each record's outcome, in order.
    static func send(_ producer: Producer, _ topic: String, _ values: [[UInt8]], headers: (Int) -> [RecordHeader] = { _ in [] }) async throws -> [Outcome] {
        let outcomes = Locked<[Int: Outcome]>([:])
        for (index, value) in values.enumerated() {
            try await producer.send(topic: topic, key: Array("ORDER-\(index % 5)".utf8), value: value, headers: headers(index)) { result in
                outcomes.withLock { $0[index] = result }
            }
        }
        try await producer.flush()
        let all = outcomes.withLock { $0 }
        return values.indices.map { all[$0]! }
    }

    @Test func aRestartedGatewayResendingItsLastThousandIsCaught() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 3))
        try await client.setDedupPolicy(topic: "confirmations", key: "json:/event_id")
        let first = try await Self.send(Producer(client: client), "confirmations", (0..<3_000).map { Self.confirmation($0) })
        let stored = try first.map { try $0.get() }
        // A new process: a new producer identity, so only the business key can catch these.
        let resent = try await Self.send(Producer(client: client), "confirmations", (2_000..<3_000).map { Self.confirmation($0) })
        for (offset, outcome) in resent.enumerated() {
            guard case .failure(let duplicate as RecordDuplicate) = outcome else {
                Issue.record("record \(2_000 + offset) was not caught: \(outcome)")
                continue
            }
            #expect(duplicate.partition == stored[2_000 + offset].partition && duplicate.offset == stored[2_000 + offset].offset)
        }
        // New and repeated mixed: only the new ones go in. The same new key twice in one
        // request (here in two partitions) goes in once: whichever reaches the writer first.
        let mixed = try await Self.send(Producer(client: client), "confirmations", [5, 3_000, 6, 3_001, 3_000].map { Self.confirmation($0) })
        let caught = mixed.map { (try? $0.get()) == nil }
        #expect(caught[0] && caught[2] && !caught[3] && caught[1] != caught[4], "\(caught)")
        let described = try await client.describeTopic("confirmations")
        #expect(described.partitions.reduce(0) { $0 + $1.logEndOffset } == 3_002)
        let status = try await client.dedupStatus(topic: "confirmations")
        #expect(status.key == "json:/event_id" && status.keysHeld == 3_002 && status.duplicatesTotal == 1_003)
        let check = try await client.dedupCheck(topic: "confirmations", key: Array("E-42".utf8))
        #expect(check.found && check.partition == stored[42].partition && check.offset == stored[42].offset)
        #expect(try await !client.dedupCheck(topic: "confirmations", key: Array("E-99999".utf8)).found)
        await client.close()
        await live.stop()
    }

    @Test func keysFromHeadersAndRecordKeys() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "by-header", partitions: 1))
        try await client.setDedupPolicy(topic: "by-header", key: "header:message-id", windowMs: 60_000)
        let header = { (index: Int) in [RecordHeader(key: "message-id", value: Array("M\(index % 3)".utf8))] }
        let outcomes = try await Self.send(Producer(client: client), "by-header", (0..<5).map { Self.confirmation($0) }, headers: header)
        #expect(outcomes.map { (try? $0.get()) != nil } == [true, true, true, false, false])
        // Records without the header are not checked.
        let bare = try await Self.send(Producer(client: client), "by-header", [Self.confirmation(1), Self.confirmation(1)])
        #expect(bare.allSatisfy { (try? $0.get()) != nil })

        try await client.createTopic(CreateTopicRequest(name: "by-key", partitions: 2))
        try await client.setDedupPolicy(topic: "by-key", key: "key")
        // Send keys ORDER-0...4 twice: the second five are duplicates.
        let keyed = try await Self.send(Producer(client: client), "by-key", (0..<10).map { Self.confirmation($0) })
        #expect(keyed.filter { (try? $0.get()) == nil }.count == 5)
        // Refused specs name what to write.
        do {
            try await client.setDedupPolicy(topic: "by-key", key: "body:/x")
            Issue.record("a bad spec was taken")
        } catch let error as MillraceError {
            #expect(error.code == .invalidConfig && error.message.contains("json:/pointer"))
        }
        try await client.setDedupPolicy(topic: "by-key", key: nil)
        #expect(try await client.dedupStatus(topic: "by-key").key.isEmpty)
        await client.close()
        await live.stop()
    }

    /// Topic `checked`: a schema (yield_qty at least 0), quarantine, dedup by json:/event_id.
    static func checkedTopic(port: Int) async throws -> MillraceClient {
        let client = MillraceClient(host: "127.0.0.1", port: port)
        try await client.createTopic(CreateTopicRequest(name: "checked", partitions: 1))
        _ = try await client.registerSchema(
            topic: "checked", schema: Array(#"{"type":"object","properties":{"yield_qty":{"type":"number","minimum":0}}}"#.utf8))
        try await client.setSchemaPolicy(topic: "checked", onInvalid: .quarantine)
        try await client.setDedupPolicy(topic: "checked", key: "json:/event_id")
        return client
    }

    /// A schema with quarantine and dedup on one topic: the invalid record is parked, the
    /// repeated one is a duplicate, the rest go in; every outcome names the right record.
    @Test func duplicatesBesideQuarantine() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = try await Self.checkedTopic(port: live.port)
        _ = try await Self.send(Producer(client: client), "checked", [Self.confirmation(1)])
        let outcomes = try await Self.send(
            Producer(client: client), "checked", [Self.confirmation(2), Self.confirmation(3, yield: -1), Self.confirmation(1), Self.confirmation(4)])
        #expect((try? outcomes[0].get())?.offset == 1)
        if case .failure(let parked as RecordQuarantined) = outcomes[1] { #expect(parked.path == "/yield_qty") } else { Issue.record("\(outcomes[1])") }
        if case .failure(let duplicate as RecordDuplicate) = outcomes[2] { #expect(duplicate.offset == 0) } else { Issue.record("\(outcomes[2])") }
        #expect((try? outcomes[3].get())?.offset == 2)
        await client.close()
        await live.stop()
    }

    /// Issue 23: parked records are deduplicated by the topic's key too. The same invalid
    /// record sent again (an ordinary retry) is answered with its first place in the
    /// quarantine and not stored again; a value with no key there (not JSON) is parked each
    /// time; an invalid record whose key the topic holds is a duplicate of that record.
    @Test func parkedRecordsAreDeduplicatedByTheTopicsKey() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = try await Self.checkedTopic(port: live.port)
        func parked(_ outcomes: [Outcome]) -> [Int64?] {
            outcomes.map { outcome in
                guard case .failure(let parked as RecordQuarantined) = outcome else { return nil }
                return parked.offset
            }
        }
        let bad = Self.confirmation(7, yield: -1)
        let notJSON = Array("not json".utf8)
        #expect(parked(try await Self.send(Producer(client: client), "checked", [bad, notJSON])) == [0, 1])
        #expect(parked(try await Self.send(Producer(client: client), "checked", [bad, notJSON])) == [0, 2])
        _ = try await Self.send(Producer(client: client), "checked", [Self.confirmation(1)])
        let held = try await Self.send(Producer(client: client), "checked", [Self.confirmation(1, yield: -1)])
        if case .failure(let duplicate as RecordDuplicate) = held[0] { #expect(duplicate.offset == 0) } else { Issue.record("\(held[0])") }
        var stored: [String] = []
        for try await record in Consumer(client: client, topic: "checked.quarantine", from: .earliest, stopAtEnd: true) {
            stored.append(String(decoding: record.value ?? [], as: UTF8.self))
        }
        #expect(stored == [String(decoding: bad, as: UTF8.self), "not json", "not json"])
        await client.close()
        await live.stop()
    }
}

/// The same idempotent batch sent ten times at once, pipelined on one connection and on
/// ten connections: stored once, every answer the same offset.
@Suite(.serialized, .stopsLiveServers) struct RetryStormTests {
    @Test func aRetryStormIsStoredOnce() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "storm", partitions: 1))
        let identity = try await client.initProducer()
        func batch(_ sequence: Int32, _ value: String) throws -> [UInt8] {
            var batch = RecordBatch(timestamp: 1_700_000_000_000, values: [Array(value.utf8)])
            batch.producerId = identity.producerId
            batch.producerEpoch = identity.epoch
            batch.baseSequence = sequence
            return try batch.encoded()
        }
        func produce(_ records: [UInt8]) -> Request {
            .produce(ProduceRequest(timeoutMs: 5_000, topics: [TopicEntries(topic: "storm", [ProducePartition(partition: 0, records: records)])], version: 2))
        }
        let wire = try TestClient(port: live.port)
        let first = try batch(0, "confirmation-1")
        for _ in 0..<10 { _ = try wire.send(produce(first)) }
        var offsets: [Int64] = []
        for _ in 0..<10 {
            guard case .produce(let topics)? = try wire.receive()?.body, let entry = topics.first?.entries.first else { continue }
            #expect(entry.errorCode == .none, "\(entry.message)")
            offsets.append(entry.baseOffset)
        }
        #expect(offsets == Array(repeating: 0, count: 10))
        let second = try batch(1, "confirmation-2")
        let wires = try (0..<10).map { _ in try TestClient(port: live.port) }
        for connection in wires { _ = try connection.send(produce(second)) }
        for connection in wires {
            guard case .produce(let topics)? = try connection.receive()?.body, let entry = topics.first?.entries.first else { continue }
            #expect(entry.errorCode == .none && entry.baseOffset == 1)
        }
        #expect(try await client.describeTopic("storm").partitions[0].logEndOffset == 2)
        // A gap is refused, nothing stored.
        guard case .produce(let topics)? = try wire.call(produce(try batch(5, "gap"))).body, let gap = topics.first?.entries.first else { return }
        #expect(gap.errorCode == .outOfOrderSequence && gap.message.contains("expected sequence 2"))
        #expect(try await client.describeTopic("storm").partitions[0].logEndOffset == 2)
        await client.close()
        await live.stop()
    }
}
