import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import TestSupport
import Testing

/// Issue 22 at the broker: schemas and records that used to stall the writer, an event loop or
/// the validation lanes are now answered — with the right answer, or with a refusal that names
/// its limit — and the broker goes on taking writes. Records naming an earlier version are
/// checked against it, compiled when first needed.
@Suite(.serialized, .stopsLiveServers) struct HostileSchemaTests {
    static func value(_ text: String) -> [UInt8] { Array(text.utf8) }

    static func produce(_ wire: TestClient, _ topic: String, _ batch: [UInt8]) throws -> ProducePartitionResult? {
        let response = try wire.call(
            .produce(ProduceRequest(timeoutMs: 5_000, topics: [TopicEntries(topic: topic, [ProducePartition(partition: 0, records: batch)])], version: 1)))
        guard case .produce(let topics)? = response.body else { return nil }
        return topics.first?.entries.first
    }

    @Test func recursiveSchemasAreAnsweredAndTheBrokerKeepsWriting() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "deep", partitions: 1))
        try await client.createTopic(CreateTopicRequest(name: "plain", partitions: 1))
        _ = try await client.registerSchema(topic: "deep", schema: Self.value(HostileSchemas.twoBranches))
        let wire = try TestClient(port: live.port)
        // 2^60 branch checks before: now one anyOf violation, named.
        let records = [HostileSchemas.nested(60, innermost: "{}"), HostileSchemas.nested(60, innermost: "1")].map(Self.value)
        let result = try #require(try Self.produce(wire, "deep", try RecordBatch(timestamp: 1_700_000_000_000, values: records).encoded()))
        #expect(result.errorCode == .invalidRecord && result.outcomes.map(\.index) == [1] && result.outcomes.map(\.rule) == ["anyOf"], "\(result)")
        // The probe's registration: nested anyOf/oneOf of shared definitions, made narrower.
        try await client.createTopic(CreateTopicRequest(name: "compat", partitions: 1))
        _ = try await client.registerSchema(topic: "compat", schema: Self.value(HostileSchemas.chain(8, maxLength: 10)))
        let narrower = try await client.registerSchema(topic: "compat", schema: Self.value(HostileSchemas.chain(8, maxLength: 5)))
        // Refused, with reasons where the two differ (not at the root both refer from).
        #expect(narrower.version == -1 && narrower.problems.contains { $0.contains("/properties/a/anyOf") }, "\(narrower.problems)")
        let dryRun = try await client.registerSchema(topic: "compat", schema: Self.value(HostileSchemas.chain(8, maxLength: 5)), dryRun: true)
        #expect(dryRun.version == -1 && !dryRun.problems.isEmpty)
        let wider = try await client.registerSchema(topic: "compat", schema: Self.value(HostileSchemas.chain(8, maxLength: 20)))
        #expect(wider.version == 2 && wider.created, "\(wider.problems)")
        // The writer took other work all along.
        let plain = try #require(try Self.produce(wire, "plain", try RecordBatch(timestamp: 1_700_000_000_000, values: [Self.value("x")]).encoded()))
        #expect(plain.errorCode == .none && plain.baseOffset == 0)
    }

    /// One budget per request, whatever the number of partitions: ten records that each cost
    /// most of a record's steps (an array of 900 against an enum of 1,000 numbers: 901,000
    /// steps, twice when invalid) cannot all be checked within the request's 8,388,608.
    @Test func aRequestSpreadOverPartitionsSharesOneBudget() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "wide", partitions: 10))
        let numbers = (0..<1_000).map(String.init).joined(separator: ",")
        _ = try await client.registerSchema(topic: "wide", schema: Self.value(#"{"enum":[\#(numbers)]}"#))
        let record = "[" + Array(repeating: "1", count: 900).joined(separator: ",") + "]"
        let batch = try RecordBatch(timestamp: 1_700_000_000_000, values: [Self.value(record)]).encoded()
        let wire = try TestClient(port: live.port)
        let response = try wire.call(
            .produce(
                ProduceRequest(
                    timeoutMs: 5_000, topics: [TopicEntries(topic: "wide", (0..<10).map { ProducePartition(partition: Int32($0), records: batch) })],
                    version: 1)))
        guard case .produce(let topics)? = response.body, let results = topics.first?.entries, results.count == 10 else {
            Issue.record("no produce body: \(response)")
            return
        }
        let rules = results.flatMap { $0.outcomes.map(\.rule) }
        #expect(rules.count == 10 && rules.allSatisfy { $0 == "enum" || $0 == "budget" }, "\(rules)")
        #expect(rules.contains("enum") && rules.contains("budget"), "\(rules)")
        let budget = results.flatMap(\.outcomes).first { $0.rule == "budget" }
        #expect(budget?.message.contains("validationStepsPerRequestMax") == true, "\(String(describing: budget))")
    }

    @Test func anEarlierVersionIsCompiledWhenARecordNamesIt() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "orders", partitions: 1))
        try await client.setSchemaPolicy(topic: "orders", compatibility: .noChecks)
        for version in 1...5 {
            let document = #"{"type":"object","properties":{"v":{"const":\#(version)}},"required":["v"]}"#
            #expect(try await client.registerSchema(topic: "orders", schema: Self.value(document)).version == Int32(version))
        }
        let wire = try TestClient(port: live.port)
        func record(_ value: String, version: String) -> Record {
            Record(offsetDelta: 0, value: Self.value(value), headers: [RecordHeader(key: schemaVersionHeader, value: Self.value(version))])
        }
        // Each record is checked against the version it names: v2 holds for version 2 only.
        for (named, valid) in [("2", true), ("3", false), ("5", false), ("6", false)] {
            let batch = try RecordBatch(baseTimestamp: 1_700_000_000_000, records: [record(#"{"v":2}"#, version: named)]).encoded()
            let result = try #require(try Self.produce(wire, "orders", batch))
            #expect((result.errorCode == .none) == valid, "version \(named): \(result)")
            if named == "6" { #expect(result.outcomes.first?.rule == "schema-version") }
        }
        // Identical documents are found among earlier versions, whatever their member order.
        let again = try await client.registerSchema(topic: "orders", schema: Self.value(#"{"required":["v"],"properties":{"v":{"const":3}},"type":"object"}"#))
        #expect(again.version == 3 && !again.created)
    }
}
