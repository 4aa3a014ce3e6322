import CLMDB
import MillraceFormat

// Immutable sorted runs inside LMDB: an LSM of fixed-size entries, each led by a 128-bit key
// hash, that business-key dedup and the key index share (see docs/DECISIONS.md, "Dedup keys
// in sorted runs"). A write transaction writes its new entries as one run, its chunks
// appended at the end of a chunk database; runs of similar size are merged as they pile up.
// A look-up asks each run's own filter (stored with the run), then finds its place in one
// chunk by interpolating from the hash.

/// What a kind of run stores: entries of `entrySize` bytes, each starting with a key hash
/// (little-endian high word, then low word) that orders them; `precedes` orders entries with
/// equal hashes too.
protocol RunLayout {
    static var entrySize: Int { get }
    /// Bytes of each chunk's first entry kept in the run header (a prefix of the sort key).
    static var fenceBytes: Int { get }
    /// The version new run headers are written with.
    static var headerVersion: UInt8 { get }
    /// The oldest header version still read.
    static var oldestHeaderVersion: UInt8 { get }
    /// From this header version on, a run's filter picks a key's block by the hash's high
    /// bits (so the sorted keys of a run fill it front to back); before it, by a remainder.
    static var orderedFilterSince: UInt8 { get }
    /// The entry's time in seconds (a run remembers its first and last).
    static func seconds(at entry: UnsafeRawPointer) -> UInt32
    /// Whether `left` sorts before `right`.
    static func precedes(_ left: UnsafeRawPointer, _ right: UnsafeRawPointer) -> Bool
}

extension RunLayout {
    /// Entries per chunk: a full chunk is one LMDB value on exactly sixteen 4 KiB overflow
    /// pages (with the 16-byte page header), so deleting a run frees its pages without
    /// copying them, and a merge reads them in order. Nothing depends on the count: runs
    /// written by older builds have smaller chunks.
    static var chunkEntries: Int { (16 * 4_096 - 16) / entrySize }

    @inline(__always)
    static func hash(at entry: UnsafeRawPointer) -> DedupHash {
        DedupHash(
            high: UInt64(littleEndian: entry.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            low: UInt64(littleEndian: entry.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }
}

/// A Bloom filter whose probes for one key all fall in one 64-byte block (one cache line):
/// seven bits, at about 10 bits per key ≈ 1% false positives. An `ordered` filter picks the
/// block by the hash's high bits (multiply-shift), so keys inserted in hash order — a run
/// being written — fill it front to back instead of missing the cache at every key; the
/// others by a remainder.
enum BlockedBloom {
    static let blockBytes = 64

    static func bytes(forKeys count: Int, bitsPerKey: Int = 10) -> Int {
        max(1, (count * bitsPerKey + 511) / 512) * blockBytes
    }

    @inline(__always) private static func block(_ hash: DedupHash, _ bytes: Int, ordered: Bool) -> Int {
        let blocks = UInt64(bytes / blockBytes)
        return Int(ordered ? hash.high.multipliedFullWidth(by: blocks).high : hash.high % blocks) * blockBytes
    }

    static func insert(_ hash: DedupHash, into filter: UnsafeMutableRawBufferPointer, ordered: Bool = false) {
        guard filter.count >= blockBytes, let base = filter.baseAddress else { return }
        let start = block(hash, filter.count, ordered: ordered)
        var bits = hash.low
        for _ in 0..<7 {
            let bit = Int(bits & 511)
            bits >>= 9
            let byte = base + start + bit >> 3
            byte.storeBytes(of: byte.load(as: UInt8.self) | UInt8(1 << (bit & 7)), as: UInt8.self)
        }
    }

    static func mayContain(_ hash: DedupHash, in filter: UnsafeRawBufferPointer, ordered: Bool = false) -> Bool {
        guard filter.count >= blockBytes, let base = filter.baseAddress else { return true }
        let start = block(hash, filter.count, ordered: ordered)
        var bits = hash.low
        for _ in 0..<7 {
            let bit = Int(bits & 511)
            bits >>= 9
            guard base.load(fromByteOffset: start + bit >> 3, as: UInt8.self) & UInt8(1 << (bit & 7)) != 0 else { return false }
        }
        return true
    }
}

/// A kind of run's two databases: run headers (and whatever else its owner keeps there,
/// keys prefixed by an owner id) and chunks (keyed by run id then chunk number: run ids only
/// grow, so every chunk is appended at the end).
struct RunDatabases {
    let runs: MDB_dbi
    let chunks: MDB_dbi
}

/// Keys of run headers and chunks.
enum RunKeys {
    static let runTag: UInt8 = 0x52  // R: run header

    /// Headers of `owner`'s runs (a topic id for dedup; 0 for the key index, which spans
    /// topics).
    static func runPrefix(_ owner: UInt32) -> [UInt8] { Keys.topicPrefix(owner) + [runTag] }

    static func run(_ owner: UInt32, _ runID: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 13)
        writer.writeInteger(owner)
        writer.writeInteger(runTag)
        writer.writeInteger(runID)
        return writer.bytes
    }

    static func chunkPrefix(_ runID: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 8)
        writer.writeInteger(runID)
        return writer.bytes
    }

    /// The chunk key without allocating: run id then chunk number, big-endian.
    @inline(__always)
    static func withChunk<T>(_ runID: UInt64, _ chunk: UInt32, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try withUnsafeTemporaryAllocation(byteCount: 12, alignment: 8) { key in
            key.storeBytes(of: runID.bigEndian, toByteOffset: 0, as: UInt64.self)
            key.storeBytes(of: chunk.bigEndian, toByteOffset: 8, as: UInt32.self)
            return try body(UnsafeRawBufferPointer(key))
        }
    }
}

/// A run as its owner remembers it between transactions (not its entries).
struct RunMeta: Equatable {
    var id: UInt64
    var count: Int
    var minTime: UInt32
    var maxTime: UInt32

