import CLMDB
import MillraceFormat

// The key index: every indexed value of every record (the record key, JSON fields, link
// sides; see `IndexPolicy`) as one entry in sorted runs shared by all topics, written in the
// records' transaction. A trace of a value asks each run's filter and reads only the entries
// with that value's hash, so its cost follows the hits, not the log.

/// One index entry (44 bytes, little-endian): the value's hash, when the record was appended
/// (ms, broker clock), its offset, topic id, partition, slot, and where the record starts in
/// its batch. Entries sort by hash, then time, topic, partition, offset and slot, so a
/// value's hits are in append order.
struct IndexEntry: Equatable {
    var hash: DedupHash
    var timeMs: Int64
    var offset: Int64
    var topicID: UInt32
    var partition: UInt16
    var slot: UInt8
    var position: UInt32 = IndexKey.unknownPosition

    static let size = 44

    func write(to memory: UnsafeMutableRawPointer) {
        memory.storeBytes(of: hash.high.littleEndian, toByteOffset: 0, as: UInt64.self)
        memory.storeBytes(of: hash.low.littleEndian, toByteOffset: 8, as: UInt64.self)
        memory.storeBytes(of: timeMs.littleEndian, toByteOffset: 16, as: Int64.self)
        memory.storeBytes(of: offset.littleEndian, toByteOffset: 24, as: Int64.self)
        memory.storeBytes(of: topicID.littleEndian, toByteOffset: 32, as: UInt32.self)
        memory.storeBytes(of: partition.littleEndian, toByteOffset: 36, as: UInt16.self)
        memory.storeBytes(of: slot, toByteOffset: 38, as: UInt8.self)
        memory.storeBytes(of: UInt8(0), toByteOffset: 39, as: UInt8.self)
        memory.storeBytes(of: position.littleEndian, toByteOffset: 40, as: UInt32.self)
    }

    init(hash: DedupHash, timeMs: Int64, offset: Int64, topicID: UInt32, partition: UInt16, slot: UInt8, position: UInt32 = IndexKey.unknownPosition) {
        self.hash = hash
        self.timeMs = timeMs
        self.offset = offset
        self.topicID = topicID
        self.partition = partition
        self.slot = slot
        self.position = position
    }

    init(reading memory: UnsafeRawPointer) {
        hash = IndexLayout.hash(at: memory)
        timeMs = Int64(littleEndian: memory.loadUnaligned(fromByteOffset: 16, as: Int64.self))
        offset = Int64(littleEndian: memory.loadUnaligned(fromByteOffset: 24, as: Int64.self))
        topicID = UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
        partition = UInt16(littleEndian: memory.loadUnaligned(fromByteOffset: 36, as: UInt16.self))
        slot = memory.load(fromByteOffset: 38, as: UInt8.self)
        position = UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: 40, as: UInt32.self))
    }

    /// Sorts entries into their order in O(n): hashes are spread evenly, so a counting pass on
    /// the high bits puts about one entry in each bucket, and each bucket is then sorted in
    /// place (entries sharing a value — a lot in many records — sort within their bucket).
    static func sort(_ entries: inout [IndexEntry]) {
        let count = entries.count
        guard count > 32 else { return entries.sort(by: <) }
        // Buckets take the bits after those every entry shares (a caller may sort one range
        // of the hash space at a time).
        var lowest = UInt64.max
        var highest = UInt64.min
        for entry in entries {
            lowest = min(lowest, entry.hash.high)
            highest = max(highest, entry.hash.high)
        }
        let shared = UInt64((lowest ^ highest).leadingZeroBitCount)
        guard shared < 64 else { return entries.sort(by: <) }
        let bits = min(20, Int.bitWidth - (count - 1).leadingZeroBitCount)
        let shift = UInt64(64 - bits)
        let prefix = shared == 0 ? 0 : lowest & ~(UInt64.max >> shared)
        @inline(__always) func bucketOf(_ entry: IndexEntry) -> Int { Int(((entry.hash.high ^ prefix) << shared) >> shift) }
        var starts = [Int](repeating: 0, count: (1 << bits) + 1)
        for entry in entries { starts[bucketOf(entry) + 1] += 1 }
        for bucket in 1..<starts.count { starts[bucket] += starts[bucket - 1] }
        var next = starts
        var sorted = entries
        for entry in entries {
            let bucket = bucketOf(entry)
            sorted[next[bucket]] = entry
            next[bucket] += 1
        }
        for bucket in 0..<(starts.count - 1) where starts[bucket + 1] - starts[bucket] > 1 {
            sorted[starts[bucket]..<starts[bucket + 1]].sort(by: <)
        }
        entries = sorted
    }

    /// Topic, partition and offset of a stored entry, without reading the rest.
    @inline(__always)
    static func place(at memory: UnsafeRawPointer) -> (topicID: UInt32, partition: UInt16, offset: Int64) {
        (
            UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: 32, as: UInt32.self)),
            UInt16(littleEndian: memory.loadUnaligned(fromByteOffset: 36, as: UInt16.self)),
            Int64(littleEndian: memory.loadUnaligned(fromByteOffset: 24, as: Int64.self))
        )
    }

    /// The order of entries: hash, then time, topic, partition, offset, slot.
    static func < (left: IndexEntry, right: IndexEntry) -> Bool {
        if left.hash != right.hash { return left.hash < right.hash }
        if left.timeMs != right.timeMs { return left.timeMs < right.timeMs }
        if left.topicID != right.topicID { return left.topicID < right.topicID }
        if left.partition != right.partition { return left.partition < right.partition }
        if left.offset != right.offset { return left.offset < right.offset }
        return left.slot < right.slot
    }
}

