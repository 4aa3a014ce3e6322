import MillraceFormat
import MillraceWire
import NIOCore

/// The admin and producer-id APIs, at the versions before flexible ones: InitProducerId (22)
/// v0–1, CreateTopics (19) v0–4, DeleteTopics (20) v0–3, DescribeConfigs (32) v0–3.
public enum KafkaAdmin {
    public static let initProducerIdVersions: ClosedRange<Int16> = 0...1
    public static let createTopicsVersions: ClosedRange<Int16> = 0...4
    public static let deleteTopicsVersions: ClosedRange<Int16> = 0...3
    public static let describeConfigsVersions: ClosedRange<Int16> = 0...3

    // MARK: InitProducerId

    public struct InitProducerIdRequest: Equatable, Sendable {
        public var transactionalID: String?
        public var transactionTimeoutMs: Int32

        public init(transactionalID: String? = nil, transactionTimeoutMs: Int32 = 60_000) {
            self.transactionalID = transactionalID
            self.transactionTimeoutMs = transactionTimeoutMs
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            transactionalID = try buffer.readKafkaNullableString("transactional id", maxBytes: Limits.groupNameBytesMax)
            transactionTimeoutMs = try buffer.readMillraceInteger("transaction timeout")
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaNullableString(transactionalID)
            buffer.writeInteger(transactionTimeoutMs)
        }
    }

    public struct InitProducerIdResponse: Equatable, Sendable {
        public var throttleTimeMs: Int32 = 0
        public var errorCode: Int16
        public var producerID: Int64
        public var producerEpoch: Int16

        public init(errorCode: Int16 = 0, producerID: Int64, producerEpoch: Int16) {
            self.errorCode = errorCode
            self.producerID = producerID
            self.producerEpoch = producerEpoch
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeInteger(throttleTimeMs)
            buffer.writeInteger(errorCode)
            buffer.writeInteger(producerID)
            buffer.writeInteger(producerEpoch)
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            throttleTimeMs = try buffer.readMillraceInteger("throttle time")
            errorCode = try buffer.readMillraceInteger("error code")
            producerID = try buffer.readMillraceInteger("producer id")
            producerEpoch = try buffer.readMillraceInteger("producer epoch")
        }
    }

    // MARK: CreateTopics

    public struct Config: Equatable, Sendable {
        public var name: String
        public var value: String?
        public init(name: String, value: String?) {
            self.name = name
            self.value = value
        }
    }

    public struct NewTopic: Equatable, Sendable {
        public var name: String
        /// -1: the broker's default.
        public var partitions: Int32
        public var replicationFactor: Int16
        /// Explicit replica assignments, partition by partition (count only: one broker).
        public var assignmentCount: Int
        public var configs: [Config]

        public init(name: String, partitions: Int32, replicationFactor: Int16 = 1, assignmentCount: Int = 0, configs: [Config] = []) {
            self.name = name
            self.partitions = partitions
            self.replicationFactor = replicationFactor
            self.assignmentCount = assignmentCount
            self.configs = configs
        }
    }

    public struct CreateTopicsRequest: Equatable, Sendable {
        public var topics: [NewTopic]
        public var timeoutMs: Int32
        public var validateOnly: Bool

