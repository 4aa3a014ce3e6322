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

/// The stored entry (the layout above; byte 39 is zero). Kept out of the struct's body so
/// that its memberwise initializer, with `position` unknown by default, stays.
extension IndexEntry {
    init(reading memory: UnsafeRawPointer) {
        hash = IndexLayout.hash(at: memory)
        timeMs = Int64(littleEndian: memory.loadUnaligned(fromByteOffset: 16, as: Int64.self))
        offset = Int64(littleEndian: memory.loadUnaligned(fromByteOffset: 24, as: Int64.self))
        topicID = UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
        partition = UInt16(littleEndian: memory.loadUnaligned(fromByteOffset: 36, as: UInt16.self))
        slot = memory.load(fromByteOffset: 38, as: UInt8.self)
        position = UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: 40, as: UInt32.self))
    }

    func write(to memory: UnsafeMutableRawPointer) {
        hash.write(toRunEntry: memory)
        memory.storeBytes(of: timeMs.littleEndian, toByteOffset: 16, as: Int64.self)
        memory.storeBytes(of: offset.littleEndian, toByteOffset: 24, as: Int64.self)
        memory.storeBytes(of: topicID.littleEndian, toByteOffset: 32, as: UInt32.self)
        memory.storeBytes(of: partition.littleEndian, toByteOffset: 36, as: UInt16.self)
        memory.storeBytes(of: slot, toByteOffset: 38, as: UInt8.self)
        memory.storeBytes(of: UInt8(0), toByteOffset: 39, as: UInt8.self)
        memory.storeBytes(of: position.littleEndian, toByteOffset: 40, as: UInt32.self)
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

/// Keys of the `index` database beyond run headers (`RunKeys.run(0, run)`) and the next run
/// id (`RunKeys.nextRun`).
enum IndexKeys {
    static let statsTag: UInt8 = 0x53  // S: entries written per topic
    static let pendingTag: UInt8 = 0x50  // P: per partition, the records a rebuild has left

    static let reachTag: UInt8 = 0x43  // C (owner 0): per run, the partitions its entries name and the end of each
    static let watermarkTag: UInt8 = 0x57  // W: per partition, the first offset not yet in a run
    static let appendTimeTag: UInt8 = 0x54  // T: per partition and offset, an append time of entries in memory

    static func stats(_ topicID: UInt32) -> [UInt8] { Keys.topicPrefix(topicID) + [statsTag] }

    /// A run's reach (`IndexReach`).
    static func reach(_ runID: UInt64) -> [UInt8] { Keys.tagged(0, reachTag, runID) }

    /// Per partition: i64, the first offset whose entries may be only in memory (`IndexMemory`).
    static func watermark(_ topicID: UInt32, _ partition: Int32) -> [UInt8] { Keys.tagged(topicID, watermarkTag, partition) }

    static func appendTimePrefix(_ topicID: UInt32, _ partition: Int32) -> [UInt8] { Keys.tagged(topicID, appendTimeTag, partition) }

    /// Per partition and first offset: i64, the broker time its records from there were appended.
    static func appendTime(_ topicID: UInt32, _ partition: Int32, _ offset: Int64) -> [UInt8] {
        var writer = ByteWriter(capacity: 17)
        writer.writeInteger(topicID)
        writer.writeInteger(appendTimeTag)
        writer.writeInteger(partition)
        writer.writeInteger(offset)
        return writer.bytes
    }

    /// Per partition: i64 where a rebuild goes on from, i64 the first offset indexed as it was
    /// appended (the log end when the policy was set). Gone once the rebuild reaches it.
    static func pending(_ topicID: UInt32, _ partition: Int32) -> [UInt8] { Keys.tagged(topicID, pendingTag, partition) }
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
    var runs = RunChanges()
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

    var isEmpty: Bool { runs.isEmpty && entriesByTopic.isEmpty && segment.isEmpty && !memoryFlushed && touched.isEmpty }
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

    /// The reach of `entries`: one past the highest offset of each partition they name.
    init(covering entries: [IndexEntry]) {
        for entry in entries {
            let id = PartitionID(topicID: entry.topicID, partition: Int32(entry.partition))
            ends[id] = max(ends[id] ?? 0, entry.offset + 1)
        }
    }

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
