import Foundation
import MillraceFormat
import MillraceKafka
import MillraceServer
import MillraceWire
import NIOCore
import TestSupport
import Testing

/// The Kafka listener against peers that are not Kafka clients: raw frames, broken and
/// hostile ones. Each gets Kafka's answer or a closed connection (with a log line and the
/// protocol-error count), never a trap, and the broker serves everyone else on.
@Suite(.stopsLiveServers) struct KafkaListenerTests {
    static func server() async throws -> (LiveServer, Int) {
        let live = try await LiveServer(configure: { $0.kafka = MillraceServer.KafkaListener(host: "127.0.0.1", port: 0) })
        return (live, try #require(live.server.boundAddress(.kafka)?.port))
    }

    /// A Kafka request frame: size, header v1 (v2 where the api's version is flexible), body.
    static func frame(_ api: Int16, version: Int16, correlation: Int32, _ body: (inout ByteBuffer) -> Void = { _ in }) -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(0))
        KafkaRequestHeader(apiKey: api, apiVersion: version, correlationID: correlation, clientID: "test").write(to: &buffer)
        body(&buffer)
        buffer.setInteger(Int32(buffer.readableBytes - 4), at: 0)
        return Array(buffer.readableBytesView)
    }

    /// The next answer's bytes after its size: correlation id first.
    static func answer(_ client: TestClient) throws -> ByteBuffer? {
        guard let size = try client.receiveRaw(4) else { return nil }
        guard let body = try client.receiveRaw(Int(size.reduce(0) { $0 << 8 | UInt32($1) })) else { return nil }
        return ByteBuffer(bytes: body)
    }

    static func servesApiVersions(_ port: Int) throws -> Bool {
        let client = try TestClient(port: port)
        try client.sendRaw(frame(KafkaApiKey.apiVersions.rawValue, version: 0, correlation: 1))
        guard var reply = try answer(client) else { return false }
        return reply.readInteger(as: Int32.self) == 1 && (try? KafkaApiVersions.Response(from: &reply, version: 0))?.errorCode == 0
    }

    @Test func apiVersionsListsWhatIsServedAndAnswersAnUnknownVersionAsKafkaDoes() async throws {
        let (_, port) = try await Self.server()
        let client = try TestClient(port: port)
        try client.sendRaw(Self.frame(KafkaApiKey.apiVersions.rawValue, version: 3, correlation: 7) { KafkaApiVersions.Request().write(to: &$0, version: 3) })
        var reply = try #require(try Self.answer(client))
        #expect(reply.readInteger(as: Int32.self) == 7)
        let served = try KafkaApiVersions.Response(from: &reply, version: 3)
        #expect(served.errorCode == 0 && served.apis == KafkaApiVersions.advertised)
        // A version the broker does not know: UNSUPPORTED_VERSION, in v0's layout, with the list.
        try client.sendRaw(Self.frame(KafkaApiKey.apiVersions.rawValue, version: 99, correlation: 8))
        var refused = try #require(try Self.answer(client))
        #expect(refused.readInteger(as: Int32.self) == 8)
        let told = try KafkaApiVersions.Response(from: &refused, version: 0)
        #expect(told.errorCode == KafkaErrorCode.unsupportedVersion.rawValue && told.apis == KafkaApiVersions.advertised)
        // The connection carries on.
        try client.sendRaw(Self.frame(KafkaApiKey.apiVersions.rawValue, version: 0, correlation: 9))
        var again = try #require(try Self.answer(client))
        #expect(again.readInteger(as: Int32.self) == 9)
    }

    @Test func anUnservedApiOrABrokenFrameClosesThatConnectionOnly() async throws {
        let (live, port) = try await Self.server()
        func protocolErrors() -> Double { prometheusValues(String(decoding: live.server.scrapeMetrics(), as: UTF8.self))["millrace_protocol_errors_total"] ?? -1 }
        let before = protocolErrors()
        let cases: [(String, [UInt8])] = [
            ("an api not served (OffsetDelete)", Self.frame(47, version: 0, correlation: 1)),
            ("Produce at a version not served", Self.frame(KafkaApiKey.produce.rawValue, version: 9, correlation: 1)),
            ("a negative frame size", [0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 0]),
            ("a frame over the limit", [0x7F, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 16)),
            ("a frame shorter than a header", [0, 0, 0, 4, 0, 18, 0, 0]),
            ("a Metadata body cut short", Self.frame(KafkaApiKey.metadata.rawValue, version: 1, correlation: 1) { $0.writeInteger(Int32(3)) }),
            (
                "a Produce claiming more topics than allowed",
                Self.frame(KafkaApiKey.produce.rawValue, version: 8, correlation: 1) { buffer in
                    buffer.writeInteger(Int16(-1))
                    buffer.writeInteger(Int16(-1))
                    buffer.writeInteger(Int32(1_000))
                    buffer.writeInteger(Int32(Limits.topicsPerRequestMax + 1))
                    buffer.writeRepeatingByte(0, count: (Limits.topicsPerRequestMax + 1) * 6)
                }
            ),
        ]
        for (what, bytes) in cases {
            let client = try TestClient(port: port)
            try client.sendRaw(bytes)
            #expect(client.isClosedByServer(), "\(what): the connection stays open")
            #expect(try Self.servesApiVersions(port), "after \(what)")
        }
        #expect(protocolErrors() - before == Double(cases.count))
    }

    /// A batch whose CRC is wrong is refused for its partition (CORRUPT_MESSAGE) and nothing
    /// is stored; the connection and the topic carry on.
    @Test func aCorruptBatchIsRefusedAndTheConnectionCarriesOn() async throws {
        let (live, port) = try await Self.server()
        _ = try await live.storage.createTopic("t", partitions: 1)
        var batch = try RecordBatch(timestamp: 1_700_000_000_000, values: [Array(#"{"lot":"L1"}"#.utf8)]).encoded()
        func produce(_ records: [UInt8], correlation: Int32) -> [UInt8] {
            Self.frame(KafkaApiKey.produce.rawValue, version: 8, correlation: correlation) { buffer in
                KafkaProduce.Request(
                    acks: -1, timeoutMs: 5_000, topics: [KafkaTopic(name: "t", [KafkaProduce.PartitionData(index: 0, records: ByteBuffer(bytes: records))])]
                ).write(to: &buffer, version: 8)
            }
        }
        let client = try TestClient(port: port)
        batch[batch.count - 1] ^= 0xFF
        try client.sendRaw(produce(batch, correlation: 1))
        var refused = try #require(try Self.answer(client))
        #expect(refused.readInteger(as: Int32.self) == 1)
        let answer = try KafkaProduce.Response(from: &refused, version: 8)
        #expect(answer.topics.first?.entries.first?.errorCode == KafkaErrorCode.corruptMessage.rawValue)
        #expect(answer.topics.first?.entries.first?.errorMessage?.isEmpty == false)
        #expect(try live.storage.offsets(topic: "t", partition: 0).nextOffset == 0)
        batch[batch.count - 1] ^= 0xFF
        try client.sendRaw(produce(batch, correlation: 2))
        var stored = try #require(try Self.answer(client))
        #expect(stored.readInteger(as: Int32.self) == 2)
        let ok = try KafkaProduce.Response(from: &stored, version: 8)
        #expect(ok.topics.first?.entries.first?.errorCode == 0 && ok.topics.first?.entries.first?.baseOffset == 0)
        #expect(try live.storage.offsets(topic: "t", partition: 0).nextOffset == 1)
        let metrics = prometheusValues(String(decoding: live.server.scrapeMetrics(), as: UTF8.self))
        #expect(metrics[#"millrace_kafka_requests_total{api="produce"}"#] == 2)
        #expect(metrics[#"millrace_produced_records_total{topic="t"}"#] == 1)
        #expect(metrics[#"millrace_listener_connections_open{address="127.0.0.1:\#(port)",listener="kafka"}"#] == 1)
    }

    /// acks=0: no answer at all (Kafka's protocol), but the records are stored, and the next
    /// request's answer is the next to come.
    @Test func acksZeroIsNotAnsweredAndStillStored() async throws {
        let (live, port) = try await Self.server()
        _ = try await live.storage.createTopic("t", partitions: 1)
        let batch = try RecordBatch(timestamp: 1_700_000_000_000, values: [Array("x".utf8)]).encoded()
        let client = try TestClient(port: port)
        try client.sendRaw(
            Self.frame(KafkaApiKey.produce.rawValue, version: 7, correlation: 1) { buffer in
                KafkaProduce.Request(acks: 0, topics: [KafkaTopic(name: "t", [KafkaProduce.PartitionData(index: 0, records: ByteBuffer(bytes: batch))])])
                    .write(to: &buffer, version: 7)
            })
        try client.sendRaw(Self.frame(KafkaApiKey.apiVersions.rawValue, version: 0, correlation: 2))
        var next = try #require(try Self.answer(client))
        #expect(next.readInteger(as: Int32.self) == 2)
        #expect(try live.storage.offsets(topic: "t", partition: 0).nextOffset == 1)
    }

    /// Refusals a Kafka client acts on: a transaction's coordinator and acks 2 are refused for
    /// good; an OffsetCommit is answered per partition, the good ones committed.
    @Test func refusalsAreKafkasAndPerPartition() async throws {
        let (live, port) = try await Self.server()
        _ = try await live.storage.createTopic("t", partitions: 2)
        _ = try await live.storage.createTopic("u", partitions: 1)
        let batch = try RecordBatch(timestamp: 1_700_000_000_000, values: [Array("x".utf8), Array("y".utf8)]).encoded()
        _ = try await live.storage.append(topic: "t", partition: 0, batch: batch)
        let client = try TestClient(port: port)
        try client.sendRaw(
            Self.frame(KafkaApiKey.findCoordinator.rawValue, version: 2, correlation: 1) { KafkaFindCoordinator.Request(key: "tx", keyType: 1).write(to: &$0, version: 2) })
        var coordinator = try #require(try Self.answer(client))
        #expect(coordinator.readInteger(as: Int32.self) == 1)
        #expect(try KafkaFindCoordinator.Response(from: &coordinator, version: 2).errorCode == KafkaErrorCode.transactionalIDAuthorizationFailed.rawValue)

        try client.sendRaw(
            Self.frame(KafkaApiKey.produce.rawValue, version: 8, correlation: 2) { buffer in
                KafkaProduce.Request(acks: 2, topics: [KafkaTopic(name: "t", [KafkaProduce.PartitionData(index: 1, records: ByteBuffer(bytes: batch))])])
                    .write(to: &buffer, version: 8)
            })
        var produced = try #require(try Self.answer(client))
        #expect(produced.readInteger(as: Int32.self) == 2)
        #expect(try KafkaProduce.Response(from: &produced, version: 8).topics.first?.entries.first?.errorCode == KafkaErrorCode.invalidRequiredAcks.rawValue)
        #expect(try live.storage.offsets(topic: "t", partition: 1).nextOffset == 0)

        let commit = KafkaGroups.OffsetCommitRequest(
            groupID: "erp",
            topics: [
                KafkaTopic(
                    name: "t",
                    [
                        KafkaGroups.CommitPartition(index: 0, offset: 2, metadata: "ok"),
                        KafkaGroups.CommitPartition(index: 1, offset: 0, metadata: String(repeating: "m", count: Limits.offsetMetadataBytesMax + 1)),
                        KafkaGroups.CommitPartition(index: 7, offset: 0, metadata: nil),
                    ]),
                KafkaTopic(name: "u", [KafkaGroups.CommitPartition(index: 0, offset: 9, metadata: nil)]),
            ])
        try client.sendRaw(Self.frame(KafkaApiKey.offsetCommit.rawValue, version: 7, correlation: 3) { commit.write(to: &$0, version: 7) })
        var committed = try #require(try Self.answer(client))
        #expect(committed.readInteger(as: Int32.self) == 3)
        let codes = try KafkaGroups.OffsetCommitResponse(from: &committed, version: 7).topics.flatMap { $0.entries.map(\.errorCode) }
        #expect(
            codes == [
                0, KafkaErrorCode.offsetMetadataTooLarge.rawValue, KafkaErrorCode.unknownTopicOrPartition.rawValue, KafkaErrorCode.offsetOutOfRange.rawValue,
            ])
        #expect(try live.storage.committedOffsets(group: "erp").map { "\($0.partition):\($0.offset)" } == ["0:2"])
    }
}