        public init(topics: [NewTopic], timeoutMs: Int32 = 30_000, validateOnly: Bool = false) {
            self.topics = topics
            self.timeoutMs = timeoutMs
            self.validateOnly = validateOnly
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            topics = try buffer.readKafkaArray("topics", flexible: false, minimumElementBytes: 16, countMax: Limits.topicsPerRequestMax) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: false, maxBytes: Limits.topicNameBytesMax)
                let partitions: Int32 = try buffer.readMillraceInteger("partitions")
                let replication: Int16 = try buffer.readMillraceInteger("replication factor")
                let assignments = try buffer.readKafkaArray("assignments", flexible: false, minimumElementBytes: 8, countMax: Limits.partitionsPerTopicMax) {
                    buffer in
                    _ = try buffer.readMillraceInteger("partition index", as: Int32.self)
                    return try buffer.readKafkaArray("broker ids", flexible: false, minimumElementBytes: 4, countMax: 64) {
                        try $0.readMillraceInteger("broker id", as: Int32.self)
                    }.count
                }
                let configs = try buffer.readKafkaArray("configs", flexible: false, minimumElementBytes: 4, countMax: 256) { buffer in
                    Config(
                        name: try buffer.readKafkaString("config name", flexible: false, maxBytes: 256),
                        value: try buffer.readKafkaNullableString("config value", maxBytes: 4_096))
                }
                return NewTopic(name: name, partitions: partitions, replicationFactor: replication, assignmentCount: assignments.count, configs: configs)
            }
            timeoutMs = try buffer.readMillraceInteger("timeout")
            validateOnly = version >= 1 ? try buffer.readKafkaBool("validate only") : false
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeInteger(topic.partitions)
                buffer.writeInteger(topic.replicationFactor)
                buffer.writeInteger(Int32(0))
                buffer.writeKafkaArray(topic.configs, flexible: false) { buffer, config in
                    buffer.writeKafkaString(config.name, flexible: false)
                    buffer.writeKafkaNullableString(config.value)
                }
            }
            buffer.writeInteger(timeoutMs)
            if version >= 1 { buffer.writeKafkaBool(validateOnly) }
        }
    }

    /// A topic's result in CreateTopics or DeleteTopics.
    public struct TopicResult: Equatable, Sendable {
        public var name: String
        public var errorCode: Int16
        public var errorMessage: String?
        public init(name: String, errorCode: Int16 = 0, errorMessage: String? = nil) {
            self.name = name
            self.errorCode = errorCode
            self.errorMessage = errorMessage
        }
    }

    public struct CreateTopicsResponse: Equatable, Sendable {
        public var throttleTimeMs: Int32 = 0
        public var topics: [TopicResult]

        public init(topics: [TopicResult]) { self.topics = topics }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            if version >= 2 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeInteger(topic.errorCode)
                if version >= 1 { buffer.writeKafkaNullableString(topic.errorMessage) }
            }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            throttleTimeMs = version >= 2 ? try buffer.readMillraceInteger("throttle time") : 0
            topics = try buffer.readKafkaArray("topics", flexible: false, minimumElementBytes: 4) { buffer in
                TopicResult(
                    name: try buffer.readKafkaString("topic name", flexible: false), errorCode: try buffer.readMillraceInteger("error code"),
                    errorMessage: version >= 1 ? try buffer.readKafkaNullableString("error message") : nil)
            }
        }
    }

    // MARK: DeleteTopics

    public struct DeleteTopicsRequest: Equatable, Sendable {
        public var names: [String]
        public var timeoutMs: Int32

        public init(names: [String], timeoutMs: Int32 = 30_000) {
            self.names = names
            self.timeoutMs = timeoutMs
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            names = try buffer.readKafkaArray("topic names", flexible: false, minimumElementBytes: 2, countMax: Limits.topicsPerRequestMax) {
                try $0.readKafkaString("topic name", flexible: false, maxBytes: Limits.topicNameBytesMax)
            }
            timeoutMs = try buffer.readMillraceInteger("timeout")
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaArray(names, flexible: false) { $0.writeKafkaString($1, flexible: false) }
            buffer.writeInteger(timeoutMs)
        }
    }

    public struct DeleteTopicsResponse: Equatable, Sendable {
        public var throttleTimeMs: Int32 = 0
        public var topics: [TopicResult]

        public init(topics: [TopicResult]) { self.topics = topics }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            if version >= 1 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeInteger(topic.errorCode)
            }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            throttleTimeMs = version >= 1 ? try buffer.readMillraceInteger("throttle time") : 0
            topics = try buffer.readKafkaArray("topics", flexible: false, minimumElementBytes: 4) { buffer in
                TopicResult(name: try buffer.readKafkaString("topic name", flexible: false), errorCode: try buffer.readMillraceInteger("error code"))
            }
        }
    }

    // MARK: DescribeConfigs

    /// Kafka's resource types: a topic is 2, a broker 4.
    public static let topicResource: Int8 = 2
    public static let brokerResource: Int8 = 4

    public struct ConfigResource: Equatable, Sendable {
        public var type: Int8
        public var name: String
        /// nil: every config.
        public var keys: [String]?
        public init(type: Int8, name: String, keys: [String]? = nil) {
            self.type = type
            self.name = name
            self.keys = keys
        }
    }

    public struct DescribeConfigsRequest: Equatable, Sendable {
        public var resources: [ConfigResource]
        public var includeSynonyms: Bool
        public var includeDocumentation: Bool

        public init(resources: [ConfigResource], includeSynonyms: Bool = false, includeDocumentation: Bool = false) {
            self.resources = resources
            self.includeSynonyms = includeSynonyms
            self.includeDocumentation = includeDocumentation
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            resources = try buffer.readKafkaArray("resources", flexible: false, minimumElementBytes: 7, countMax: Limits.topicsPerRequestMax) { buffer in
                ConfigResource(
                    type: try buffer.readMillraceInteger("resource type"),
                    name: try buffer.readKafkaString("resource name", flexible: false, maxBytes: Limits.topicNameBytesMax),
                    keys: try buffer.readKafkaNullableArray("configuration keys", flexible: false, minimumElementBytes: 2, countMax: 256) {
                        try $0.readKafkaString("configuration key", flexible: false, maxBytes: 256)
                    })
            }
            includeSynonyms = version >= 1 ? try buffer.readKafkaBool("include synonyms") : false
            includeDocumentation = version >= 3 ? try buffer.readKafkaBool("include documentation") : false
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaArray(resources, flexible: false) { buffer, resource in
                buffer.writeInteger(resource.type)
                buffer.writeKafkaString(resource.name, flexible: false)
                buffer.writeKafkaArray(resource.keys, flexible: false) { $0.writeKafkaString($1, flexible: false) }
            }
            if version >= 1 { buffer.writeKafkaBool(includeSynonyms) }
            if version >= 3 { buffer.writeKafkaBool(includeDocumentation) }
        }
    }

    public struct ConfigEntry: Equatable, Sendable {
        public var name: String
        public var value: String?
        public var readOnly: Bool
        public var isDefault: Bool
        /// Kafka's config sources: 1 a topic's own setting, 5 the broker's default.
        public var source: Int8
        /// Kafka's config types: 2 boolean, 3 int, 5 long, 2 string... (v3).
        public var type: Int8
        public var documentation: String?

        public init(name: String, value: String?, readOnly: Bool = true, isDefault: Bool, type: Int8 = 2, documentation: String? = nil) {
            self.name = name
            self.value = value
            self.readOnly = readOnly
            self.isDefault = isDefault
            source = isDefault ? 5 : 1
            self.type = type
            self.documentation = documentation
        }
    }

    public struct ConfigResult: Equatable, Sendable {
        public var errorCode: Int16
        public var errorMessage: String?
        public var type: Int8
        public var name: String
        public var configs: [ConfigEntry]
        public init(errorCode: Int16 = 0, errorMessage: String? = nil, type: Int8, name: String, configs: [ConfigEntry]) {
            self.errorCode = errorCode
            self.errorMessage = errorMessage
            self.type = type
            self.name = name
            self.configs = configs
        }
    }

    public struct DescribeConfigsResponse: Equatable, Sendable {
        public var throttleTimeMs: Int32 = 0
        public var results: [ConfigResult]

        public init(results: [ConfigResult]) { self.results = results }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeInteger(throttleTimeMs)
            buffer.writeKafkaArray(results, flexible: false) { buffer, result in
                buffer.writeInteger(result.errorCode)
                buffer.writeKafkaNullableString(result.errorMessage)
                buffer.writeInteger(result.type)
                buffer.writeKafkaString(result.name, flexible: false)
                buffer.writeKafkaArray(result.configs, flexible: false) { buffer, config in
                    buffer.writeKafkaString(config.name, flexible: false)
                    buffer.writeKafkaNullableString(config.value)
                    buffer.writeKafkaBool(config.readOnly)
                    if version == 0 { buffer.writeKafkaBool(config.isDefault) } else { buffer.writeInteger(config.source) }
                    buffer.writeKafkaBool(false)  // is sensitive
                    if version >= 1 { buffer.writeInteger(Int32(0)) }  // synonyms: none
                    if version >= 3 {
                        buffer.writeInteger(config.type)
                        buffer.writeKafkaNullableString(config.documentation)
                    }
                }
            }
        }
    }
}
