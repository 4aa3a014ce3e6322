import CLMDB
import MillraceFormat

// Business-key duplicate detection, stored as immutable sorted runs (see docs/DECISIONS.md,
// "Dedup keys in sorted runs"). Every write transaction that remembers new keys writes them
// as one new run, appended at the end of the topic's key range; runs of similar size are
// merged as they pile up. A look-up asks a fixed-size filter in memory, then each run's own
// filter (stored with the run), then binary-searches the one chunk that can hold the key.

/// A remembered key: where the first record with it went, and when (seconds, broker clock).
struct DedupEntry: Equatable {
    var hash: DedupHash
    var partition: Int32
    var timeSeconds: UInt32
    var offset: Int64

    static let size = 32

    func write(to memory: UnsafeMutableRawPointer) {
        memory.storeBytes(of: hash.high.littleEndian, toByteOffset: 0, as: UInt64.self)
        memory.storeBytes(of: hash.low.littleEndian, toByteOffset: 8, as: UInt64.self)
        memory.storeBytes(of: partition.littleEndian, toByteOffset: 16, as: Int32.self)
        memory.storeBytes(of: timeSeconds.littleEndian, toByteOffset: 20, as: UInt32.self)
        memory.storeBytes(of: offset.littleEndian, toByteOffset: 24, as: Int64.self)
    }

    init(hash: DedupHash, partition: Int32, timeSeconds: UInt32, offset: Int64) {
        self.hash = hash
        self.partition = partition
        self.timeSeconds = timeSeconds
        self.offset = offset
    }

