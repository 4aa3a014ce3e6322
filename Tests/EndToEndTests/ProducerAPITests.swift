import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import NIOCore
import NIOPosix
import Testing

/// The producer as a library user meets it: `send` queues and hands back a delivery handle,
/// records of every kind of value, outcomes (appended, duplicate, quarantined, invalid) as
/// deliveries rather than errors, a stream of reports, event times kept, `close`.
@Suite(.serialized, .stopsLiveServers) struct ProducerAPITests {
    struct Confirmation: Codable, Equatable {
        var id: Int
        var order: String
        var qty: Int
    }

    @Test func handlesReportsAndOutcomes() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 2))
        try await client.createTopic(CreateTopicRequest(name: "checked", partitions: 1))
        _ = try await client.registerSchema(topic: "checked", schema: Array(#"{"type":"object","properties":{"qty":{"type":"number","minimum":0}}}"#.utf8))
        try await client.setSchemaPolicy(topic: "checked", onInvalid: .quarantine)
        try await client.setDedupPolicy(topic: "checked", key: "json:/id")
        try await client.createTopic(CreateTopicRequest(name: "strict", partitions: 1))
        _ = try await client.registerSchema(topic: "strict", schema: Array(#"{"type":"object","required":["qty"]}"#.utf8))

        let (producer, reports) = Producer.makeWithDeliveryReports(client: client)
        let collected = Task { () -> [DeliveryReport] in
            var all: [DeliveryReport] = []
            for await report in reports { all.append(report) }
            return all
        }
        // Every kind of value; the same key lands on the same partition.
        let eventTime: Int64 = 1_700_000_000_123
        var handles = [
            try await producer.send(ProducerRecord(topic: "confirmations", key: "ORD-1", value: #"{"order":"ORD-1"}"#, timestampMs: eventTime)),
            try await producer.send(ProducerRecord(topic: "confirmations", key: "ORD-1", value: Data(#"{"order":"ORD-1","step":2}"#.utf8))),
            try await producer.send(ProducerRecord(topic: "confirmations", key: "ORD-1", value: ByteBuffer(string: #"{"order":"ORD-1","step":3}"#))),
            try await producer.send(topic: "confirmations", key: "ORD-1", json: Confirmation(id: 9, order: "ORD-1", qty: 4)),
        ]
        let first = try await handles[0].delivery()
        #expect(first.outcome == .appended && first.topic == "confirmations" && first.offset == 0)
        for (index, handle) in handles.enumerated() {
            let delivery = try await handle.delivery()
            #expect(delivery.outcome == .appended && delivery.partition == first.partition && delivery.offset == Int64(index))
        }
        // Outcomes arrive as deliveries: a duplicate names its original, a quarantined record
        // its place in the quarantine, an invalid one (a rejecting topic) why.
        let original = try await producer.send(topic: "checked", json: Confirmation(id: 1, order: "A", qty: 1))
        #expect(try await original.delivery().outcome == .appended)
        let repeated = try await producer.send(topic: "checked", json: Confirmation(id: 1, order: "A", qty: 1))
        let parked = try await producer.send(topic: "checked", json: Confirmation(id: 2, order: "B", qty: -3))
        let refused = try await producer.send(topic: "strict", value: #"{"order":"C"}"#)
        let duplicate = try await repeated.delivery()
        #expect(duplicate.outcome == .duplicate && duplicate.partition == 0 && duplicate.offset == 0)
        let quarantined = try await parked.delivery()
        #expect(quarantined.outcome == .quarantined && quarantined.topic == "checked.quarantine" && quarantined.detail.contains("/qty"))
        let invalid = try await refused.delivery()
        #expect(invalid.outcome == .invalid && invalid.detail.contains("qty"), "\(invalid)")
        handles += [original, repeated, parked, refused]

        try await producer.close()
        await #expect(throws: MillraceError.self) { _ = try await producer.send(topic: "confirmations", value: "late") }
        // One report per send, with the handles' ids, and the same outcomes.
        let all = await collected.value
        #expect(Set(all.map(\.id)) == Set(handles.map(\.id)) && all.count == handles.count)
        #expect(all.first { $0.id == repeated.id }.flatMap { try? $0.result.get().outcome } == .duplicate)

        // The event time given is the record's time; the others got the send time.
        var times: [Int64] = []
        for try await record in Consumer(client: client, topic: "confirmations", from: .earliest, stopAtEnd: true) { times.append(record.timestamp) }
        #expect(times.count == 4 && times[0] == eventTime && times[1...].allSatisfy { $0 > eventTime })
        await client.close()
        await live.stop()
    }

    /// Brokers are tried in order; a group the application owns is used, and left running
    /// by `close()`.
    @Test func brokersInOrderOnASuppliedGroup() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var configuration = MillraceClient.Configuration()
        configuration.brokers = ["127.0.0.1:1", "not-an-address", "127.0.0.1:\(live.port)"]
        configuration.eventLoopGroup = .shared(group)
        let client = MillraceClient(configuration: configuration)
        try await client.createTopic(CreateTopicRequest(name: "t", partitions: 1))
        #expect(try await client.listTopics().map(\.name) == ["t"])
        await client.close()
        // The group still runs: a second client on it works.
        let again = MillraceClient(configuration: configuration)
        #expect(try await again.listTopics().count == 1)
        await again.close()
        try await group.shutdownGracefully()
        var nowhere = MillraceClient.Configuration()
        nowhere.brokers = ["127.0.0.1:1"]
        let lost = MillraceClient(configuration: nowhere)
        await #expect(throws: MillraceError.self) { _ = try await lost.listTopics() }
        await lost.close()
        await live.stop()
    }

    /// Topics made and changed with typed settings: durations, enums, policies.
    @Test func typedTopicConfig() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        let config = MillraceClient.TopicConfig(
            partitions: 3, retention: .seconds(7 * 86_400), compression: .zstd, timestamps: .logAppend,
            schema: Array(#"{"type":"object","required":["id"]}"#.utf8), onInvalid: .quarantine, dedupKey: "json:/id", dedupWindow: .seconds(3_600),
            index: IndexPolicy(fields: ["/lot"]))
        #expect(try await client.createTopic("orders", config))
        #expect(try await client.createTopic("orders", config, ifNotExists: true) == false)
        await #expect(throws: MillraceError.self) { try await client.createTopic("orders", config) }
        let stored = try #require(live.storage.topicInfo("orders"))
        #expect(stored.partitionCount == 3 && stored.config.retentionMs == 604_800_000 && stored.config.compression == .zstd)
        #expect(stored.config.timestampType == .logAppend && stored.config.onInvalid == .quarantine)
        #expect(stored.config.dedup?.windowMs == 3_600_000 && stored.config.index == IndexPolicy(fields: ["/lot"]))
        #expect(try await client.listSchemas(topic: "orders").versions.count == 1)
        try await client.alterTopic("orders", retention: .forever, retentionBytes: .some(1 << 20), compression: MillraceClient.TopicConfig.Compression.none)
        let altered = try #require(live.storage.topicInfo("orders"))
        #expect(altered.config.retentionMs == nil && altered.config.retentionBytes == 1 << 20 && altered.config.compression == .none)
        await client.close()
        await live.stop()
    }

    /// Groups and offsets in the client's own types: positions, committed offsets as a
    /// dictionary, a group's lag per partition.
    @Test func groupsAndOffsetsTyped() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic("orders", .init(partitions: 2))
        let producer = Producer(client: client)
        for index in 0..<6 { _ = try await producer.send(ProducerRecord(topic: "orders", partition: Int32(index % 2), value: "r\(index)")) }
        try await producer.close()
        #expect(try await client.offsets(topic: "orders", partitions: [0, 1], at: .earliest) == [0: 0, 1: 0])
        #expect(try await client.offsets(topic: "orders", partitions: [0, 1], at: .latest) == [0: 3, 1: 3])
        #expect(try await client.offsets(topic: "orders", partitions: [0], at: .time(Int64.max / 2)) == [0: 3])
        try await client.commitOffsets(group: "erp", topic: "orders", offsets: [0: 2])
        #expect(try await client.committedOffsets(group: "erp", topic: "orders") == [0: 2])
        let listed = try await client.groups()
        #expect(listed.map(\.group) == ["erp"] && listed.map(\.state) == ["empty"] && listed.map(\.memberCount) == [0])
        let erp = try await client.group("erp")
        #expect(erp.members.isEmpty && erp.totalLag == 1 + 3)
        #expect(erp.partitions.map(\.committedOffset) == [2, nil] && erp.partitions.map(\.lag) == [1, 3])
        await #expect(throws: MillraceError.self) { _ = try await client.group("nobody") }
        await client.close()
        await live.stop()
    }
}
