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
    private var states: [PartitionID: PartitionState] = [:]
    /// Per partition, the offset of its newest time-index entry (read once per transaction).
    private var lastTimeEntries: [PartitionID: Int64?] = [:]
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
    private(set) var appendedPartitions: Set<PartitionID> = []

    /// Business-key dedup: the writer's run lists and filters (read here; changed after commit
    /// from `dedupChanges`), and this transaction's new keys per topic.
    let dedup: DedupStore?
    private var dedupPending: [UInt32: DedupPendingKeys] = [:]
    private var dedupViews: [UInt32: [DedupStore.RunView]?] = [:]
    private(set) var dedupChanges: [UInt32: DedupChanges] = [:]
    /// The next run id after this transaction's runs (0: none written).
    private(set) var dedupNextRunID: UInt64 = 0

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

    /// A batch compressed with a zstd dictionary that is not one of this topic's own would be
    /// unreadable to the topic's consumers (they fetch the topic's dictionaries) and after the
    /// other topic is deleted to the broker too: refused, whichever dictionaries the broker holds.
    private func foreignDictionary(_ op: AppendOperation, _ info: TopicInfo) throws -> MillraceError? {
        for (position, (bytes, header)) in op.batches.enumerated() where header.attributes.codec == .zstd && bytes.count > RecordBatchLayout.recordsAt {
            let which = op.batches.count == 1 ? "the batch" : "batch \(position + 1) of \(op.batches.count)"
            // Every frame's: a reader attaches the first frame's dictionary to all of them.
            let frames = bytes.withUnsafeBytes { raw in Zstd.frameDictionaryIDs(UnsafeRawBufferPointer(rebasing: raw[RecordBatchLayout.recordsAt...])) }
            let named = Set((frames ?? []).filter { $0 != 0 })
            guard named.count <= 1 else {
                return MillraceError(
                    .unknownDictionary,
                    "\(which) has zstd frames compressed with different dictionaries (\(named.sorted().map(String.init).joined(separator: ", "))); compress a batch with one dictionary; nothing was appended")
            }
            guard let dictionary = named.first, try txn.get(databases.meta, Keys.dictionary(info.id, dictionary)) == nil else { continue }
            return MillraceError(
                .unknownDictionary,
                "\(which) is compressed with zstd dictionary \(dictionary), which is not one of topic \(op.topic)'s dictionaries; compress with the topic's own (GetDictionary \(op.topic)) or without one; nothing was appended")
        }
        return nil
    }

    /// Appends every batch of `op` to its partition, in order. Resolution is checked before
    /// the first write, so a refused operation leaves nothing behind; an engine error aborts
    /// the whole transaction. Either way the batches go in together or not at all.
    mutating func append(_ op: AppendOperation) throws -> Result<AppendResult, MillraceError> {
        let (info, id, dbi): (TopicInfo, PartitionID, MDB_dbi)
        switch resolve(op.topic, op.partition) {
        case .failure(let error): return .failure(error)
        case .success(let resolved): (info, id, dbi) = resolved
        }
        if let refused = try foreignDictionary(op, info) { return .failure(refused) }
        var state = try state(id)
        if !op.sequences.isEmpty, let answer = try placeSequences(op, id, logStartOffset: state.logStartOffset) { return answer }
        var batches = op.batches
        var duplicates: [DuplicateRecord] = []
        if let policy = catalog.dedupPolicy(of: info), let hashes = op.dedupHashes {
            switch try dropDuplicates(op, info: info, policy: policy, hashes: hashes, firstOffset: state.nextOffset) {
            case .failure(let error): return .failure(error)
            case .success(let (kept, found)):
                batches = kept
                duplicates = found
            }
        }
        if info.config.index != nil, let keys = op.indexKeys, let index {
            let entries = Self.indexEntries(
                keys, counts: op.batches.map { Int($0.header.recordCount) }, duplicates: duplicates, firstOffset: state.nextOffset, topicID: info.id,
                partition: op.partition, nowMs: nowMs)
            if !entries.isEmpty {
                indexFresh.append(contentsOf: entries)
                indexChanges.entriesByTopic[info.id, default: 0] += entries.count
                try noteInMemory(id, firstOffset: state.nextOffset, index: index)
            }
        }
        let firstOffset = state.nextOffset
        var logAppendTime: Int64?
        for (batch, header) in batches {
            let baseOffset = state.nextOffset
            let stored = try Keys.withOffsetKey(baseOffset) { key in
                try txn.reserve(dbi, key, count: batch.count, flags: MDB_APPEND)
            }
            batch.withUnsafeBytes { stored.copyMemory(from: $0) }
            RecordBatch.patchBaseOffset(baseOffset, in: stored)
            var maxTimestamp = header.maxTimestamp
            if info.config.timestampType == .logAppend {
                RecordBatch.stampLogAppendTime(nowMs, in: stored)
                logAppendTime = nowMs
                maxTimestamp = nowMs
            }
            if maxTimestamp > state.maxTimestamp {
                if try timeEntryDue(id, at: baseOffset) {
                    var value = ByteWriter(capacity: 8)
                    value.writeInteger(baseOffset)
                    try txn.put(databases.timeIndex, Keys.timeIndex(id.topicID, id.partition, maxTimestamp), value.bytes)
                    lastTimeEntries[id] = .some(baseOffset)
                }
                state.maxTimestamp = maxTimestamp
            }
            state.nextOffset = baseOffset + Int64(header.recordCount)
            state.bytes += Int64(batch.count)
            state.batchCount += 1
        }
        let stored = state.nextOffset > firstOffset
        if !op.sequences.isEmpty {
            try recordSequences(op, id, baseOffset: stored ? firstOffset : -1, lastOffset: stored ? state.nextOffset - 1 : -1)
        }
        guard stored else {
            return .success(AppendResult(baseOffset: -1, lastOffset: -1, logAppendTimeMs: nil, logStartOffset: state.logStartOffset, duplicates: duplicates))
        }
        appendedPartitions.insert(id)
        states[id] = state
        return .success(
            AppendResult(
                baseOffset: firstOffset, lastOffset: state.nextOffset - 1, logAppendTimeMs: logAppendTime,
                logStartOffset: state.logStartOffset, duplicates: duplicates))
    }

    /// Splits an append's records into duplicates (their key is held, or came earlier in this
    /// transaction) and new ones, which will take the offsets from `firstOffset` in order and
    /// are remembered. Batches that lose records are re-encoded without them.
    private mutating func dropDuplicates(
        _ op: AppendOperation, info: TopicInfo, policy: DedupPolicy, hashes: [[DedupHash?]], firstOffset: Int64
    ) throws -> Result<([(bytes: [UInt8], header: RecordBatchHeader)], [DuplicateRecord]), MillraceError> {
        guard let store = dedup else { return .success((op.batches, [])) }
        guard hashes.count == op.batches.count, zip(hashes, op.batches).allSatisfy({ $0.count == Int($1.header.recordCount) }) else {
            return .failure(MillraceError(.invalidRequest, "dedup keys do not match the batches' records"))
        }
        let dbi = try databases.requireDedup()
        let now = UInt32(clamping: nowMs / 1_000)
        let notBefore = UInt32(clamping: max(0, nowMs - policy.windowMs) / 1_000)
        var nextOffset = firstOffset
        var duplicates: [DuplicateRecord] = []
        // This transaction's keys and run views for the topic, out of their dictionaries while
        // the records are checked (one look-up per append, not per record).
        var pending = dedupPending.removeValue(forKey: info.id) ?? DedupPendingKeys()
        var views = dedupViews.removeValue(forKey: info.id) ?? nil
        defer {
            if !pending.isEmpty { dedupPending[info.id] = pending }
            dedupViews[info.id] = views
        }
        // Per batch, which records are duplicates.
        var dropped: [[Bool]] = []
        for (batchIndex, batchHashes) in hashes.enumerated() {
            var drop = [Bool](repeating: false, count: batchHashes.count)
            for (recordIndex, hash) in batchHashes.enumerated() {
                guard let hash else {
                    nextOffset += 1
                    continue
                }
                var original = pending.find(hash)
                if original == nil {
                    original = try store.find(hash, topicID: info.id, notBefore: notBefore, after: op.dedupCheckedThrough, txn: txn, dbi: dbi, views: &views)
                }
                if let original {
                    duplicates.append(DuplicateRecord(batch: batchIndex, record: recordIndex, partition: original.partition, offset: original.offset))
                    drop[recordIndex] = true
                } else {
                    pending.insert(DedupEntry(hash: hash, partition: op.partition, timeSeconds: now, offset: nextOffset))
                    nextOffset += 1
                }
            }
            dropped.append(drop)
        }
        if !duplicates.isEmpty { dedupChanges[info.id, default: DedupChanges()].duplicates += duplicates.count }
        guard !duplicates.isEmpty else { return .success((op.batches, [])) }
        var kept: [(bytes: [UInt8], header: RecordBatchHeader)] = []
        for ((bytes, header), drop) in zip(op.batches, dropped) {
            let duplicateCount = drop.reduce(0) { $0 + ($1 ? 1 : 0) }
            guard duplicateCount > 0 else {
                kept.append((bytes, header))
                continue
            }
            guard let encoded = try RecordBatch.keeping(drop.map { !$0 }, of: bytes, verified: header) else { continue }
            kept.append((encoded, try encoded.withUnsafeBytes { try RecordBatchHeader(parsing: $0) }))
        }
        return .success((kept, duplicates))
    }

    /// Writes this transaction's new keys as one run per topic, merges runs that piled up,
    /// and the counters. Changes reach the writer's memory only after the commit.
    mutating func flushDedup() throws {
        guard let store = dedup, !dedupPending.isEmpty || !dedupChanges.isEmpty || store.hasChangedCounts else { return }
        let dbi = try databases.requireDedup()
        let counted = store.takeChangedCounts().filter { id in catalog.topics.values.contains { $0.id == id } }
        for topicID in Set(dedupPending.keys).union(dedupChanges.keys).union(counted) {
            let state = store.topicState(topicID)
            var change = dedupChanges[topicID] ?? DedupChanges()
            var nextRunID = max(dedupNextRunID, store.nextRunID)
            var runs = state.runs.filter { !change.removedRuns.contains($0.id) } + change.addedRuns
            if let pending = dedupPending[topicID], !pending.isEmpty {
                let sorted = pending.entries.sorted { $0.hash < $1.hash }
                let written = try DedupRuns.write(sorted, runID: nextRunID, topicID: topicID, txn: txn, dbi: dbi, scratch: runScratch)
                nextRunID += 1
                change.addedRuns.append(written)
                change.newHashes.append(contentsOf: sorted.map(\.hash))
                runs.append(written)
            }
            let window = catalog.topics.values.first { $0.id == topicID }.flatMap { catalog.dedupPolicy(of: $0) }?.windowMs ?? DedupPolicy.defaultWindowMs
            let notBefore = UInt32(clamping: max(0, nowMs - window) / 1_000)
            while let group = RunMeta.mergeCandidates(runs) {
                // Runs stored before this transaction are read in place; its own are copied.
                let sources = try group.map { try RunReader<DedupLayout>(runID: $0.id, txn: txn, dbi: dbi, copying: $0.id >= store.nextRunID) }
                let writer = RunWriter<DedupLayout>(
                    runID: nextRunID, owner: topicID, keysAtMost: group.reduce(0) { $0 + $1.count }, txn: txn, dbi: dbi, scratch: runScratch)
                try DedupRuns.merge(sources, into: writer, notBefore: notBefore)
                let written = try writer.finish()
                for run in group { try SortedRuns.delete(runID: run.id, owner: topicID, txn: txn, dbi: dbi) }
                nextRunID += 1
                let ids = Set(group.map(\.id))
                change.removedRuns.formUnion(ids)
                change.addedRuns.removeAll { ids.contains($0.id) }
                change.addedRuns.append(written)
                runs = runs.filter { !ids.contains($0.id) } + [written]
            }
            dedupNextRunID = nextRunID
            dedupChanges[topicID] = change
            var counters = ByteWriter(capacity: 8)
            counters.writeInteger(store.duplicatesTotal(topicID) + UInt64(change.duplicates))
            try txn.put(dbi.runs, DedupKeys.stats(topicID), counters.bytes)
        }
        if dedupNextRunID > 0 {
            var next = ByteWriter(capacity: 8)
            next.writeInteger(dedupNextRunID)
            try txn.put(dbi.runs, DedupKeys.nextRun, next.bytes)
        }
        dedupPending = [:]
        dedupViews = [:]
    }


    /// Deletes runs whose newest key is older than the topic's window; the filter is then
    /// rebuilt from the keys still held. Returns how many keys went.
    mutating func expireDedup() throws -> Int {
        guard let store = dedup else { return 0 }
        let dbi = try databases.requireDedup()
        var expired = 0
        for info in catalog.topics.values {
            guard let policy = catalog.dedupPolicy(of: info), let state = store.existingState(info.id) else { continue }
            let notBefore = UInt32(clamping: max(0, nowMs - policy.windowMs) / 1_000)
            let old = state.runs.filter { $0.maxTime < notBefore }
            guard !old.isEmpty else { continue }
            var change = dedupChanges[info.id] ?? DedupChanges()
            for run in old {
                try SortedRuns.delete(runID: run.id, owner: info.id, txn: txn, dbi: dbi)
                change.removedRuns.insert(run.id)
                expired += run.count
            }
            var rebuilt = [UInt8](repeating: 0, count: state.filter.count)
            try rebuilt.withUnsafeMutableBytes { filter in
                for run in state.runs where !change.removedRuns.contains(run.id) {
                    let reader = try RunReader<DedupLayout>(runID: run.id, txn: txn, dbi: dbi, copying: run.id >= store.nextRunID)
                    while let entry = reader.current {
                        BlockedBloom.insert(DedupEntry.hash(at: entry), into: filter)
                        try reader.advance()
                    }
                }
            }
            change.rebuiltFilter = rebuilt
            dedupChanges[info.id] = change
        }
        return expired
    }

    mutating func commitOffsets(_ op: OffsetCommitOperation) throws -> Result<Void, MillraceError> {
        for commit in op.commits {
            let groupBytes = commit.group.utf8.count
            guard groupBytes > 0, groupBytes <= Limits.groupNameBytesMax else {
                return .failure(MillraceError(.invalidRequest, "group name must be 1...\(Limits.groupNameBytesMax) bytes"))
            }
            guard commit.metadata.utf8.count <= Limits.offsetMetadataBytesMax else {
                return .failure(MillraceError(.invalidRequest, "offset metadata is longer than \(Limits.offsetMetadataBytesMax) bytes"))
            }
            let id: PartitionID
            switch resolve(commit.topic, commit.partition) {
            case .failure(let error): return .failure(error)
            case .success(let resolved): id = resolved.1
            }
            let partition = try state(id)
            let end = partition.nextOffset
            guard commit.offset >= 0 else {
                return .failure(
                    MillraceError(
                        .offsetOutOfRange,
                        "cannot commit offset \(commit.offset) for \(commit.topic)/\(commit.partition): offsets are never negative (a committed offset is "
                            + "the next one to read); commit \(partition.logStartOffset) to read from the log start, \(end) to read only new records"))
            }
            guard commit.offset <= end else {
                return .failure(
                    MillraceError(
                        .offsetOutOfRange,
                        "cannot commit offset \(commit.offset) for \(commit.topic)/\(commit.partition): it is past the log end, \(end) (the offset the next "
                            + "record will get); commit at most \(end)"))
            }
        }
        for commit in op.commits {
            let key = Keys.committedOffset(group: commit.group, topic: commit.topic, partition: commit.partition)
            let value = CommittedOffsetValue.encode(offset: commit.offset, committedAtMs: nowMs, metadata: commit.metadata)
            try txn.put(databases.offsets, key, value)
        }
        return .success(())
    }

    /// Deletes batches from the head of every partition whose topic has a retention limit.
    mutating func enforceRetention() throws -> RetentionReport {
        var report = RetentionReport()
        for info in catalog.topics.values where info.config.retentionMs != nil || info.config.retentionBytes != nil {
            for partition in 0..<info.partitionCount {
                let id = PartitionID(topicID: info.id, partition: partition)
                guard let dbi = catalog.logDatabases[id] else { continue }
                let (batches, bytes) = try trimHead(id, dbi, config: info.config)
                if batches > 0 {
                    report.batchesDeleted += batches
                    report.bytesDeleted += bytes
                    report.partitionsTrimmed += 1
                }
            }
        }
        return report
    }

    private mutating func trimHead(_ id: PartitionID, _ dbi: MDB_dbi, config: TopicConfig) throws -> (Int, Int64) {
        var state = try state(id)
        let cursor = try LMDBCursor(txn, dbi)
        defer { cursor.close() }
        var deleted = 0
        var deletedBytes: Int64 = 0
        while deleted < Limits.retentionBatchesPerPassMax, let (_, value) = try cursor.get(MDB_FIRST) {
            // A batch that does not parse is left for `verify` to report, never deleted blind.
            guard let header = try? RecordBatchHeader(parsing: value) else { break }
            let batchBytes = Int64(value.count)
            let keep = !RetentionPolicy.shouldDelete(
                batchMaxTimestamp: header.maxTimestamp, batchBytes: batchBytes, partitionBytes: state.bytes, config: config,
                nowMs: nowMs)
            if keep { break }
            try cursor.delete()
            state.logStartOffset = header.nextOffset
            state.bytes -= batchBytes
            state.batchCount -= 1
            deleted += 1
            deletedBytes += batchBytes
        }
        guard deleted > 0 else { return (0, 0) }
        if state.batchCount == 0 { state.logStartOffset = state.nextOffset }
        states[id] = state
        try trimTimeIndex(id, below: state.logStartOffset)
        return (deleted, deletedBytes)
    }

    /// Whether a batch at `offset` that raises its partition's highest timestamp gets a
    /// time-index entry: the first one does, then one at least
    /// `Limits.timeIndexIntervalOffsets` offsets after the last. A sparse index keeps a
    /// one-record commit from rewriting the index's pages each time; a look-up walks at most
    /// that many offsets (plus one batch) from the entry before its time. See
    /// docs/DECISIONS.md, "A sparse time index".
    private mutating func timeEntryDue(_ id: PartitionID, at offset: Int64) throws -> Bool {
        let last: Int64?
        if let known = lastTimeEntries[id] {
            last = known
        } else {
            let cursor = try LMDBCursor(txn, databases.timeIndex)
            defer { cursor.close() }
            let prefix = Keys.partition(id.topicID, id.partition)
            let beyond = prefix + [UInt8](repeating: 0xFF, count: 8)
            let after = try cursor.get(MDB_SET_RANGE, key: beyond)
            let entry = try after == nil ? cursor.get(MDB_LAST) : cursor.get(MDB_PREV)
            if let entry, Keys.hasPrefix(entry.key, prefix) {
                var reader = ByteReader(entry.value)
                last = try reader.readInteger("time index offset") as Int64
            } else {
                last = nil
            }
            lastTimeEntries[id] = .some(last)
        }
        guard let last else { return true }
        return offset - last >= Limits.timeIndexIntervalOffsets
    }

    /// Drops time-index entries that only point below the log start. The last entry before
    /// the log start stays: it holds the high-water mark for the batches that remain
    /// before the next entry.
    private func trimTimeIndex(_ id: PartitionID, below logStart: Int64) throws {
        let prefix = Keys.partition(id.topicID, id.partition)
        let cursor = try LMDBCursor(txn, databases.timeIndex)
        defer { cursor.close() }
        var doomed: [[UInt8]] = []
        var entry = try cursor.get(MDB_SET_RANGE, key: prefix)
        while let current = entry, Keys.hasPrefix(current.key, prefix) {
            let currentKey = Array(current.key)
            guard let next = try cursor.get(MDB_NEXT), Keys.hasPrefix(next.key, prefix) else { break }
            var reader = ByteReader(next.value)
            let nextOffset: Int64 = try reader.readInteger("time index offset")
            guard nextOffset <= logStart else { break }
            doomed.append(currentKey)
            entry = next
        }
        for key in doomed { try txn.delete(databases.timeIndex, key) }
    }
}

