import CLMDB
import MillraceFormat

/// One write transaction's work. Each operation checks everything before its first write,
/// so a rejected operation leaves nothing behind and the others in the transaction go on.
/// Engine errors (map full, disk full, I/O) are thrown and abort the whole transaction.
struct WriteContext {
    let txn: LMDBTransaction
    let databases: SystemDatabases
    let catalog: CatalogSnapshot
    let nowMs: Int64
    var states: [PartitionID: PartitionState] = [:]
    /// Per partition, the offset of its newest time-index entry (read once per transaction).
    var lastTimeEntries: [PartitionID: Int64?] = [:]
    /// Producer records and per-partition sequence states read or changed in this
    /// transaction (a missing record cached as nil), and the records as stored (to move their
    /// expiry entries); the changed ones are written by `flushStates`. See
    /// WriteContext+Producers.swift.
    var producerRecords: [Int64: ProducerRecord?] = [:]
    var storedProducerRecords: [Int64: ProducerRecord?] = [:]
    var producerPartitions: [ProducerPartitionKey: ProducerPartitionState?] = [:]
    var changedProducers: Set<Int64> = []
    var changedProducerPartitions: Set<ProducerPartitionKey> = []
    /// How long producer ids are kept (the writer's options).
    var producerPolicy = ProducerPolicy(idleMs: 7 * 24 * 3_600_000)

    struct ProducerPartitionKey: Hashable {
        var producerId: Int64
        var partition: PartitionID
    }
    /// Partitions this transaction appended to, for the commit notification.
    var appendedPartitions: Set<PartitionID> = []

    /// Business-key dedup: the writer's run lists and filters (read here; changed after commit
    /// from `dedupChanges`), and this transaction's new keys per topic.
    let dedup: DedupStore?
    var dedupPending: [UInt32: DedupPendingKeys] = [:]
    var dedupViews: [UInt32: [DedupStore.RunView]?] = [:]
    var dedupChanges: [UInt32: DedupChanges] = [:]
    /// The next run id after this transaction's runs (0: none written).
    var dedupNextRunID: UInt64 = 0

    /// The key index: its runs (changed after commit from `indexChanges`), and this
    /// transaction's new entries.
    let index: IndexStore?
    /// Entries to write as a run in this transaction (a rebuild's: they must be durable with
    /// where the rebuild goes on).
    var indexPending: [IndexEntry] = []
    /// Appended records' entries, for the in-memory table (`IndexMemory`).
    var indexFresh: [IndexEntry] = []
    var indexChanges = IndexChanges()

    /// The writer thread's reusable run buffers.
    let runScratch: RunScratch?

    init(
        txn: LMDBTransaction, databases: SystemDatabases, catalog: CatalogSnapshot, nowMs: Int64, dedup: DedupStore? = nil, index: IndexStore? = nil,
        runScratch: RunScratch? = nil
    ) {
        self.runScratch = runScratch
        self.txn = txn
        self.databases = databases
        self.catalog = catalog
        self.nowMs = nowMs
        self.dedup = dedup
        self.index = index
    }

    mutating func state(_ id: PartitionID) throws -> PartitionState {
        if let cached = states[id] { return cached }
        let loaded = try databases.partitionState(txn, id)
        states[id] = loaded
        return loaded
    }

    /// Writes every partition and producer state this transaction changed.
    func flushStates() throws {
        for (id, state) in states { try databases.putPartitionState(txn, id, state) }
        try flushProducers()
    }

    func resolve(_ topic: String, _ partition: Int32) -> Result<(TopicInfo, PartitionID, MDB_dbi), MillraceError> {
        guard let info = catalog.topics[topic] else {
            return .failure(MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist; create it first"))
        }
        guard partition >= 0, partition < info.partitionCount else {
            return .failure(
                MillraceError(.unknownPartition, "topic \"\(topic)\" has partitions 0...\(info.partitionCount - 1); \(partition) is not one"))
        }
        let id = PartitionID(topicID: info.id, partition: partition)
        guard let dbi = catalog.logDatabases[id] else {
            preconditionFailure("catalog lists \(topic)/\(partition) without its log database")
        }
        return .success((info, id, dbi))
    }
}
