import MillraceFormat
import MillraceKafka
import MillraceWire
import NIOCore
import Testing

/// ListOffsets and FindCoordinator at every version offered: golden bytes by hand where the
/// layout changes, and everything read back as written less what the version lacks.
@Suite struct KafkaOffsetsAndCoordinatorTests {
    static func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

    static let query = KafkaListOffsets.Request(
        replicaID: -1, isolationLevel: 1,
        topics: [KafkaTopic(name: "t", [KafkaListOffsets.PartitionQuery(index: 2, currentLeaderEpoch: 5, timestamp: KafkaListOffsets.earliest)])])

    @Test func listOffsetsRequestsByHand() throws {
        let v1: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF] + [0, 0, 0, 1, 0, 1, 0x74] + [0, 0, 0, 1, 0, 0, 0, 2] + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]
        let v6: [UInt8] =
            [0xFF, 0xFF, 0xFF, 0xFF, 1] + [0x02, 0x02, 0x74] + [0x02, 0, 0, 0, 2, 0, 0, 0, 5] + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]
            + [0x00, 0x00, 0x00]
        for (version, golden) in [(Int16(1), v1), (6, v6)] {
            var buffer = ByteBuffer()
            Self.query.write(to: &buffer, version: version)
            #expect(Self.bytes(buffer) == golden, "v\(version)")
        }
        for version in KafkaListOffsets.versions {
            var buffer = ByteBuffer()
            Self.query.write(to: &buffer, version: version)
            var expected = Self.query
            if version < 2 { expected.isolationLevel = 0 }
            if version < 4 { expected.topics[0].entries[0].currentLeaderEpoch = -1 }
            #expect(try KafkaListOffsets.Request(from: &buffer, version: version) == expected, "v\(version)")
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func listOffsetsAnswersAtEveryVersion() throws {
        let answer = KafkaListOffsets.Response(
            throttleTimeMs: 3,
            topics: [
                KafkaTopic(
                    name: "confirmations",
                    [
                        KafkaListOffsets.PartitionAnswer(index: 0, timestamp: 1_700_000_000_000, offset: 42, leaderEpoch: 0),
                        KafkaListOffsets.PartitionAnswer(index: 9, errorCode: 3, offset: -1),
                    ])
            ])
        for version in KafkaListOffsets.versions {
            var buffer = ByteBuffer()
            answer.write(to: &buffer, version: version)
            var expected = answer
            if version < 2 { expected.throttleTimeMs = 0 }
            if version < 4 { expected.topics[0].entries[0].leaderEpoch = -1 }
            #expect(try KafkaListOffsets.Response(from: &buffer, version: version) == expected, "v\(version)")
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func findCoordinatorByHandAndAtEveryVersion() throws {
        var v0 = ByteBuffer()
        KafkaFindCoordinator.Request(key: "erp").write(to: &v0, version: 0)
        #expect(Self.bytes(v0) == [0, 3, 0x65, 0x72, 0x70])
        var v3 = ByteBuffer()
        KafkaFindCoordinator.Request(key: "erp").write(to: &v3, version: 3)
        #expect(Self.bytes(v3) == [0x04, 0x65, 0x72, 0x70, 0, 0x00])
        let answer = KafkaFindCoordinator.Response(throttleTimeMs: 1, errorMessage: "fine", nodeID: 1, host: "127.0.0.1", port: 9092)
        for version in KafkaFindCoordinator.versions {
            var request = ByteBuffer()
            KafkaFindCoordinator.Request(key: "erp", keyType: 0).write(to: &request, version: version)
            #expect(try KafkaFindCoordinator.Request(from: &request, version: version) == KafkaFindCoordinator.Request(key: "erp"))
            var buffer = ByteBuffer()
            answer.write(to: &buffer, version: version)
            var expected = answer
            if version < 1 {
                expected.throttleTimeMs = 0
                expected.errorMessage = nil
            }
            #expect(try KafkaFindCoordinator.Response(from: &buffer, version: version) == expected, "v\(version)")
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func everyTruncationThrows() {
        var whole = ByteBuffer()
        Self.query.write(to: &whole, version: 7)
        let bytes = Self.bytes(whole)
        for length in 0..<bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<length])
            #expect(throws: MillraceError.self, "cut at \(length)") { _ = try KafkaListOffsets.Request(from: &buffer, version: 7) }
        }
    }
}
