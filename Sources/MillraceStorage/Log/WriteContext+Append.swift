import CLMDB
import MillraceFormat

extension WriteContext {

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
}
