import MillraceClient
import MillraceFormat
import Testing

/// `createTopic` with settings is all or nothing for bad settings, and `ifNotExists` does not
/// hide an existing topic whose schema is not the one asked for.
@Suite(.serialized, .stopsLiveServers) struct CreateTopicTests {
    static let schema = Array(#"{"type":"object","required":["id"]}"#.utf8)

    @Test func badSettingsCreateNoTopic() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        let refused: [(String, MillraceClient.TopicConfig, ErrorCode)] = [
            ("not-json", .init(schema: Array("{".utf8)), .invalidSchema),
            ("outside-subset", .init(schema: Array(##"{"type":"object","$ref":"#/nowhere"}"##.utf8)), .invalidSchema),
            ("bad-dedup", .init(schema: Self.schema, dedupKey: "value"), .invalidConfig),
            ("bad-window", .init(dedupKey: "key", dedupWindow: .milliseconds(10)), .invalidConfig),
            ("bad-index", .init(schema: Self.schema, index: IndexPolicy(fields: ["lot"])), .invalidConfig),
            (String(repeating: "q", count: 245), .init(schema: Self.schema, onInvalid: .quarantine), .invalidConfig),
        ]
        for (name, config, code) in refused {
            await #expect {
                try await client.createTopic(name, config)
            } throws: { error in
                (error as? MillraceError)?.code == code
            }
            await #expect(throws: MillraceError.self, "\(name) was refused but created") { _ = try await client.describeTopic(name) }
            // Not hidden either: asked again with ifNotExists, it is refused again.
            await #expect(throws: MillraceError.self) { try await client.createTopic(name, config, ifNotExists: true) }
        }
        #expect(try await client.listTopics().isEmpty)
        await client.close()
        await live.stop()
    }

    @Test func ifNotExistsComparesTheSchema() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        let config = MillraceClient.TopicConfig(partitions: 2, schema: Self.schema)
        #expect(try await client.createTopic("orders", config))
        #expect(try await client.createTopic("orders", config, ifNotExists: true) == false)
        // An older version of the topic's schemas is still one of them (a rolling upgrade).
        let wider = Array(#"{"type":"object"}"#.utf8)
        #expect(try await client.registerSchema(topic: "orders", schema: wider).version == 2)
        #expect(try await client.createTopic("orders", config, ifNotExists: true) == false)
        #expect(try await client.createTopic("orders", .init(partitions: 2, schema: wider), ifNotExists: true) == false)
        // A schema the topic does not have: refused, and nothing registered.
        let other = Array(#"{"type":"object","required":["serial"]}"#.utf8)
        await #expect {
            try await client.createTopic("orders", .init(partitions: 2, schema: other), ifNotExists: true)
        } throws: { error in
            (error as? MillraceError)?.code == .topicAlreadyExists && (error as? MillraceError)?.message.contains("other schemas") == true
        }
        #expect(try await client.listSchemas(topic: "orders").versions.count == 2)

        // A topic without a schema (made by someone else, or a create cut short) is not taken
        // for one with it.
        #expect(try await client.createTopic("bare", .init(partitions: 1)))
        await #expect {
            try await client.createTopic("bare", config, ifNotExists: true)
        } throws: { error in
            (error as? MillraceError)?.code == .topicAlreadyExists && (error as? MillraceError)?.message.contains("without a schema") == true
        }
        #expect(try await client.listSchemas(topic: "bare").versions.isEmpty)
        // Without a schema asked for, an existing topic is simply left as it is.
        #expect(try await client.createTopic("orders", .init(partitions: 2), ifNotExists: true) == false)
        await client.close()
        await live.stop()
    }
}