enum IndexLayout: RunLayout {
    static var entrySize: Int { IndexEntry.size }
    static var fenceBytes: Int { 16 }
    /// 3: entries of 44 bytes and an ordered filter (1 and 2 were never released).
    static var headerVersion: UInt8 { 3 }
    static var oldestHeaderVersion: UInt8 { 3 }
    static var orderedFilterSince: UInt8 { 3 }

    static func seconds(at entry: UnsafeRawPointer) -> UInt32 {
        UInt32(clamping: Int64(littleEndian: entry.loadUnaligned(fromByteOffset: 16, as: Int64.self)) / 1_000)
    }

    static func precedes(_ left: UnsafeRawPointer, _ right: UnsafeRawPointer) -> Bool {
        IndexEntry(reading: left) < IndexEntry(reading: right)
    }
}

/// Keys of the `index` database beyond run headers (`RunKeys.run(0, run)`).
enum IndexKeys {
    /// The next run id.
    static let nextRun: [UInt8] = [0, 0, 0, 0, 0x4E]
    static let statsTag: UInt8 = 0x53  // S: entries written per topic
    static let pendingTag: UInt8 = 0x50  // P: per partition, the records a rebuild has left

    static let reachTag: UInt8 = 0x43  // C (owner 0): per run, the partitions its entries name and the end of each
    static let watermarkTag: UInt8 = 0x57  // W: per partition, the first offset not yet in a run
    static let appendTimeTag: UInt8 = 0x54  // T: per partition and offset, an append time of entries in memory

    static func stats(_ topicID: UInt32) -> [UInt8] { Keys.topicPrefix(topicID) + [statsTag] }

    /// A run's reach (`IndexReach`).
    static func reach(_ runID: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 13)
        writer.writeInteger(UInt32(0))
        writer.writeInteger(reachTag)
        writer.writeInteger(runID)
        return writer.bytes
    }

    /// Per partition: i64, the first offset whose entries may be only in memory (`IndexMemory`).
    static func watermark(_ topicID: UInt32, _ partition: Int32) -> [UInt8] { partitionKey(topicID, watermarkTag, partition) }

    static func appendTimePrefix(_ topicID: UInt32, _ partition: Int32) -> [UInt8] { partitionKey(topicID, appendTimeTag, partition) }

    /// Per partition and first offset: i64, the broker time its records from there were appended.
    static func appendTime(_ topicID: UInt32, _ partition: Int32, _ offset: Int64) -> [UInt8] {
        var writer = ByteWriter(capacity: 17)
        writer.writeInteger(topicID)
        writer.writeInteger(appendTimeTag)
        writer.writeInteger(partition)
        writer.writeInteger(offset)
        return writer.bytes
    }

    private static func partitionKey(_ topicID: UInt32, _ tag: UInt8, _ partition: Int32) -> [UInt8] {
        var writer = ByteWriter(capacity: 9)
        writer.writeInteger(topicID)
        writer.writeInteger(tag)
        writer.writeInteger(partition)
        return writer.bytes
    }

    /// Per partition: i64 where a rebuild goes on from, i64 the first offset indexed as it was
    /// appended (the log end when the policy was set). Gone once the rebuild reaches it.
    static func pending(_ topicID: UInt32, _ partition: Int32) -> [UInt8] { partitionKey(topicID, pendingTag, partition) }
}

/// What a rebuild has left of a partition: records from `next` up to `end` were appended
/// before the topic's index policy was set.
public struct IndexRebuildStep: Sendable, Equatable {
    public var partition: Int32
    public var next: Int64
    public var end: Int64
    public var indexed: Int

    public var done: Bool { next >= end }
}

