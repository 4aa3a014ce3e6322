import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import NIOConcurrencyHelpers
import Testing

@Suite(.serialized) struct GroupConsumerTests {
    /// Three members on six partitions; one stops heartbeating (killed). Its partitions move
    /// to the others within the session timeout, every record is processed, and within one
    /// generation no partition is read by two members.
    @Test func aKilledMembersPartitionsAreTakenOverAndEveryRecordIsProcessed() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let admin = MillraceClient(host: "127.0.0.1", port: live.port)
        try await admin.createTopic(CreateTopicRequest(name: "orders", partitions: 6))
        let producer = Producer(client: admin)
        for index in 0..<600 { try await producer.send(topic: "orders", key: Array("K\(index)".utf8), value: Array("\(index)".utf8)) { _ in } }
        try await producer.flush()

        let seen = NIOLockedValueBox<[(member: String, generation: Int32, partition: Int32, value: String)]>([])
        let port = live.port
        let member: @Sendable (String, Int?) async throws -> GroupConsumer.Iterator = { name, records in
            let client = MillraceClient(host: "127.0.0.1", port: port)
            var iterator = GroupConsumer(client: client, group: "erp", topic: "orders", stopAtEnd: false, sessionTimeoutMs: 1_200, autoCommitRecords: 10)
                .makeAsyncIterator()
            var taken = 0
            while records.map({ taken < $0 }) ?? true {
                guard let record = try await iterator.next() else { break }
                seen.withLockedValue { $0.append((iterator.memberID, iterator.generation, record.partition, String(decoding: record.value ?? [], as: UTF8.self))) }
                taken += 1
            }
            try await iterator.commit()
            return iterator
        }
        // The victim reads a little, commits, then goes silent without leaving.
        let victim = try await member("victim", 30)
        #expect(victim.generation == 1)
        let started = Date()
        var took = 0.0
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { _ = try await member("a", nil) }
            group.addTask { _ = try await member("b", nil) }
            // Run the survivors until every record is processed, then stop them.
            let deadline = Date().addingTimeInterval(15)
            while Set(seen.withLockedValue { $0.map(\.value) }).count < 600 && Date() < deadline {
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            took = Date().timeIntervalSince(started)
            group.cancelAll()
            while true {
                do {
                    guard try await group.next() != nil else { break }
                } catch is CancellationError {
                    continue
                }
            }
        }
        #expect(Set(seen.withLockedValue { $0.map(\.value) }).count == 600, "not every record was processed in \(took) s")
        #expect(took < 6, "the victim's partitions took \(took) s to move (session timeout 1.2 s)")
        // No (generation, partition) was read by two members.
        var owners: [String: Set<String>] = [:]
        for entry in seen.withLockedValue({ $0 }) { owners["\(entry.generation)/\(entry.partition)", default: []].insert(entry.member) }
        #expect(owners.values.allSatisfy { $0.count == 1 }, "\(owners.filter { $0.value.count > 1 })")
        // Nothing the victim committed was read again.
        let victimValues = Set(seen.withLockedValue { $0.filter { $0.member == victim.memberID }.map(\.value) })
        let survivorValues = seen.withLockedValue { $0.filter { $0.member != victim.memberID }.map(\.value) }
        #expect(victimValues.isDisjoint(with: survivorValues))
        await admin.close()
        await live.stop()
    }
}
