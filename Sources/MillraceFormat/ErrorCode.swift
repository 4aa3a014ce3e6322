/// Every error Millrace reports, with a stable numeric code. The error tables in
/// `docs/OPERATIONS.md` (0–21), `docs/PROTOCOL.md` (22 on) and the DocC article "Errors and
/// retries" mirror this file; `DocTableTests` checks them against it.
public enum ErrorCode: Int16, Sendable, CaseIterable, CustomStringConvertible {
    /// No error.
    case none = 0
    /// Something failed that Millrace did not expect; the message says what.
    case unexpected = 1
    /// A record batch failed its checks (length, magic, CRC, record layout).
    case corruptBatch = 2
    /// The batch uses a compression codec Millrace does not support (only none and zstd).
    case unsupportedCodec = 3
    /// The batch is larger than `Limits.batchBytesMax`.
    case batchTooLarge = 4
    /// The batch holds more records than `Limits.recordsPerBatchMax`, or none.
    case invalidRecordCount = 5
    /// A record's key is longer than `Limits.keyBytesMax`.
    case keyTooLarge = 6
    /// No topic by that name.
    case unknownTopic = 7
    /// The topic has no partition with that number.
    case unknownPartition = 8
    /// A topic by that name exists already.
    case topicAlreadyExists = 9
    /// The topic name is empty, too long, or uses characters outside `[A-Za-z0-9._-]`.
    case invalidTopicName = 10
    /// Partition count outside 1...`Limits.partitionsPerTopicMax`, or the total would pass `Limits.partitionsMax`.
    case invalidPartitionCount = 11
    /// A topic configuration value is out of range.
    case invalidConfig = 12
    /// The offset is below the log start or past the log end.
    case offsetOutOfRange = 13
    /// The disk or the storage map is full; writes are refused until space returns. Reads still work.
    case storageFull = 14
    /// The writer's queue is full; retry after a short wait.
    case writerBusy = 15
    /// The storage is closed or closing.
    case storageClosed = 16
    /// The directory exists but is not a Millrace data directory.
    case notDataDirectory = 17
    /// The data directory was written by a newer Millrace.
    case newerFormatVersion = 18
    /// Another process (a running broker) holds the data directory.
    case dataDirectoryLocked = 19
    /// The storage engine reported an I/O or internal error.
    case storageError = 20
    /// A request argument is invalid (the message names it).
    case invalidRequest = 21
    /// A frame or request body does not parse; the server closes the connection after answering.
    case malformedRequest = 22
    /// A frame is larger than `Limits.frameBytesMax`; the server closes the connection after answering.
    case frameTooLarge = 23
    /// No API with that key.
    case unknownApi = 24
    /// The API exists but not at that version.
    case unsupportedVersion = 25
    /// Retired: no longer sent. Past `Limits.inFlightRequestsMax` unanswered requests the
    /// broker stops reading the connection instead of refusing; the number stays reserved.
    case tooManyInFlight = 26
    /// The consumer-group member id is not (or no longer) in the group; join again.
    case unknownMember = 27
    /// A group commit came from a generation other than the group's current one; rejoin.
    case staleGeneration = 28
    /// No group by that name: no live members and no committed offsets.
    case unknownGroup = 29
    /// The group has live members; stop them first (delete and offset resets need an idle group).
    case groupNotEmpty = 30
    /// Client side: the connection to the broker failed or closed before the answer came.
    /// The client reconnects; the request may or may not have been carried out.
    case networkError = 31
    /// Client side: no answer within the request's deadline; the client closes that
    /// connection (answers come in order, so nothing behind it could arrive) and reconnects.
    case requestTimedOut = 32
    /// Client side: the peer answered with bytes that are not the Millrace protocol.
    case notABroker = 33
    /// A broker-wide limit is reached (groups, members in a group); the message names it.
    case limitReached = 34
    /// A schema document was refused: not JSON, a keyword outside the supported subset, a
    /// `$ref` that does not resolve, or over a schema limit. The message names it.
    case invalidSchema = 35
    /// A schema version breaks the topic's compatibility mode; every reason is listed.
    case incompatibleSchema = 36
    /// The topic has no schema, or no schema with the version named.
    case unknownSchemaVersion = 37
    /// Records break the topic's schema (policy `reject`): none of that partition's records
    /// were appended; each bad record is named with its path, rule and value.
    case invalidRecord = 38
    /// A batch's producer sequence does not follow the last one the broker holds for that
    /// producer and partition (a gap, or a batch it cannot place). Nothing was appended; an
    /// idempotent producer starts a new epoch and sends again.
    case outOfOrderSequence = 39
    /// A newer epoch of this producer id exists: this session was replaced.
    case producerFenced = 40
    /// The broker holds no state for this producer id (never given out, expired after its
    /// idle time, or unused too long after InitProducer), or none for that epoch (newer than
    /// any given out); the producer asks for a new id.
    case unknownProducerId = 41
    /// Records are compressed with a zstd dictionary this process does not hold (a client
    /// fetches it from the broker; a broker holds every dictionary its topics ever trained).
    case unknownDictionary = 42
    /// The login was refused: a wrong name or password, a mechanism the broker does not take,
    /// or too many failed logins from this address (the message says how long to wait). The
    /// connection closes.
    case authenticationFailed = 43
    /// The broker runs with `--auth required` and this connection has not logged in; only
    /// ApiVersions and Authenticate are served before. The connection closes.
    case authenticationRequired = 44
    /// The principal may not do this; the message names the principal, the operation, the
    /// resource and the rule (or the lack of one). `millrace whoami` shows its roles.
    case notAuthorized = 45
    /// The topic has an owner (its system of record) and only the owner may produce to it;
    /// the message names the owner.
    case notOwner = 46

