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

    /// Reads every run header, run reach and counter.
    func load(txn: LMDBTransaction, dbi: RunDatabases) throws {
        var written: [UInt32: UInt64] = [:]
        var reached: [UInt64: IndexReach] = [:]
        let loaded = try RunSet<IndexLayout>.load(txn: txn, dbi: dbi) { owner, tag, key, value in
            switch tag {
            case IndexKeys.statsTag:
                var reader = ByteReader(value)
                written[owner] = try reader.readInteger("index entries written")
            case IndexKeys.reachTag where owner == 0:
                reached[try key.readInteger("index run id")] = try IndexReach(decoding: value)
            default:
                break
            }
        }
        lock.withLock {
            runs = loaded.runs.map(\.run)
            reaches = reached
            entriesWritten = written
            nextRunID = loaded.nextRunID
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
