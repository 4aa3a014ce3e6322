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

    var joinsGroupCommit: Bool {
        switch self {
        case .append, .commitOffsets: return true
        case .createTopic, .deleteTopic, .retention, .deleteGroup, .registerSchema, .setSchemaPolicy: return false
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
        }
    }
}

/// One or more batches for one partition, appended together or not at all.
struct AppendOperation {
    var topic: String
    var partition: Int32
    /// Verified batches with their headers; the writer patches each base offset in the stored copy.
    var batches: [(bytes: [UInt8], header: RecordBatchHeader)]
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
