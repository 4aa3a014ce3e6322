import CLMDB
import MillraceFormat

/// A Millrace data directory: one LMDB environment holding every partition log, the topic
/// catalog, partition states, the time index and consumer offsets. Writes go through the
/// single writer thread with group commit; reads use short read transactions on the
/// caller's thread and never block writes.
public final class Storage: @unchecked Sendable {
    /// The data directory layout this build writes. A directory with a higher number is refused.
    public static let formatVersion: UInt32 = 1

    public struct Options: Sendable {
        /// The map's first size; it grows on demand (doubling, at most 8 GiB per step).
        public var initialMapSizeBytes: Int = 1 << 30
        /// Open without a writer: inspection and verification only.
        public var readOnly: Bool = false
        /// Create the directory (and a new data file) when missing.
        public var createIfMissing: Bool = true
        public var clock: any MillraceClock = SystemClock()
        public var pendingWritesMax: Int = Limits.pendingWritesMax
        /// How often the writer applies retention; nil leaves it to `enforceRetention()`.
        public var retentionCheckIntervalMs: Int64? = 60_000
        public var maxReaders: Int = 1_024
        /// A file of this many bytes kept in the data directory and released when the disk
        /// fills, so topic deletes and retention can still run (docs/OPERATIONS.md, "Full disk").
        public var reserveBytes: Int = 16 << 20
        /// While the disk is full, writes fail at once with `storage_full`, and one is tried
        /// again this often to notice that space has returned.
        public var fullRetryIntervalMs: Int64 = 1_000
        /// An idempotent producer that has not written for this long is forgotten; its next
        /// batch gets `unknown_producer_id` and it asks for a new id.
        public var producerIdleMs: Int64 = 7 * 24 * 3_600_000
        /// An id given out and never used for a batch is forgotten after this long, and at
        /// most this many such ids are held (a new one pushes out the oldest).
        public var producerUnusedIdleMs: Int64 = Limits.producerUnusedIdleMs
        public var producerIdsUnusedMax: Int = Limits.producerIdsUnusedMax
        /// Per topic with duplicate detection: the in-memory filter over every key it holds
        /// (fixed: memory does not grow with keys; past ~1 M keys per MiB its false positives
        /// rise, costing look-ups in the runs, never a wrong answer).
        public var dedupFilterBytes: Int = 16 << 20
        /// The key index's newest entries are held in memory up to this many bytes (48 per
        /// entry), then written as one run; on opening, the records they came from are indexed
        /// again from the log (see `IndexMemory`).
        public var indexMemoryBytes: Int = IndexMemory.defaultBytes
        /// Told of commits, syncs, retention passes and a full disk (the broker's metrics and logs).
        public var events: (any StorageEvents)?

        public init() {}
    }

    public let directory: String
    let env: LMDBEnvironment
    let gate = ReadWriteGate()
    let databases: SystemDatabases
    let catalog: Locked<CatalogSnapshot>
    let clock: any MillraceClock
    let readTransactions: ReadTransactionPool
    let dedup: DedupStore
    let index: IndexStore
    let writer: Writer?
    /// On opening: index entries made again from the log for records whose entries were only
    /// in memory when the last process stopped (after a crash), and how long that took.
    public let indexReplay: (entries: Int, seconds: Double)
    private let lock: DataDirectory.Lock
    private let closed = Locked(false)
    /// Whether a dictionary is being trained (one at a time; see Storage+Dictionaries.swift).
    let training = Locked(false)

    public static func open(directory: String, options: Options = Options()) throws -> Storage {
        let exists = try DataDirectory.prepare(directory, create: options.createIfMissing && !options.readOnly)
        let lock = try DataDirectory.Lock.acquire(directory)
        do {
            return try Storage(directory: directory, existing: exists, lock: lock, options: options)
        } catch {
            lock.release()
            throw error
        }
    }