extension WriteContext {
    /// Writes this transaction's index entries as one run, merges runs that piled up
    /// (dropping entries of topics deleted and of batches retention removed), and the
    /// counters. Changes reach memory only after the commit.
    /// Deletes every index run none of whose entries can still be a hit: each partition it
    /// reaches has its log start at or past the run's end there, or its topic is gone.
    mutating func pruneIndexRuns() throws -> Int {
        guard let index, let dbi = databases.index else { return 0 }
        let topics = Set(catalog.topics.values.map(\.id))
        var pruned = 0
        for run in index.snapshot.runs where !indexChanges.removedRuns.contains(run.id) {
            guard let reach = indexChanges.reaches[run.id] ?? index.reach(run.id) else { continue }
            var dead = true
            for (id, end) in reach.ends where topics.contains(id.topicID) {
                if try state(id).logStartOffset < end {
                    dead = false
                    break
                }
            }
            guard dead else { continue }
            try SortedRuns.delete(runID: run.id, owner: 0, txn: txn, dbi: dbi)
            _ = try txn.delete(dbi.runs, IndexKeys.reach(run.id))
            indexChanges.removedRuns.insert(run.id)
            pruned += 1
        }
        return pruned
    }

    /// An append leaves entries of partition `id` in memory: the first time since its entries
    /// last went into a run, its watermark (where a replay starts) is written; and the
    /// transaction's time, for the records from `firstOffset`, when it differs from the last
    /// recorded.
    mutating func noteInMemory(_ id: PartitionID, firstOffset: Int64, index: IndexStore) throws {
        let last = indexChanges.touched[id] ?? index.touchedTime(id)
        guard last != nowMs else { return }
        let dbi = try databases.requireIndex()
        if last == nil {
            var value = ByteWriter(capacity: 8)
            value.writeInteger(firstOffset)
            try txn.put(dbi.runs, IndexKeys.watermark(id.topicID, id.partition), value.bytes)
        }
        var time = ByteWriter(capacity: 8)
        time.writeInteger(nowMs)
        try txn.put(dbi.runs, IndexKeys.appendTime(id.topicID, id.partition, firstOffset), time.bytes)
        indexChanges.touched[id] = nowMs
    }

