import CLMDB
import MillraceFormat

extension WriteContext {
    /// Deletes every index run none of whose entries can still be a hit: each partition it
    /// reaches has its log start at or past the run's end there, or its topic is gone.
    mutating func pruneIndexRuns() throws -> Int {
        guard let index, let dbi = databases.index else { return 0 }
        let topics = Set(catalog.topics.values.map(\.id))
        var pruned = 0
        var runs = indexRuns(index, dbi: dbi)
        for run in index.snapshot.runs where !indexChanges.runs.removed.contains(run.id) {
            guard let reach = indexChanges.reaches[run.id] ?? index.reach(run.id) else { continue }
            var dead = true
            for (id, end) in reach.ends where topics.contains(id.topicID) {
                if try state(id).logStartOffset < end {
                    dead = false
                    break
                }
            }
            guard dead else { continue }
            try runs.delete(run.id)
            _ = try txn.delete(dbi.runs, IndexKeys.reach(run.id))
            pruned += 1
        }
        indexChanges.runs = runs.changes
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

    /// The key index's runs as this transaction has them.
    func indexRuns(_ index: IndexStore, dbi: RunDatabases) -> RunSet<IndexLayout> {
        let (committed, firstNew) = index.snapshot
        return RunSet(
            owner: 0, committed: committed, changes: indexChanges.runs, firstNew: firstNew, nextRunID: indexChanges.nextRunID, txn: txn, dbi: dbi,
            scratch: runScratch)
    }

    /// Writes this transaction's index entries as one run (a rebuild's now; appended ones once
    /// the memory table is full), merges runs that piled up (dropping entries of topics
    /// deleted and of batches retention removed), and the counters. Changes reach memory only
    /// after the commit.
    mutating func flushIndex(forceMemory: Bool = false) throws {
        guard let index, !indexPending.isEmpty || !indexFresh.isEmpty || !indexChanges.entriesByTopic.isEmpty || forceMemory else { return }
        let dbi = try databases.requireIndex()
        var runs = indexRuns(index, dbi: dbi)
        var liveness = IndexLiveness(topics: Set(catalog.topics.values.map(\.id)))
        func logStart(_ id: PartitionID) throws -> Int64 { try state(id).logStartOffset }
        /// Writes the sorted segments' live entries as one run, with its reach.
        func write(_ segments: [[IndexEntry]], reach: IndexReach) throws {
            let written = try runs.write(segments, liveness: &liveness, logStart: logStart)
            try storeReach(reach, of: written.id, dbi: dbi)
        }
        if !indexPending.isEmpty {
            IndexEntry.sort(&indexPending)
            try write([indexPending], reach: IndexReach(covering: indexPending))
            indexPending = []
        }
        if !indexFresh.isEmpty || forceMemory {
            IndexEntry.sort(&indexFresh)
            let memory = index.memorySnapshot
            if memory.count + indexFresh.count >= index.memoryEntriesMax || (forceMemory && memory.count + indexFresh.count > 0) {
                var partitions = Set(memory.touched.keys)
                partitions.formUnion(indexChanges.touched.keys)
                let reach = try moveIndexWatermarks(partitions, topics: liveness.topics, dbi: dbi)
                try write(memory.segments + [indexFresh], reach: reach)
                indexChanges.memoryFlushed = true
                indexChanges.touched = [:]
            } else {
                indexChanges.segment = indexFresh
            }
            indexFresh = []
        }
        try runs.mergeDue(liveness: &liveness, logStart: logStart) { sources, written in
            try noteIndexMerge(of: sources, into: written, index: index, dbi: dbi)
        }
        indexChanges.runs = runs.changes
        indexChanges.nextRunID = runs.nextRunID
        try runs.storeNextRunID()
        try storeIndexCounters(index, dbi: dbi)
    }

    /// The memory table goes into a run, so every partition with entries in memory has them
    /// there: its watermark moves to its end (which is also where the run's reach ends), and
    /// its recorded append times go. Returns that reach.
    mutating func moveIndexWatermarks(_ partitions: Set<PartitionID>, topics: Set<UInt32>, dbi: RunDatabases) throws -> IndexReach {
        var reach = IndexReach()
        for id in partitions where topics.contains(id.topicID) {
            let end = try state(id).nextOffset
            reach.ends[id] = end
            var value = ByteWriter(capacity: 8)
            value.writeInteger(end)
            try txn.put(dbi.runs, IndexKeys.watermark(id.topicID, id.partition), value.bytes)
            try txn.deleteAll(dbi.runs, prefix: IndexKeys.appendTimePrefix(id.topicID, id.partition))
        }
        return reach
    }

    mutating func storeReach(_ reach: IndexReach, of runID: UInt64, dbi: RunDatabases) throws {
        try txn.put(dbi.runs, IndexKeys.reach(runID), reach.encoded)
        indexChanges.reaches[runID] = reach
    }

    /// A merged run reaches as far as its sources did; their reaches go with them.
    mutating func noteIndexMerge(of sources: [RunMeta], into written: RunMeta, index: IndexStore, dbi: RunDatabases) throws {
        if let reach = IndexReach.union(sources.map { indexChanges.reaches[$0.id] ?? index.reach($0.id) }) {
            try storeReach(reach, of: written.id, dbi: dbi)
        }
        for run in sources {
            _ = try txn.delete(dbi.runs, IndexKeys.reach(run.id))
            indexChanges.reaches[run.id] = nil
        }
    }

    /// Stores each topic's count of entries written, this transaction's included.
    func storeIndexCounters(_ index: IndexStore, dbi: RunDatabases) throws {
        for (topic, count) in indexChanges.entriesByTopic {
            var counter = ByteWriter(capacity: 8)
            counter.writeInteger(index.written(topic) + UInt64(count))
            try txn.put(dbi.runs, IndexKeys.stats(topic), counter.bytes)
        }
    }

    /// On setting an index policy: each partition's records so far are left for a rebuild.
    func markIndexPending(_ info: TopicInfo) throws {
        let dbi = try databases.requireIndex()
        for partition in 0..<info.partitionCount {
            let state = try databases.partitionState(txn, PartitionID(topicID: info.id, partition: partition))
            var value = ByteWriter(capacity: 16)
            value.writeInteger(state.logStartOffset)
            value.writeInteger(state.nextOffset)
            try txn.put(dbi.runs, IndexKeys.pending(info.id, partition), value.bytes)
        }
    }

    /// A rebuild step: entries for records `op.from..<op.through` of the partition, if the
    /// rebuild is there; then it goes on from `op.through` (or is done).
    mutating func indexRecords(_ op: IndexRecordsOperation) throws -> Result<IndexRebuildStep, MillraceError> {
        let (info, id, _): (TopicInfo, PartitionID, MDB_dbi)
        switch resolve(op.topic, op.partition) {
        case .failure(let error): return .failure(error)
        case .success(let resolved): (info, id, _) = resolved
        }
        guard info.config.index != nil else {
            return .failure(MillraceError(.invalidConfig, "topic \(op.topic) indexes nothing; set what it indexes first (`millrace index set`)"))
        }
        let dbi = try databases.requireIndex()
        guard let stored = try txn.get(dbi.runs, IndexKeys.pending(info.id, op.partition)) else {
            let next = try state(id).nextOffset
            return .success(IndexRebuildStep(partition: op.partition, next: next, end: next, indexed: 0))
        }
        var reader = ByteReader(stored)
        var next: Int64 = try reader.readInteger("rebuild next")
        let end: Int64 = try reader.readInteger("rebuild end")
        next = max(next, try state(id).logStartOffset)
        guard op.from == next else {
            return .failure(MillraceError(.invalidRequest, "the rebuild of \(op.topic)/\(op.partition) is at offset \(next), not \(op.from); ask again"))
        }
        let through = min(max(op.through, next), end)
        var indexed = 0
        for entry in op.entries where entry.offset >= next && entry.offset < through {
            indexPending.append(
                IndexEntry(
                    hash: entry.key.hash, timeMs: entry.timeMs, offset: entry.offset, topicID: info.id, partition: UInt16(clamping: op.partition),
                    slot: entry.key.slot, position: entry.key.position))
            indexed += 1
        }
        if indexed > 0 { indexChanges.entriesByTopic[info.id, default: 0] += indexed }
        if through >= end {
            _ = try txn.delete(dbi.runs, IndexKeys.pending(info.id, op.partition))
        } else {
            var value = ByteWriter(capacity: 16)
            value.writeInteger(through)
            value.writeInteger(end)
            try txn.put(dbi.runs, IndexKeys.pending(info.id, op.partition), value.bytes)
        }
        return .success(IndexRebuildStep(partition: op.partition, next: through, end: end, indexed: indexed))
    }

    /// Index entries for an append's records, which take offsets from `firstOffset` in order
    /// — all but `duplicates` (the records the writer took out; their batch was re-encoded,
    /// so where its other records start is no longer known). `counts` are the records per
    /// batch as the operation carried them.
    static func indexEntries(
        _ keys: [[IndexKey]], counts: [Int], duplicates: [DuplicateRecord], firstOffset: Int64, topicID: UInt32, partition: Int32, nowMs: Int64
    ) -> [IndexEntry] {
        var taken: [Int: Set<Int>] = [:]
        for duplicate in duplicates { taken[duplicate.batch, default: []].insert(duplicate.record) }
        var entries: [IndexEntry] = []
        var next = firstOffset
        let partition = UInt16(clamping: partition)
        for (batch, count) in counts.enumerated() {
            let batchKeys = batch < keys.count ? keys[batch] : []
            guard let gone = taken[batch] else {
                for key in batchKeys where key.record >= 0 && Int(key.record) < count {
                    entries.append(
                        IndexEntry(
                            hash: key.hash, timeMs: nowMs, offset: next + Int64(key.record), topicID: topicID, partition: partition, slot: key.slot,
                            position: key.position))
                }
                next += Int64(count)
                continue
            }
            var offsets = [Int64?](repeating: nil, count: count)
            for record in 0..<count where !gone.contains(record) {
                offsets[record] = next
                next += 1
            }
            for key in batchKeys where key.record >= 0 && Int(key.record) < count {
                guard let offset = offsets[Int(key.record)] else { continue }
                entries.append(IndexEntry(hash: key.hash, timeMs: nowMs, offset: offset, topicID: topicID, partition: partition, slot: key.slot))
            }
        }
        return entries
    }
}
