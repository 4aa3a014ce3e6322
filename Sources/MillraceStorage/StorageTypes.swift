import MillraceFormat

/// How a stored batch was placed.
public struct AppendResult: Sendable, Equatable {
    public var baseOffset: Int64
    public var lastOffset: Int64
    /// The broker's timestamp when the topic uses log-append time, else nil.
    public var logAppendTimeMs: Int64?
    public var logStartOffset: Int64
    /// The batches were already stored (a producer's retry): the offsets are the original
    /// ones and nothing was appended.
    public var duplicate = false
    /// Records not appended because their business key was seen inside the topic's window;
    /// the others took the offsets in order from `baseOffset`.
    public var duplicates: [DuplicateRecord] = []
}

/// A record whose business key the topic already holds: where the original is.
public struct DuplicateRecord: Sendable, Equatable {
    /// The batch among those of the append, and the record within it, from 0.
    public var batch: Int
    public var record: Int
    public var partition: Int32
    public var offset: Int64
}

/// An idempotent producer's identity: batches carry it with their sequence numbers.
public struct ProducerIdentity: Sendable, Equatable {
    public var producerId: Int64
    public var epoch: Int16

    public init(producerId: Int64, epoch: Int16) {
        self.producerId = producerId
        self.epoch = epoch
    }
}

/// Offsets and size of one partition.
public struct PartitionOffsets: Sendable, Equatable {
    public var partition: Int32
    /// The earliest offset still stored (the log start).
    public var logStartOffset: Int64
    /// The offset the next record gets (the log end, or high watermark).
    public var nextOffset: Int64
    public var bytes: Int64
    public var batchCount: Int64

    public var recordCount: Int64 { nextOffset - logStartOffset }
}

public struct TopicDescription: Sendable, Equatable {
    public var info: TopicInfo
    public var partitions: [PartitionOffsets]
}

/// Batches read from one partition, as stored (ready to send without re-encoding).
public struct ReadResult: Sendable {
    /// Whole batches back to back. The first one may start before the requested offset.
    public var bytes: [UInt8]
    public var batchCount: Int
    public var recordCount: Int
    public var logStartOffset: Int64
    public var nextOffset: Int64
    /// Where to read next: one past the last record returned (the request offset when empty).
    public var nextReadOffset: Int64
}

/// What a read handed over, when its bytes went to the caller's buffer.
public struct ReadSummary: Sendable {
    public var byteCount: Int
    public var batchCount: Int
    public var recordCount: Int
    public var logStartOffset: Int64
    public var nextOffset: Int64
    /// Where to read next: one past the last record handed over (the request offset when none).
    public var nextReadOffset: Int64
}

/// The answer to "first record at or after T".
public struct TimestampLookup: Sendable, Equatable {
    /// The offset of that record, or the log end when no record is that new.
    public var offset: Int64
    /// The record's timestamp; nil when no record is at or after T.
    public var timestamp: Int64?
}

/// One consumer offset commit.
public struct OffsetCommit: Sendable, Equatable {
    public var group: String
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var metadata: String

    public init(group: String, topic: String, partition: Int32, offset: Int64, metadata: String = "") {
        self.group = group
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.metadata = metadata
    }
}

public struct CommittedOffset: Sendable, Equatable {
    public var group: String
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var metadata: String
    public var committedAtMs: Int64
}

/// What the writer has done since the storage opened.
public struct WriterStatistics: Sendable, Equatable {
    public var transactions: Int = 0
    public var appends: Int = 0
    public var offsetCommits: Int = 0
    public var failedTransactions: Int = 0
    public var mapResizes: Int = 0
    public var retentionBatchesDeleted: Int = 0
    /// fdatasync calls by the syncer thread (each covers every commit finished since the last).
    public var explicitSyncs: Int = 0
    /// Time the writer spent building and committing transactions.
    public var busyNanoseconds: UInt64 = 0
    /// Of that, time in commit (page writes and sync).
    public var commitNanoseconds: UInt64 = 0

    /// Appends and offset commits per committed transaction.
    public var writesPerTransaction: Double {
        transactions == 0 ? 0 : Double(appends + offsetCommits) / Double(transactions)
    }
}

public struct RetentionReport: Sendable, Equatable {
    public var batchesDeleted: Int = 0
    public var bytesDeleted: Int64 = 0
    public var partitionsTrimmed: Int = 0
    /// Idempotent producers forgotten after their idle time.
    public var producersExpired: Int = 0
    /// Producer expiry entries the pass read to find them: about as many as it forgot,
    /// never every id held (issue 22).
    public var producerExpiryEntriesRead: Int = 0
    /// Business keys forgotten because their window passed (whole runs).
    public var dedupKeysExpired: Int = 0
    /// Key index runs deleted whole: every record their entries name is gone.
    public var indexRunsDeleted: Int = 0
}

/// One problem found by `verify`.
public struct VerifyProblem: Sendable, Equatable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    /// The offset (batch key) where the problem is; nil for partition-wide problems.
    public var offset: Int64?
    public var message: String

    public var description: String {
        "\(topic)/\(partition)" + (offset.map { " @\($0)" } ?? "") + ": \(message)"
    }
}

public struct VerifyReport: Sendable {
    public var problems: [VerifyProblem] = []
    public var batchesChecked: Int = 0
    public var recordsChecked: Int64 = 0
    public var partitionsChecked: Int = 0
}

public struct StorageInfo: Sendable {
    public var directory: String
    public var formatVersion: UInt32
    public var mapSizeBytes: Int
    public var usedBytes: Int
    public var fileBytes: Int64
}
