import CLMDB
import MillraceFormat
import MillraceSchema

/// The key index's newest entries, held in memory and written as one run when they reach a
/// bound (`serve --index-memory-mib`), instead of a small run per transaction merged twice
/// more on its way to full size: each entry goes to disk once (docs/DECISIONS.md, "The key
/// index's newest entries live in memory").
///
/// Nothing is lost in a crash: the records themselves are in the log, so on opening, each
/// partition's records from its watermark — the first offset not yet in a run, written with
/// the transaction that first left entries of that partition in memory — are indexed again
/// (`replay`). So that they come back in the same append-time order, each transaction
/// that leaves entries in memory records its time for the partition (a `T` key per
/// partition and offset, deleted when the entries go into a run).
struct IndexMemory {
    /// Sorted segments: one per transaction (merged into one past `segmentsMax`).
    var segments: [[IndexEntry]] = []
    var count = 0
    /// Partitions with entries in memory (their watermark is written), each with the append
    /// time last recorded for it.
    var touched: [PartitionID: Int64] = [:]

    static let defaultBytes = 64 << 20
    static let segmentsMax = 256

    static func entriesMax(bytes: Int) -> Int { max(1, bytes / MemoryLayout<IndexEntry>.stride) }

    /// One sorted array of the segments' entries.
    static func merged(_ segments: [[IndexEntry]]) -> [IndexEntry] {
        var all: [IndexEntry] = []
        all.reserveCapacity(segments.reduce(0) { $0 + $1.count })
        forEachInOrder(segments) { all.append($0) }
        return all
    }

    /// The segments' entries in order, without sorting them all again (sorting a million
    /// entries at once was a tenth of the broker's time): hashes are spread evenly, so the
    /// hash space is cut into ranges of a few thousand entries, and each range's slice of
    /// every segment is gathered and sorted while it fits in cache.
    static func forEachInOrder(_ segments: [[IndexEntry]], _ body: (IndexEntry) throws -> Void) rethrows {
        let total = segments.reduce(0) { $0 + $1.count }
        guard total > 0 else { return }
        let bits = min(24, max(0, Int.bitWidth - (total / 2_048).leadingZeroBitCount))
        var next = [Int](repeating: 0, count: segments.count)
        var range: [IndexEntry] = []
        range.reserveCapacity(4_096)
        for bucket in 0..<(1 << bits) {
            range.removeAll(keepingCapacity: true)
            for (index, segment) in segments.enumerated() {
                var position = next[index]
                while position < segment.count, bits == 0 || Int(segment[position].hash.high >> UInt64(64 - bits)) == bucket {
                    range.append(segment[position])
                    position += 1
                }
                next[index] = position
            }
            if segments.count > 1 { IndexEntry.sort(&range) }
            for entry in range { try body(entry) }
        }
    }

    /// Each batch's indexed values under `policy` (none for a batch that does not decode).
    static func keys(of batches: [(bytes: [UInt8], header: RecordBatchHeader)], policy: IndexPolicy) -> [[IndexKey]] {
        guard let extractor = try? IndexExtractor(policy) else { return batches.map { _ in [] } }
        var tape = JSONTape()
        return batches.map { batch in
            var keys: [IndexKey] = []
            var record: Int32 = 0
            try? batch.bytes.withUnsafeBytes { raw in
                try RecordBatch.forEachRecord(in: raw, header: batch.header) { view, _ in
                    extractor.append(view, record: record, tape: &tape, parsed: false, to: &keys)
                    record += 1
                }
            }
            return keys
        }
    }

    /// Indexes again, into memory, each indexed partition's records from its watermark to its
    /// end, with the append times recorded for them.
    static func replay(txn: LMDBTransaction, databases: SystemDatabases, catalog: CatalogSnapshot) throws -> IndexMemory {
        guard let dbi = databases.index else { return IndexMemory() }
        var memory = IndexMemory()
        var entries: [IndexEntry] = []
        var tape = JSONTape()
        var keys: [IndexKey] = []
        for info in catalog.topics.values {
            guard let policy = info.config.index, let extractor = try? IndexExtractor(policy) else { continue }
            for partition in 0..<info.partitionCount {
                let id = PartitionID(topicID: info.id, partition: partition)
                guard let stored = try txn.get(dbi.runs, IndexKeys.watermark(info.id, partition)), let logDBI = catalog.logDatabases[id] else { continue }
                var reader = ByteReader(stored)
                let watermark: Int64 = try reader.readInteger("index watermark")
                let state = try databases.partitionState(txn, id)
                var from = max(watermark, state.logStartOffset)
                if let pending = try txn.get(dbi.runs, IndexKeys.pending(info.id, partition)) {
                    var reader = ByteReader(pending)
                    _ = try reader.readInteger("rebuild next") as Int64
                    from = max(from, try reader.readInteger("rebuild end") as Int64)
                }
                let times = try appendTimes(txn: txn, dbi: dbi, id)
                memory.touched[id] = times.last?.timeMs ?? 0
                guard from < state.nextOffset else { continue }
                let cursor = try LMDBCursor(txn, logDBI)
                defer { cursor.close() }
                var batch = try Storage.positionCursor(cursor, at: from)
                var timeIndex = 0
                while let current = batch {
                    batch = try cursor.get(MDB_NEXT)
                    // A batch that does not decode (damage `millrace data verify` reports)
                    // gives no entries; it must not keep the broker from starting.
                    guard let header = try? RecordBatchHeader(parsing: current.value) else { continue }
                    keys.removeAll(keepingCapacity: true)
                    do {
                        try RecordBatch.forEachRecord(in: current.value, header: header) { view, _ in
                            guard header.baseOffset + Int64(view.offsetDelta) >= from else { return }
                            extractor.append(view, record: view.offsetDelta, tape: &tape, parsed: false, to: &keys)
                        }
                    } catch {
                        continue
                    }
                    for key in keys {
                        let offset = header.baseOffset + Int64(key.record)
                        while timeIndex + 1 < times.count, times[timeIndex + 1].offset <= offset { timeIndex += 1 }
                        let time = times.indices.contains(timeIndex) && times[timeIndex].offset <= offset ? times[timeIndex].timeMs : header.maxTimestamp
                        entries.append(
                            IndexEntry(
                                hash: key.hash, timeMs: time, offset: offset, topicID: info.id, partition: UInt16(clamping: partition), slot: key.slot,
                                position: key.position))
                    }
                }
            }
        }
        IndexEntry.sort(&entries)
        memory.count = entries.count
        if !entries.isEmpty { memory.segments = [entries] }
        return memory
    }

    /// The append times recorded for a partition's entries in memory, by first offset.
    static func appendTimes(txn: LMDBTransaction, dbi: RunDatabases, _ id: PartitionID) throws -> [(offset: Int64, timeMs: Int64)] {
        let prefix = IndexKeys.appendTimePrefix(id.topicID, id.partition)
        let cursor = try LMDBCursor(txn, dbi.runs)
        defer { cursor.close() }
        var times: [(offset: Int64, timeMs: Int64)] = []
        var entry = try cursor.get(MDB_SET_RANGE, key: prefix)
        while let current = entry, Keys.hasPrefix(current.key, prefix) {
            var key = ByteReader(UnsafeRawBufferPointer(rebasing: current.key[prefix.count...]))
            var value = ByteReader(current.value)
            times.append((try key.readInteger("append time offset"), try value.readInteger("append time")))
            entry = try cursor.get(MDB_NEXT)
        }
        return times
    }
}
