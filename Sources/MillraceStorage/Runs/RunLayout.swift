import CLMDB
import MillraceFormat

// Immutable sorted runs inside LMDB: an LSM of fixed-size entries, each led by a 128-bit key
// hash, that business-key dedup and the key index share (see docs/DECISIONS.md, "Dedup keys
// in sorted runs"). A write transaction writes its new entries as one run, its chunks
// appended at the end of a chunk database; runs of similar size are merged as they pile up
// (RunSet.swift: the one place runs are written, merged and deleted, for both layouts).
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
    static func hash(at entry: UnsafeRawPointer) -> DedupHash { DedupHash(runEntry: entry) }
}

extension DedupHash {
    /// The hash that leads a run entry (and so a chunk's fence): little-endian high word, then
    /// low word. Every layout's entries start this way, so they sort and are found alike.
    @inline(__always)
    init(runEntry memory: UnsafeRawPointer) {
        self.init(
            high: UInt64(littleEndian: memory.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            low: UInt64(littleEndian: memory.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    /// Writes the hash where a run entry starts (`init(runEntry:)` reads it back).
    @inline(__always)
    func write(toRunEntry memory: UnsafeMutableRawPointer) {
        memory.storeBytes(of: high.littleEndian, toByteOffset: 0, as: UInt64.self)
        memory.storeBytes(of: low.littleEndian, toByteOffset: 8, as: UInt64.self)
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
    static let nextRunTag: UInt8 = 0x4E  // N (owner 0): the next run id
    /// The next run id, under owner 0 (no topic has it).
    static let nextRun: [UInt8] = [0, 0, 0, 0, nextRunTag]

    /// Headers of `owner`'s runs (a topic id for dedup; 0 for the key index, which spans
    /// topics).
    static func runPrefix(_ owner: UInt32) -> [UInt8] { Keys.topicPrefix(owner) + [runTag] }

    static func run(_ owner: UInt32, _ runID: UInt64) -> [UInt8] { Keys.tagged(owner, runTag, runID) }

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

    init(id: UInt64, count: Int, minTime: UInt32, maxTime: UInt32) {
        self.id = id
        self.count = count
        self.minTime = minTime
        self.maxTime = maxTime
    }

    init(id: UInt64, header: RunHeader) {
        self.init(id: id, count: header.count, minTime: header.minTime, maxTime: header.maxTime)
    }

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

    @inline(__always) func fenceHash(_ chunk: Int) -> DedupHash { DedupHash(runEntry: fence(chunk)) }

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