    mutating func flushIndex(forceMemory: Bool = false) throws {
        guard let index, !indexPending.isEmpty || !indexFresh.isEmpty || !indexChanges.entriesByTopic.isEmpty || forceMemory else { return }
        let dbi = try databases.requireIndex()
        let (known, firstNew) = index.snapshot
        var nextRunID = max(indexChanges.nextRunID, firstNew)
        var runs = known.filter { !indexChanges.removedRuns.contains($0.id) } + indexChanges.addedRuns
        // The log start of every partition an entry names, as this transaction sees it.
        var logStarts: [PartitionID: Int64] = [:]
        let topics = Set(catalog.topics.values.map(\.id))
        // The last partitions asked, by a small direct-mapped table (entries come in hash
        // order, partitions interleaved; a dictionary per entry cost more than the merge).
        var recent = [(key: UInt64, start: Int64)](repeating: (UInt64.max, 0), count: 64)
        var failure: (any Error)?
        /// Whether an entry's record is still held: its topic exists and retention left it.
        func isLive(_ topicID: UInt32, _ partition: UInt16, _ offset: Int64) -> Bool {
            let key = UInt64(topicID) << 16 | UInt64(partition)
            let slot = Int((key &* 0x9E37_79B9_7F4A_7C15) >> 58)
            if recent[slot].key == key { return offset >= recent[slot].start }
            let id = PartitionID(topicID: topicID, partition: Int32(partition))
            var start = Int64.max
            if topics.contains(topicID) {
                if let known = logStarts[id] {
                    start = known
                } else {
                    do {
                        start = try state(id).logStartOffset
                    } catch {
                        failure = error
                        start = 0
                    }
                    logStarts[id] = start
                }
            }
            recent[slot] = (key, start)
            return offset >= start
        }
        /// Writes the sorted segments' entries as one run, with its reach.
        func write(_ segments: [[IndexEntry]], reach: IndexReach) throws {
            let writer = RunWriter<IndexLayout>(
                runID: nextRunID, owner: 0, keysAtMost: segments.reduce(0) { $0 + $1.count }, txn: txn, dbi: dbi, scratch: runScratch)
            try withUnsafeTemporaryAllocation(byteCount: IndexEntry.size, alignment: 8) { raw in
                let base = raw.baseAddress.unsafelyUnwrapped
                try IndexMemory.forEachInOrder(segments) { entry in
                    guard isLive(entry.topicID, entry.partition, entry.offset) else { return }
                    entry.write(to: base)
                    try writer.append(raw: UnsafeRawPointer(base))
                }
            }
            if let failure { throw failure }
            let written = try writer.finish()
            try txn.put(dbi.runs, IndexKeys.reach(written.id), reach.encoded)
            indexChanges.reaches[written.id] = reach
            nextRunID += 1
            indexChanges.addedRuns.append(written)
            runs.append(written)
        }
        if !indexPending.isEmpty {
            IndexEntry.sort(&indexPending)
            var reach = IndexReach()
            for entry in indexPending {
                let id = PartitionID(topicID: entry.topicID, partition: Int32(entry.partition))
                reach.ends[id] = max(reach.ends[id] ?? 0, entry.offset + 1)
            }
            try write([indexPending], reach: reach)
            indexPending = []
        }
        if !indexFresh.isEmpty || forceMemory {
            IndexEntry.sort(&indexFresh)
            let memory = index.memorySnapshot
            if memory.count + indexFresh.count >= index.memoryEntriesMax || (forceMemory && memory.count + indexFresh.count > 0) {
                // Every partition with entries in memory has them in the run: its watermark
                // moves to its end (which is also where the run's reach ends), and its
                // recorded append times go.
                var partitions = Set(memory.touched.keys)
                partitions.formUnion(indexChanges.touched.keys)
                var reach = IndexReach()
                for id in partitions where topics.contains(id.topicID) {
                    let end = try state(id).nextOffset
                    reach.ends[id] = end
                    var value = ByteWriter(capacity: 8)
                    value.writeInteger(end)
                    try txn.put(dbi.runs, IndexKeys.watermark(id.topicID, id.partition), value.bytes)
                    try txn.deleteAll(dbi.runs, prefix: IndexKeys.appendTimePrefix(id.topicID, id.partition))
                }
                try write(memory.segments + [indexFresh], reach: reach)
                indexChanges.memoryFlushed = true
                indexChanges.touched = [:]
            } else {
                indexChanges.segment = indexFresh
            }
            indexFresh = []
        }
        while let group = RunMeta.mergeCandidates(runs) {
            let sources = try group.map { try RunReader<IndexLayout>(runID: $0.id, txn: txn, dbi: dbi, copying: $0.id >= firstNew) }
            let writer = RunWriter<IndexLayout>(
                runID: nextRunID, owner: 0, keysAtMost: group.reduce(0) { $0 + $1.count }, txn: txn, dbi: dbi, scratch: runScratch)
            try SortedRuns.merge(sources, into: writer) { raw in
                let (topicID, partition, offset) = IndexEntry.place(at: raw)
                return isLive(topicID, partition, offset)
            }
            if let failure { throw failure }
            let written = try writer.finish()
            if let reach = IndexReach.union(group.map { indexChanges.reaches[$0.id] ?? index.reach($0.id) }) {
                try txn.put(dbi.runs, IndexKeys.reach(written.id), reach.encoded)
                indexChanges.reaches[written.id] = reach
            }
            for run in group {
                try SortedRuns.delete(runID: run.id, owner: 0, txn: txn, dbi: dbi)
                _ = try txn.delete(dbi.runs, IndexKeys.reach(run.id))
                indexChanges.reaches[run.id] = nil
            }
            nextRunID += 1
            let ids = Set(group.map(\.id))
            indexChanges.removedRuns.formUnion(ids)
            indexChanges.addedRuns.removeAll { ids.contains($0.id) }
            indexChanges.addedRuns.append(written)
            runs = runs.filter { !ids.contains($0.id) } + [written]
        }
        indexChanges.nextRunID = nextRunID
        var next = ByteWriter(capacity: 8)
        next.writeInteger(nextRunID)
        try txn.put(dbi.runs, IndexKeys.nextRun, next.bytes)
        for (topic, count) in indexChanges.entriesByTopic {
            var counter = ByteWriter(capacity: 8)
            counter.writeInteger(index.written(topic) + UInt64(count))
            try txn.put(dbi.runs, IndexKeys.stats(topic), counter.bytes)
        }
    }
}

