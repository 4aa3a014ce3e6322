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

    /// A backlog of several fetches on each of five partitions (1 MiB per partition per
    /// fetch): a replay reads every record once, in order, while it keeps two fetches for
    /// disjoint partitions in flight; a follower of the same backlog then sees a record that
    /// arrives on the partition it caught up on first.
    @Test func aBacklogIsReadOnceInOrderWithFetchesOverlapping() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "genealogy", partitions: 5))
        let producer = Producer(client: client)
        // Partition p holds 1,000 + 300·p records of 1 KiB: from 1 to 2.2 MiB, so the
        // partitions run out after different numbers of fetches.
        let counts = (0..<5).map { 1_000 + 300 * $0 }
        let value = [UInt8](repeating: 0x61, count: 1_024)
        for (partition, count) in counts.enumerated() {
            for _ in 0..<count { try await producer.send(topic: "genealogy", partition: Int32(partition), value: value) { _ in } }
        }
        try await producer.flush()
        var offsets: [Int32: [Int64]] = [:]
        for try await record in Consumer(client: client, topic: "genealogy", from: .earliest, stopAtEnd: true) {
            offsets[record.partition, default: []].append(record.offset)
        }
        for (partition, count) in counts.enumerated() { #expect(offsets[Int32(partition)] == Array(0..<Int64(count)), "partition \(partition)") }

        var follower = Consumer(client: client, topic: "genealogy", from: .earliest, stopAtEnd: false).makeAsyncIterator()
        for _ in 0..<counts.reduce(0, +) { _ = try await follower.next() }
        try await producer.send(topic: "genealogy", partition: 0, value: Array("late".utf8)) { _ in }
        try await producer.flush()
        let late = try await follower.next()
        #expect(late?.partition == 0 && late?.offset == Int64(counts[0]) && late?.value == Array("late".utf8))
        await client.close()
        await live.stop()
    }

    /// A follower reading two long backlogs and one short one: once the short one is read,
    /// a record that arrives on its partition comes long before the backlogs are (the
    /// partition that caught up is still asked for beside the ones behind).
    @Test func aPartitionThatCaughtUpIsNotStarvedByOthersBehind() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "lots", partitions: 3))
        let producer = Producer(client: client)
        let value = [UInt8](repeating: 0x62, count: 1_024)
        // 6 MiB on partitions 0 and 1 (six fetches each at 1 MiB), ten records on 2.
        for (partition, count) in [6_000, 6_000, 10].enumerated() {
            for _ in 0..<count { try await producer.send(topic: "lots", partition: Int32(partition), value: value) { _ in } }
        }
        try await producer.flush()
        var follower = Consumer(client: client, topic: "lots", from: .earliest, stopAtEnd: false).makeAsyncIterator()
        var read = 0
        while let record = try await follower.next() {
            read += 1
            if record.partition == 2 && record.offset == 9 { break }
        }
        try await producer.send(topic: "lots", partition: 2, value: Array("fresh".utf8)) { _ in }
        try await producer.flush()
        var before = 0
        while let record = try await follower.next(), record.partition != 2 { before += 1 }
        #expect(read + before < 8_000, "read \(read) then \(before) records of the backlogs before the fresh one")
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
