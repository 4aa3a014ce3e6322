import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import Testing

@Suite(.serialized, .stopsLiveServers) struct ClientTests {
    @Test func producerAndConsumerKeepPerKeyOrder() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 4))
        let producer = Producer(client: client)
        // Three concurrent producers' worth of records over 20 keys.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<3 {
                group.addTask {
                    for index in 0..<200 {
                        let key = Array("ORDER-\(index % 20)".utf8)
                        let value = Array("{\"worker\":\(worker),\"seq\":\(index)}".utf8)
                        try await producer.send(topic: "confirmations", key: key, value: value) { _ in }
                    }
                }
            }
            try await group.waitForAll()
        }
        try await producer.flush()
        let placed = try await producer.send(topic: "confirmations", key: Array("ORDER-3".utf8), value: Array("last".utf8)).delivery()
        #expect(placed.partition == KeyPartitioner.partition(for: Array("ORDER-3".utf8), partitionCount: 4))

        var seen: [String: [Int]] = [:]
        var perPartitionOffsets: [Int32: [Int64]] = [:]
        var count = 0
        for try await record in Consumer(client: client, topic: "confirmations", from: .earliest, stopAtEnd: true) {
            count += 1
            perPartitionOffsets[record.partition, default: []].append(record.offset)
            let key = String(decoding: record.key ?? [], as: UTF8.self)
            #expect(record.partition == KeyPartitioner.partition(for: record.key ?? [], partitionCount: 4))
            if let object = try? JSONSerialization.jsonObject(with: Data(record.value ?? [])) as? [String: Int],
                let worker = object["worker"], let seq = object["seq"]
            {
                seen["\(key)/\(worker)", default: []].append(seq)
            }
        }
        #expect(count == 601)
        for offsets in perPartitionOffsets.values { #expect(offsets == offsets.sorted()) }
        // Each producer's records for a key arrive in the order it sent them.
        for sequence in seen.values { #expect(sequence == sequence.sorted()) }
        await client.close()
        await live.stop()
    }

    @Test func consumersStartFromOffsetsAndTimes() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "lots", partitions: 1))
        let producer = Producer(client: client)
        for index in 0..<10 { _ = try await producer.send(topic: "lots", value: Array("L\(index)".utf8)).delivery() }
        var fromFive: [String] = []
        for try await record in Consumer(client: client, topic: "lots", from: .offset(5), stopAtEnd: true) {
            fromFive.append(String(decoding: record.value ?? [], as: UTF8.self))
        }
        #expect(fromFive == ["L5", "L6", "L7", "L8", "L9"])
        var fromFuture = 0
        for try await _ in Consumer(client: client, topic: "lots", from: .timestamp(Int64.max / 2), stopAtEnd: true) { fromFuture += 1 }
        #expect(fromFuture == 0)
        await #expect(throws: MillraceError.self) {
            for try await _ in Consumer(client: client, topic: "nope", from: .earliest, stopAtEnd: true) {}
        }
        await client.close()
        await live.stop()
    }
}
