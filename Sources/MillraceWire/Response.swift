import MillraceFormat
import MillraceSecurity
import NIOCore

/// A response: the request's correlation id, an error for the request as a whole, and the
/// API's body when there was no such error.
public struct Response: Equatable, Sendable {
    public var correlationID: Int32
    public var errorCode: ErrorCode
    public var message: String
    public var body: ResponseBody?
    /// The version of the request answered (it decides the body's layout).
    public var apiVersion: Int16 = 0

    public init(correlationID: Int32, body: ResponseBody) {
        self.correlationID = correlationID
        errorCode = .none
        message = ""
        self.body = body
    }

    public init(correlationID: Int32, error: MillraceError) {
        self.correlationID = correlationID
        errorCode = error.code
        message = error.message
        body = nil
    }
}

/// Every response body, one case per API.
public enum ResponseBody: Equatable, Sendable {
    case apiVersions(ApiVersionsResponse)
    case metadata(MetadataResponse)
    case createTopic
    case deleteTopic
    case describeTopic(DescribeTopicResponse)
    case listTopics([TopicSummary])
    case produce([TopicEntries<ProducePartitionResult>])
    case fetch([TopicEntries<FetchPartitionResult>])
    case listOffsets([TopicEntries<ListOffsetsPartitionResult>])
    case joinGroup(GroupAssignmentResponse)
    case heartbeat(GroupAssignmentResponse)
    case leaveGroup
    case offsetCommit
    case offsetFetch([TopicEntries<OffsetEntry>])
    case describeGroup(DescribeGroupResponse)
    case listGroups([GroupSummary])
    case deleteGroup
    case registerSchema(RegisterSchemaResponse)
    case getSchema(SchemaResponse)
    case listSchemas(ListSchemasResponse)
    case setSchemaPolicy
    case initProducer(producerId: Int64, epoch: Int16)
    case setDedupPolicy
    case dedupCheck(DedupCheckResponse)
    case dedupStatus(DedupStatusResponse)
    case setIndexPolicy
    case indexStatus(IndexStatusResponse)
    case trace(TraceResponse)
    case walk(WalkResponse)
    case indexRebuild(IndexRebuildResponse)
    case brokerStatus(BrokerStatusResponse)
    case backup(BackupResponse)
    case alterTopic
    case trainDictionary(DictionaryTrainingResponse)
    case getDictionary(DictionaryResponse)
    case authenticate(AuthenticateResponse)
    case whoAmI(Identity)
    case describeSecurity(SecurityDescription)
    case alterSecurity

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

public struct ApiVersionsResponse: Equatable, Sendable {
    public struct Entry: WireCodable {
        public var apiKey: Int16
        public var minVersion: Int16
        public var maxVersion: Int16

        public init(apiKey: Int16, minVersion: Int16, maxVersion: Int16) {
            self.apiKey = apiKey
            self.minVersion = minVersion
            self.maxVersion = maxVersion
        }

        public static var minimumBytes: Int { 6 }
        public func write(to buffer: inout ByteBuffer) {
            buffer.writeInteger(apiKey)
            buffer.writeInteger(minVersion)
            buffer.writeInteger(maxVersion)
        }
        public init(from buffer: inout ByteBuffer) throws {
            apiKey = try buffer.readMillraceInteger("api key")
            minVersion = try buffer.readMillraceInteger("min version")
            maxVersion = try buffer.readMillraceInteger("max version")
        }
    }

    public var apis: [Entry]
    public var serverVersion: String

    public init(apis: [Entry], serverVersion: String) {
        self.apis = apis
        self.serverVersion = serverVersion
    }

    /// What this build speaks.
    public static var current: ApiVersionsResponse {
        ApiVersionsResponse(
            apis: ApiKey.allCases.map { Entry(apiKey: $0.rawValue, minVersion: $0.versions.lowerBound, maxVersion: $0.versions.upperBound) },
            serverVersion: MillraceVersion.current)
    }
}

public struct MetadataResponse: Equatable, Sendable {
    public struct Topic: WireCodable {
        public var errorCode: ErrorCode
        public var name: String
        public var partitionCount: Int32

        public init(errorCode: ErrorCode = .none, name: String, partitionCount: Int32) {
            self.errorCode = errorCode
            self.name = name
            self.partitionCount = partitionCount
        }

        public static var minimumBytes: Int { 8 }
        public func write(to buffer: inout ByteBuffer) {
            buffer.writeInteger(errorCode.rawValue)
            buffer.writeMillraceString(name)
            buffer.writeInteger(partitionCount)
        }
        public init(from buffer: inout ByteBuffer) throws {
            errorCode = try readErrorCode(&buffer)
            name = try buffer.readMillraceString("topic")
            partitionCount = try buffer.readMillraceInteger("partition count")
        }
    }

