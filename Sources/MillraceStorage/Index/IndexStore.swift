import CLMDB
import MillraceFormat
import Synchronization

/// The writer's memory of the index: its runs (not their entries) and counters. Mutated on
/// the writer thread after commits; `lock` guards it for readers.
final class IndexStore: @unchecked Sendable {
    private let lock = Mutex(())
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
            case RunKeys.nextRunTag where owner == 0:
                var value = ByteReader(current.value)
                next = max(next, try value.readInteger("index next run"))
            case RunKeys.runTag:
                let runID: UInt64 = try reader.readInteger("index run id")
                let header = try RunHeader(parsing: current.value, as: IndexLayout.self)
                loaded.append(RunMeta(id: runID, header: header))
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
            runs = changes.runs.applied(to: runs)
            for id in changes.runs.removed { reaches[id] = nil }
            reaches.merge(changes.reaches) { $1 }
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
