import MillraceFormat
import MillraceWire
import NIOCore

/// Metadata (key 3), versions 0...9 (v9 flexible): which brokers there are and which topics
/// and partitions they lead. Versions 10-12 (topic ids) are not offered; a client negotiates
/// down to 9. What a version lacks is left at its default when read.
public enum KafkaMetadata {
    public static let versions: ClosedRange<Int16> = 0...9

    public struct Request: Equatable, Sendable {
        /// Nil asks for every topic (from v1; v0 asks for every topic with an empty list).
        public var topics: [String]?
        public var allowAutoTopicCreation: Bool
        public var includeClusterAuthorizedOperations: Bool
        public var includeTopicAuthorizedOperations: Bool

        public init(
            topics: [String]?, allowAutoTopicCreation: Bool = true, includeClusterAuthorizedOperations: Bool = false,
            includeTopicAuthorizedOperations: Bool = false
        ) {
            self.topics = topics
            self.allowAutoTopicCreation = allowAutoTopicCreation
            self.includeClusterAuthorizedOperations = includeClusterAuthorizedOperations
            self.includeTopicAuthorizedOperations = includeTopicAuthorizedOperations
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            let flexible = version >= 9
            let read: (inout ByteBuffer) throws -> String = { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: flexible, maxBytes: Limits.topicNameBytesMax)
                if flexible { try buffer.skipKafkaTaggedFields("metadata request topic") }
                return name
            }
            let topics = try buffer.readKafkaNullableArray(
                "topics", flexible: flexible, minimumElementBytes: 2, countMax: Limits.topicsPerRequestMax, read)  // a length and (flexible) tags
            // v0 has no null: an empty list means every topic.
            self.topics = version == 0 && topics?.isEmpty == true ? nil : topics
            allowAutoTopicCreation = version >= 4 ? try buffer.readKafkaBool("allow auto topic creation") : true
            if version >= 8 {
                includeClusterAuthorizedOperations = try buffer.readKafkaBool("include cluster authorized operations")
                includeTopicAuthorizedOperations = try buffer.readKafkaBool("include topic authorized operations")
            } else {
                includeClusterAuthorizedOperations = false
                includeTopicAuthorizedOperations = false
            }
            if flexible { try buffer.skipKafkaTaggedFields("metadata request") }
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            let flexible = version >= 9
            buffer.writeKafkaArray(version == 0 ? (topics ?? []) : topics, flexible: flexible) { buffer, name in
                buffer.writeKafkaString(name, flexible: flexible)
                if flexible { buffer.writeKafkaEmptyTaggedFields() }
            }
            if version >= 4 { buffer.writeKafkaBool(allowAutoTopicCreation) }
            if version >= 8 {
                buffer.writeKafkaBool(includeClusterAuthorizedOperations)
                buffer.writeKafkaBool(includeTopicAuthorizedOperations)
            }
            if flexible { buffer.writeKafkaEmptyTaggedFields() }
        }
    }

    public struct Broker: Equatable, Sendable {
        public var nodeID: Int32
        public var host: String
        public var port: Int32
        public var rack: String?

        public init(nodeID: Int32, host: String, port: Int32, rack: String? = nil) {
            self.nodeID = nodeID
            self.host = host
            self.port = port
            self.rack = rack
        }
    }

    public struct Partition: Equatable, Sendable {
        public var errorCode: Int16
        public var index: Int32
        public var leaderID: Int32
        public var leaderEpoch: Int32
        public var replicas: [Int32]
        public var inSyncReplicas: [Int32]
        public var offlineReplicas: [Int32]

        public init(
            errorCode: Int16 = 0, index: Int32, leaderID: Int32, leaderEpoch: Int32 = -1, replicas: [Int32], inSyncReplicas: [Int32],
            offlineReplicas: [Int32] = []
        ) {
            self.errorCode = errorCode
            self.index = index
            self.leaderID = leaderID
            self.leaderEpoch = leaderEpoch
            self.replicas = replicas
            self.inSyncReplicas = inSyncReplicas
            self.offlineReplicas = offlineReplicas
        }
    }

    public struct Topic: Equatable, Sendable {
        public var errorCode: Int16
        public var name: String
        public var isInternal: Bool
        public var partitions: [Partition]
        public var authorizedOperations: Int32

        public init(errorCode: Int16 = 0, name: String, isInternal: Bool = false, partitions: [Partition], authorizedOperations: Int32 = Int32.min) {
            self.errorCode = errorCode
            self.name = name
            self.isInternal = isInternal
            self.partitions = partitions
            self.authorizedOperations = authorizedOperations
        }
    }

    public struct Response: Equatable, Sendable {
        public var throttleTimeMs: Int32
        public var brokers: [Broker]
        public var clusterID: String?
        public var controllerID: Int32
        public var topics: [Topic]
        public var clusterAuthorizedOperations: Int32

        public init(
            throttleTimeMs: Int32 = 0, brokers: [Broker], clusterID: String? = nil, controllerID: Int32 = -1, topics: [Topic],
            clusterAuthorizedOperations: Int32 = Int32.min
        ) {
            self.throttleTimeMs = throttleTimeMs
            self.brokers = brokers
            self.clusterID = clusterID
            self.controllerID = controllerID
            self.topics = topics
            self.clusterAuthorizedOperations = clusterAuthorizedOperations
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            let flexible = version >= 9
            func ids(_ buffer: inout ByteBuffer, _ ids: [Int32]) { buffer.writeKafkaArray(ids, flexible: flexible) { $0.writeInteger($1) } }
            if version >= 3 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeKafkaArray(brokers, flexible: flexible) { buffer, broker in
                buffer.writeInteger(broker.nodeID)
                buffer.writeKafkaString(broker.host, flexible: flexible)
                buffer.writeInteger(broker.port)
                if version >= 1 { buffer.writeKafkaString(broker.rack, flexible: flexible) }
                if flexible { buffer.writeKafkaEmptyTaggedFields() }
            }
            if version >= 2 { buffer.writeKafkaString(clusterID, flexible: flexible) }
            if version >= 1 { buffer.writeInteger(controllerID) }
            buffer.writeKafkaArray(topics, flexible: flexible) { buffer, topic in
                buffer.writeInteger(topic.errorCode)
                buffer.writeKafkaString(topic.name, flexible: flexible)
                if version >= 1 { buffer.writeKafkaBool(topic.isInternal) }
                buffer.writeKafkaArray(topic.partitions, flexible: flexible) { buffer, partition in
                    buffer.writeInteger(partition.errorCode)
                    buffer.writeInteger(partition.index)
                    buffer.writeInteger(partition.leaderID)
                    if version >= 7 { buffer.writeInteger(partition.leaderEpoch) }
                    ids(&buffer, partition.replicas)
                    ids(&buffer, partition.inSyncReplicas)
                    if version >= 5 { ids(&buffer, partition.offlineReplicas) }
                    if flexible { buffer.writeKafkaEmptyTaggedFields() }
                }
                if version >= 8 { buffer.writeInteger(topic.authorizedOperations) }
                if flexible { buffer.writeKafkaEmptyTaggedFields() }
            }
            if version >= 8 { buffer.writeInteger(clusterAuthorizedOperations) }
            if flexible { buffer.writeKafkaEmptyTaggedFields() }
        }

        /// Reads an answer (the client side, and the tests).
        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            let flexible = version >= 9
            func ids(_ buffer: inout ByteBuffer, _ what: String) throws -> [Int32] {
                try buffer.readKafkaArray(what, flexible: flexible, minimumElementBytes: 4) { try $0.readMillraceInteger("broker id") }
            }
            throttleTimeMs = version >= 3 ? try buffer.readMillraceInteger("throttle time") : 0
            brokers = try buffer.readKafkaArray("brokers", flexible: flexible, minimumElementBytes: 10) { buffer in
                let broker = Broker(
                    nodeID: try buffer.readMillraceInteger("node id"), host: try buffer.readKafkaString("host", flexible: flexible),
                    port: try buffer.readMillraceInteger("port"), rack: version >= 1 ? try buffer.readKafkaNullableString("rack", flexible: flexible) : nil)
                if flexible { try buffer.skipKafkaTaggedFields("broker") }
                return broker
            }
            clusterID = version >= 2 ? try buffer.readKafkaNullableString("cluster id", flexible: flexible) : nil
            controllerID = version >= 1 ? try buffer.readMillraceInteger("controller id") : -1
            topics = try buffer.readKafkaArray("topics", flexible: flexible, minimumElementBytes: 8) { buffer in
                let errorCode: Int16 = try buffer.readMillraceInteger("topic error code")
                let name = try buffer.readKafkaString("topic name", flexible: flexible)
                let isInternal = version >= 1 ? try buffer.readKafkaBool("is internal") : false
                let partitions = try buffer.readKafkaArray("partitions", flexible: flexible, minimumElementBytes: 18) { buffer in
                    let partition = Partition(
                        errorCode: try buffer.readMillraceInteger("partition error code"), index: try buffer.readMillraceInteger("partition index"),
                        leaderID: try buffer.readMillraceInteger("leader id"), leaderEpoch: version >= 7 ? try buffer.readMillraceInteger("leader epoch") : -1,
                        replicas: try ids(&buffer, "replicas"), inSyncReplicas: try ids(&buffer, "in-sync replicas"),
                        offlineReplicas: version >= 5 ? try ids(&buffer, "offline replicas") : [])
                    if flexible { try buffer.skipKafkaTaggedFields("partition") }
                    return partition
                }
                let operations: Int32 = version >= 8 ? try buffer.readMillraceInteger("topic authorized operations") : Int32.min
                if flexible { try buffer.skipKafkaTaggedFields("topic") }
                return Topic(errorCode: errorCode, name: name, isInternal: isInternal, partitions: partitions, authorizedOperations: operations)
            }
            clusterAuthorizedOperations = version >= 8 ? try buffer.readMillraceInteger("cluster authorized operations") : Int32.min
            if flexible { try buffer.skipKafkaTaggedFields("metadata response") }
        }
    }
}