    /// Runs merge with others of their size class (sixteen of a class make one of the next).
    var sizeClass: Int {
        var size = max(1, count)
        var level = 0
        while size >= 16 {
            size /= 16
            level += 1
        }
        return level
    }

    /// Runs of the smallest size class whose group is full, oldest first: sixteen of them, or
    /// as many as one merge may take (`keysMax`: a merge runs inside a write transaction, so
    /// this bounds the writer's pause) once they reach three quarters of that. So large runs
    /// merge in threes or fours as they come rather than piling up sixteen deep (each is one
    /// more filter for a look-up to ask), at no extra rewriting: an entry is still rewritten
    /// once per class. Runs too large to merge stay until their entries go.
    static func mergeCandidates(_ runs: [RunMeta], keysMax: Int = 2 << 20) -> [RunMeta]? {
        let byClass = Dictionary(grouping: runs.sorted { $0.id < $1.id }, by: \.sizeClass)
        for sizeClass in byClass.keys.sorted() {
            guard let group = byClass[sizeClass], group.count >= 2 else { continue }
            var chosen: [RunMeta] = []
            var keys = 0
            for run in group.prefix(16) {
                guard keys + run.count <= keysMax else { break }
                chosen.append(run)
                keys += run.count
            }
            if chosen.count >= 2, chosen.count == 16 || keys >= keysMax / 4 * 3 { return chosen }
        }
        return nil
    }
}

/// A run header as stored: counts, times, a fence (the leading bytes of the first entry) per
/// chunk, and the run's filter.
struct RunHeader {
    static let fixedBytes = 1 + 4 + 4 + 4 + 4 + 4

    let fenceBytes: Int
    /// Whether the run's filter is ordered (see `BlockedBloom`).
    let orderedFilter: Bool
    var count: Int
    var minTime: UInt32
    var maxTime: UInt32
    var chunkCount: Int
    var fences: UnsafeRawBufferPointer
    var filter: UnsafeRawBufferPointer

    init<Layout: RunLayout>(parsing bytes: UnsafeRawBufferPointer, as layout: Layout.Type) throws {
        fenceBytes = Layout.fenceBytes
        var reader = ByteReader(bytes)
        let version: UInt8 = try reader.readInteger("run version")
        guard version >= Layout.oldestHeaderVersion, version <= Layout.headerVersion else {
            throw MillraceError(.storageError, "run header version \(version) is unknown to this build")
        }
        orderedFilter = version >= Layout.orderedFilterSince
        count = Int(try reader.readInteger("run count") as UInt32)
        minTime = try reader.readInteger("run first time")
        maxTime = try reader.readInteger("run last time")
        chunkCount = Int(try reader.readInteger("run chunks") as UInt32)
        let filterBytes = Int(try reader.readInteger("run filter bytes") as UInt32)
        let fencesEnd = Self.fixedBytes + chunkCount * fenceBytes
        guard bytes.count == fencesEnd + filterBytes else {
            throw MillraceError(.storageError, "run header is \(bytes.count) bytes; its fields say \(fencesEnd + filterBytes)")
        }
        fences = UnsafeRawBufferPointer(rebasing: bytes[Self.fixedBytes..<fencesEnd])
        filter = UnsafeRawBufferPointer(rebasing: bytes[fencesEnd...])
    }

