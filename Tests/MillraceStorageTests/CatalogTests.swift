import MillraceFormat
import Testing

@testable import MillraceStorage

@Suite struct CatalogTests {
    @Test func createListDescribeDelete() async throws {
        try await withStorage { storage, _ in
            let info = try await storage.createTopic("genealogy", partitions: 4, config: TopicConfig(retentionBytes: 1 << 20, compression: .zstd))
            #expect(info.partitionCount == 4)
            _ = try await storage.createTopic("confirmations", partitions: 1)
            #expect(try storage.listTopics().map(\.name) == ["confirmations", "genealogy"])
            let description = try storage.describeTopic("genealogy")
            #expect(description.partitions.count == 4)
            #expect(description.partitions.allSatisfy { $0.logStartOffset == 0 && $0.nextOffset == 0 && $0.bytes == 0 })
            #expect(description.info.config.compression == .zstd)
            try await storage.deleteTopic("genealogy")
            #expect(try storage.listTopics().map(\.name) == ["confirmations"])
            #expect(await errorCode { _ = try storage.describeTopic("genealogy") } == .unknownTopic)
            #expect(await errorCode { try await storage.deleteTopic("genealogy") } == .unknownTopic)
        }
    }

    @Test func rejectsBadNamesCountsAndConfigs() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("orders", partitions: 1)
            #expect(await errorCode { _ = try await storage.createTopic("orders", partitions: 1) } == .topicAlreadyExists)
            for name in ["", ".", "..", "has space", "slash/no", String(repeating: "a", count: 250)] {
                #expect(await errorCode { _ = try await storage.createTopic(name, partitions: 1) } == .invalidTopicName, "\(name)")
            }
            #expect(await errorCode { _ = try await storage.createTopic("zero", partitions: 0) } == .invalidPartitionCount)
            #expect(await errorCode { _ = try await storage.createTopic("many", partitions: 1025) } == .invalidPartitionCount)
            #expect(await errorCode { _ = try await storage.createTopic("r", partitions: 1, config: TopicConfig(retentionMs: 0)) } == .invalidConfig)
            #expect(await errorCode { _ = try await storage.createTopic("c", partitions: 1, config: TopicConfig(compression: .lz4)) } == .unsupportedCodec)
            #expect(try storage.listTopics().map(\.name) == ["orders"])
        }
    }

    @Test func aRecreatedTopicStartsEmpty() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("lots", partitions: 2)
            _ = try await storage.append(topic: "lots", partition: 0, batch: batch(["old-1", "old-2"]))
            try await storage.commitOffsets([OffsetCommit(group: "erp", topic: "lots", partition: 0, offset: 2)])
            try await storage.deleteTopic("lots")
            _ = try await storage.createTopic("lots", partitions: 2)
            #expect(try storage.offsets(topic: "lots", partition: 0).nextOffset == 0)
            #expect(try storage.committedOffset(group: "erp", topic: "lots", partition: 0) == nil)
            let placed = try await storage.append(topic: "lots", partition: 0, batch: batch(["new"]))
            #expect(placed.baseOffset == 0)
            #expect(try values(in: storage.read(topic: "lots", partition: 0, from: 0, maxBytes: 1 << 20)) == ["new"])
            #expect(try storage.verify().problems.isEmpty)
        }
    }
}
