import Foundation
import MillraceClient
import MillraceFormat
import MillraceStorage
import MillraceWire
import Testing

/// Contracts checked at the broker: the registry's API, reject and quarantine in the produce
/// path, per-record outcomes (Produce 1) and the plain answer of Produce 0.
@Suite(.serialized, .stopsLiveServers) struct SchemaEndToEndTests {
    static let confirmation = Array(
        #"{"type":"object","properties":{"order_id":{"type":"string"},"yield_qty":{"type":"number","minimum":0}},"required":["order_id","yield_qty"],"additionalProperties":false}"#
            .utf8)

    static func value(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func registryVersionsCompatibilityAndPolicies() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 2))
        let first = try await client.registerSchema(topic: "confirmations", schema: Self.confirmation)
        #expect(first == MillraceClient.SchemaRegistration(version: 1, created: true))
        // The same document (member order aside) is the same version.
        let reordered = Array(
            #"{"additionalProperties":false,"required":["order_id","yield_qty"],"type":"object","properties":{"yield_qty":{"minimum":0,"type":"number"},"order_id":{"type":"string"}}}"#
                .utf8)
        #expect(try await client.registerSchema(topic: "confirmations", schema: reordered) == MillraceClient.SchemaRegistration(version: 1, created: false))
        // Default mode backward: a new required field is refused with its reason.
        let required = Array(
            #"{"type":"object","properties":{"order_id":{"type":"string"},"yield_qty":{"type":"number","minimum":0},"plant":{"type":"string"}},"required":["order_id","yield_qty","plant"],"additionalProperties":false}"#
                .utf8)
        let refused = try await client.registerSchema(topic: "confirmations", schema: required)
        #expect(refused.version == -1 && !refused.created && refused.problems.contains { $0.contains("/required") && $0.contains("\"plant\"") })
        // An optional field is fine; a dry run says which version it would be.
        let optional = Array(
            #"{"type":"object","properties":{"order_id":{"type":"string"},"yield_qty":{"type":"number","minimum":0},"plant":{"type":"string"}},"required":["order_id","yield_qty"],"additionalProperties":false}"#
                .utf8)
        #expect(try await client.registerSchema(topic: "confirmations", schema: optional, dryRun: true) == MillraceClient.SchemaRegistration(version: 2, created: false))
        #expect(try await client.listSchemas(topic: "confirmations").versions.map(\.version) == [1])
        #expect(try await client.registerSchema(topic: "confirmations", schema: optional) == MillraceClient.SchemaRegistration(version: 2, created: true))
        // Invalid documents name what is wrong.
        await #expect(throws: MillraceError.self) { _ = try await client.registerSchema(topic: "confirmations", schema: Self.value(#"{"type":"object","if":{}}"#)) }
        do {
            _ = try await client.registerSchema(topic: "confirmations", schema: Self.value(#"{"type":"object","if":{}}"#))
        } catch let error as MillraceError {
            #expect(error.code == .invalidSchema && error.message.contains("\"if\" is not a supported keyword"))
        }
        // Reads.
        #expect(try await client.schema(topic: "confirmations").version == 2)
        #expect(try await client.schema(topic: "confirmations", version: 1).schema == Self.confirmation)
        do {
            _ = try await client.schema(topic: "confirmations", version: 9)
            Issue.record("version 9 was found")
        } catch let error as MillraceError {
            #expect(error.code == .unknownSchemaVersion)
        }
        let compiled = try await client.compiledSchema(topic: "confirmations", version: 1)
        #expect(compiled.version == 1 && compiled.schema.validate(json: Self.value(#"{"order_id":"1","yield_qty":-1}"#)).count == 1)
        // Policies.
        try await client.setSchemaPolicy(topic: "confirmations", compatibility: .noChecks, onInvalid: .quarantine)
        let listed = try await client.listSchemas(topic: "confirmations")
        #expect(listed.compatibility == .noChecks && listed.onInvalid == .quarantine && listed.versions.count == 2)
        #expect(try await client.listTopics().map(\.name).contains("confirmations.quarantine"))
        #expect(try await client.registerSchema(topic: "confirmations", schema: required).version == 3)
        await client.close()
        await live.stop()
    }

    @Test func rejectNamesEachBadRecordAndAppendsNothingOfThatPartition() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 1))
        _ = try await client.registerSchema(topic: "confirmations", schema: Self.confirmation)
        let values = [#"{"order_id":"1","yield_qty":5}"#, #"{"order_id":"2","yield_qty":-3}"#, "{not json", #"{"order_id":"4","yield_qty":1}"#]
        let batch = try RecordBatch(timestamp: 1_700_000_000_000, values: values.map(Self.value)).encoded()
        let wire = try TestClient(port: live.port)
        for version: Int16 in [1, 0] {
            let response = try wire.call(
                .produce(ProduceRequest(timeoutMs: 5_000, topics: [TopicEntries(topic: "confirmations", [ProducePartition(partition: 0, records: batch)])], version: version)))
            guard case .produce(let topics)? = response.body, let result = topics.first?.entries.first else {
                Issue.record("no produce body: \(response)")
                return
            }
            #expect(result.errorCode == .invalidRecord && result.baseOffset == -1)
            #expect(result.message.contains("2 of 4 records break the schema of topic confirmations; nothing of partition 0 was appended: record 1: /yield_qty: -3 is less than minimum 0; record 2: /: not valid JSON at byte 2"))
            if version == 1 {
                #expect(result.outcomes.map(\.index) == [1, 2] && result.outcomes.map(\.rule) == ["minimum", "json"])
                #expect(result.outcomes[0].path == "/yield_qty" && result.outcomes[0].schemaVersion == 1 && result.outcomes[0].kind == .invalid)
            } else {
                #expect(result.outcomes.isEmpty)  // not on the wire in version 0
            }
        }
        #expect(try await client.describeTopic("confirmations").partitions[0].logEndOffset == 0)
        // A corrupt second batch is named as storage names it, and nothing goes in.
        let good = try RecordBatch(timestamp: 1_700_000_000_000, values: [Self.value(#"{"order_id":"9","yield_qty":1}"#)]).encoded()
        var corrupt = good
        corrupt[corrupt.count - 1] ^= 0xFF
        let twoBatches = try wire.call(
            .produce(ProduceRequest(timeoutMs: 5_000, topics: [TopicEntries(topic: "confirmations", [ProducePartition(partition: 0, records: good + corrupt)])], version: 1)))
        guard case .produce(let corrupted)? = twoBatches.body, let refusedBatch = corrupted.first?.entries.first else { return }
        #expect(refusedBatch.errorCode == .corruptBatch && refusedBatch.message.hasPrefix("batch 2 of 2: CRC-32C mismatch"), "\(refusedBatch.message)")
        #expect(refusedBatch.message.hasSuffix("none of the 2 was appended"))
        #expect(try await client.describeTopic("confirmations").partitions[0].logEndOffset == 0)
        // A record naming a version that does not exist is invalid too; a valid one with the
        // header is appended.
        let named = try RecordBatch(
            baseTimestamp: 1_700_000_000_000,
            records: [
                Record(offsetDelta: 0, value: Self.value(#"{"order_id":"5","yield_qty":1}"#), headers: [RecordHeader(key: schemaVersionHeader, value: Self.value("1"))]),
                Record(offsetDelta: 1, value: Self.value(#"{"order_id":"6","yield_qty":1}"#), headers: [RecordHeader(key: schemaVersionHeader, value: Self.value("7"))]),
            ]
        ).encoded()
        let response = try wire.call(
            .produce(ProduceRequest(timeoutMs: 5_000, topics: [TopicEntries(topic: "confirmations", [ProducePartition(partition: 0, records: named)])], version: 1)))
        guard case .produce(let topics)? = response.body, let result = topics.first?.entries.first else { return }
        #expect(result.outcomes.map(\.rule) == ["schema-version"] && result.outcomes[0].index == 1)
        // The Producer reports per record: the bad one with its reason, its neighbour as not appended.
        // (One batch: a linger not waited out, so only the flush sends them, together, however
        // slowly the two sends run.)
        var configuration = Producer.Configuration()
        configuration.lingerMs = 600_000
        let producer = Producer(client: client, configuration: configuration)
        let outcomes = Locked<[String]>([])
        for (index, text) in [#"{"order_id":"7","yield_qty":2}"#, #"{"order_id":"8"}"#].enumerated() {
            try await producer.send(topic: "confirmations", value: Self.value(text)) { result in
                outcomes.withLock { $0.append("\(index): \((try? result.get()).map { "offset \($0.offset)" } ?? "\(result)")") }
            }
        }
        try await producer.flush()
        let told = outcomes.withLock { $0 }.sorted()
        #expect(told.count == 2 && told[1].contains("/: is required but missing") == false && told[1].contains("/yield_qty: is required but missing"), "\(told)")
        #expect(told[0].contains("not appended: another record of the same batch broke the schema"), "\(told)")
        await client.close()
        await live.stop()
    }

    /// A client of `live`, and topic `confirmations` with the contract, parking invalid records.
    static func quarantining(_ live: LiveServer, partitions: Int32) async throws -> MillraceClient {
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: partitions))
        _ = try await client.registerSchema(topic: "confirmations", schema: Self.confirmation)
        try await client.setSchemaPolicy(topic: "confirmations", onInvalid: .quarantine)
        return client
    }

    @Test func quarantineParksBadRecordsWithTheirReasonsAndAppendsTheRest() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = try await Self.quarantining(live, partitions: 2)
        let values = [#"{"order_id":"1","yield_qty":5}"#, #"{"order_id":"2","yield_qty":-3}"#, #"{"order_id":"3","yield_qty":7}"#]
        let batch = try RecordBatch(timestamp: 1_700_000_000_000, values: values.map(Self.value), keys: values.map { _ in Self.value("K") }).encoded()
        let wire = try TestClient(port: live.port)
        let response = try wire.call(
            .produce(ProduceRequest(timeoutMs: 5_000, topics: [TopicEntries(topic: "confirmations", [ProducePartition(partition: 1, records: batch)])], version: 1)))
        guard case .produce(let topics)? = response.body, let result = topics.first?.entries.first else {
            Issue.record("no produce body: \(response)")
            return
        }
        #expect(result.errorCode == .none && result.baseOffset == 0)
        #expect(result.outcomes.count == 1 && result.outcomes[0].kind == .quarantined && result.outcomes[0].offset == 0 && result.outcomes[0].index == 1)
        var kept: [String] = []
        for try await record in Consumer(client: client, topic: "confirmations", from: .earliest, stopAtEnd: true) {
            kept.append("\(record.partition)/\(record.offset): \(String(decoding: record.value ?? [], as: UTF8.self))")
        }
        #expect(kept == ["1/0: \(values[0])", "1/1: \(values[2])"])
        var parked: [ConsumedRecord] = []
        for try await record in Consumer(client: client, topic: "confirmations.quarantine", from: .earliest, stopAtEnd: true) { parked.append(record) }
        #expect(parked.count == 1 && parked[0].value == Self.value(values[1]) && parked[0].key == Self.value("K"))
        let headers = Dictionary(parked[0].headers.map { ($0.key, String(decoding: $0.value ?? [], as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
        #expect(headers["millrace-error"] == "record 1: /yield_qty: -3 is less than minimum 0")
        #expect(headers["millrace-error-rule"] == "minimum" && headers["millrace-error-path"] == "/yield_qty")
        #expect(headers["millrace-source-topic"] == "confirmations" && headers["millrace-source-partition"] == "1" && headers[schemaVersionHeader] == "1")
        await client.close()
        await live.stop()
    }

    /// One produce request within the limits whose invalid records, once their error headers
    /// are added, take several times `batchBytesMax`: every one is parked (in as many
    /// quarantine batches as that needs), the answer says so for each, the valid records are
    /// appended, and the data directory verifies clean. A retry is answered from the first
    /// parking (the topic's dedup key) and parks nothing again.
    @Test func quarantineOfARequestLargerThanABatchIsSplitAndAllParked() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = try await Self.quarantining(live, partitions: 1)
        try await client.setDedupPolicy(topic: "confirmations", key: "json:/order_id")
        // 20,000 records, every 1,000th valid: about 40 bytes each as sent, about 240 parked.
        let count = 20_000
        let values = (0..<count).map { index in
            index % 1_000 == 0 ? #"{"order_id":"O\#(index)","yield_qty":1}"# : #"{"order_id":"O\#(index)","yield_qty":-1}"#
        }
        let batch = try RecordBatch(timestamp: 1_700_000_000_000, values: values.map(Self.value)).encoded()
        #expect(batch.count <= Limits.batchBytesMax)
        let invalid = (0..<count).filter { $0 % 1_000 != 0 }
        let wire = try TestClient(port: live.port)
        func produce() throws -> ProducePartitionResult? {
            let response = try wire.call(
                .produce(ProduceRequest(timeoutMs: 30_000, topics: [TopicEntries(topic: "confirmations", [ProducePartition(partition: 0, records: batch)])], version: 2)))
            guard case .produce(let topics)? = response.body else { return nil }
            return topics.first?.entries.first
        }
        let first = try #require(try produce())
        #expect(first.errorCode == .none, "\(first.message)")
        #expect(first.baseOffset == 0)
        #expect(first.outcomes.map(\.kind) == [RecordOutcome.Kind](repeating: .quarantined, count: invalid.count))
        #expect(first.outcomes.map(\.index) == invalid.map { Int32($0) })
        #expect(first.outcomes.map(\.offset) == (0..<Int64(invalid.count)).map { $0 })

        var parked: [ConsumedRecord] = []
        for try await record in Consumer(client: client, topic: "confirmations.quarantine", from: .earliest, stopAtEnd: true) { parked.append(record) }
        #expect(parked.count == invalid.count)
        #expect(parked.map { $0.value ?? [] } == invalid.map { Self.value(values[$0]) })
        #expect(parked.map(\.offset) == (0..<Int64(invalid.count)).map { $0 })
        let last = Dictionary((parked.last?.headers ?? []).map { ($0.key, String(decoding: $0.value ?? [], as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
        #expect(last["millrace-error"] == "record \(count - 1): /yield_qty: -1 is less than minimum 0")
        var kept: [String] = []
        for try await record in Consumer(client: client, topic: "confirmations", from: .earliest, stopAtEnd: true) {
            kept.append(String(decoding: record.value ?? [], as: UTF8.self))
        }
        #expect(kept == stride(from: 0, to: count, by: 1_000).map { values[$0] })

        // The same request again (a producer's retry): nothing new is parked or appended.
        let retry = try #require(try produce())
        #expect(retry.errorCode == .none, "\(retry.message)")
        #expect(retry.outcomes.filter { $0.kind == .quarantined }.map(\.offset) == first.outcomes.map(\.offset))
        #expect(retry.outcomes.filter { $0.kind == .duplicate }.count == count / 1_000)
        let end = try await client.listOffsets("confirmations.quarantine", partitions: [0], timestamp: ListOffsetsPartition.latest)[0].offset
        #expect(end == Int64(invalid.count))

        // As `millrace data verify` checks it: every batch sound, several in the quarantine.
        await live.server.flushAudit()
        let report = try live.storage.verify()
        #expect(report.problems.isEmpty, "\(report.problems)")
        // The records produced, and the audit topic's (the topic's creation and its policies).
        let audited = try live.storage.offsets(topic: "_audit", partition: 0).recordCount
        #expect(report.recordsChecked == Int64(count) + audited)
        #expect(report.batchesChecked >= 1 + (invalid.count * 200) / Limits.batchBytesMax)
        await client.close()
        await live.stop()
    }

    /// Many small batches in flight land in the order they were sent, per key: with a schema
    /// (validation runs off the event loop, one lane per partition) and without one (the
    /// producer's linger timer and its sender used to race, and a batch sent from the
    /// client's event loop could overtake one queued just before from another thread).
    @Test(arguments: [true, false]) func batchesKeepTheirOrder(withSchema: Bool) async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 4))
        if withSchema { _ = try await client.registerSchema(topic: "confirmations", schema: Self.confirmation) }
        var configuration = Producer.Configuration()
        configuration.batchBytesMax = 512  // a handful of records per request: many in flight
        configuration.lingerMs = 0
        let producer = Producer(client: client, configuration: configuration)
        let failures = Locked(0)
        for index in 0..<2_000 {
            let value = Self.value(#"{"order_id":"O\#(index % 16)","yield_qty":\#(index)}"#)
            try await producer.send(topic: "confirmations", key: Self.value("O\(index % 16)"), value: value) { result in
                if case .failure = result { failures.withLock { $0 += 1 } }
            }
        }
        try await producer.flush()
        #expect(failures.withLock { $0 } == 0)
        var lastByKey: [String: Int] = [:]
        var count = 0
        for try await record in Consumer(client: client, topic: "confirmations", from: .earliest, stopAtEnd: true) {
            let text = String(decoding: record.value ?? [], as: UTF8.self)
            let key = String(decoding: record.key ?? [], as: UTF8.self)
            let yield = Int(text.split(separator: ":").last?.dropLast() ?? "") ?? -1
            #expect(yield > lastByKey[key, default: -1], "\(key): \(yield) after \(lastByKey[key, default: -1])")
            lastByKey[key] = yield
            count += 1
        }
        #expect(count == 2_000)
        await client.close()
        await live.stop()
    }
}
