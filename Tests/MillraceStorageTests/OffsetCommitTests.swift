import MillraceFormat
import Testing

@testable import MillraceStorage

@Suite struct OffsetCommitTests {
    @Test func commitFetchAndSurviveReopen() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        var storage = try Storage.open(directory: directory.path, options: testOptions())
        _ = try await storage.createTopic("t", partitions: 2)
        _ = try await storage.append(topic: "t", partition: 0, batch: batch(["a", "b", "c"]))
        try await storage.commitOffsets([
            OffsetCommit(group: "erp", topic: "t", partition: 0, offset: 2, metadata: "worker-1"),
            OffsetCommit(group: "erp", topic: "t", partition: 1, offset: 0),
            OffsetCommit(group: "erpx", topic: "t", partition: 0, offset: 3),
        ])
        storage.close()
        storage = try Storage.open(directory: directory.path, options: testOptions())
        defer { storage.close() }
        let committed = try storage.committedOffset(group: "erp", topic: "t", partition: 0)
        #expect(committed?.offset == 2 && committed?.metadata == "worker-1")
        #expect(try storage.committedOffsets(group: "erp").map(\.partition) == [0, 1])
        #expect(try storage.committedOffset(group: "quality", topic: "t", partition: 0) == nil)
    }

    @Test func invalidCommitsChangeNothing() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            _ = try await storage.append(topic: "t", partition: 0, batch: batch(["a"]))
            let valid = OffsetCommit(group: "g", topic: "t", partition: 0, offset: 1)
            #expect(await errorCode { try await storage.commitOffsets([valid, OffsetCommit(group: "g", topic: "t", partition: 0, offset: 2)]) } == .offsetOutOfRange)
            #expect(await errorCode { try await storage.commitOffsets([valid, OffsetCommit(group: "g", topic: "u", partition: 0, offset: 0)]) } == .unknownTopic)
            #expect(await errorCode { try await storage.commitOffsets([OffsetCommit(group: "", topic: "t", partition: 0, offset: 0)]) } == .invalidRequest)
            #expect(try storage.committedOffset(group: "g", topic: "t", partition: 0) == nil)
        }
    }
}
