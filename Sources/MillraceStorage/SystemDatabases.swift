import CLMDB
import MillraceFormat

/// The named databases beside the partition logs.
struct SystemDatabases {
    /// "format" → format version (u32); "next_topic_id" → u32.
    var meta: MDB_dbi
    /// topic name → `TopicInfo`.
    var topics: MDB_dbi
    /// (topic id, partition) → `PartitionState`.
    var partitions: MDB_dbi
    /// (topic id, partition, timestamp) → base offset. See `Keys.timeIndex`.
    var timeIndex: MDB_dbi
    /// (group, topic, partition) → offset, commit time, metadata.
    var offsets: MDB_dbi
    /// Idempotent producers: producer id → `ProducerRecord`; (producer id, topic id,
    /// partition) → `ProducerPartitionState`. See `Keys.producer`. Nil only in a read-only
    /// open of a directory written before producers existed.
    var producers: MDB_dbi?
    /// Producer expiry, in the order ids fall due (issue 22): (given-out time, id) → empty
    /// for ids never used for a batch; (last-write time, id) → empty for the others. See
    /// `ProducerExpiry`. Nil where `producers` is.
    var producerExpiry: ProducerExpiry.Databases?
    /// Business-key dedup: run headers and counters per topic id, and run chunks. See `DedupKeys`.
    var dedup: RunDatabases?
    /// The key index: run headers and counters (`index`, owner 0 for runs, topic ids for
    /// counters; see `IndexKeys`), and run chunks (`indexchunks`).
    var index: RunDatabases?

    static let formatKey = Array("format".utf8)
    static let nextTopicIDKey = Array("next_topic_id".utf8)

    static let nextProducerIDKey = Array("next_producer_id".utf8)

    /// `create`: a new directory. `writable`: databases added since format 1 are created in
    /// an existing directory too.
    static func open(_ txn: LMDBTransaction, create: Bool, writable: Bool) throws -> SystemDatabases? {
        guard let meta = try txn.openDatabase("meta", create: create),
            let topics = try txn.openDatabase("topics", create: create),
            let partitions = try txn.openDatabase("partitions", create: create),
            let timeIndex = try txn.openDatabase("timeindex", create: create),
            let offsets = try txn.openDatabase("offsets", create: create)
        else { return nil }
        let producers = try txn.openDatabase("producers", create: create || writable)
        let producerExpiry = try ProducerExpiry.Databases.open(txn, create: create || writable)
        var dedup: RunDatabases?
        if let runs = try txn.openDatabase("dedup", create: create || writable), let chunks = try txn.openDatabase("dedupchunks", create: create || writable) {
            dedup = RunDatabases(runs: runs, chunks: chunks)
        }
        var index: RunDatabases?
        if let runs = try txn.openDatabase("index", create: create || writable), let chunks = try txn.openDatabase("indexchunks", create: create || writable) {
            index = RunDatabases(runs: runs, chunks: chunks)
        }
        return SystemDatabases(
            meta: meta, topics: topics, partitions: partitions, timeIndex: timeIndex, offsets: offsets, producers: producers, producerExpiry: producerExpiry, dedup: dedup,
            index: index)
    }

    func requireDedup() throws -> RunDatabases {
        guard let dedup else { throw MillraceError(.storageError, "the dedup database is missing (storage opened read-only)") }
        return dedup
    }

    func requireIndex() throws -> RunDatabases {
        guard let index else { throw MillraceError(.storageError, "the index database is missing (storage opened read-only)") }
        return index
    }

    func requireProducers() throws -> MDB_dbi {
        guard let producers else { throw MillraceError(.storageError, "the producers database is missing (storage opened read-only)") }
        return producers
    }

    func requireProducerExpiry() throws -> ProducerExpiry.Databases {
        guard let producerExpiry else { throw MillraceError(.storageError, "the producer expiry databases are missing (storage opened read-only)") }
        return producerExpiry
    }

    func partitionState(_ txn: LMDBTransaction, _ id: PartitionID) throws -> PartitionState {
        guard let bytes = try txn.get(partitions, Keys.partition(id.topicID, id.partition)) else {
            throw MillraceError(.storageError, "partition state for topic id \(id.topicID) partition \(id.partition) is missing")
        }
        return try PartitionState(decoding: bytes)
    }

    func putPartitionState(_ txn: LMDBTransaction, _ id: PartitionID, _ state: PartitionState) throws {
        try txn.put(partitions, Keys.partition(id.topicID, id.partition), state.encoded())
    }

    static func readUInt32(_ bytes: UnsafeRawBufferPointer?) throws -> UInt32? {
        guard let bytes else { return nil }
        var reader = ByteReader(bytes)
        return try reader.readInteger("meta value")
    }

    static func encode(_ value: UInt32) -> [UInt8] {
        var writer = ByteWriter(capacity: 4)
        writer.writeInteger(value)
        return writer.bytes
    }
}

/// The stored value of a committed offset.
enum CommittedOffsetValue {
    static func encode(offset: Int64, committedAtMs: Int64, metadata: String) -> [UInt8] {
        var writer = ByteWriter(capacity: 18 + metadata.utf8.count)
        writer.writeInteger(offset)
        writer.writeInteger(committedAtMs)
        writer.writeInteger(UInt16(metadata.utf8.count))
        writer.writeBytes(metadata.utf8)
        return writer.bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws -> (offset: Int64, committedAtMs: Int64, metadata: String) {
        var reader = ByteReader(bytes)
        let offset: Int64 = try reader.readInteger("offset")
        let committedAt: Int64 = try reader.readInteger("commit time")
        let length: UInt16 = try reader.readInteger("metadata length")
        let metadata = String(decoding: try reader.readBytes(Int(length), "metadata"), as: UTF8.self)
        return (offset, committedAt, metadata)
    }
}

extension CommittedOffset {
    /// A committed offset as the `offsets` database stores it: the key (group, topic,
    /// partition) and a `CommittedOffsetValue`.
    init(stored entry: LMDBCursor.Entry) throws {
        let key = try Keys.parseCommittedOffset(entry.key)
        let value = try CommittedOffsetValue.decode(entry.value)
        self.init(
            group: key.group, topic: key.topic, partition: key.partition, offset: value.offset, metadata: value.metadata,
            committedAtMs: value.committedAtMs)
    }
}