    /// Whether the same request may succeed if sent again unchanged.
    public var isRetriable: Bool {
        switch self {
        case .storageFull, .writerBusy, .storageError, .dataDirectoryLocked, .tooManyInFlight, .networkError, .requestTimedOut, .storageClosed, .limitReached:
            return true
        case .none, .unexpected, .corruptBatch, .unsupportedCodec, .batchTooLarge, .invalidRecordCount,
            .keyTooLarge, .unknownTopic, .unknownPartition, .topicAlreadyExists, .invalidTopicName,
            .invalidPartitionCount, .invalidConfig, .offsetOutOfRange, .notDataDirectory,
            .newerFormatVersion, .invalidRequest, .malformedRequest, .frameTooLarge, .unknownApi, .unsupportedVersion,
            .unknownMember, .staleGeneration, .unknownGroup, .groupNotEmpty, .notABroker, .invalidSchema, .incompatibleSchema,
            .unknownSchemaVersion, .invalidRecord, .outOfOrderSequence, .producerFenced, .unknownProducerId, .unknownDictionary,
            .authenticationFailed, .authenticationRequired, .notAuthorized, .notOwner:
            return false
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .unexpected: return "unexpected"
        case .corruptBatch: return "corrupt_batch"
        case .unsupportedCodec: return "unsupported_codec"
        case .batchTooLarge: return "batch_too_large"
        case .invalidRecordCount: return "invalid_record_count"
        case .keyTooLarge: return "key_too_large"
        case .unknownTopic: return "unknown_topic"
        case .unknownPartition: return "unknown_partition"
        case .topicAlreadyExists: return "topic_already_exists"
        case .invalidTopicName: return "invalid_topic_name"
        case .invalidPartitionCount: return "invalid_partition_count"
        case .invalidConfig: return "invalid_config"
        case .offsetOutOfRange: return "offset_out_of_range"
        case .storageFull: return "storage_full"
        case .writerBusy: return "writer_busy"
        case .storageClosed: return "storage_closed"
        case .notDataDirectory: return "not_data_directory"
        case .newerFormatVersion: return "newer_format_version"
        case .dataDirectoryLocked: return "data_directory_locked"
        case .storageError: return "storage_error"
        case .invalidRequest: return "invalid_request"
        case .malformedRequest: return "malformed_request"
        case .frameTooLarge: return "frame_too_large"
        case .unknownApi: return "unknown_api"
        case .unsupportedVersion: return "unsupported_version"
        case .tooManyInFlight: return "too_many_in_flight"
        case .unknownMember: return "unknown_member"
        case .staleGeneration: return "stale_generation"
        case .unknownGroup: return "unknown_group"
        case .groupNotEmpty: return "group_not_empty"
        case .networkError: return "network_error"
        case .requestTimedOut: return "request_timed_out"
        case .notABroker: return "not_a_broker"
        case .limitReached: return "limit_reached"
        case .invalidSchema: return "invalid_schema"
        case .incompatibleSchema: return "incompatible_schema"
        case .outOfOrderSequence: return "out_of_order_sequence"
        case .producerFenced: return "producer_fenced"
        case .unknownProducerId: return "unknown_producer_id"
        case .unknownDictionary: return "unknown_dictionary"
        case .unknownSchemaVersion: return "unknown_schema_version"
        case .invalidRecord: return "invalid_record"
        case .authenticationFailed: return "authentication_failed"
        case .authenticationRequired: return "authentication_required"
        case .notAuthorized: return "not_authorized"
        case .notOwner: return "not_owner"
        }
    }
}
