import MillraceFormat
import MillraceWire
import NIOCore

/// ListOffsets (key 2), versions 1...7 (v6 flexible): a partition's offset for a time, or its
/// start (-2) or end (-1); v7 adds -3 (the record with the largest timestamp) without a change
/// to the bytes. Version 0 (a list of old-style offsets) is not offered.
public enum KafkaListOffsets {
    public static let versions: ClosedRange<Int16> = 1...7
    public static let latest: Int64 = -1
    public static let earliest: Int64 = -2
    public static let maxTimestamp: Int64 = -3

    public struct PartitionQuery: Equatable, Sendable {
        public var index: Int32
        public var currentLeaderEpoch: Int32
        public var timestamp: Int64

        public init(index: Int32, currentLeaderEpoch: Int32 = -1, timestamp: Int64) {
            self.index = index
            self.currentLeaderEpoch = currentLeaderEpoch
            self.timestamp = timestamp
        }
    }

    public struct Request: Equatable, Sendable {
        public var replicaID: Int32
        /// 0 read uncommitted, 1 read committed (the same here: there are no transactions).
        public var isolationLevel: Int8
        public var topics: [KafkaTopic<PartitionQuery>]

        public init(replicaID: Int32 = -1, isolationLevel: Int8 = 0, topics: [KafkaTopic<PartitionQuery>]) {
            self.replicaID = replicaID
            self.isolationLevel = isolationLevel
            self.topics = topics
        }


        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            let flexible = version >= 6
            replicaID = try buffer.readMillraceInteger("replica id")
            isolationLevel = version >= 2 ? try buffer.readMillraceInteger("isolation level") : 0
            topics = try buffer.readKafkaArray("topics", flexible: flexible, minimumElementBytes: 3, countMax: Limits.topicsPerRequestMax) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: flexible, maxBytes: Limits.topicNameBytesMax)
                let partitions = try buffer.readKafkaArray("partitions", flexible: flexible, minimumElementBytes: 12, countMax: Limits.partitionsPerRequestMax) {
                    buffer in
                    let query = PartitionQuery(
                        index: try buffer.readMillraceInteger("partition index"),
                        currentLeaderEpoch: version >= 4 ? try buffer.readMillraceInteger("current leader epoch") : -1,
                        timestamp: try buffer.readMillraceInteger("timestamp"))
                    if flexible { try buffer.skipKafkaTaggedFields("list offsets partition") }
                    return query
                }
                if flexible { try buffer.skipKafkaTaggedFields("list offsets topic") }
                return KafkaTopic(name: name, partitions)
            }
            if flexible { try buffer.skipKafkaTaggedFields("list offsets request") }
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            let flexible = version >= 6
            buffer.writeInteger(replicaID)
            if version >= 2 { buffer.writeInteger(isolationLevel) }
            buffer.writeKafkaArray(topics, flexible: flexible) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: flexible)
                buffer.writeKafkaArray(topic.entries, flexible: flexible) { buffer, query in
                    buffer.writeInteger(query.index)
                    if version >= 4 { buffer.writeInteger(query.currentLeaderEpoch) }
                    buffer.writeInteger(query.timestamp)
                    if flexible { buffer.writeKafkaEmptyTaggedFields() }
                }
                if flexible { buffer.writeKafkaEmptyTaggedFields() }
            }
            if flexible { buffer.writeKafkaEmptyTaggedFields() }
        }
    }

    public struct PartitionAnswer: Equatable, Sendable {
        public var index: Int32
        public var errorCode: Int16
        public var timestamp: Int64
        public var offset: Int64
        public var leaderEpoch: Int32

        public init(index: Int32, errorCode: Int16 = 0, timestamp: Int64 = -1, offset: Int64, leaderEpoch: Int32 = -1) {
            self.index = index
            self.errorCode = errorCode
            self.timestamp = timestamp
            self.offset = offset
            self.leaderEpoch = leaderEpoch
        }
    }

    public struct Response: Equatable, Sendable {
        public var throttleTimeMs: Int32
        public var topics: [KafkaTopic<PartitionAnswer>]

        public init(throttleTimeMs: Int32 = 0, topics: [KafkaTopic<PartitionAnswer>]) {
            self.throttleTimeMs = throttleTimeMs
            self.topics = topics
        }


        public func write(to buffer: inout ByteBuffer, version: Int16) {
            let flexible = version >= 6
            if version >= 2 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeKafkaArray(topics, flexible: flexible) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: flexible)
                buffer.writeKafkaArray(topic.entries, flexible: flexible) { buffer, answer in
                    buffer.writeInteger(answer.index)
                    buffer.writeInteger(answer.errorCode)
                    buffer.writeInteger(answer.timestamp)
                    buffer.writeInteger(answer.offset)
                    if version >= 4 { buffer.writeInteger(answer.leaderEpoch) }
                    if flexible { buffer.writeKafkaEmptyTaggedFields() }
                }
                if flexible { buffer.writeKafkaEmptyTaggedFields() }
            }
            if flexible { buffer.writeKafkaEmptyTaggedFields() }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            let flexible = version >= 6
            throttleTimeMs = version >= 2 ? try buffer.readMillraceInteger("throttle time") : 0
            topics = try buffer.readKafkaArray("topics", flexible: flexible, minimumElementBytes: 3) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: flexible)
                let partitions = try buffer.readKafkaArray("partitions", flexible: flexible, minimumElementBytes: 22) { buffer in
                    let answer = PartitionAnswer(
                        index: try buffer.readMillraceInteger("partition index"), errorCode: try buffer.readMillraceInteger("error code"),
                        timestamp: try buffer.readMillraceInteger("timestamp"), offset: try buffer.readMillraceInteger("offset"),
                        leaderEpoch: version >= 4 ? try buffer.readMillraceInteger("leader epoch") : -1)
                    if flexible { try buffer.skipKafkaTaggedFields("list offsets answer") }
                    return answer
                }
                if flexible { try buffer.skipKafkaTaggedFields("list offsets topic") }
                return KafkaTopic(name: name, partitions)
            }
            if flexible { try buffer.skipKafkaTaggedFields("list offsets response") }
        }
    }
}