    public var brokerHost: String
    public var brokerPort: Int32
    public var topics: [Topic]

    public init(brokerHost: String, brokerPort: Int32, topics: [Topic]) {
        self.brokerHost = brokerHost
        self.brokerPort = brokerPort
        self.topics = topics
    }
}

public struct TopicSummary: WireCodable {
    public var name: String
    public var partitionCount: Int32

    public init(name: String, partitionCount: Int32) {
        self.name = name
        self.partitionCount = partitionCount
    }

    public static var minimumBytes: Int { 6 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(name)
        buffer.writeInteger(partitionCount)
    }
    public init(from buffer: inout ByteBuffer) throws {
        name = try buffer.readMillraceString("topic")
        partitionCount = try buffer.readMillraceInteger("partition count")
    }
}

public struct DescribeTopicResponse: Equatable, Sendable {
    public struct Partition: WireCodable {
        public var partition: Int32
        public var logStartOffset: Int64
        public var logEndOffset: Int64
        public var bytes: Int64
        public var batches: Int64

        public init(partition: Int32, logStartOffset: Int64, logEndOffset: Int64, bytes: Int64, batches: Int64) {
            self.partition = partition
            self.logStartOffset = logStartOffset
            self.logEndOffset = logEndOffset
            self.bytes = bytes
            self.batches = batches
        }

        public static var minimumBytes: Int { 36 }
        public func write(to buffer: inout ByteBuffer) {
            buffer.writeInteger(partition)
            buffer.writeInteger(logStartOffset)
            buffer.writeInteger(logEndOffset)
            buffer.writeInteger(bytes)
            buffer.writeInteger(batches)
        }
        public init(from buffer: inout ByteBuffer) throws {
            partition = try buffer.readMillraceInteger("partition")
            logStartOffset = try buffer.readMillraceInteger("log start offset")
            logEndOffset = try buffer.readMillraceInteger("log end offset")
            bytes = try buffer.readMillraceInteger("bytes")
            batches = try buffer.readMillraceInteger("batches")
        }
    }

    public var name: String
    public var retentionMs: Int64
    public var retentionBytes: Int64
    public var compression: Int16
    public var timestampType: Int16
    public var createdAtMs: Int64
    public var partitions: [Partition]
    /// v1: the principal that alone may produce to the topic; "": none.
    public var owner: String

    public init(
        name: String, retentionMs: Int64, retentionBytes: Int64, compression: Int16, timestampType: Int16, createdAtMs: Int64,
        partitions: [Partition], owner: String = ""
    ) {
        self.owner = owner
        self.name = name
        self.retentionMs = retentionMs
        self.retentionBytes = retentionBytes
        self.compression = compression
        self.timestampType = timestampType
        self.createdAtMs = createdAtMs
        self.partitions = partitions
    }
}

public struct ProducePartitionResult: WireCodable {
    public var partition: Int32
    public var errorCode: ErrorCode
    public var message: String
    public var baseOffset: Int64
    /// -1 unless the topic uses log-append time.
    public var logAppendTimeMs: Int64
    public var logStartOffset: Int64
    /// Produce version 1: the records not simply appended in order (invalid, quarantined,
    /// duplicate); not on the wire in version 0.
    public var outcomes: [RecordOutcome]

    public init(
        partition: Int32, errorCode: ErrorCode = .none, message: String = "", baseOffset: Int64, logAppendTimeMs: Int64 = -1,
        logStartOffset: Int64, outcomes: [RecordOutcome] = []
    ) {
        self.partition = partition
        self.errorCode = errorCode
        self.message = message
        self.baseOffset = baseOffset
        self.logAppendTimeMs = logAppendTimeMs
        self.logStartOffset = logStartOffset
        self.outcomes = outcomes
    }

    public static var minimumBytes: Int { 32 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeInteger(errorCode.rawValue)
        buffer.writeMillraceString(message)
        buffer.writeInteger(baseOffset)
        buffer.writeInteger(logAppendTimeMs)
        buffer.writeInteger(logStartOffset)
    }
    public init(from buffer: inout ByteBuffer) throws {
        partition = try buffer.readMillraceInteger("partition")
        errorCode = try readErrorCode(&buffer)
        message = try buffer.readMillraceString("message")
        baseOffset = try buffer.readMillraceInteger("base offset")
        logAppendTimeMs = try buffer.readMillraceInteger("log append time")
        logStartOffset = try buffer.readMillraceInteger("log start offset")
        outcomes = []
    }

    /// Version 1 and 2: the version 0 fields, then the outcomes (version 2: with the
    /// original's partition).
    func writeWithOutcomes(to buffer: inout ByteBuffer, version: Int16) {
        write(to: &buffer)
        buffer.writeMillraceArray(outcomes) { buffer, outcome in outcome.write(to: &buffer, version: version) }
    }

