import CLMDB
import MillraceFormat

extension WriteContext {

    /// Splits an append's records into duplicates (their key is held, or came earlier in this
    /// transaction) and new ones, which will take the offsets from `firstOffset` in order and
    /// are remembered. Batches that lose records are re-encoded without them.
    mutating func dropDuplicates(
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
            var change = dedupChanges[topicID] ?? DedupChanges()
            var runs = dedupRuns(topicID, store: store, change: change, dbi: dbi)
            if let pending = dedupPending[topicID], !pending.isEmpty {
                let sorted = pending.entries.sorted { $0.hash < $1.hash }
                try runs.write(sorted)
                change.newHashes.append(contentsOf: sorted.map(\.hash))
            }
            let window = catalog.topics.values.first { $0.id == topicID }.flatMap { catalog.dedupPolicy(of: $0) }?.windowMs ?? DedupPolicy.defaultWindowMs
            try runs.mergeDue(notBefore: UInt32(clamping: max(0, nowMs - window) / 1_000))
            change.runs = runs.changes
            dedupNextRunID = runs.nextRunID
            dedupChanges[topicID] = change
            var counters = ByteWriter(capacity: 8)
            counters.writeInteger(store.duplicatesTotal(topicID) + UInt64(change.duplicates))
            try txn.put(dbi.runs, DedupKeys.stats(topicID), counters.bytes)
        }
        if dedupNextRunID > 0 { try RunSet<DedupLayout>.storeNextRunID(dedupNextRunID, txn: txn, dbi: dbi) }
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
            var runs = dedupRuns(info.id, store: store, change: change, dbi: dbi)
            for run in old {
                try runs.delete(run.id)
                expired += run.count
            }
            change.runs = runs.changes
            var rebuilt = [UInt8](repeating: 0, count: state.filter.count)
            try rebuilt.withUnsafeMutableBytes { filter in
                for run in state.runs where !change.runs.removed.contains(run.id) {
                    let reader = try RunReader<DedupLayout>(runID: run.id, txn: txn, dbi: dbi, copying: run.id >= store.nextRunID)
                    while let entry = reader.current {
                        BlockedBloom.insert(DedupLayout.hash(at: entry), into: filter)
                        try reader.advance()
                    }
                }
            }
            change.rebuiltFilter = rebuilt
            dedupChanges[info.id] = change
        }
        return expired
    }

    /// A topic's dedup runs as this transaction has them.
    func dedupRuns(_ topicID: UInt32, store: DedupStore, change: DedupChanges, dbi: RunDatabases) -> RunSet<DedupLayout> {
        RunSet(
            owner: topicID, committed: store.topicState(topicID).runs, changes: change.runs, firstNew: store.nextRunID, nextRunID: dedupNextRunID,
            txn: txn, dbi: dbi, scratch: runScratch)
    }
}
