import MillraceFormat
import MillraceSecurity
import NIOCore

/// The fixed part of every request frame.
public struct RequestHeader: Equatable, Sendable {
    /// Raw, since an unknown key must still be answered with its correlation id.
    public var apiKey: Int16
    public var apiVersion: Int16
    public var correlationID: Int32

    public init(apiKey: Int16, apiVersion: Int16 = 0, correlationID: Int32) {
        self.apiKey = apiKey
        self.apiVersion = apiVersion
        self.correlationID = correlationID
    }

    public static let bytes = 8
}

/// Every request, one case per API (docs/PROTOCOL.md, "APIs").
public enum Request: Equatable, Sendable {
    case apiVersions
    case metadata(topics: [String])
    case createTopic(CreateTopicRequest)
    case deleteTopic(name: String)
    case describeTopic(name: String)
    case listTopics
    case produce(ProduceRequest)
    case fetch(FetchRequest)
    case listOffsets(ListOffsetsRequest)
    case joinGroup(JoinGroupRequest)
    case heartbeat(GroupMemberRequest)
    case leaveGroup(GroupMemberRequest)
    case offsetCommit(OffsetCommitRequest)
    case offsetFetch(OffsetFetchRequest)
    case describeGroup(group: String)
    case listGroups
    case deleteGroup(group: String)
    case registerSchema(RegisterSchemaRequest)
    /// Version -1: the latest.
    case getSchema(topic: String, version: Int32)
    case listSchemas(topic: String)
    case setSchemaPolicy(SchemaPolicyRequest)
    /// producerId -1: a new id; else the next epoch of (producerId, epoch).
    case initProducer(producerId: Int64, epoch: Int16)
    /// key "" turns duplicate detection off.
    case setDedupPolicy(topic: String, key: String, windowMs: Int64)
    case dedupCheck(topic: String, key: [UInt8])
    case dedupStatus(topic: String)
    /// An empty policy stops indexing the topic's new records.
    case setIndexPolicy(topic: String, policy: IndexPolicyWire)
    case indexStatus(topic: String)
    case trace(TraceRequest)
    case walk(WalkRequest)
    case indexRebuild(IndexRebuildRequest)
    case brokerStatus
    case backup(BackupRequest)
    case alterTopic(AlterTopicRequest)
    case trainDictionary(TrainDictionaryRequest)
    /// id 0: the topic's current dictionary.
    case getDictionary(topic: String, id: UInt32)
    case authenticate(AuthenticateRequest)
    case whoAmI
    case describeSecurity
    case alterSecurity(SecurityChange)

    /// The version written in the request header.
    public var apiVersion: Int16 {
        switch self {
        case .produce(let produce): produce.version
        case .describeGroup, .describeTopic: 1
        case .alterTopic(let alter): alter.owner == nil ? 0 : 1
        case .brokerStatus: 2
        default: 0
        }
    }

    public var apiKey: ApiKey {
        switch self {
        case .apiVersions: return .apiVersions
        case .metadata: return .metadata
        case .createTopic: return .createTopic
        case .deleteTopic: return .deleteTopic
        case .describeTopic: return .describeTopic
        case .listTopics: return .listTopics
        case .produce: return .produce
        case .fetch: return .fetch
        case .listOffsets: return .listOffsets
        case .joinGroup: return .joinGroup
        case .heartbeat: return .heartbeat
        case .leaveGroup: return .leaveGroup
        case .offsetCommit: return .offsetCommit
        case .offsetFetch: return .offsetFetch
        case .describeGroup: return .describeGroup
        case .listGroups: return .listGroups
        case .deleteGroup: return .deleteGroup
        case .registerSchema: return .registerSchema
        case .getSchema: return .getSchema
        case .listSchemas: return .listSchemas
        case .setSchemaPolicy: return .setSchemaPolicy
        case .initProducer: return .initProducer
        case .setDedupPolicy: return .setDedupPolicy
        case .dedupCheck: return .dedupCheck
        case .dedupStatus: return .dedupStatus
        case .setIndexPolicy: return .setIndexPolicy
        case .indexStatus: return .indexStatus
        case .trace: return .trace
        case .walk: return .walk
        case .indexRebuild: return .indexRebuild
        case .brokerStatus: return .brokerStatus
        case .backup: return .backup
        case .alterTopic: return .alterTopic
        case .trainDictionary: return .trainDictionary
        case .getDictionary: return .getDictionary
        case .authenticate: return .authenticate
        case .whoAmI: return .whoAmI
        case .describeSecurity: return .describeSecurity
        case .alterSecurity: return .alterSecurity
        }
    }
}