    init(withOutcomes buffer: inout ByteBuffer, version: Int16) throws {
        try self.init(from: &buffer)
        outcomes = try buffer.readMillraceArray("outcomes", minimumElementBytes: RecordOutcome.minimumBytes, countMax: Limits.recordsPerBatchMax * 16) {
            try RecordOutcome(from: &$0, version: version)
        }
    }
}

public struct FetchPartitionResult: WireCodable {
    public var partition: Int32
    public var errorCode: ErrorCode
    public var message: String
    public var logStartOffset: Int64
    public var logEndOffset: Int64
    /// Whole stored batches; the first may start before the requested offset. A client's
    /// decoded response holds a slice of the frame (no copy); the broker's is written to the
    /// socket as its own part (see `ResponseCodec.encodeParts`).
    public var records: ByteBuffer

    public init(
        partition: Int32, errorCode: ErrorCode = .none, message: String = "", logStartOffset: Int64, logEndOffset: Int64,
        records: ByteBuffer = ByteBuffer()
    ) {
        self.partition = partition
        self.errorCode = errorCode
        self.message = message
        self.logStartOffset = logStartOffset
        self.logEndOffset = logEndOffset
        self.records = records
    }

    public static var minimumBytes: Int { 28 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeInteger(errorCode.rawValue)
        buffer.writeMillraceString(message)
        buffer.writeInteger(logStartOffset)
        buffer.writeInteger(logEndOffset)
        buffer.writeMillraceBytes(records)
    }
    public init(from buffer: inout ByteBuffer) throws {
        partition = try buffer.readMillraceInteger("partition")
        errorCode = try readErrorCode(&buffer)
        message = try buffer.readMillraceString("message")
        logStartOffset = try buffer.readMillraceInteger("log start offset")
        logEndOffset = try buffer.readMillraceInteger("log end offset")
        records = try buffer.readMillraceByteSlice("records")
    }

    /// Everything `write(to:)` writes before the records' bytes.
    func writeHead(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeInteger(errorCode.rawValue)
        buffer.writeMillraceString(message)
        buffer.writeInteger(logStartOffset)
        buffer.writeInteger(logEndOffset)
        buffer.writeInteger(Int32(records.readableBytes))
    }
}

public struct ListOffsetsPartitionResult: WireCodable {
    public var partition: Int32
    public var errorCode: ErrorCode
    public var offset: Int64
    /// The found record's timestamp; -1 for earliest/latest or when no record is that new.
    public var timestamp: Int64

    public init(partition: Int32, errorCode: ErrorCode = .none, offset: Int64, timestamp: Int64 = -1) {
        self.partition = partition
        self.errorCode = errorCode
        self.offset = offset
        self.timestamp = timestamp
    }

    public static var minimumBytes: Int { 22 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeInteger(errorCode.rawValue)
        buffer.writeInteger(offset)
        buffer.writeInteger(timestamp)
    }
    public init(from buffer: inout ByteBuffer) throws {
        partition = try buffer.readMillraceInteger("partition")
        errorCode = try readErrorCode(&buffer)
        offset = try buffer.readMillraceInteger("offset")
        timestamp = try buffer.readMillraceInteger("timestamp")
    }
}

func readErrorCode(_ buffer: inout ByteBuffer) throws -> ErrorCode {
    let raw: Int16 = try buffer.readMillraceInteger("error code")
    guard let code = ErrorCode(rawValue: raw) else {
        throw MillraceError(.malformedRequest, "unknown error code \(raw)")
    }
    return code
}

public struct DedupCheckResponse: Equatable, Sendable {
    public var found: Bool
    public var partition: Int32
    public var offset: Int64
    public var firstSeenMs: Int64

    public init(found: Bool, partition: Int32 = -1, offset: Int64 = -1, firstSeenMs: Int64 = -1) {
        self.found = found
        self.partition = partition
        self.offset = offset
        self.firstSeenMs = firstSeenMs
    }
}

public struct DedupStatusResponse: Equatable, Sendable {
    /// `key`, `header:NAME`, `json:/pointer`; empty when the topic has no duplicate detection.
    public var key: String
    public var windowMs: Int64
    public var keysHeld: Int64
    public var runs: Int32
    /// When the oldest key held was first seen; -1 when none is held.
    public var oldestKeyMs: Int64
    public var duplicatesTotal: Int64
    /// Duplicates caught in the last five minutes.
    public var duplicatesRecent: Int32

    public init(key: String, windowMs: Int64, keysHeld: Int64, runs: Int32, oldestKeyMs: Int64, duplicatesTotal: Int64, duplicatesRecent: Int32) {
        self.key = key
        self.windowMs = windowMs
        self.keysHeld = keysHeld
        self.runs = runs
        self.oldestKeyMs = oldestKeyMs
        self.duplicatesTotal = duplicatesTotal
        self.duplicatesRecent = duplicatesRecent
    }
}
