import Foundation
import MillraceClient
import MillraceFormat
import Testing

/// Every `send` without a completion behaves alike, whatever its value: it hands back a
/// delivery handle while the record is still batched, and a duplicate is a delivery outcome,
/// not an error; `deliver` sends and waits.
@Suite(.serialized, .stopsLiveServers) struct ProducerSendTests {
    struct Confirmation: Codable, Equatable {
        var event: String
        var qty: Int
    }

    @Test func sendOverloadsAgreeOnHandlesAndDuplicates() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic("confirmations", .init(partitions: 3, dedupKey: "json:/event"))
        // A linger nobody waits out: the records go only when flushed. A `send` that waited
        // for its record would return only once the linger had passed, and the broker would
        // then hold it before the flush below.
        var configuration = Producer.Configuration()
        configuration.lingerMs = 600_000
        let producer = Producer(client: client, configuration: configuration)

        let text = #"{"event":"E1","qty":5}"#
        let handles = [
            try await producer.send(topic: "confirmations", key: "ORD-7", value: text),
            try await producer.send(topic: "confirmations", key: Array("ORD-7".utf8), value: Array(text.utf8)),
            try await producer.send(topic: "confirmations", key: "ORD-7", json: Confirmation(event: "E1", qty: 5)),
            try await producer.send(ProducerRecord(topic: "confirmations", key: "ORD-7", value: Data(text.utf8))),
        ]
        // Every send has returned; nothing has reached the broker yet.
        let before = try await client.describeTopic("confirmations").partitions.map(\.logEndOffset)
        #expect(before == [0, 0, 0])
        try await producer.flush()

        let deliveries = try await handles.asyncMap { try await $0.delivery() }
        let original = deliveries[0]
        #expect(original.outcome == .appended)
        #expect(original.partition == KeyPartitioner.partition(for: Array("ORD-7".utf8), partitionCount: 3))
        // The same business key through each other overload: a duplicate naming the original.
        for delivery in deliveries.dropFirst() {
            #expect(delivery.outcome == .duplicate && delivery.partition == original.partition && delivery.offset == original.offset, "\(delivery)")
        }
        #expect(Set(handles.map(\.id)).count == handles.count)

        try await producer.close()

        // Sent again once the original is stored (a producer with the usual linger): still
        // outcomes, from the handle and from `deliver`.
        let plain = Producer(client: client)
        let again = try await plain.send(topic: "confirmations", key: Array("ORD-7".utf8), value: Array(text.utf8))
        #expect(try await again.delivery().outcome == .duplicate)
        let delivered = try await plain.deliver(ProducerRecord(topic: "confirmations", key: "ORD-7", value: text))
        #expect(delivered.outcome == .duplicate && delivered.offset == original.offset)
        #expect(try await client.describeTopic("confirmations").partitions.map(\.records).reduce(0, +) == 1)
        try await plain.close()
        await client.close()
        await live.stop()
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var mapped: [T] = []
        for element in self { mapped.append(try await transform(element)) }
        return mapped
    }
}
