import MillraceFormat

/// Something the writer thread does inside a write transaction. Appends and offset commits
/// share one group-commit transaction; catalog changes and retention get one each.
enum WriteOperation {
    case append(AppendOperation)
    case commitOffsets(OffsetCommitOperation)
    case createTopic(CreateTopicOperation)
    case deleteTopic(DeleteTopicOperation)
    case retention(RetentionOperation)
    case deleteGroup(DeleteGroupOperation)
    case registerSchema(RegisterSchemaOperation)
    case setSchemaPolicy(SchemaPolicyOperation)
    case initProducer(InitProducerOperation)
    case indexRecords(IndexRecordsOperation)
    case storeDictionary(StoreDictionaryOperation)
    case updateMeta(UpdateMetaOperation)

    var joinsGroupCommit: Bool {
        switch self {
        case .append, .commitOffsets: return true
        case .createTopic, .deleteTopic, .retention, .deleteGroup, .registerSchema, .setSchemaPolicy, .initProducer, .indexRecords, .storeDictionary, .updateMeta: return false
        }
    }

    var batchBytes: Int {
        if case .append(let op) = self { return op.bytes }
        return 0
    }

    func fail(_ error: MillraceError) {
        switch self {
        case .append(let op): op.completion(.failure(error))
        case .commitOffsets(let op): op.completion(.failure(error))
        case .createTopic(let op): op.completion(.failure(error))
        case .deleteTopic(let op): op.completion(.failure(error))
        case .retention(let op): op.completion(.failure(error))
        case .deleteGroup(let op): op.completion(.failure(error))
        case .registerSchema(let op): op.completion(.failure(error))
        case .setSchemaPolicy(let op): op.completion(.failure(error))
        case .initProducer(let op): op.completion(.failure(error))
        case .indexRecords(let op): op.completion(.failure(error))
        case .storeDictionary(let op): op.completion(.failure(error))
        case .updateMeta(let op): op.completion(.failure(error))
        }
    }
}

/// One or more batches for one partition, appended together or not at all.
struct AppendOperation {
    var topic: String
    var partition: Int32
    /// Verified batches with their headers; the writer patches each base offset in the stored copy.
    var batches: [(bytes: [UInt8], header: RecordBatchHeader)]
    /// The producer sequences the batches carried as sent (empty without an idempotent
    /// producer). With no batches, the sequences are only recorded: the producer's batch was
    /// refused as a whole (invalid records), and its numbers are used up all the same.
    var sequences: [SequenceSpan] = []
    /// Per batch, per record: the business key's hash (nil: the record has none) for a topic
    /// with a dedup policy; nil when not computed (then nothing is checked).
    var dedupHashes: [[DedupHash?]]?
    /// Runs up to this id were already searched for these keys (`Storage.dedupPrecheck`).
    var dedupCheckedThrough: UInt64 = 0
    /// Per batch: the records' indexed values, for a topic with an index policy; nil when
    /// not computed (then nothing is indexed).
    var indexKeys: [[IndexKey]]?
    var completion: @Sendable (Result<AppendResult, MillraceError>) -> Void

    var bytes: Int { batches.reduce(0) { $0 + $1.bytes.count } }
}

struct OffsetCommitOperation {
    var commits: [OffsetCommit]
    var completion: @Sendable (Result<Void, MillraceError>) -> Void
}

struct CreateTopicOperation {
    var name: String
    var partitionCount: Int32
    var config: TopicConfig
    var completion: @Sendable (Result<TopicInfo, MillraceError>) -> Void
}

struct DeleteTopicOperation {
    var name: String
    var completion: @Sendable (Result<Void, MillraceError>) -> Void
}

struct RetentionOperation {
    var completion: @Sendable (Result<RetentionReport, MillraceError>) -> Void
}

struct DeleteGroupOperation {
    var group: String
    /// How many committed offsets were deleted.
    var completion: @Sendable (Result<Int, MillraceError>) -> Void
}

/// A rebuild step: entries for stored records of one partition, from `from` up to (not
/// including) `through`, which becomes where the rebuild goes on.
struct IndexRecordsOperation {
    var topic: String
    var partition: Int32
    var from: Int64
    var through: Int64
    var entries: [(offset: Int64, timeMs: Int64, key: IndexKey)]
    var completion: @Sendable (Result<IndexRebuildStep, MillraceError>) -> Void
}

struct InitProducerOperation {
    /// -1 for a new producer id; else the id and epoch of a session to replace (its epoch goes up).
    var producerId: Int64
    var epoch: Int16
    var completion: @Sendable (Result<ProducerIdentity, MillraceError>) -> Void
}
