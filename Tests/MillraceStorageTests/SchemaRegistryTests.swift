import MillraceFormat
import Testing

@testable import MillraceStorage

/// The registry's storage: versions 1..n, immutable, decided on the writer thread, kept
/// across a reopen, gone with their topic.
@Suite struct SchemaRegistryTests {
    let v1 = Array(#"{"type":"object"}"#.utf8)
    let v2 = Array(#"{"type":"object","properties":{"lot":{"type":"string"}}}"#.utf8)

    @Test func versionsAreNumberedKeptAndGoneWithTheirTopic() async throws {
        let clock = TestClock()
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        do {
            let storage = try Storage.open(directory: directory.path, options: testOptions(clock: clock))
            defer { storage.close() }
            _ = try await storage.createTopic("confirmations", partitions: 2, config: TopicConfig(compatibility: .full, onInvalid: .quarantine))
            #expect(try storage.schemas(topic: "confirmations").isEmpty)
            let first = try await storage.registerSchema(topic: "confirmations", document: v1) { _, latest in
                #expect(latest == 0)
                return nil
            }
            #expect(first == SchemaRegistration(version: 1, created: true))
            clock.advance(by: 1_000)
            let second = try await storage.registerSchema(topic: "confirmations", document: v2) { _, latest in
                #expect(latest == 1)
                return nil
            }
            #expect(second == SchemaRegistration(version: 2, created: true))
            // `decide` names an identical version: nothing is written.
            let again = try await storage.registerSchema(topic: "confirmations", document: v1) { _, _ in 1 }
            #expect(again == SchemaRegistration(version: 1, created: false))
            // `decide` refuses: nothing is written, the error reaches the caller.
            await #expect(throws: MillraceError.self) {
                _ = try await storage.registerSchema(topic: "confirmations", document: v1) { _, _ in
                    throw MillraceError(.invalidRequest, "incompatible")
                }
            }
            #expect(try storage.schemas(topic: "confirmations").map(\.version) == [1, 2])
            #expect(await errorCode { _ = try await storage.registerSchema(topic: "nope", document: v1) { _, _ in nil } } == .unknownTopic)
        }
        do {
            let storage = try Storage.open(directory: directory.path, options: testOptions(clock: clock))
            defer { storage.close() }
            let stored = try storage.schemas(topic: "confirmations")
            #expect(stored.map(\.document) == [v1, v2] && stored[1].registeredAtMs == stored[0].registeredAtMs + 1_000)
            #expect(try storage.schema(topic: "confirmations", version: nil)?.version == 2)
            #expect(try storage.schema(topic: "confirmations", version: 1)?.document == v1)
            #expect(try storage.schema(topic: "confirmations", version: 3) == nil)
            let info = try storage.describeTopic("confirmations").info
            #expect(info.config.compatibility == .full && info.config.onInvalid == .quarantine)
            let changed = try await storage.setSchemaPolicy(topic: "confirmations", compatibility: .noChecks, onInvalid: nil)
            #expect(changed.config.compatibility == SchemaCompatibility.noChecks && changed.config.onInvalid == .quarantine)
            try await storage.deleteTopic("confirmations")
            _ = try await storage.createTopic("confirmations", partitions: 1)
            #expect(try storage.schemas(topic: "confirmations").isEmpty)
            #expect(try storage.describeTopic("confirmations").info.config.compatibility == .backward)
        }
        let reopened = try Storage.open(directory: directory.path, options: testOptions(clock: clock))
        defer { reopened.close() }
        #expect(try reopened.describeTopic("confirmations").info.config.onInvalid == .reject)
    }

    /// Issue 22: versions had no limit (10,000 made every registration read all of them on the
    /// writer). Past `schemaVersionsPerTopicMax` a registration is refused and nothing written;
    /// the writer only ever looks at the newest version, and one version reads alone.
    @Test func aTopicHoldsAtMostItsVersionLimit() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("many", partitions: 1)
            _ = try await storage.createTopic("neighbour", partitions: 1)
            _ = try await storage.registerSchema(topic: "neighbour", document: v1) { _, _ in nil }
            for version in 1...Limits.schemaVersionsPerTopicMax {
                let document = Array(#"{"type":"object","title":"v\#(version)"}"#.utf8)
                let registered = try await storage.registerSchema(topic: "many", document: document) { _, latest in
                    #expect(latest == Int32(version - 1))
                    return nil
                }
                #expect(registered.version == Int32(version))
            }
            let refused = await errorCode { _ = try await storage.registerSchema(topic: "many", document: v2) { _, _ in nil } }
            #expect(refused == .limitReached)
            #expect(try storage.schema(topic: "many", version: nil)?.version == Int32(Limits.schemaVersionsPerTopicMax))
            #expect(try storage.schema(topic: "many", version: 7)?.document == Array(#"{"type":"object","title":"v7"}"#.utf8))
            #expect(try storage.schema(topic: "many", version: Int32(Limits.schemaVersionsPerTopicMax) + 1) == nil)
            let summaries = try storage.schemaVersions(topic: "many")
            #expect(summaries.count == Limits.schemaVersionsPerTopicMax && summaries.first?.bytes == Array(#"{"type":"object","title":"v1"}"#.utf8).count)
            // The next topic's versions are its own (the newest-version look-up stops at the topic).
            #expect(try storage.schema(topic: "neighbour", version: nil)?.version == 1)
        }
    }

    /// A topic record written before schemas existed (encoding 1) still reads, with defaults.
    @Test func aTopicRecordOfEncodingOneReads() throws {
        let info = TopicInfo(name: "old", id: 7, partitionCount: 3, config: TopicConfig(retentionMs: 60_000), createdAtMs: 42)
        var bytes = info.encoded()
        bytes[0] = 1
        bytes.removeLast(2)
        let decoded = try bytes.withUnsafeBytes { try TopicInfo(name: "old", decoding: $0) }
        #expect(decoded.partitionCount == 3 && decoded.config.retentionMs == 60_000 && decoded.createdAtMs == 42)
        #expect(decoded.config.compatibility == .backward && decoded.config.onInvalid == .reject)
    }
}
