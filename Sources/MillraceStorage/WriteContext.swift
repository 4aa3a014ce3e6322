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
    /// Partitions this transaction appended to, for the commit notification.
    private(set) var appendedPartitions: Set<PartitionID> = []

    init(txn: LMDBTransaction, databases: SystemDatabases, catalog: CatalogSnapshot, nowMs: Int64) {
        self.txn = txn
        self.databases = databases
        self.catalog = catalog
        self.nowMs = nowMs
    }

    mutating func state(_ id: PartitionID) throws -> PartitionState {
        if let cached = states[id] { return cached }
        let loaded = try databases.partitionState(txn, id)
        states[id] = loaded
        return loaded
    }

    /// Writes every partition state this transaction changed.
    func flushStates() throws {
        for (id, state) in states { try databases.putPartitionState(txn, id, state) }
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

    /// Appends every batch of `op` to its partition, in order. Resolution is checked before
    /// the first write, so a refused operation leaves nothing behind; an engine error aborts
    /// the whole transaction. Either way the batches go in together or not at all.
    mutating func append(_ op: AppendOperation) throws -> Result<AppendResult, MillraceError> {
        let (info, id, dbi): (TopicInfo, PartitionID, MDB_dbi)
        switch resolve(op.topic, op.partition) {
        case .failure(let error): return .failure(error)
        case .success(let resolved): (info, id, dbi) = resolved
        }
        var state = try state(id)
        let firstOffset = state.nextOffset
        var logAppendTime: Int64?
        for (batch, header) in op.batches {
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
                var value = ByteWriter(capacity: 8)
                value.writeInteger(baseOffset)
                try txn.put(databases.timeIndex, Keys.timeIndex(id.topicID, id.partition, maxTimestamp), value.bytes)
                state.maxTimestamp = maxTimestamp
            }
            state.nextOffset = baseOffset + Int64(header.recordCount)
            state.bytes += Int64(batch.count)
            state.batchCount += 1
        }
        appendedPartitions.insert(id)
        states[id] = state
        return .success(
            AppendResult(
                baseOffset: firstOffset, lastOffset: state.nextOffset - 1, logAppendTimeMs: logAppendTime,
                logStartOffset: state.logStartOffset))
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
            let end = try state(id).nextOffset
            guard commit.offset >= 0, commit.offset <= end else {
                return .failure(
                    MillraceError(
                        .offsetOutOfRange,
                        "cannot commit offset \(commit.offset) for \(commit.topic)/\(commit.partition): the log ends at \(end)"))
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
