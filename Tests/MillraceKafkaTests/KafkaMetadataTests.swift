import MillraceFormat
import MillraceKafka
import MillraceWire
import NIOCore
import Testing

/// Metadata at every version offered: golden request bytes written by hand, and answers that
/// read back as written, less what the version cannot carry.
@Suite struct KafkaMetadataTests {
    static func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

    @Test func requestsAtTheirVersions() throws {
        let lots = Array("lots".utf8)
        let cases: [(Int16, KafkaMetadata.Request, [UInt8])] = [
            (0, .init(topics: ["lots"]), [0, 0, 0, 1, 0, 4] + lots),
            (1, .init(topics: nil), [0xFF, 0xFF, 0xFF, 0xFF]),
            (4, .init(topics: [], allowAutoTopicCreation: false), [0, 0, 0, 0, 0]),
            (8, .init(topics: ["lots"], includeClusterAuthorizedOperations: true), [0, 0, 0, 1, 0, 4] + lots + [1, 1, 0]),
            (9, .init(topics: ["lots"]), [0x02, 0x05] + lots + [0x00, 1, 0, 0, 0x00]),
            (9, .init(topics: nil, allowAutoTopicCreation: false), [0x00, 0, 0, 0, 0x00]),
        ]
        for (version, request, golden) in cases {
            var buffer = ByteBuffer()
            request.write(to: &buffer, version: version)
            #expect(Self.bytes(buffer) == golden, "v\(version)")
            #expect(try KafkaMetadata.Request(from: &buffer, version: version) == request, "v\(version)")
            #expect(buffer.readableBytes == 0)
        }
        // v0 has no null list: an empty one asks for every topic.
        var empty = ByteBuffer(bytes: [0, 0, 0, 0])
        #expect(try KafkaMetadata.Request(from: &empty, version: 0).topics == nil)
    }

    static let full = KafkaMetadata.Response(
        throttleTimeMs: 7, brokers: [KafkaMetadata.Broker(nodeID: 1, host: "127.0.0.1", port: 9092, rack: "line-3")], clusterID: "plant-a",
        controllerID: 1,
        topics: [
            KafkaMetadata.Topic(
                name: "confirmations", isInternal: true,
                partitions: [
                    KafkaMetadata.Partition(index: 0, leaderID: 1, leaderEpoch: 4, replicas: [1], inSyncReplicas: [1], offlineReplicas: [2]),
                    KafkaMetadata.Partition(errorCode: 9, index: 1, leaderID: -1, replicas: [], inSyncReplicas: []),
                ], authorizedOperations: 248),
            KafkaMetadata.Topic(errorCode: 3, name: "missing", partitions: []),
        ], clusterAuthorizedOperations: 16)

    /// What `full` reads back as at `version`: fields the version lacks at their defaults.
    static func projected(_ response: KafkaMetadata.Response, _ version: Int16) -> KafkaMetadata.Response {
        var projected = response
        if version < 3 { projected.throttleTimeMs = 0 }
        if version < 1 {
            projected.controllerID = -1
            for index in projected.brokers.indices { projected.brokers[index].rack = nil }
            for index in projected.topics.indices { projected.topics[index].isInternal = false }
        }
        if version < 2 { projected.clusterID = nil }
        if version < 8 { projected.clusterAuthorizedOperations = Int32.min }
        for topic in projected.topics.indices {
            if version < 8 { projected.topics[topic].authorizedOperations = Int32.min }
            for partition in projected.topics[topic].partitions.indices {
                if version < 7 { projected.topics[topic].partitions[partition].leaderEpoch = -1 }
                if version < 5 { projected.topics[topic].partitions[partition].offlineReplicas = [] }
            }
        }
        return projected
    }

    @Test func answersReadBackAtEveryVersion() throws {
        for version in KafkaMetadata.versions {
            var buffer = ByteBuffer()
            Self.full.write(to: &buffer, version: version)
            let read = try KafkaMetadata.Response(from: &buffer, version: version)
            #expect(read == Self.projected(Self.full, version), "v\(version)")
            #expect(buffer.readableBytes == 0, "v\(version)")
        }
    }

    @Test func aVersion0AnswerByHand() {
        let answer = KafkaMetadata.Response(
            brokers: [KafkaMetadata.Broker(nodeID: 0, host: "h", port: 9092)],
            topics: [KafkaMetadata.Topic(name: "t", partitions: [KafkaMetadata.Partition(index: 0, leaderID: 0, replicas: [0], inSyncReplicas: [0])])])
        var buffer = ByteBuffer()
        answer.write(to: &buffer, version: 0)
        let golden: [UInt8] =
            [0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0x68, 0, 0, 0x23, 0x84]  // brokers: [0, "h", 9092]
            + [0, 0, 0, 1, 0, 0, 0, 1, 0x74]  // topics: [error 0, "t",
            + [0, 0, 0, 1] + [0, 0] + [0, 0, 0, 0] + [0, 0, 0, 0]  // partitions: [error 0, index 0, leader 0,
            + [0, 0, 0, 1, 0, 0, 0, 0] + [0, 0, 0, 1, 0, 0, 0, 0]  // replicas [0], in sync [0]]]
        #expect(Self.bytes(buffer) == golden)
    }

    /// Every cut of a flexible answer throws; none traps.
    @Test func everyTruncationThrows() {
        var whole = ByteBuffer()
        Self.full.write(to: &whole, version: 9)
        let bytes = Self.bytes(whole)
        for length in 0..<bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<length])
            #expect(throws: MillraceError.self, "cut at \(length)") { _ = try KafkaMetadata.Response(from: &buffer, version: 9) }
        }
    }
}
