import CLMDB
import MillraceFormat

extension Storage {
    /// Every record whose indexed values include `key` (as the index reads it: a string's
    /// characters, a number's or boolean's text, or a record key's bytes), in the topics named
    /// (nil: every topic), in the order they were appended, from after `cursor`, at most
    /// `limit` (1...`Limits.traceHitsPerPageMax`). A record that holds the key in several
    /// indexed fields is one hit naming each. Records that retention removed or whose topic
    /// was deleted are not hits, though their entries may still be held.
    ///
    /// Each run and memory segment is entered where the cursor points (a binary search), so a
    /// page costs by the entries it reads, not by the hits before it: paging through n hits
    /// reads each entry once. A page reads at most `entriesMax` entries (whole records: a
    /// record's entries are never split), then ends with a cursor even with fewer hits (none,
    /// when the entries read were all skipped: another topic's, or removed).
    public func trace(
        key: [UInt8], topics: [String]? = nil, after cursor: TraceCursor? = nil, limit: Int = 100, entriesMax: Int = Limits.traceEntriesPerPageMax
    ) throws -> TracePage {
        guard (1...Limits.traceHitsPerPageMax).contains(limit) else {
            throw MillraceError(.invalidRequest, "a trace page holds 1...\(Limits.traceHitsPerPageMax) hits (asked for \(limit))")
        }
        precondition(entriesMax > 0, "a trace page reads at least one entry")
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
            var merge = try TraceMerge(hash: hash, after: cursor, txn: txn, dbi: dbi, memory: memory)
            var logStarts: [PartitionID: Int64] = [:]
            func isHit(_ place: TraceCursor) -> Bool {
                guard names[place.topicID] != nil, wanted?.contains(place.topicID) ?? true else { return false }
                let id = PartitionID(topicID: place.topicID, partition: place.partition)
                if logStarts[id] == nil { logStarts[id] = (try? databases.partitionState(txn, id))?.logStartOffset ?? .max }
                return place.offset >= logStarts[id] ?? .max
            }
            var hits: [TraceHit] = []
            var next: TraceCursor?
            while let record = try merge.next() {
                if isHit(record.place) {
                    // One hit past the page: there is a next page.
                    guard hits.count < limit else {
                        next = hits.last?.cursor
                        break
                    }
                    hits.append(
                        TraceHit(
                            topic: names[record.place.topicID] ?? "", partition: record.place.partition, offset: record.place.offset,
                            timeMs: record.place.timeMs, slots: Array(Set(record.slots)).sorted(), cursor: record.place, position: record.position))
                }
                if merge.entriesRead >= entriesMax, merge.hasMore {
                    next = record.place
                    break
                }
            }
            return TracePage(hits: hits, next: next, entriesRead: merge.entriesRead)
        }
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

/// A value's index entries from every run and memory segment, merged in append order one
/// record at a time; each source is entered just after the cursor.
struct TraceMerge {
    /// One record's entries: its place, the slots that hold the value, where it starts.
    struct Record {
        var place: TraceCursor
        var slots: [UInt8]
        var position: UInt32
    }

    private enum Source {
        case run(RunReader<IndexLayout>)
        case segment([IndexEntry], Int)
    }

    let hash: DedupHash
    /// Sources with entries left, and each one's current entry.
    private var sources: [Source] = []
    private var heads: [IndexEntry] = []
    /// Entries taken in so far (a seek's probes, O(log n) per source, are not counted).
    private(set) var entriesRead = 0

    var hasMore: Bool { !heads.isEmpty }

    init(hash: DedupHash, after cursor: TraceCursor?, txn: LMDBTransaction, dbi: RunDatabases, memory: IndexMemory) throws {
        self.hash = hash
        // The entries before the value's first after the cursor: a prefix of the sort order.
        let isBefore = { (entry: IndexEntry) -> Bool in
            guard entry.hash == hash else { return entry.hash < hash }
            guard let cursor else { return false }
            return !cursor.isBefore(Self.place(of: entry))
        }
        let prefix = RunKeys.runPrefix(0)
        let runs = try LMDBCursor(txn, dbi.runs)
        defer { runs.close() }
        var current = try runs.get(MDB_SET_RANGE, key: prefix)
        while let run = current, Keys.hasPrefix(run.key, prefix) {
            var reader = ByteReader(UnsafeRawBufferPointer(rebasing: run.key[prefix.count...]))
            let runID: UInt64 = try reader.readInteger("index run id")
            let header = try RunHeader(parsing: run.value, as: IndexLayout.self)
            if BlockedBloom.mayContain(hash, in: header.filter, ordered: header.orderedFilter), let last = header.chunk(for: hash) {
                let entries = try RunReader<IndexLayout>(
                    runID: runID, txn: txn, dbi: dbi, seekingIn: header.firstChunk(for: hash)...last, isBefore: { isBefore(IndexEntry(reading: $0)) })
                if let entry = entries.current, IndexLayout.hash(at: entry) == hash {
                    sources.append(.run(entries))
                    heads.append(IndexEntry(reading: entry))
                }
            }
            current = try runs.get(MDB_NEXT)
        }
        for segment in memory.segments {
            var low = 0
            var high = segment.count
            while low < high {
                let middle = (low + high) / 2
                if isBefore(segment[middle]) { low = middle + 1 } else { high = middle }
            }
            if low < segment.count, segment[low].hash == hash {
                sources.append(.segment(segment, low))
                heads.append(segment[low])
            }
        }
    }

    static func place(of entry: IndexEntry) -> TraceCursor {
        TraceCursor(timeMs: entry.timeMs, topicID: entry.topicID, partition: Int32(entry.partition), offset: entry.offset)
    }

    /// The next record in append order, with its entries from every source (one record's
    /// entries may sit in memory and in a run both); nil when none is left.
    mutating func next() throws -> Record? {
        guard let head = heads.first else { return nil }
        var least = Self.place(of: head)
        for head in heads.dropFirst() {
            let place = Self.place(of: head)
            if place.isBefore(least) { least = place }
        }
        var record = Record(place: least, slots: [], position: IndexKey.unknownPosition)
        var index = 0
        while index < heads.count {
            guard Self.place(of: heads[index]) == least else {
                index += 1
                continue
            }
            entriesRead += 1
            record.slots.append(heads[index].slot)
            if heads[index].position != IndexKey.unknownPosition { record.position = heads[index].position }
            if let following = try advance(index) {
                heads[index] = following
            } else {
                sources.remove(at: index)
                heads.remove(at: index)
            }
        }
        return record
    }

    /// Moves source `index` on: its next entry with the value, nil when it has none.
    private mutating func advance(_ index: Int) throws -> IndexEntry? {
        switch sources[index] {
        case .run(let reader):
            try reader.advance()
            guard let entry = reader.current, IndexLayout.hash(at: entry) == hash else { return nil }
            return IndexEntry(reading: entry)
        case .segment(let entries, let position):
            guard position + 1 < entries.count, entries[position + 1].hash == hash else { return nil }
            sources[index] = .segment(entries, position + 1)
            return entries[position + 1]
        }
    }
}
