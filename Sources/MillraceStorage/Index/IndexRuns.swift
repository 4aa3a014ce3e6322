import MillraceFormat

/// Whether an index entry's record is still held: its topic exists and retention left it.
/// Asked for every entry a run write or merge reads, so the last partitions asked sit in a
/// small direct-mapped table (entries come in hash order, partitions interleaved; a
/// dictionary per entry cost more than the merge). A log start that cannot be read keeps its
/// entries, and `check` throws the error.
struct IndexLiveness {
    let topics: Set<UInt32>
    /// The log start of every partition an entry names, as this transaction sees it.
    private var logStarts: [PartitionID: Int64] = [:]
    private var recent = [(key: UInt64, start: Int64)](repeating: (UInt64.max, 0), count: 64)
    private var failure: (any Error)?

    init(topics: Set<UInt32>) { self.topics = topics }

    /// `logStart` reads a partition's log start, once per partition.
    mutating func isLive(_ topicID: UInt32, _ partition: UInt16, _ offset: Int64, logStart: (PartitionID) throws -> Int64) -> Bool {
        let key = UInt64(topicID) << 16 | UInt64(partition)
        let slot = Int((key &* 0x9E37_79B9_7F4A_7C15) >> 58)
        if recent[slot].key == key { return offset >= recent[slot].start }
        let id = PartitionID(topicID: topicID, partition: Int32(partition))
        var start = Int64.max
        if topics.contains(topicID) {
            if let known = logStarts[id] {
                start = known
            } else {
                do {
                    start = try logStart(id)
                } catch {
                    failure = error
                    start = 0
                }
                logStarts[id] = start
            }
        }
        recent[slot] = (key, start)
        return offset >= start
    }

    /// Throws the error a log start's read failed with, if one did.
    func check() throws {
        if let failure { throw failure }
    }
}

extension RunSet where Layout == IndexLayout {
    /// Writes the live entries of sorted segments (`IndexMemory.forEachInOrder`) as one run.
    mutating func write(_ segments: [[IndexEntry]], liveness: inout IndexLiveness, logStart: (PartitionID) throws -> Int64) throws -> RunMeta {
        try write(keysAtMost: segments.reduce(0) { $0 + $1.count }) { writer in
            try withUnsafeTemporaryAllocation(byteCount: IndexEntry.size, alignment: 8) { raw in
                let base = raw.baseAddress.unsafelyUnwrapped
                try IndexMemory.forEachInOrder(segments) { entry in
                    guard liveness.isLive(entry.topicID, entry.partition, entry.offset, logStart: logStart) else { return }
                    entry.write(to: base)
                    try writer.append(raw: UnsafeRawPointer(base))
                }
            }
            try liveness.check()
        }
    }

    /// Merges runs that piled up, dropping entries whose records are gone (topics deleted,
    /// batches retention removed); `merged` hears of each merge.
    mutating func mergeDue(
        liveness: inout IndexLiveness, logStart: (PartitionID) throws -> Int64, merged: (_ sources: [RunMeta], _ result: RunMeta) throws -> Void
    ) throws {
        try mergeDue(
            keep: { raw in
                let (topicID, partition, offset) = IndexEntry.place(at: raw)
                return liveness.isLive(topicID, partition, offset, logStart: logStart)
            },
            merged: { sources, result in
                try liveness.check()
                try merged(sources, result)
            })
    }
}
