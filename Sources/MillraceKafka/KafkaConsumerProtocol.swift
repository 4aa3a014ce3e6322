import MillraceFormat
import MillraceWire
import NIOCore

/// The "consumer" protocol type's member metadata and assignment, which Kafka's consumers put
/// in JoinGroup and SyncGroup as opaque bytes (ConsumerProtocolSubscription and
/// ConsumerProtocolAssignment): read by the broker only to show who reads what (`group
/// describe`, lag, `top`). Both start `version i16`, then an `i32`-count array of topics.
public enum KafkaConsumerProtocol {
    /// The topics a member subscribes to; nil when the bytes are not a subscription.
    public static func subscribedTopics(_ metadata: [UInt8]) -> [String]? {
        var buffer = ByteBuffer(bytes: metadata)
        guard (try? buffer.readMillraceInteger("version", as: Int16.self)) != nil else { return nil }
        return try? buffer.readMillraceArray("topics", minimumElementBytes: 2, countMax: Limits.topicsPerRequestMax) {
            try $0.readKafkaString("topic", flexible: false, maxBytes: Limits.topicNameBytesMax)
        }
    }

    /// The partitions an assignment gives, by topic; nil when the bytes are not an assignment.
    public static func assignedPartitions(_ assignment: [UInt8]) -> [KafkaTopic<Int32>]? {
        guard !assignment.isEmpty else { return [] }
        var buffer = ByteBuffer(bytes: assignment)
        guard (try? buffer.readMillraceInteger("version", as: Int16.self)) != nil else { return nil }
        return try? buffer.readMillraceArray("topics", minimumElementBytes: 6, countMax: Limits.topicsPerRequestMax) { buffer in
            KafkaTopic(
                name: try buffer.readKafkaString("topic", flexible: false, maxBytes: Limits.topicNameBytesMax),
                try buffer.readMillraceArray("partitions", minimumElementBytes: 4, countMax: Limits.partitionsPerRequestMax) {
                    try $0.readMillraceInteger("partition", as: Int32.self)
                })
        }
    }

    /// An assignment as a consumer writes it (version 0, no user data): for tests and tools.
    public static func assignment(_ topics: [KafkaTopic<Int32>]) -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int16(0))
        buffer.writeMillraceArray(topics) { buffer, topic in
            buffer.writeKafkaString(topic.name, flexible: false)
            buffer.writeMillraceArray(topic.entries) { $0.writeInteger($1) }
        }
        buffer.writeInteger(Int32(-1))
        return Array(buffer.readableBytesView)
    }

    /// A subscription as a consumer writes it (version 0, no user data).
    public static func subscription(_ topics: [String]) -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int16(0))
        buffer.writeMillraceArray(topics) { $0.writeKafkaString($1, flexible: false) }
        buffer.writeInteger(Int32(-1))
        return Array(buffer.readableBytesView)
    }
}
