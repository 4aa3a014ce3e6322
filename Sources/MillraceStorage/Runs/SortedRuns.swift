import CLMDB
import MillraceFormat

enum SortedRuns {
    /// Deletes a run's header and chunks. Chunks on overflow pages are freed without being
    /// read or copied.
    static func delete(runID: UInt64, owner: UInt32, txn: LMDBTransaction, dbi: RunDatabases) throws {
        try txn.delete(dbi.runs, RunKeys.run(owner, runID))
        let prefix = RunKeys.chunkPrefix(runID)
        let cursor = try LMDBCursor(txn, dbi.chunks)
        defer { cursor.close() }
        while let entry = try cursor.get(MDB_SET_RANGE, key: prefix), Keys.hasPrefix(entry.key, prefix) { try cursor.delete() }
    }

    /// Merges sorted runs into `writer`, in order, through a binary heap of the sources'
    /// current entries. Entries `keep` refuses are dropped. With `replaces`, of entries with
    /// equal hashes only one is written: a later one takes the place of the one waiting when
    /// `replaces(later, waiting)` says so.
    static func merge<Layout: RunLayout>(
        _ sources: [RunReader<Layout>], into writer: RunWriter<Layout>, keep: (UnsafeRawPointer) -> Bool,
        replaces: ((UnsafeRawPointer, UnsafeRawPointer) -> Bool)? = nil
    ) throws {
        // Each source's current hash and index (plain values: comparing them touches no
        // reference counts); equal hashes fall back to the layout's order.
        var heap: [MergeHead] = sources.indices.compactMap { index in sources[index].current.map { MergeHead(hash: Layout.hash(at: $0), source: index) } }
        func less(_ left: MergeHead, _ right: MergeHead) -> Bool {
            if left.hash != right.hash { return left.hash < right.hash }
            guard let first = sources[left.source].current, let second = sources[right.source].current else { return false }
            return Layout.precedes(first, second)
        }
        func siftDown(_ start: Int) {
            var parent = start
            while true {
                let left = 2 * parent + 1
                guard left < heap.count else { return }
                var child = left
                if left + 1 < heap.count, less(heap[left + 1], heap[left]) { child = left + 1 }
                guard less(heap[child], heap[parent]) else { return }
                heap.swapAt(child, parent)
                parent = child
            }
        }
        for index in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(index) }
        // The entry waiting to be written (copied: its reader may move on).
        let waiting = UnsafeMutableRawPointer.allocate(byteCount: Layout.entrySize, alignment: 8)
        defer { waiting.deallocate() }
        var isWaiting = false
        while let top = heap.first {
            let reader = sources[top.source]
            guard let entry = reader.current else { break }
            if keep(entry) {
                if let replaces, isWaiting, Layout.hash(at: waiting) == top.hash {
                    if replaces(entry, waiting) { waiting.copyMemory(from: entry, byteCount: Layout.entrySize) }
                } else {
                    if isWaiting { try writer.append(raw: waiting) }
                    waiting.copyMemory(from: entry, byteCount: Layout.entrySize)
                    isWaiting = true
                }
            }
            try reader.advance()
            if let next = reader.current {
                heap[0].hash = Layout.hash(at: next)
            } else {
                heap.swapAt(0, heap.count - 1)
                heap.removeLast()
            }
            siftDown(0)
        }
        if isWaiting { try writer.append(raw: waiting) }
    }
}

/// A merge source's current hash, and which source it is.
struct MergeHead {
    var hash: DedupHash
    var source: Int
}