    private init(directory: String, existing: Bool, lock: DataDirectory.Lock, options: Options) throws {
        self.directory = directory
        self.lock = lock
        clock = options.clock
        let env: LMDBEnvironment
        do {
            env = try LMDBEnvironment(
                directory: directory, mapSizeBytes: options.initialMapSizeBytes, maxDatabases: Limits.partitionsMax + 16,
                maxReaders: options.maxReaders, readOnly: options.readOnly)
        } catch let error as LMDBError {
            if error.code == MDB_INVALID || error.code == MDB_VERSION_MISMATCH {
                throw MillraceError(.notDataDirectory, "\(directory)/data.mdb is not an LMDB file Millrace can open (\(error))")
            }
            throw error.millraceError
        }
        do {
            (databases, catalog) = try Self.loadCatalog(env, directory: directory, existing: existing, readOnly: options.readOnly)
            try Self.loadDictionaries(env, databases, catalog.withLock { $0 })
            dedup = DedupStore(filterBytes: options.dedupFilterBytes)
            if let dbi = databases.dedup {
                let txn = try LMDBTransaction.begin(env, readOnly: true)
                defer { txn.abort() }
                try dedup.load(txn: txn, dbi: dbi)
            }
            index = IndexStore(memoryEntriesMax: IndexMemory.entriesMax(bytes: options.indexMemoryBytes))
            if let dbi = databases.index {
                let txn = try LMDBTransaction.begin(env, readOnly: true)
                defer { txn.abort() }
                try index.load(txn: txn, dbi: dbi)
                // What was in memory when the broker last stopped (only after a crash: a
                // graceful stop writes it), indexed again; read-only opens too, so traces agree.
                let started = monotonicNanoseconds()
                let replayed = try IndexMemory.replay(txn: txn, databases: databases, catalog: catalog.withLock { $0 })
                index.restore(replayed)
                indexReplay = (replayed.count, Double(monotonicNanoseconds() - started) / 1e9)
            } else {
                indexReplay = (0, 0)
            }
        } catch {
            env.close()
            throw error
        }
        self.env = env
        readTransactions = ReadTransactionPool(env: env, idleMax: min(64, options.maxReaders / 4))
        if options.readOnly {
            writer = nil
        } else {
            let writer = Writer(
                env: env, gate: gate, databases: databases, catalog: catalog, clock: options.clock,
                pendingWritesMax: options.pendingWritesMax, retentionIntervalMs: options.retentionCheckIntervalMs,
                directory: directory, reserve: ReserveFile(directory: directory, bytes: options.reserveBytes),
                fullRetryIntervalMs: options.fullRetryIntervalMs, producerPolicy: ProducerPolicy(idleMs: options.producerIdleMs, unusedIdleMs: options.producerUnusedIdleMs, unusedMax: options.producerIdsUnusedMax),
                dedup: dedup, index: index, events: options.events)
            writer.start()
            self.writer = writer
        }
    }

