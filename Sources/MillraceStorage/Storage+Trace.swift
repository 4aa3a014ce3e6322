import CLMDB
import MillraceFormat

extension Storage {
    /// Every record whose indexed values include `key` (as the index reads it: a string's
    /// characters, a number's or boolean's text, or a record key's bytes), in the topics named
    /// (nil: every topic), in the order they were appended, from after `cursor`, at most
    /// `limit` (1...`Limits.traceHitsPerPageMax`). A record that holds the key in several
    /// indexed fields is one hit naming each. Records that retention removed or whose topic
    /// was deleted are not hits, though their entries may still be held.
    public func trace(key: [UInt8], topics: [String]? = nil, after cursor: TraceCursor? = nil, limit: Int = 100) throws -> TracePage {
        guard (1...Limits.traceHitsPerPageMax).contains(limit) else {
            throw MillraceError(.invalidRequest, "a trace page holds 1...\(Limits.traceHitsPerPageMax) hits (asked for \(limit))")
        }
        let hash = DedupHash(key)
        // The in-memory entries first, then the transaction: entries a commit moves from
        // memory into a run meanwhile are seen twice (and counted once), never missed.
        let memory = index.memorySnapshot
        return try withReadTransaction { txn, catalog in
            let names = Dictionary(catalog.topics.values.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
            var wanted: Set<UInt32>?
            if let topics {
                wanted = try Set(
                    topics.map { name in
                        guard let info = catalog.topics[name] else { throw MillraceError(.unknownTopic, "topic \"\(name)\" does not exist") }
                        return info.id
                    })
            }
            guard let dbi = databases.index else { return TracePage(hits: [], next: nil) }
            let entries = try Self.indexEntries(for: hash, txn: txn, dbi: dbi) + memory.entries(for: hash)
            // One hit per record, in append order, after the cursor.
            var hits: [TraceCursor: [UInt8]] = [:]
            var positions: [TraceCursor: UInt32] = [:]
            var logStarts: [PartitionID: Int64] = [:]
            for entry in entries {
                guard names[entry.topicID] != nil, wanted?.contains(entry.topicID) ?? true else { continue }
                let place = TraceCursor(timeMs: entry.timeMs, topicID: entry.topicID, partition: Int32(entry.partition), offset: entry.offset)
                if let cursor, !cursor.isBefore(place) { continue }
                let id = PartitionID(topicID: entry.topicID, partition: Int32(entry.partition))
                let start: Int64
                if let known = logStarts[id] {
                    start = known
                } else {
                    guard let state = try? databases.partitionState(txn, id) else { continue }
                    start = state.logStartOffset
                    logStarts[id] = start
                }
                guard entry.offset >= start else { continue }
                hits[place, default: []].append(entry.slot)
                if entry.position != IndexKey.unknownPosition { positions[place] = entry.position }
            }
            let ordered = hits.keys.sorted { $0.isBefore($1) }
            let page = ordered.prefix(limit).map { place in
                TraceHit(
                    topic: names[place.topicID] ?? "", partition: place.partition, offset: place.offset, timeMs: place.timeMs,
                    slots: Array(Set(hits[place] ?? [])).sorted(), cursor: place, position: positions[place] ?? IndexKey.unknownPosition)
            }
            return TracePage(hits: page, next: ordered.count > limit ? page.last?.cursor : nil)
        }
    }

    /// Every index entry with `hash`, from every run: each run's filter first, then only the
    /// chunks where the hash sits.
    static func indexEntries(for hash: DedupHash, txn: LMDBTransaction, dbi: RunDatabases) throws -> [IndexEntry] {
        var entries: [IndexEntry] = []
        let prefix = RunKeys.runPrefix(0)
        let cursor = try LMDBCursor(txn, dbi.runs)
        defer { cursor.close() }
        var current = try cursor.get(MDB_SET_RANGE, key: prefix)
        while let run = current, Keys.hasPrefix(run.key, prefix) {
            var reader = ByteReader(UnsafeRawBufferPointer(rebasing: run.key[prefix.count...]))
            let runID: UInt64 = try reader.readInteger("index run id")
            let header = try RunHeader(parsing: run.value, as: IndexLayout.self)
            if BlockedBloom.mayContain(hash, in: header.filter, ordered: header.orderedFilter) {
                let entriesReader = try RunReader<IndexLayout>(runID: runID, txn: txn, dbi: dbi, copying: false, startingAt: header.firstChunk(for: hash))
                while let entry = entriesReader.current, IndexLayout.hash(at: entry) < hash { try entriesReader.advance() }
                while let entry = entriesReader.current, IndexLayout.hash(at: entry) == hash {
                    entries.append(IndexEntry(reading: entry))
                    try entriesReader.advance()
                }
            }
            current = try cursor.get(MDB_NEXT)
        }
        return entries
    }

    /// The key index's size, with the entries written for `topic`.
    public func indexStatus(topic: String) throws -> IndexStatus? {
        guard let info = topicInfo(topic), info.config.index != nil else { return nil }
        let runs = index.snapshot.runs
        let bytes = try withReadTransaction { txn, _ in try databases.index.map { try txn.pageBytes($0.runs) + txn.pageBytes($0.chunks) } ?? 0 }
        return IndexStatus(entriesWritten: index.written(info.id), entriesHeld: index.entriesHeld, runs: runs.count, diskBytes: bytes)
    }

    /// The records at these places, read in one transaction without decoding their batches'
    /// other records; nil where a partition no longer (or not yet) holds the offset. For
    /// showing a trace's hits: the batch's CRC is not computed (a hit's record is one of ~a
    /// thousand in a 256 KiB batch, and a hundred hits would checksum 25 MB); the batch is
    /// still parsed defensively, and fetches and `millrace data verify` check every CRC.
    /// With a position (`TraceHit.position`) the record is read where it starts; without, or
    /// when it is not there, by walking its batch.
    public func records(at places: [(topic: String, partition: Int32, offset: Int64, position: UInt32)]) throws -> [Record?] {
        try withReadTransaction { txn, snapshot in
            try places.map { place -> Record? in
                guard let (_, id, dbi) = try? resolve(place.topic, place.partition, in: snapshot) else { return nil }
                let state = try databases.partitionState(txn, id)
                guard place.offset >= state.logStartOffset, place.offset < state.nextOffset else { return nil }
                var found: Record?
                try walkBatches(txn, dbi, from: place.offset, end: state.nextOffset, name: "\(place.topic)/\(place.partition)", checkCRC: false) {
                    header, bytes in
                    let delta = Int32(clamping: place.offset - header.baseOffset)
                    if place.position != IndexKey.unknownPosition,
                        let view = RecordBatch.record(at: Int(place.position), delta: delta, in: bytes, header: header)
                    {
                        found = Record(
                            timestampDelta: view.timestampDelta, offsetDelta: view.offsetDelta, key: view.key.map { Array($0) }, value: view.value.map { Array($0) },
                            attributes: view.attributes)
                        return false
                    }
                    try RecordBatch.forEachRecord(in: bytes, header: header, deltas: delta...delta) { view, _ in
                        guard found == nil, header.baseOffset + Int64(view.offsetDelta) == place.offset else { return }
                        found = Record(
                            timestampDelta: view.timestampDelta, offsetDelta: view.offsetDelta, key: view.key.map { Array($0) }, value: view.value.map { Array($0) },
                            attributes: view.attributes)
                    }
                    return false
                }
                return found
            }
        }
    }
}

extension Storage {
    /// What a rebuild has left of a partition (records appended before the topic's index
    /// policy was set and still held), nil when nothing is.
    public func indexRebuildPending(topic: String, partition: Int32) throws -> (next: Int64, end: Int64)? {
        try withReadTransaction { txn, snapshot in
            let (info, id, _) = try resolve(topic, partition, in: snapshot)
            guard let dbi = databases.index, let stored = try txn.get(dbi.runs, IndexKeys.pending(info.id, partition)) else { return nil }
            var reader = ByteReader(stored)
            let next: Int64 = try reader.readInteger("rebuild next")
            let end: Int64 = try reader.readInteger("rebuild end")
            let start = try databases.partitionState(txn, id).logStartOffset
            return max(next, start) < end ? (max(next, start), end) : nil
        }
    }

    /// A rebuild step: index entries for the partition's records `from..<through` (each with
    /// its offset, a time to order it by, and its key), written in one transaction with where
    /// the rebuild goes on — so a stopped rebuild resumes without indexing a record twice.
    public func indexRecords(
        topic: String, partition: Int32, from: Int64, through: Int64, entries: [(offset: Int64, timeMs: Int64, key: IndexKey)],
        completion: @escaping @Sendable (Result<IndexRebuildStep, MillraceError>) -> Void
    ) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(
            .indexRecords(IndexRecordsOperation(topic: topic, partition: partition, from: from, through: through, entries: entries, completion: completion)))
    }
}