    @inline(__always) func fence(_ chunk: Int) -> UnsafeRawPointer {
        fences.baseAddress.unsafelyUnwrapped + chunk * fenceBytes
    }

    @inline(__always) func fenceHash(_ chunk: Int) -> DedupHash {
        DedupHash(
            high: UInt64(littleEndian: fence(chunk).loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            low: UInt64(littleEndian: fence(chunk).loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    /// The chunk that holds `hash` if any does: the last whose first hash is not above it.
    func chunk(for hash: DedupHash) -> Int? {
        guard chunkCount > 0, fences.baseAddress != nil else { return nil }
        let guess = HashSearch.interpolate(hash.high, from: 0, to: .max, count: chunkCount)
        let found = HashSearch.lastNotAbove(hash, count: chunkCount, guess: guess) { fenceHash($0) }
        return found < 0 ? nil : found
    }

    /// The first chunk that can hold an entry with `hash`: the last whose first hash is below
    /// it (entries with that hash may end the chunk before one that starts with it), else 0.
    func firstChunk(for hash: DedupHash) -> Int {
        guard chunkCount > 0, fences.baseAddress != nil, let below = hash.predecessor else { return 0 }
        let guess = HashSearch.interpolate(hash.high, from: 0, to: .max, count: chunkCount)
        return max(0, HashSearch.lastNotAbove(below, count: chunkCount, guess: guess) { fenceHash($0) })
    }

    /// The range of hashes chunk `chunk` covers, by its high word: from its first hash to the
    /// next chunk's.
    func span(of chunk: Int) -> (from: UInt64, to: UInt64) {
        (fenceHash(chunk).high, chunk + 1 < chunkCount ? fenceHash(chunk + 1).high : .max)
    }
}

extension DedupHash {
    /// The hash just below this one; nil for zero.
    var predecessor: DedupHash? {
        if low > 0 { return DedupHash(high: high, low: low - 1) }
        return high > 0 ? DedupHash(high: high - 1, low: .max) : nil
    }
}

/// Searching sorted 128-bit hashes. Hashes are spread evenly, so a position interpolated
/// from the high word is within a few places of the answer; a gallop from there keeps a
/// look-up logarithmic in the miss even for keys crafted to collide.
enum HashSearch {
    /// Where `value` would sit among `count` sorted values spread evenly over `from...to`.
    @inline(__always)
    static func interpolate(_ value: UInt64, from: UInt64, to: UInt64, count: Int) -> Int {
        guard count > 1, to > from, value > from else { return 0 }
        let offset = min(value, to) - from
        let (high, low) = UInt64(count).multipliedFullWidth(by: offset)
        let (quotient, _) = (to - from).dividingFullWidth((high, low))
        return min(count - 1, Int(quotient))
    }

    /// The last index in `0..<count` whose hash is not above `target`, -1 when none is:
    /// galloping out from `guess`, then halving.
    @inline(__always)
    static func lastNotAbove(_ target: DedupHash, count: Int, guess: Int, hashAt: (Int) -> DedupHash) -> Int {
        guard count > 0 else { return -1 }
        let start = min(max(guess, 0), count - 1)
        // hashAt(low) <= target (or low == -1); hashAt(high) > target (or high == count).
        var low: Int
        var high: Int
        var step = 1
        if hashAt(start) <= target {
            low = start
            high = start + 1
            while high < count, hashAt(high) <= target {
                low = high
                step *= 2
                high = low + step
            }
            high = min(high, count)
        } else {
            high = start
            low = start - 1
            while low >= 0, hashAt(low) > target {
                high = low
                step *= 2
                low = high - step
            }
            low = max(low, -1)
        }
        while high - low > 1 {
            let middle = (low + high) / 2
            if hashAt(middle) <= target { low = middle } else { high = middle }
        }
        return low
    }
}

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