/// A transaction's changes to the index, applied to memory once it commits.
struct IndexChanges {
    var addedRuns: [RunMeta] = []
    var removedRuns: Set<UInt64> = []
    var entriesByTopic: [UInt32: Int] = [:]
    var nextRunID: UInt64 = 0
    /// The transaction's appended entries, sorted, for the in-memory table.
    var segment: [IndexEntry] = []
    /// The in-memory table went into a run: it starts again empty (then takes `segment`).
    var memoryFlushed = false
    /// Partitions whose watermark this transaction wrote, and the append time it recorded last
    /// for each (see `IndexMemory`).
    var touched: [PartitionID: Int64] = [:]
    /// Reaches of the runs added.
    var reaches: [UInt64: IndexReach] = [:]

    var isEmpty: Bool { addedRuns.isEmpty && removedRuns.isEmpty && entriesByTopic.isEmpty && segment.isEmpty && !memoryFlushed && touched.isEmpty }
}

/// The index's size, as `topic describe` and metrics show it.
public struct IndexStatus: Sendable, Equatable {
    /// Entries written for the topic since its index was turned on (entries of batches that
    /// retention removed are dropped later, when their run is merged).
    public var entriesWritten: UInt64
    /// The whole index (all topics): entries held, runs, bytes on disk.
    public var entriesHeld: Int
    public var runs: Int
    public var diskBytes: Int
}

/// The writer's memory of the index: its runs (not their entries) and counters. Mutated on
/// the writer thread after commits; `lock` guards it for readers.
final class IndexStore: @unchecked Sendable {
    private let lock = ConditionLock()
    private(set) var runs: [RunMeta] = []
    private(set) var nextRunID: UInt64 = 1
    private var entriesWritten: [UInt32: UInt64] = [:]
    /// The newest entries (`IndexMemory`), written as one run when they reach `memoryEntriesMax`.
    private var memory = IndexMemory()
    let memoryEntriesMax: Int
    /// Per run, when known, the partitions its entries name and where each ended.
    private(set) var reaches: [UInt64: IndexReach] = [:]

    init(memoryEntriesMax: Int = IndexMemory.entriesMax(bytes: IndexMemory.defaultBytes)) {
        self.memoryEntriesMax = max(1, memoryEntriesMax)
    }

    func load(txn: LMDBTransaction, dbi: RunDatabases) throws {
        let cursor = try LMDBCursor(txn, dbi.runs)
        defer { cursor.close() }
        var loaded: [RunMeta] = []
        var written: [UInt32: UInt64] = [:]
        var reached: [UInt64: IndexReach] = [:]
        var next: UInt64 = 1
        var entry = try cursor.get(MDB_FIRST)
        while let current = entry {
            var reader = ByteReader(current.key)
            let owner: UInt32 = try reader.readInteger("index owner")
            let tag: UInt8 = try reader.readInteger("index tag")
            switch tag {
            case IndexKeys.nextRun[4] where owner == 0:
                var value = ByteReader(current.value)
                next = max(next, try value.readInteger("index next run"))
            case RunKeys.runTag:
                let runID: UInt64 = try reader.readInteger("index run id")
                let header = try RunHeader(parsing: current.value, as: IndexLayout.self)
                loaded.append(RunMeta(id: runID, count: header.count, minTime: header.minTime, maxTime: header.maxTime))
                next = max(next, runID + 1)
            case IndexKeys.statsTag:
                var value = ByteReader(current.value)
                written[owner] = try value.readInteger("index entries written")
            case IndexKeys.reachTag where owner == 0:
                reached[try reader.readInteger("index run id")] = try IndexReach(decoding: current.value)
            default:
                break
            }
            entry = try cursor.get(MDB_NEXT)
        }
        lock.withLock {
            runs = loaded.sorted { $0.id < $1.id }
            reaches = reached
            entriesWritten = written
            nextRunID = next
        }
    }

    func apply(_ changes: IndexChanges) {
        guard !changes.isEmpty else { return }
        // Many small transactions leave many small segments; past a bound the newest half
        // become one (so an entry is merged about log128 times, not once per compaction), on
        // the writer thread, outside the lock readers take.
        var compacted: [[IndexEntry]]?
        if !changes.memoryFlushed, !changes.segment.isEmpty, memory.segments.count >= IndexMemory.segmentsMax {
            let kept = memory.segments.count - IndexMemory.segmentsMax / 2
            compacted = Array(memory.segments[..<kept]) + [IndexMemory.merged(Array(memory.segments[kept...]) + [changes.segment])]
        }
        lock.withLock {
            runs.removeAll { changes.removedRuns.contains($0.id) }
            runs.append(contentsOf: changes.addedRuns)
            for id in changes.removedRuns { reaches[id] = nil }
            reaches.merge(changes.reaches) { $1 }
            runs.sort { $0.id < $1.id }
            nextRunID = max(nextRunID, changes.nextRunID)
            for (topic, count) in changes.entriesByTopic { entriesWritten[topic, default: 0] += UInt64(count) }
            if changes.memoryFlushed { memory = IndexMemory() }
            for (id, time) in changes.touched { memory.touched[id] = time }
            if let compacted {
                memory.segments = compacted
            } else if !changes.segment.isEmpty {
                memory.segments.append(changes.segment)
            }
            if !changes.segment.isEmpty || changes.memoryFlushed { memory.count = memory.segments.reduce(0) { $0 + $1.count } }
        }
    }

