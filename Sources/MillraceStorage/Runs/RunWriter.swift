import CLMDB
import MillraceFormat

/// Buffers a writer thread's run writers reuse: a run's filter is megabytes, and allocating
/// it per run cost a page fault per 4 KiB (and zeroing, and unmapping) — a tenth of the
/// writer's time when merges ran back to back. One run writer at a time uses it; another
/// meanwhile allocates its own.
final class RunScratch {
    fileprivate var filter = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    fileprivate var chunk = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    fileprivate var inUse = false

    init() {}

    deinit {
        filter.deallocate()
        chunk.deallocate()
    }

    /// At least `filterBytes` of filter (zeroed) and `chunkBytes` of chunk buffer; nil when
    /// another writer holds them.
    fileprivate func take(filterBytes: Int, chunkBytes: Int) -> (filter: UnsafeMutableRawBufferPointer, chunk: UnsafeMutableRawBufferPointer)? {
        guard !inUse else { return nil }
        inUse = true
        if filter.count < filterBytes {
            filter.deallocate()
            filter = .allocate(byteCount: filterBytes, alignment: 64)
        }
        if chunk.count < chunkBytes {
            chunk.deallocate()
            chunk = .allocate(byteCount: chunkBytes, alignment: 16)
        }
        let slice = UnsafeMutableRawBufferPointer(rebasing: filter[..<filterBytes])
        slice.initializeMemory(as: UInt8.self, repeating: 0)
        return (slice, chunk)
    }

    fileprivate func give() { inUse = false }
}

/// Writes a run chunk by chunk as its entries come (in order): each full chunk is appended
/// at the end of the chunk database; the header (fences and the run's filter, sized for
/// `keysAtMost`) is written by `finish`.
final class RunWriter<Layout: RunLayout> {
    let runID: UInt64
    let owner: UInt32
    private let txn: LMDBTransaction
    private let dbi: RunDatabases
    private let buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    private var chunks: UInt32 = 0
    private var fences: [UInt8] = []
    private let filter: UnsafeMutableRawBufferPointer
    /// The scratch whose buffers these are (nil: allocated here).
    private let scratch: RunScratch?
    private var lastHash: DedupHash?
    private(set) var count = 0
    private var minTime = UInt32.max
    private var maxTime: UInt32 = 0

    init(runID: UInt64, owner: UInt32, keysAtMost: Int, txn: LMDBTransaction, dbi: RunDatabases, scratch: RunScratch? = nil) {
        self.runID = runID
        self.owner = owner
        self.txn = txn
        self.dbi = dbi
        let filterBytes = BlockedBloom.bytes(forKeys: keysAtMost)
        let chunkBytes = Layout.chunkEntries * Layout.entrySize
        if let taken = scratch?.take(filterBytes: filterBytes, chunkBytes: chunkBytes) {
            (filter, buffer) = taken
            self.scratch = scratch
        } else {
            buffer = .allocate(byteCount: chunkBytes, alignment: 16)
            filter = .allocate(byteCount: filterBytes, alignment: 64)
            filter.initializeMemory(as: UInt8.self, repeating: 0)
            self.scratch = nil
        }
    }

    deinit {
        if let scratch {
            scratch.give()
        } else {
            buffer.deallocate()
            filter.deallocate()
        }
    }

    /// Appends a stored entry's bytes; entries must come in the layout's order.
    func append(raw entry: UnsafeRawPointer) throws {
        let hash = Layout.hash(at: entry)
        let time = Layout.seconds(at: entry)
        if buffered == 0 { fences.append(contentsOf: UnsafeRawBufferPointer(start: entry, count: Layout.fenceBytes)) }
        (buffer.baseAddress.unsafelyUnwrapped + buffered * Layout.entrySize).copyMemory(from: entry, byteCount: Layout.entrySize)
        buffered += 1
        count += 1
        minTime = min(minTime, time)
        maxTime = max(maxTime, time)
        // Equal hashes follow one another: one filter insert each.
        if hash != lastHash {
            BlockedBloom.insert(hash, into: filter, ordered: Layout.headerVersion >= Layout.orderedFilterSince)
            lastHash = hash
        }
        if buffered == Layout.chunkEntries { try flushChunk() }
    }

    private func flushChunk() throws {
        guard buffered > 0 else { return }
        let bytes = buffered * Layout.entrySize
        let value = try RunKeys.withChunk(runID, chunks) { try txn.reserve(dbi.chunks, $0, count: bytes, flags: MDB_APPEND) }
        value.baseAddress?.copyMemory(from: buffer.baseAddress.unsafelyUnwrapped, byteCount: bytes)
        chunks += 1
        buffered = 0
    }

    /// Writes the last chunk and the header.
    func finish() throws -> RunMeta {
        try flushChunk()
        let headerBytes = RunHeader.fixedBytes + fences.count + filter.count
        let header = try RunKeys.run(owner, runID).withUnsafeBytes { try txn.reserve(dbi.runs, $0, count: headerBytes) }
        guard let base = header.baseAddress else { throw MillraceError(.storageError, "LMDB reserved no room for a run header") }
        var writer = ByteWriter(capacity: RunHeader.fixedBytes)
        writer.writeInteger(Layout.headerVersion)
        writer.writeInteger(UInt32(count))
        writer.writeInteger(count == 0 ? 0 : minTime)
        writer.writeInteger(maxTime)
        writer.writeInteger(UInt32(chunks))
        writer.writeInteger(UInt32(filter.count))
        writer.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(start: base, count: $0.count).copyMemory(from: $0) }
        fences.withUnsafeBytes { (base + RunHeader.fixedBytes).copyMemory(from: $0.baseAddress.unsafelyUnwrapped, byteCount: $0.count) }
        (base + RunHeader.fixedBytes + fences.count).copyMemory(from: filter.baseAddress.unsafelyUnwrapped, byteCount: filter.count)
        return RunMeta(id: runID, count: count, minTime: count == 0 ? 0 : minTime, maxTime: maxTime)
    }
}