    /// Reads (or, for a new directory, writes) the format version, and loads the catalog
    /// and every partition's database handle.
    private static func loadCatalog(
        _ env: LMDBEnvironment, directory: String, existing: Bool, readOnly: Bool
    ) throws -> (SystemDatabases, Locked<CatalogSnapshot>) {
        do {
            let txn = try LMDBTransaction.begin(env, readOnly: readOnly)
            var committed = false
            defer { if !committed { txn.abort() } }
            guard let databases = try SystemDatabases.open(txn, create: !existing && !readOnly, writable: !readOnly) else {
                throw MillraceError(.notDataDirectory, "\(directory) holds an LMDB file without Millrace's catalog; it is not a Millrace data directory")
            }
            let version = try SystemDatabases.readUInt32(try txn.get(databases.meta, SystemDatabases.formatKey))
            switch version {
            case nil where existing:
                throw MillraceError(.notDataDirectory, "\(directory) holds an LMDB file without a Millrace format version")
            case nil:
                try txn.put(databases.meta, SystemDatabases.formatKey, SystemDatabases.encode(formatVersion))
                try txn.put(databases.meta, SystemDatabases.nextTopicIDKey, SystemDatabases.encode(1))
            case let stored? where stored > formatVersion:
                throw MillraceError(
                    .newerFormatVersion,
                    "\(directory) was written by a newer Millrace (format \(stored); this build reads up to \(formatVersion)); upgrade millrace")
            case .some:
                break
            }
            if let expiry = databases.producerExpiry, expiry.created, let producers = databases.producers {
                // Producers stored before the expiry index: listed once, here.
                _ = try ProducerExpiry.indexExisting(txn, producers: producers, expiry)
            }
            var snapshot = CatalogSnapshot()
            snapshot.nextTopicID = try SystemDatabases.readUInt32(try txn.get(databases.meta, SystemDatabases.nextTopicIDKey)) ?? 1
            let cursor = try LMDBCursor(txn, databases.topics)
            var entry = try cursor.get(MDB_FIRST)
            while let current = entry {
                let name = String(decoding: current.key, as: UTF8.self)
                let info = try TopicInfo(name: name, decoding: current.value)
                snapshot.topics[name] = info
                entry = try cursor.get(MDB_NEXT)
            }
            cursor.close()
            for info in snapshot.topics.values {
                for partition in 0..<info.partitionCount {
                    guard let dbi = try txn.openDatabase(Keys.logDatabaseName(info.id, partition), create: false) else {
                        throw MillraceError(.storageError, "topic \(info.name) partition \(partition) has no log database; run `millrace data verify`")
                    }
                    snapshot.logDatabases[PartitionID(topicID: info.id, partition: partition)] = dbi
                }
            }
            // Handles opened in a transaction outlive it only if it commits.
            committed = true
            try txn.commit()
            return (databases, Locked(snapshot))
        } catch let error as LMDBError {
            throw error.millraceError
        }
    }

    /// Stops the writer after it has finished what is queued, closes the environment and
    /// releases the directory. Safe to call more than once.
    public func close() {
        let already = closed.withLock { value -> Bool in
            defer { value = true }
            return value
        }
        guard !already else { return }
        writer?.stop()
        gate.withExclusive { readTransactions.drain() }
        env.close()
        lock.release()
    }

    /// Closes as `close` does, but as a crash would leave the key index: its entries in
    /// memory are not written (the next open indexes their records again).
    func closeLeavingIndexMemoryForTesting() {
        writer?.leaveIndexMemoryOnStopForTesting()
        close()
    }

    deinit { close() }

    // MARK: Writes

    func requireWriter() throws -> Writer {
        guard let writer else { throw MillraceError(.invalidRequest, "storage was opened read-only") }
        return writer
    }

    public func createTopic(_ name: String, partitions: Int32, config: TopicConfig = TopicConfig()) async throws -> TopicInfo {
        try await withCheckedThrowingContinuation { continuation in
            createTopic(name, partitions: partitions, config: config) { continuation.resume(with: $0) }
        }
    }

