import MillraceFormat
import MillraceKafka
import MillraceWire
import NIOCore
import Testing

/// Produce and Fetch at every version served: golden bytes by hand where the layout changes,
/// everything read back as written less what the version lacks, and every truncation refused.
@Suite struct KafkaProduceFetchTests {
    static func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

    static let produce = KafkaProduce.Request(
        transactionalID: nil, acks: -1, timeoutMs: 30_000,
        topics: [KafkaTopic(name: "t", [KafkaProduce.PartitionData(index: 0, records: ByteBuffer(bytes: [1, 2, 3]))])])

    @Test func produceRequestByHand() throws {
        let golden: [UInt8] =
            [0xFF, 0xFF] + [0xFF, 0xFF] + [0, 0, 0x75, 0x30] + [0, 0, 0, 1] + [0, 1, 0x74] + [0, 0, 0, 1] + [0, 0, 0, 0] + [0, 0, 0, 3, 1, 2, 3]
        for version in KafkaProduce.versions {
            var buffer = ByteBuffer()
            Self.produce.write(to: &buffer, version: version)
            // Produce's request has one layout from v3 to v8.
            #expect(Self.bytes(buffer) == golden, "v\(version)")
            #expect(try KafkaProduce.Request(from: &buffer, version: version) == Self.produce)
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func produceAnswersAtEveryVersion() throws {
        let answer = KafkaProduce.Response(
            topics: [
                KafkaTopic(
                    name: "t",
                    [
                        KafkaProduce.PartitionAnswer(
                            index: 1, errorCode: KafkaErrorCode.invalidRecord.rawValue, baseOffset: -1, logAppendTimeMs: -1, logStartOffset: 4,
                            recordErrors: [KafkaProduce.RecordError(batchIndex: 2, message: "record 2: /qty: -3 is less than minimum 0")],
                            errorMessage: "1 of 3 records break the topic's schema")
                    ])
            ], throttleTimeMs: 0)
        var v8 = ByteBuffer()
        answer.write(to: &v8, version: 8)
        let message = Array("record 2: /qty: -3 is less than minimum 0".utf8)
        let partition: [UInt8] = [0, 0, 0, 1] + [0, 87] + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        let golden: [UInt8] =
            [0, 0, 0, 1, 0, 1, 0x74, 0, 0, 0, 1] + partition + [0, 0, 0, 0, 0, 0, 0, 4] + [0, 0, 0, 1, 0, 0, 0, 2, 0, UInt8(message.count)] + message
            + [0, 39] + Array("1 of 3 records break the topic's schema".utf8) + [0, 0, 0, 0]
        #expect(Self.bytes(v8) == golden)
        for version in KafkaProduce.versions {
            var buffer = ByteBuffer()
            answer.write(to: &buffer, version: version)
            var expected = answer
            if version < 5 { expected.topics[0].entries[0].logStartOffset = -1 }
            if version < 8 {
                expected.topics[0].entries[0].recordErrors = []
                expected.topics[0].entries[0].errorMessage = nil
            }
            #expect(try KafkaProduce.Response(from: &buffer, version: version) == expected, "v\(version)")
            #expect(buffer.readableBytes == 0)
        }
    }

    static let fetch = KafkaFetch.Request(
        replicaID: -1, maxWaitMs: 500, minBytes: 1, maxBytes: 52_428_800, isolationLevel: 1, sessionID: 0, sessionEpoch: -1,
        topics: [KafkaTopic(name: "t", [KafkaFetch.PartitionQuery(index: 3, currentLeaderEpoch: 7, fetchOffset: 42, logStartOffset: 0, maxBytes: 1_048_576)])],
        forgottenTopics: [KafkaTopic(name: "u", [1])], rackID: "r1")

    @Test func fetchRequestsByHand() throws {
        let head: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF] + [0, 0, 1, 0xF4] + [0, 0, 0, 1] + [0x03, 0x20, 0, 0] + [1]
        let topic: [UInt8] = [0, 0, 0, 1, 0, 1, 0x74, 0, 0, 0, 1, 0, 0, 0, 3]
        let v4 = head + topic + [0, 0, 0, 0, 0, 0, 0, 42] + [0, 0x10, 0, 0]
        let v11 =
            head + [0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF] + topic + [0, 0, 0, 7] + [0, 0, 0, 0, 0, 0, 0, 42] + [0, 0, 0, 0, 0, 0, 0, 0] + [0, 0x10, 0, 0]
            + [0, 0, 0, 1, 0, 1, 0x75, 0, 0, 0, 1, 0, 0, 0, 1] + [0, 2, 0x72, 0x31]
        for (version, golden) in [(Int16(4), v4), (11, v11)] {
            var buffer = ByteBuffer()
            Self.fetch.write(to: &buffer, version: version)
            #expect(Self.bytes(buffer) == golden, "v\(version)")
        }
        for version in KafkaFetch.versions {
            var buffer = ByteBuffer()
            Self.fetch.write(to: &buffer, version: version)
            var expected = Self.fetch
            if version < 5 { expected.topics[0].entries[0].logStartOffset = -1 }
            if version < 7 {
                expected.sessionEpoch = -1
                expected.forgottenTopics = []
            }
            if version < 9 { expected.topics[0].entries[0].currentLeaderEpoch = -1 }
            if version < 11 { expected.rackID = "" }
            #expect(try KafkaFetch.Request(from: &buffer, version: version) == expected, "v\(version)")
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func fetchAnswersAtEveryVersion() throws {
        let answer = KafkaFetch.Response(
            throttleTimeMs: 0, errorCode: 0, sessionID: 0,
            topics: [
                KafkaTopic(
                    name: "t",
                    [KafkaFetch.PartitionAnswer(index: 3, highWatermark: 50, lastStableOffset: 50, logStartOffset: 2, preferredReadReplica: -1, records: ByteBuffer(bytes: [9, 9]))])
            ])
        for version in KafkaFetch.versions {
            var buffer = ByteBuffer()
            answer.write(to: &buffer, version: version)
            var expected = answer
            if version < 5 { expected.topics[0].entries[0].logStartOffset = -1 }
            #expect(try KafkaFetch.Response(from: &buffer, version: version) == expected, "v\(version)")
            #expect(buffer.readableBytes == 0)
        }
    }

    /// Every prefix of a request is refused with malformed_request: nothing reads past the end.
    @Test func everyTruncationIsRefused() throws {
        for version in KafkaFetch.versions {
            var whole = ByteBuffer()
            Self.fetch.write(to: &whole, version: version)
            for length in 0..<whole.readableBytes {
                var cut = whole.getSlice(at: 0, length: length)!
                #expect(throws: MillraceError.self, "fetch v\(version) cut at \(length)") { try KafkaFetch.Request(from: &cut, version: version) }
            }
        }
        var whole = ByteBuffer()
        Self.produce.write(to: &whole, version: 8)
        for length in 0..<whole.readableBytes {
            var cut = whole.getSlice(at: 0, length: length)!
            #expect(throws: MillraceError.self, "produce cut at \(length)") { try KafkaProduce.Request(from: &cut, version: 8) }
        }
    }

    /// Counts a request claims are checked against the limits before anything is allocated.
    @Test func overLimitCountsAreInvalidRequests() throws {
        var buffer = ByteBuffer()
        buffer.writeKafkaNullableString(nil)
        buffer.writeInteger(Int16(-1))
        buffer.writeInteger(Int32(1000))
        buffer.writeInteger(Int32(Limits.topicsPerRequestMax + 1))
        buffer.writeRepeatingByte(0, count: (Limits.topicsPerRequestMax + 1) * 6)
        #expect(throws: MillraceError(.invalidRequest, "\(Limits.topicsPerRequestMax + 1) topics in one request; the limit is \(Limits.topicsPerRequestMax)")) {
            try KafkaProduce.Request(from: &buffer, version: 8)
        }
    }
}
