import CLMDB
import MillraceFormat

/// Reads a run's entries in order, a chunk at a time. A chunk on overflow pages stored
/// before this transaction is read in place from LMDB's map (those pages stay put until the
/// transaction ends, even once deleted in it); a chunk small enough to sit inside a leaf page
/// is copied (the writer may change that page), and a run written in this transaction is
/// copied out first (its dirty pages could be spilled, and freed, by a large transaction).
final class RunReader<Layout: RunLayout> {
    let runID: UInt64
    private let txn: LMDBTransaction
    private let dbi: RunDatabases
    private var held: UnsafeMutableRawBufferPointer?
    private var scratch: UnsafeMutableRawBufferPointer?
    private var chunk: UInt32
    private var base: UnsafeRawPointer?
    private var count = 0
    private var position = 0

    /// Values up to this size may sit inside a leaf page (LMDB moves larger ones to overflow
    /// pages at about half a page).
    private static var inlineBytesMax: Int { 4_096 }

    /// Reads from chunk `startingAt` on.
    init(runID: UInt64, txn: LMDBTransaction, dbi: RunDatabases, copying: Bool, startingAt first: Int = 0) throws {
        self.runID = runID
        self.txn = txn
        self.dbi = dbi
        chunk = UInt32(first)
        if copying {
            var bytes: [UInt8] = []
            var next = chunk
            while let value = try RunKeys.withChunk(runID, next, { try txn.get(dbi.chunks, $0) }) {
                bytes.append(contentsOf: value)
                next += 1
            }
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, bytes.count), alignment: 16)
            bytes.withUnsafeBytes { copy.copyMemory(from: $0) }
            held = copy
            base = UnsafeRawPointer(copy.baseAddress)
            count = bytes.count / Layout.entrySize
        } else {
            try load()
        }
    }

    /// Reads from the first entry `isBefore` does not hold for (it holds for a prefix of the
    /// run's order), which starts in one of `chunks` or just after them: halving over those
    /// chunks' first entries, then over one chunk's entries, so a seek deep into a run looks
    /// at O(log n) entries, not at the ones before it.
    convenience init(runID: UInt64, txn: LMDBTransaction, dbi: RunDatabases, seekingIn chunks: ClosedRange<Int>, isBefore: (UnsafeRawPointer) -> Bool) throws {
        // `low`: the chunk to start from (its first entry is before, or it is the first);
        // `high`: the first chunk known to start at or after the entry sought.
        var low = chunks.lowerBound
        var high = chunks.upperBound + 1
        while high - low > 1 {
            let middle = (low + high) / 2
            let first = try RunKeys.withChunk(runID, UInt32(middle)) { try txn.get(dbi.chunks, $0) }
            if let first, first.count >= Layout.entrySize, let start = first.baseAddress, isBefore(start) { low = middle } else { high = middle }
        }
        try self.init(runID: runID, txn: txn, dbi: dbi, copying: false, startingAt: low)
        try skip(while: isBefore)
    }

    deinit {
        held?.deallocate()
        scratch?.deallocate()
    }

    /// Moves past the entries `isBefore` holds for (a prefix of what is left), halving within
    /// each chunk.
    func skip(while isBefore: (UnsafeRawPointer) -> Bool) throws {
        while let start = base {
            var low = position
            var high = count
            while low < high {
                let middle = (low + high) / 2
                if isBefore(start + middle * Layout.entrySize) { low = middle + 1 } else { high = middle }
            }
            position = low
            guard position >= count, held == nil else { return }
            chunk += 1
            try load()
        }
    }

    /// The current entry's bytes; nil past the last.
    var current: UnsafeRawPointer? { position < count ? base.map { $0 + position * Layout.entrySize } : nil }

    func advance() throws {
        position += 1
        if position >= count, held == nil {
            chunk += 1
            try load()
        }
    }

    private func load() throws {
        position = 0
        count = 0
        base = nil
        guard let value = try RunKeys.withChunk(runID, chunk, { try txn.get(dbi.chunks, $0) }), let start = value.baseAddress else { return }
        count = value.count / Layout.entrySize
        guard value.count <= Self.inlineBytesMax else {
            base = start
            return
        }
        let copy = scratch ?? .allocate(byteCount: Self.inlineBytesMax, alignment: 16)
        scratch = copy
        copy.baseAddress.unsafelyUnwrapped.copyMemory(from: start, byteCount: value.count)
        base = UnsafeRawPointer(copy.baseAddress)
    }
}