    func reach(_ runID: UInt64) -> IndexReach? { lock.withLock { reaches[runID] } }

    /// The append time last recorded for a partition with entries in memory; nil when it has none.
    func touchedTime(_ id: PartitionID) -> Int64? { lock.withLock { memory.touched[id] } }

    /// The in-memory table as it stands (segments are shared, not copied).
    var memorySnapshot: IndexMemory { lock.withLock { memory } }

    /// Replaces the in-memory table (on opening, with what was indexed again).
    func restore(_ replayed: IndexMemory) { lock.withLock { memory = replayed } }

    func forget(_ topicID: UInt32) {
        lock.withLock {
            entriesWritten[topicID] = nil
            memory.touched = memory.touched.filter { $0.key.topicID != topicID }
        }
    }

    func written(_ topicID: UInt32) -> UInt64 { lock.withLock { entriesWritten[topicID] ?? 0 } }

    var snapshot: (runs: [RunMeta], nextRunID: UInt64) { lock.withLock { (runs, nextRunID) } }

    /// Entries held: in runs and in memory.
    var entriesHeld: Int { lock.withLock { runs.reduce(0) { $0 + $1.count } + memory.count } }
}

extension WriteContext {
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

/// Where a trace page ends: the last hit's place in append order; the next page starts after it.
public struct TraceCursor: Sendable, Equatable, Hashable {
    public var timeMs: Int64
    public var topicID: UInt32
    public var partition: Int32
    public var offset: Int64

    public init(timeMs: Int64, topicID: UInt32, partition: Int32, offset: Int64) {
        self.timeMs = timeMs
        self.topicID = topicID
        self.partition = partition
        self.offset = offset
    }

    func isBefore(_ other: TraceCursor) -> Bool {
        (timeMs, topicID, partition, offset) < (other.timeMs, other.topicID, other.partition, other.offset)
    }
}

/// One record a trace found.
public struct TraceHit: Sendable, Equatable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    /// When the broker appended it (ms).
    public var timeMs: Int64
    /// Which of the topic's indexed values held the key (`IndexPolicy` slots).
    public var slots: [UInt8]
    public var cursor: TraceCursor
    /// Where the record starts in its batch (`IndexKey.unknownPosition`: not known).
    public var position: UInt32 = IndexKey.unknownPosition
}

public struct TracePage: Sendable, Equatable {
    public var hits: [TraceHit]
    /// Pass back for the next page; nil when this page has the last hit.
    public var next: TraceCursor?
    /// Index entries the page read (each hit is one or more; skipped records' count too).
    public var entriesRead = 0
}

/// Where a run's entries end, per partition they name (one past the highest offset they can
/// hold). Once retention has moved every such partition's log start to its end (or its topic
/// is gone), none of the run's entries can be a hit and the run is deleted whole — as Kafka
/// deletes a log segment, without reading it. Runs written before reaches were kept have none
/// and are never deleted this way.
struct IndexReach: Equatable {
    var ends: [PartitionID: Int64] = [:]

    init(ends: [PartitionID: Int64] = [:]) { self.ends = ends }

    init(decoding bytes: UnsafeRawBufferPointer) throws {
        var reader = ByteReader(bytes)
        while reader.remaining > 0 {
            let topicID: UInt32 = try reader.readInteger("reach topic")
            let partition: Int32 = try reader.readInteger("reach partition")
            ends[PartitionID(topicID: topicID, partition: partition)] = try reader.readInteger("reach end")
        }
    }

    var encoded: [UInt8] {
        var writer = ByteWriter(capacity: ends.count * 16)
        for (id, end) in ends.sorted(by: { ($0.key.topicID, $0.key.partition) < ($1.key.topicID, $1.key.partition) }) {
            writer.writeInteger(id.topicID)
            writer.writeInteger(id.partition)
            writer.writeInteger(end)
        }
        return writer.bytes
    }

    /// A merge's reach: every source's, the furthest end per partition; nil if any has none.
    static func union(_ reaches: [IndexReach?]) -> IndexReach? {
        var union = IndexReach()
        for reach in reaches {
            guard let reach else { return nil }
            union.ends.merge(reach.ends) { max($0, $1) }
        }
        return union
    }
}