    /// Creates a topic; `completion` runs on a storage thread once it is durable.
    public func createTopic(
        _ name: String, partitions: Int32, config: TopicConfig = TopicConfig(),
        completion: @escaping @Sendable (Result<TopicInfo, MillraceError>) -> Void
    ) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(.createTopic(CreateTopicOperation(name: name, partitionCount: partitions, config: config, completion: completion)))
    }

    public func deleteTopic(_ name: String) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            deleteTopic(name) { continuation.resume(with: $0) }
        }
    }

    /// Deletes a topic with its data and committed offsets; `completion` runs on a storage thread.
    public func deleteTopic(_ name: String, completion: @escaping @Sendable (Result<Void, MillraceError>) -> Void) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(.deleteTopic(DeleteTopicOperation(name: name, completion: completion)))
    }

    /// Checks a batch and queues it for the writer. The completion runs on the writer thread
    /// after the transaction holding the batch has committed and synced, or with the error
    /// that kept it out. Fails at once with `writerBusy` when the queue is full.
    public func append(
        topic: String, partition: Int32, batch: [UInt8],
        completion: @escaping @Sendable (Result<AppendResult, MillraceError>) -> Void
    ) {
        append(topic: topic, partition: partition, batches: [batch], completion: completion)
    }

    /// Appends several batches to one partition atomically: every batch is checked first, and
    /// they are written in one transaction, all or none. A batch that fails its check fails
    /// the whole call, with an error naming it. `AppendResult` spans them all.
    ///
    /// Batches from an idempotent producer (a producer id in the header) are placed by their
    /// sequence numbers: `sequences` when given (the batches as the producer sent them, when
    /// these are re-encoded), else the batches' own. A retry of stored batches answers with
    /// the original offsets (`duplicate`) and appends nothing.
    ///
    /// For a topic with duplicate detection, `dedupHashes` gives each record's business-key
    /// hash (per batch, per record; nil for a record without a key): records whose key the
    /// topic holds are not appended (`AppendResult.duplicates` says where the originals are).
    /// Without it nothing is checked. For a topic with an index policy, `indexKeys` gives
    /// each batch's indexed values (`IndexKey.record` counts from 0 in its batch), as the
    /// produce path computed them with its one parse per record; without it they are computed
    /// here.
    public func append(
        topic: String, partition: Int32, batches: [[UInt8]], sequences: [SequenceSpan]? = nil, dedupHashes: [[DedupHash?]]? = nil,
        dedupCheckedThrough: UInt64 = 0, indexKeys: [[IndexKey]]? = nil, completion: @escaping @Sendable (Result<AppendResult, MillraceError>) -> Void
    ) {
        switch CheckedBatch.checkAll(batches) {
        case .failure(let error): completion(.failure(error))
        case .success(let checked):
            append(
                topic: topic, partition: partition, checked: checked, sequences: sequences, dedupHashes: dedupHashes,
                dedupCheckedThrough: dedupCheckedThrough, indexKeys: indexKeys, completion: completion)
        }
    }

    /// `append(topic:partition:batches:…)` for batches checked already (the produce path
    /// checks each batch once, where it reads its records).
    public func append(
        topic: String, partition: Int32, checked: [CheckedBatch], sequences: [SequenceSpan]? = nil, dedupHashes: [[DedupHash?]]? = nil,
        dedupCheckedThrough: UInt64 = 0, indexKeys: [[IndexKey]]? = nil, completion: @escaping @Sendable (Result<AppendResult, MillraceError>) -> Void
    ) {
        guard !checked.isEmpty else { return completion(.failure(MillraceError(.invalidRecordCount, "no record batches to append"))) }
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        let batches = checked.map { (bytes: $0.bytes, header: $0.header) }
        let spans = sequences ?? batches.compactMap { SequenceSpan($0.header) }
        // Indexed whichever way the records come (a restart indexes the newest again from
        // the log, so this must give the same entries as the produce path).
        var indexKeys = indexKeys
        if indexKeys == nil, let policy = topicInfo(topic)?.config.index { indexKeys = IndexMemory.keys(of: batches, policy: policy) }
        writer.submitNow(
            .append(
                AppendOperation(
                    topic: topic, partition: partition, batches: batches, sequences: spans, dedupHashes: dedupHashes,
                    dedupCheckedThrough: dedupCheckedThrough, indexKeys: indexKeys, completion: completion)))
    }

    /// A topic's duplicate detection: policy, keys held, duplicates caught. Nil without a policy.
    public func dedupStatus(topic: String) -> DedupStatus? {
        guard let info = topicInfo(topic), let policy = info.config.dedup else { return nil }
        return dedup.status(info.id, policy: policy, nowMs: clock.nowMilliseconds())
    }

    /// Before an append: which of these keys the topic holds now (each record's original, or
    /// nil), searched on the caller's thread so the writer need not. Pass `checkedThrough` to
    /// `append`: the writer then searches only what was written since, and this transaction.
    public func dedupPrecheck(topic: String, hashes: [[DedupHash?]]) throws -> DedupPrecheck {
        guard let info = topicInfo(topic), let policy = info.config.dedup, let dbi = databases.dedup else {
            return DedupPrecheck(originals: hashes.map { [DedupHit?](repeating: nil, count: $0.count) }, checkedThrough: 0)
        }
        let notBefore = UInt32(clamping: max(0, clock.nowMilliseconds() - policy.windowMs) / 1_000)
        let (originals, through) = try dedup.precheck(hashes, topicID: info.id, notBefore: notBefore, dbi: dbi) { search in
            try withReadTransaction { txn, _ in try search(txn) }
        }
        dedup.countDuplicates(originals.reduce(0) { $0 + $1.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }, topicID: info.id, nowMs: clock.nowMilliseconds())
        return DedupPrecheck(
            originals: originals.map { batch in
                batch.map { $0.map { DedupHit(partition: $0.partition, offset: $0.offset, firstSeenMs: Int64($0.timeSeconds) * 1_000) } }
            }, checkedThrough: through)
    }

    /// The bytes on disk of every topic's dedup runs and counters (LMDB pages).
    public func dedupDiskBytes() throws -> Int {
        try withReadTransaction { txn, _ in try databases.dedup.map { try txn.pageBytes($0.runs) + txn.pageBytes($0.chunks) } ?? 0 }
    }

    /// Whether the topic holds `key` (inside its window), and where its first record is.
    public func dedupLookup(topic: String, key: [UInt8]) throws -> DedupHit? {
        guard let info = topicInfo(topic) else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
        guard let policy = info.config.dedup else {
            throw MillraceError(.invalidConfig, "topic \(topic) has no duplicate detection; turn it on with `millrace topic create ... --dedup-key`")
        }
        let hash = DedupHash(key)
        let notBefore = UInt32(clamping: max(0, clock.nowMilliseconds() - policy.windowMs) / 1_000)
        return try withReadTransaction { txn, _ in
            guard let dbi = databases.dedup else { return nil }
            // Newest run first: the run headers in key order are oldest first.
            let prefix = RunKeys.runPrefix(info.id)
            let cursor = try LMDBCursor(txn, dbi.runs)
            defer { cursor.close() }
            var runs: [(UInt64, RunHeader)] = []
            var entry = try cursor.get(MDB_SET_RANGE, key: prefix)
            while let current = entry, Keys.hasPrefix(current.key, prefix) {
                var reader = ByteReader(UnsafeRawBufferPointer(rebasing: current.key[prefix.count...]))
                runs.append((try reader.readInteger("dedup run id"), try DedupRuns.header(current.value)))
                entry = try cursor.get(MDB_NEXT)
            }
            for (runID, header) in runs.reversed() where header.maxTime >= notBefore {
                if let found = try DedupRuns.find(hash, header: header, runID: runID, txn: txn, dbi: dbi), found.timeSeconds >= notBefore {
                    return DedupHit(partition: found.partition, offset: found.offset, firstSeenMs: Int64(found.timeSeconds) * 1_000)
                }
            }
            return nil
        }
    }

    /// Uses up a producer's sequence numbers for batches refused as a whole (every record
    /// invalid), so its next batch still follows on. Nothing is appended.
    public func recordSequences(
        topic: String, partition: Int32, sequences: [SequenceSpan], completion: @escaping @Sendable (Result<AppendResult, MillraceError>) -> Void
    ) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(.append(AppendOperation(topic: topic, partition: partition, batches: [], sequences: sequences, completion: completion)))
    }

    /// Gives out a new producer id (`producerId` -1), or the next epoch of `producerId`.
    public func initProducer(producerId: Int64 = -1, epoch: Int16 = -1, completion: @escaping @Sendable (Result<ProducerIdentity, MillraceError>) -> Void) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(.initProducer(InitProducerOperation(producerId: producerId, epoch: epoch, completion: completion)))
    }

    public func initProducer(producerId: Int64 = -1, epoch: Int16 = -1) async throws -> ProducerIdentity {
        try await withCheckedThrowingContinuation { continuation in
            initProducer(producerId: producerId, epoch: epoch) { continuation.resume(with: $0) }
        }
    }

    /// Appends a batch and returns once it is durable. Waits while the writer's queue is full.
    public func append(topic: String, partition: Int32, batch: [UInt8]) async throws -> AppendResult {
        let checked = try CheckedBatch.checkAll([batch]).get().map { (bytes: $0.bytes, header: $0.header) }
        let writer = try requireWriter()
        await writer.waitForSpace()
        return try await withCheckedThrowingContinuation { continuation in
            let op = AppendOperation(topic: topic, partition: partition, batches: checked, sequences: checked.compactMap { SequenceSpan($0.header) }) {
                continuation.resume(with: $0)
            }
            writer.submitNow(.append(op), afterWaiting: true)
        }
    }

    /// Deletes every committed offset of a group; `completion` gets how many.
    public func deleteGroupOffsets(_ group: String, completion: @escaping @Sendable (Result<Int, MillraceError>) -> Void) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(.deleteGroup(DeleteGroupOperation(group: group, completion: completion)))
    }

    /// Commits consumer offsets durably, all or none; `completion` runs on a storage thread.
    /// Fails at once with `writerBusy` when the writer's queue is full.
    public func commitOffsets(_ commits: [OffsetCommit], completion: @escaping @Sendable (Result<Void, MillraceError>) -> Void) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(.commitOffsets(OffsetCommitOperation(commits: commits, completion: completion)))
    }

    /// Commits consumer offsets durably, all or none.
    public func commitOffsets(_ commits: [OffsetCommit]) async throws {
        let writer = try requireWriter()
        await writer.waitForSpace()
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            writer.submitNow(.commitOffsets(OffsetCommitOperation(commits: commits) { continuation.resume(with: $0) }), afterWaiting: true)
        }
    }

    /// Applies retention now (the writer also runs it every `retentionCheckIntervalMs`).
    public func enforceRetention() async throws -> RetentionReport {
        let writer = try requireWriter()
        return try await withCheckedThrowingContinuation { continuation in
            writer.submitNow(.retention(RetentionOperation { continuation.resume(with: $0) }))
        }
    }

    /// Calls `observer` on the writer thread after each commit that appended, with the
    /// partitions it appended to (the new records are readable by then). Long-poll fetches
    /// wait on this; it must return quickly.
    public func observeCommits(_ observer: @escaping @Sendable (Set<TopicPartition>) -> Void) {
        writer?.commitObservers.withLock { $0.append(observer) }
    }

    var writerForTesting: Writer? { writer }

    public var writerStatistics: WriterStatistics { writer?.statistics.withLock { $0 } ?? WriterStatistics() }

    /// The data file's map, pages and size, and the disk's free and total bytes.
    public func space() throws -> StorageSpace {
        let (used, pageBytes) = env.pages
        let free = try withReadTransaction { txn, _ in try txn.freePages() }
        let fileBytes = DiskSpace.fileBytes(directory + "/data.mdb")
        let disk = DiskSpace.of(directory)
        return StorageSpace(
            mapSizeBytes: env.mapSizeBytes, pageBytes: pageBytes, pagesUsed: used, pagesFree: free, dataFileBytes: fileBytes,
            diskFreeBytes: disk?.freeBytes ?? 0, diskTotalBytes: disk?.totalBytes ?? 0)
    }

    /// Whether the writer is getting through its queue and the disk has room (nil: read-only).
    public var writerHealth: WriterHealth? { writer?.health }
}