public struct CreateTopicRequest: Equatable, Sendable {
    public var name: String
    public var partitions: Int32
    /// -1: keep forever.
    public var retentionMs: Int64
    /// -1: no limit.
    public var retentionBytes: Int64
    public var compression: Int16
    public var timestampType: Int16

    public init(
        name: String, partitions: Int32, retentionMs: Int64 = -1, retentionBytes: Int64 = -1, compression: Int16 = 0,
        timestampType: Int16 = 0
    ) {
        self.name = name
        self.partitions = partitions
        self.retentionMs = retentionMs
        self.retentionBytes = retentionBytes
        self.compression = compression
        self.timestampType = timestampType
    }
}

public struct ProduceRequest: Equatable, Sendable {
    public var timeoutMs: Int32
    public var topics: [TopicEntries<ProducePartition>]
    /// 0, or 1 for an answer with per-record outcomes. The body is the same in both.
    public var version: Int16

    public init(timeoutMs: Int32, topics: [TopicEntries<ProducePartition>], version: Int16 = 0) {
        self.timeoutMs = timeoutMs
        self.topics = topics
        self.version = version
    }
}

public struct ProducePartition: WireCodable {
    public var partition: Int32
    /// One or more whole RecordBatch v2 batches back to back.
    public var records: [UInt8]

    public init(partition: Int32, records: [UInt8]) {
        self.partition = partition
        self.records = records
    }

    public static var minimumBytes: Int { 8 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeMillraceBytes(records)
    }
    public init(from buffer: inout ByteBuffer) throws {
        partition = try buffer.readMillraceInteger("partition")
        guard let records = try buffer.readMillraceBytes("records") else {
            throw MillraceError(.malformedRequest, "produce records for partition \(partition) are null")
        }
        self.records = records
    }
}

public struct FetchRequest: Equatable, Sendable {
    public var maxWaitMs: Int32
    public var minBytes: Int32
    public var maxBytes: Int32
    public var topics: [TopicEntries<FetchPartition>]

    public init(maxWaitMs: Int32, minBytes: Int32, maxBytes: Int32, topics: [TopicEntries<FetchPartition>]) {
        self.maxWaitMs = maxWaitMs
        self.minBytes = minBytes
        self.maxBytes = maxBytes
        self.topics = topics
    }
}

public struct FetchPartition: WireCodable {
    public var partition: Int32
    public var offset: Int64
    public var maxBytes: Int32

    public init(partition: Int32, offset: Int64, maxBytes: Int32) {
        self.partition = partition
        self.offset = offset
        self.maxBytes = maxBytes
    }

    public static var minimumBytes: Int { 16 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeInteger(offset)
        buffer.writeInteger(maxBytes)
    }
    public init(from buffer: inout ByteBuffer) throws {
        partition = try buffer.readMillraceInteger("partition")
        offset = try buffer.readMillraceInteger("offset")
        maxBytes = try buffer.readMillraceInteger("partition max bytes")
    }
}

public struct ListOffsetsRequest: Equatable, Sendable {
    public var topics: [TopicEntries<ListOffsetsPartition>]

    public init(topics: [TopicEntries<ListOffsetsPartition>]) { self.topics = topics }
}

public struct ListOffsetsPartition: WireCodable {
    public static let earliest: Int64 = -2
    public static let latest: Int64 = -1

    public var partition: Int32
    /// `earliest`, `latest`, or milliseconds since the epoch.
    public var timestamp: Int64

    public init(partition: Int32, timestamp: Int64) {
        self.partition = partition
        self.timestamp = timestamp
    }

    public static var minimumBytes: Int { 12 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeInteger(timestamp)
    }
    public init(from buffer: inout ByteBuffer) throws {
        partition = try buffer.readMillraceInteger("partition")
        timestamp = try buffer.readMillraceInteger("timestamp")
    }
}
