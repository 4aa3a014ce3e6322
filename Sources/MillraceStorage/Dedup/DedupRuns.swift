import CLMDB
import MillraceFormat

// Business-key duplicate detection, stored as sorted runs (Runs/, a RunSet) per topic. A
// look-up asks a fixed-size filter in memory, then each run's own filter, then the one
// chunk that can hold the key.

/// A remembered key: where the first record with it went, and when (seconds, broker clock).
struct DedupEntry: Equatable {
    var hash: DedupHash
    var partition: Int32
    var timeSeconds: UInt32
    var offset: Int64

    static let size = 32

    @inline(__always)
    static func time(at memory: UnsafeRawPointer) -> UInt32 {
        UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
    }
}

/// The stored entry, little-endian: hash (0), partition (16), time (20), offset (24). Kept
/// out of the struct's body so that it keeps its memberwise initializer.
extension DedupEntry {
    init(reading memory: UnsafeRawPointer) {
        hash = DedupLayout.hash(at: memory)
        partition = Int32(littleEndian: memory.loadUnaligned(fromByteOffset: 16, as: Int32.self))
        timeSeconds = UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
        offset = Int64(littleEndian: memory.loadUnaligned(fromByteOffset: 24, as: Int64.self))
    }

    func write(to memory: UnsafeMutableRawPointer) {
        hash.write(toRunEntry: memory)
        memory.storeBytes(of: partition.littleEndian, toByteOffset: 16, as: Int32.self)
        memory.storeBytes(of: timeSeconds.littleEndian, toByteOffset: 20, as: UInt32.self)
        memory.storeBytes(of: offset.littleEndian, toByteOffset: 24, as: Int64.self)
    }
}

/// Dedup runs: 32-byte entries, fenced by their hash alone. Header version 2 has an ordered
/// filter; runs written with version 1 (a remainder filter) are still read.
enum DedupLayout: RunLayout {
    static var entrySize: Int { DedupEntry.size }
    static var fenceBytes: Int { 16 }
    static var headerVersion: UInt8 { 2 }
    static var oldestHeaderVersion: UInt8 { 1 }
    static var orderedFilterSince: UInt8 { 2 }

    @inline(__always) static func seconds(at entry: UnsafeRawPointer) -> UInt32 { DedupEntry.time(at: entry) }

    /// Hashes are unique within a dedup run.
    @inline(__always) static func precedes(_ left: UnsafeRawPointer, _ right: UnsafeRawPointer) -> Bool {
        DedupLayout.hash(at: left) < DedupLayout.hash(at: right)
    }
}

/// Keys of the `dedup` database beyond run headers (`RunKeys.run(topic, run)`) and the next
/// run id (`RunKeys.nextRun`).
enum DedupKeys {
    static let statsTag: UInt8 = 0x53  // S: counters

    static func stats(_ topicID: UInt32) -> [UInt8] { Keys.topicPrefix(topicID) + [statsTag] }
}

enum DedupRuns {
    static func header(_ bytes: UnsafeRawBufferPointer) throws -> RunHeader { try RunHeader(parsing: bytes, as: DedupLayout.self) }

    /// The entry for `hash` in a run, if the run holds it.
    static func find(_ hash: DedupHash, header: RunHeader, runID: UInt64, txn: LMDBTransaction, dbi: RunDatabases) throws -> DedupEntry? {
        guard BlockedBloom.mayContain(hash, in: header.filter, ordered: header.orderedFilter), let chunk = header.chunk(for: hash) else { return nil }
        guard let value = try RunKeys.withChunk(runID, UInt32(chunk), { try txn.get(dbi.chunks, $0) }), let base = value.baseAddress else { return nil }
        let count = value.count / DedupEntry.size
        let span = header.span(of: chunk)
        let guess = HashSearch.interpolate(hash.high, from: span.from, to: span.to, count: count)
        let index = HashSearch.lastNotAbove(hash, count: count, guess: guess) { DedupLayout.hash(at: base + $0 * DedupEntry.size) }
        guard index >= 0, DedupLayout.hash(at: base + index * DedupEntry.size) == hash else { return nil }
        return DedupEntry(reading: base + index * DedupEntry.size)
    }
}

extension RunSet where Layout == DedupLayout {
    /// Writes `entries` (sorted by hash, no repeats) as one run of the topic.
    mutating func write(_ entries: [DedupEntry]) throws {
        try write(keysAtMost: entries.count) { writer in
            try withUnsafeTemporaryAllocation(byteCount: DedupEntry.size, alignment: 8) { raw in
                let base = raw.baseAddress.unsafelyUnwrapped
                for entry in entries {
                    entry.write(to: base)
                    try writer.append(raw: UnsafeRawPointer(base))
                }
            }
        }
    }

    /// Merges runs that piled up, dropping keys older than `notBefore`; of a key in several
    /// runs (it expired and came back) the newest entry stays.
    mutating func mergeDue(notBefore: UInt32) throws {
        try mergeDue(
            keep: { DedupEntry.time(at: $0) >= notBefore },
            replaces: { later, waiting in DedupEntry.time(at: later) > DedupEntry.time(at: waiting) })
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
