import CLMDB
import MillraceFormat

extension WriteContext {

    /// Whether a batch at `offset` that raises its partition's highest timestamp gets a
    /// time-index entry: the first one does, then one at least
    /// `Limits.timeIndexIntervalOffsets` offsets after the last. A sparse index keeps a
    /// one-record commit from rewriting the index's pages each time; a look-up walks at most
    /// that many offsets (plus one batch) from the entry before its time. See
    /// docs/DECISIONS.md, "A sparse time index".
    mutating func timeEntryDue(_ id: PartitionID, at offset: Int64) throws -> Bool {
        let last: Int64?
        if let known = lastTimeEntries[id] {
            last = known
        } else {
            let cursor = try LMDBCursor(txn, databases.timeIndex)
            defer { cursor.close() }
            let prefix = Keys.partition(id.topicID, id.partition)
            let beyond = prefix + [UInt8](repeating: 0xFF, count: 8)
            let after = try cursor.get(MDB_SET_RANGE, key: beyond)
            let entry = try after == nil ? cursor.get(MDB_LAST) : cursor.get(MDB_PREV)
            if let entry, Keys.hasPrefix(entry.key, prefix) {
                var reader = ByteReader(entry.value)
                last = try reader.readInteger("time index offset") as Int64
            } else {
                last = nil
            }
            lastTimeEntries[id] = .some(last)
        }
        guard let last else { return true }
        return offset - last >= Limits.timeIndexIntervalOffsets
    }

    /// Drops time-index entries that only point below the log start. The last entry before
    /// the log start stays: it holds the high-water mark for the batches that remain
    /// before the next entry.
    func trimTimeIndex(_ id: PartitionID, below logStart: Int64) throws {
        let prefix = Keys.partition(id.topicID, id.partition)
        let cursor = try LMDBCursor(txn, databases.timeIndex)
        defer { cursor.close() }
        var doomed: [[UInt8]] = []
        var entry = try cursor.get(MDB_SET_RANGE, key: prefix)
        while let current = entry, Keys.hasPrefix(current.key, prefix) {
            let currentKey = Array(current.key)
            guard let next = try cursor.get(MDB_NEXT), Keys.hasPrefix(next.key, prefix) else { break }
            var reader = ByteReader(next.value)
            let nextOffset: Int64 = try reader.readInteger("time index offset")
            guard nextOffset <= logStart else { break }
            doomed.append(currentKey)
            entry = next
        }
        for key in doomed { try txn.delete(databases.timeIndex, key) }
    }
}