    init(reading memory: UnsafeRawPointer) {
        hash = DedupHash(
            high: UInt64(littleEndian: memory.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            low: UInt64(littleEndian: memory.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        partition = Int32(littleEndian: memory.loadUnaligned(fromByteOffset: 16, as: Int32.self))
        timeSeconds = UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
        offset = Int64(littleEndian: memory.loadUnaligned(fromByteOffset: 24, as: Int64.self))
    }

    @inline(__always)
    static func time(at memory: UnsafeRawPointer) -> UInt32 {
        UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
    }

    @inline(__always)
    static func hash(at memory: UnsafeRawPointer) -> DedupHash {
        DedupHash(
            high: UInt64(littleEndian: memory.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            low: UInt64(littleEndian: memory.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }
}

/// A Bloom filter whose probes for one key all fall in one 64-byte block (one cache line):
/// seven bits, at about 10 bits per key ≈ 1% false positives.
enum BlockedBloom {
    static let blockBytes = 64

    static func bytes(forKeys count: Int, bitsPerKey: Int = 10) -> Int {
        max(1, (count * bitsPerKey + 511) / 512) * blockBytes
    }

    @inline(__always) private static func block(_ hash: DedupHash, _ bytes: Int) -> Int {
        Int(hash.high % UInt64(bytes / blockBytes)) * blockBytes
    }

    static func insert(_ hash: DedupHash, into filter: UnsafeMutableRawBufferPointer) {
        guard filter.count >= blockBytes, let base = filter.baseAddress else { return }
        let start = block(hash, filter.count)
        var bits = hash.low
        for _ in 0..<7 {
            let bit = Int(bits & 511)
            bits >>= 9
            let byte = base + start + bit >> 3
            byte.storeBytes(of: byte.load(as: UInt8.self) | UInt8(1 << (bit & 7)), as: UInt8.self)
        }
    }

    static func mayContain(_ hash: DedupHash, in filter: UnsafeRawBufferPointer) -> Bool {
        guard filter.count >= blockBytes, let base = filter.baseAddress else { return true }
        let start = block(hash, filter.count)
        var bits = hash.low
        for _ in 0..<7 {
            let bit = Int(bits & 511)
            bits >>= 9
            guard base.load(fromByteOffset: start + bit >> 3, as: UInt8.self) & UInt8(1 << (bit & 7)) != 0 else { return false }
        }
        return true
    }
}

/// The two databases of duplicate detection: run headers and counters (`dedup`, keys
/// prefixed by topic id), and run chunks (`dedupchunks`, keyed by run id then chunk: run ids
/// are unique across topics and only grow, so every chunk is appended at the end).
struct DedupDatabases {
    let runs: MDB_dbi
    let chunks: MDB_dbi
}

/// Keys of the dedup databases.
enum DedupKeys {
    static let runTag: UInt8 = 0x52  // R: run header
    static let statsTag: UInt8 = 0x53  // S: counters
    /// The next run id, under topic id 0 (no topic has it).
    static let nextRun: [UInt8] = [0, 0, 0, 0, 0x4E]

    static func topic(_ topicID: UInt32) -> [UInt8] { Keys.topicPrefix(topicID) }

    static func runPrefix(_ topicID: UInt32) -> [UInt8] { topic(topicID) + [runTag] }

    static func run(_ topicID: UInt32, _ runID: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 13)
        writer.writeInteger(topicID)
        writer.writeInteger(runTag)
        writer.writeInteger(runID)
        return writer.bytes
    }

    static func chunkPrefix(_ runID: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 8)
        writer.writeInteger(runID)
        return writer.bytes
    }

    static func chunk(_ runID: UInt64, _ chunk: UInt32) -> [UInt8] {
        withChunk(runID, chunk) { Array($0) }
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

    static func stats(_ topicID: UInt32) -> [UInt8] { topic(topicID) + [statsTag] }
}

/// A run as the writer remembers it between transactions (not its keys).
struct DedupRunMeta: Equatable {
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
}

/// A run header as stored: counts, times, the first hash of each chunk, and the run's filter.
struct DedupRunHeader {
    static let version: UInt8 = 1
    static let fixedBytes = 1 + 4 + 4 + 4 + 4 + 4
    /// Entries per chunk: a full chunk is one LMDB value on exactly sixteen 4 KiB overflow
    /// pages (2,047 × 32 = 65,504 bytes + the 16-byte page header = 65,520 ≤ 65,536), so
    /// deleting a run frees its pages without copying them, and a merge reads them in order.
    /// Runs written before this size have chunks of 60; nothing depends on the size.
    static let chunkEntries = 2_047

    var count: Int
    var minTime: UInt32
    var maxTime: UInt32
    var chunkCount: Int
    var fences: UnsafeRawBufferPointer
    var filter: UnsafeRawBufferPointer

    init(parsing bytes: UnsafeRawBufferPointer) throws {
        var reader = ByteReader(bytes)
        let version: UInt8 = try reader.readInteger("dedup run version")
        guard version == Self.version else { throw MillraceError(.storageError, "dedup run header version \(version) is unknown") }
        count = Int(try reader.readInteger("dedup run count") as UInt32)
        minTime = try reader.readInteger("dedup run first time")
        maxTime = try reader.readInteger("dedup run last time")
        chunkCount = Int(try reader.readInteger("dedup run chunks") as UInt32)
        let filterBytes = Int(try reader.readInteger("dedup run filter bytes") as UInt32)
        guard bytes.count == Self.fixedBytes + chunkCount * 16 + filterBytes else {
            throw MillraceError(.storageError, "dedup run header is \(bytes.count) bytes; its fields say \(Self.fixedBytes + chunkCount * 16 + filterBytes)")
        }
        fences = UnsafeRawBufferPointer(rebasing: bytes[Self.fixedBytes..<(Self.fixedBytes + chunkCount * 16)])
        filter = UnsafeRawBufferPointer(rebasing: bytes[(Self.fixedBytes + chunkCount * 16)...])
    }

    var meta: (count: Int, minTime: UInt32, maxTime: UInt32) { (count, minTime, maxTime) }

    @inline(__always) func fence(_ chunk: Int) -> DedupHash {
        DedupEntry.hash(at: fences.baseAddress.unsafelyUnwrapped + chunk * 16)
    }

    /// The chunk that holds `hash` if any does: the last whose first hash is not above it.
    func chunk(for hash: DedupHash) -> Int? {
        guard chunkCount > 0, fences.baseAddress != nil else { return nil }
        let guess = DedupSearch.interpolate(hash.high, from: 0, to: .max, count: chunkCount)
        let found = DedupSearch.lastNotAbove(hash, count: chunkCount, guess: guess) { fence($0) }
        return found < 0 ? nil : found
    }

    /// The range of hashes chunk `chunk` covers, by its high word: from its first hash to the
    /// next chunk's.
    func span(of chunk: Int) -> (from: UInt64, to: UInt64) {
        (fence(chunk).high, chunk + 1 < chunkCount ? fence(chunk + 1).high : .max)
    }
}

/// Searching sorted 128-bit hashes. Hashes are spread evenly, so a position interpolated
/// from the high word is within a few places of the answer; a gallop from there keeps a
/// look-up logarithmic in the miss even for keys crafted to collide.
enum DedupSearch {
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

enum DedupRuns {
    /// Writes `entries` (sorted by hash, no repeats) as run `runID` of the topic.
    static func write(_ entries: [DedupEntry], runID: UInt64, topicID: UInt32, txn: LMDBTransaction, dbi: DedupDatabases) throws -> DedupRunMeta {
        let writer = DedupRunWriter(runID: runID, topicID: topicID, keysAtMost: entries.count, txn: txn, dbi: dbi)
        for entry in entries { try writer.append(entry) }
        return try writer.finish()
    }

    /// The entry for `hash` in a run, if the run holds it.
    static func find(_ hash: DedupHash, header: DedupRunHeader, runID: UInt64, topicID: UInt32, txn: LMDBTransaction, dbi: DedupDatabases) throws -> DedupEntry? {
        guard BlockedBloom.mayContain(hash, in: header.filter), let chunk = header.chunk(for: hash) else { return nil }
        guard let value = try DedupKeys.withChunk(runID, UInt32(chunk), { try txn.get(dbi.chunks, $0) }), let base = value.baseAddress else { return nil }
        let count = value.count / DedupEntry.size
        let span = header.span(of: chunk)
        let guess = DedupSearch.interpolate(hash.high, from: span.from, to: span.to, count: count)
        let index = DedupSearch.lastNotAbove(hash, count: count, guess: guess) { DedupEntry.hash(at: base + $0 * DedupEntry.size) }
        guard index >= 0, DedupEntry.hash(at: base + index * DedupEntry.size) == hash else { return nil }
        return DedupEntry(reading: base + index * DedupEntry.size)
    }

    /// Every entry of a run, in hash order.
    static func entries(runID: UInt64, topicID: UInt32, txn: LMDBTransaction, dbi: DedupDatabases) throws -> [DedupEntry] {
        var entries: [DedupEntry] = []
        let reader = try DedupRunReader(runID: runID, txn: txn, dbi: dbi, copying: false)
        while let current = reader.current {
            entries.append(DedupEntry(reading: current))
            try reader.advance()
        }
        return entries
    }

    /// Deletes a run's header and chunks. Chunks on overflow pages are freed without being
    /// read or copied.
    static func delete(runID: UInt64, topicID: UInt32, txn: LMDBTransaction, dbi: DedupDatabases) throws {
        try txn.delete(dbi.runs, DedupKeys.run(topicID, runID))
        let prefix = DedupKeys.chunkPrefix(runID)
        let cursor = try LMDBCursor(txn, dbi.chunks)
        defer { cursor.close() }
        while let entry = try cursor.get(MDB_SET_RANGE, key: prefix), Keys.hasPrefix(entry.key, prefix) { try cursor.delete() }
    }

    /// Merges sorted runs into `writer`: entries older than `notBefore` are dropped, and of a
    /// hash in several runs (a key that expired and came back) the newest entry is kept.
    /// Entries are copied as they are (32 bytes each), smallest hash first, through a binary
    /// heap of the sources' current entries.
    static func merge(_ sources: [DedupRunReader], into writer: DedupRunWriter, notBefore: UInt32) throws {
        // The heap holds each source's current hash and the source's index (plain values:
        // comparing them touches no reference counts).
        struct Head {
            var hash: DedupHash
            var source: Int
        }
        var heap: [Head] = sources.indices.compactMap { index in sources[index].current.map { Head(hash: DedupEntry.hash(at: $0), source: index) } }
        func siftDown(_ start: Int) {
            var parent = start
            while true {
                let left = 2 * parent + 1
                guard left < heap.count else { return }
                var child = left
                if left + 1 < heap.count, heap[left + 1].hash < heap[left].hash { child = left + 1 }
                guard heap[child].hash < heap[parent].hash else { return }
                heap.swapAt(child, parent)
                parent = child
            }
        }
        for index in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(index) }
        // The entry waiting to be written (copied: its reader may move on), since a later one
        // with the same hash may replace it.
        let waiting = UnsafeMutableRawPointer.allocate(byteCount: DedupEntry.size, alignment: 8)
        defer { waiting.deallocate() }
        var isWaiting = false
        while let top = heap.first {
            let reader = sources[top.source]
            guard let entry = reader.current else { break }
            if DedupEntry.time(at: entry) >= notBefore {
                if isWaiting, DedupEntry.hash(at: waiting) == top.hash {
                    if DedupEntry.time(at: entry) > DedupEntry.time(at: waiting) { waiting.copyMemory(from: entry, byteCount: DedupEntry.size) }
                } else {
                    if isWaiting { try writer.append(raw: waiting) }
                    waiting.copyMemory(from: entry, byteCount: DedupEntry.size)
                    isWaiting = true
                }
            }
            try reader.advance()
            if let next = reader.current {
                heap[0].hash = DedupEntry.hash(at: next)
            } else {
                heap.swapAt(0, heap.count - 1)
                heap.removeLast()
            }
            siftDown(0)
        }
        if isWaiting { try writer.append(raw: waiting) }
    }
}

/// Writes a run chunk by chunk as its entries come (in hash order): each full chunk is
/// appended at the end of `dedupchunks`; the header (fences and the run's filter, sized for
/// `keysAtMost`) is written by `finish`.
final class DedupRunWriter {
    let runID: UInt64
    let topicID: UInt32
    private let txn: LMDBTransaction
    private let dbi: DedupDatabases
    private let buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    private var chunks: UInt32 = 0
    private var fences: [DedupHash] = []
    private let filter: UnsafeMutableRawBufferPointer
    private(set) var count = 0
    private var minTime = UInt32.max
    private var maxTime: UInt32 = 0

    init(runID: UInt64, topicID: UInt32, keysAtMost: Int, txn: LMDBTransaction, dbi: DedupDatabases) {
        self.runID = runID
        self.topicID = topicID
        self.txn = txn
        self.dbi = dbi
        buffer = .allocate(byteCount: DedupRunHeader.chunkEntries * DedupEntry.size, alignment: 16)
        filter = .allocate(byteCount: BlockedBloom.bytes(forKeys: keysAtMost), alignment: 64)
        filter.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit {
        buffer.deallocate()
        filter.deallocate()
    }

    func append(_ entry: DedupEntry) throws {
        try withUnsafeTemporaryAllocation(byteCount: DedupEntry.size, alignment: 8) { raw in
            entry.write(to: raw.baseAddress.unsafelyUnwrapped)
            try append(raw: UnsafeRawPointer(raw.baseAddress.unsafelyUnwrapped))
        }
    }

    /// Appends a stored entry's 32 bytes; hashes must come in increasing order.
    func append(raw entry: UnsafeRawPointer) throws {
        let hash = DedupEntry.hash(at: entry)
        let time = DedupEntry.time(at: entry)
        if buffered == 0 { fences.append(hash) }
        (buffer.baseAddress.unsafelyUnwrapped + buffered * DedupEntry.size).copyMemory(from: entry, byteCount: DedupEntry.size)
        buffered += 1
        count += 1
        minTime = min(minTime, time)
        maxTime = max(maxTime, time)
        BlockedBloom.insert(hash, into: filter)
        if buffered == DedupRunHeader.chunkEntries { try flushChunk() }
    }

    private func flushChunk() throws {
        guard buffered > 0 else { return }
        let bytes = buffered * DedupEntry.size
        let value = try DedupKeys.withChunk(runID, chunks) { try txn.reserve(dbi.chunks, $0, count: bytes, flags: MDB_APPEND) }
        value.baseAddress?.copyMemory(from: buffer.baseAddress.unsafelyUnwrapped, byteCount: bytes)
        chunks += 1
        buffered = 0
    }

    /// Writes the last chunk and the header.
    func finish() throws -> DedupRunMeta {
        try flushChunk()
        let headerBytes = DedupRunHeader.fixedBytes + fences.count * 16 + filter.count
        let header = try DedupKeys.run(topicID, runID).withUnsafeBytes { try txn.reserve(dbi.runs, $0, count: headerBytes) }
        guard let base = header.baseAddress else { throw MillraceError(.storageError, "LMDB reserved no room for a dedup run header") }
        var writer = ByteWriter(capacity: DedupRunHeader.fixedBytes)
        writer.writeInteger(DedupRunHeader.version)
        writer.writeInteger(UInt32(count))
        writer.writeInteger(count == 0 ? 0 : minTime)
        writer.writeInteger(maxTime)
        writer.writeInteger(UInt32(fences.count))
        writer.writeInteger(UInt32(filter.count))
        writer.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(start: base, count: $0.count).copyMemory(from: $0) }
        for (chunk, first) in fences.enumerated() {
            (base + DedupRunHeader.fixedBytes + chunk * 16).storeBytes(of: first.high.littleEndian, as: UInt64.self)
            (base + DedupRunHeader.fixedBytes + chunk * 16 + 8).storeBytes(of: first.low.littleEndian, as: UInt64.self)
        }
        (base + DedupRunHeader.fixedBytes + fences.count * 16).copyMemory(from: filter.baseAddress.unsafelyUnwrapped, byteCount: filter.count)
        return DedupRunMeta(id: runID, count: count, minTime: count == 0 ? 0 : minTime, maxTime: maxTime)
    }
}

/// Reads a run's entries in hash order, a chunk at a time. A chunk on overflow pages stored
/// before this transaction is read in place from LMDB's map (those pages stay put until the
/// transaction ends, even once deleted in it); a chunk small enough to sit inside a leaf page
/// is copied (the writer may change that page), and a run written in this transaction is
/// copied out first (its dirty pages could be spilled, and freed, by a large transaction).
final class DedupRunReader {
    let runID: UInt64
    private let txn: LMDBTransaction
    private let dbi: DedupDatabases
    private var held: UnsafeMutableRawBufferPointer?
    private var scratch: UnsafeMutableRawBufferPointer?
    private var chunk: UInt32 = 0
    private var base: UnsafeRawPointer?
    private var count = 0
    private var position = 0

    init(runID: UInt64, txn: LMDBTransaction, dbi: DedupDatabases, copying: Bool) throws {
        self.runID = runID
        self.txn = txn
        self.dbi = dbi
        if copying {
            var bytes: [UInt8] = []
            var next: UInt32 = 0
            while let value = try DedupKeys.withChunk(runID, next, { try txn.get(dbi.chunks, $0) }) {
                bytes.append(contentsOf: value)
                next += 1
            }
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, bytes.count), alignment: 16)
            bytes.withUnsafeBytes { copy.copyMemory(from: $0) }
            held = copy
            base = UnsafeRawPointer(copy.baseAddress)
            count = bytes.count / DedupEntry.size
        } else {
            try load()
        }
    }

    deinit {
        held?.deallocate()
        scratch?.deallocate()
    }

    /// Values up to this size may sit inside a leaf page (LMDB moves larger ones to overflow
    /// pages at about half a page).
    private static let inlineBytesMax = 4_096

    /// The current entry's 32 bytes; nil past the last.
    var current: UnsafeRawPointer? { position < count ? base.map { $0 + position * DedupEntry.size } : nil }

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
        guard let value = try DedupKeys.withChunk(runID, chunk, { try txn.get(dbi.chunks, $0) }), let start = value.baseAddress else { return }
        count = value.count / DedupEntry.size
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

/// This transaction's new keys of one topic, looked up by hash without hashing again (the
/// key's hash already is one): open addressing on the hash's high word.
struct DedupPendingKeys {
    private(set) var entries: [DedupEntry] = []
    private var slots: [Int32] = Array(repeating: -1, count: 1_024)

    var isEmpty: Bool { entries.isEmpty }

    func find(_ hash: DedupHash) -> DedupEntry? {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash.high) & mask
        while true {
            let index = slots[slot]
            if index < 0 { return nil }
            if entries[Int(index)].hash == hash { return entries[Int(index)] }
            slot = (slot + 1) & mask
        }
    }

    /// Adds an entry whose hash is not held yet.
    mutating func insert(_ entry: DedupEntry) {
        if (entries.count + 1) * 2 > slots.count { grow() }
        entries.append(entry)
        place(Int32(entries.count - 1))
    }

    private mutating func place(_ index: Int32) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: entries[Int(index)].hash.high) & mask
        while slots[slot] >= 0 { slot = (slot + 1) & mask }
        slots[slot] = index
    }

    private mutating func grow() {
        slots = Array(repeating: -1, count: slots.count * 2)
        for index in entries.indices { place(Int32(index)) }
    }
}
