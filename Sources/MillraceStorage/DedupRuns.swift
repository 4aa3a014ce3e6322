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
        var writer = ByteWriter(capacity: 12)
        writer.writeInteger(runID)
        writer.writeInteger(chunk)
        return writer.bytes
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
    /// Entries per chunk (a chunk is one LMDB value of up to 128 KiB).
    static let chunkEntries = 60

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

    /// The chunk that holds `hash` if any does: the last whose first hash is not above it.
    func chunk(for hash: DedupHash) -> Int? {
        guard let fences = fences.baseAddress else { return nil }
        var low = 0
        var high = chunkCount
        while low < high {
            let middle = (low + high) / 2
            if DedupEntry.hash(at: fences + middle * 16) <= hash { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? nil : low - 1
    }
}

enum DedupRuns {
    /// Writes `entries` (sorted by hash, no repeats) as run `runID` of the topic.
    static func write(_ entries: [DedupEntry], runID: UInt64, topicID: UInt32, txn: LMDBTransaction, dbi: DedupDatabases) throws -> DedupRunMeta {
        let chunkCount = (entries.count + DedupRunHeader.chunkEntries - 1) / DedupRunHeader.chunkEntries
        let filterBytes = BlockedBloom.bytes(forKeys: entries.count)
        var minTime = UInt32.max
        var maxTime: UInt32 = 0
        for entry in entries {
            minTime = min(minTime, entry.timeSeconds)
            maxTime = max(maxTime, entry.timeSeconds)
        }
        for chunk in 0..<chunkCount {
            let slice = entries[(chunk * DedupRunHeader.chunkEntries)..<min(entries.count, (chunk + 1) * DedupRunHeader.chunkEntries)]
            let key = DedupKeys.chunk(runID, UInt32(chunk))
            let value = try key.withUnsafeBytes { try txn.reserve(dbi.chunks, $0, count: slice.count * DedupEntry.size, flags: MDB_APPEND) }
            guard let base = value.baseAddress else { continue }
            for (position, entry) in slice.enumerated() { entry.write(to: base + position * DedupEntry.size) }
        }
        let headerBytes = DedupRunHeader.fixedBytes + chunkCount * 16 + filterBytes
        let header = try DedupKeys.run(topicID, runID).withUnsafeBytes { try txn.reserve(dbi.runs, $0, count: headerBytes) }
        guard let base = header.baseAddress else { throw MillraceError(.storageError, "LMDB reserved no room for a dedup run header") }
        header.initializeMemory(as: UInt8.self, repeating: 0)
        var writer = ByteWriter(capacity: DedupRunHeader.fixedBytes)
        writer.writeInteger(DedupRunHeader.version)
        writer.writeInteger(UInt32(entries.count))
        writer.writeInteger(minTime)
        writer.writeInteger(maxTime)
        writer.writeInteger(UInt32(chunkCount))
        writer.writeInteger(UInt32(filterBytes))
        writer.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(start: base, count: $0.count).copyMemory(from: $0) }
        for chunk in 0..<chunkCount {
            let first = entries[chunk * DedupRunHeader.chunkEntries].hash
            (base + DedupRunHeader.fixedBytes + chunk * 16).storeBytes(of: first.high.littleEndian, as: UInt64.self)
            (base + DedupRunHeader.fixedBytes + chunk * 16 + 8).storeBytes(of: first.low.littleEndian, as: UInt64.self)
        }
        let filter = UnsafeMutableRawBufferPointer(start: base + DedupRunHeader.fixedBytes + chunkCount * 16, count: filterBytes)
        for entry in entries { BlockedBloom.insert(entry.hash, into: filter) }
        return DedupRunMeta(id: runID, count: entries.count, minTime: entries.isEmpty ? 0 : minTime, maxTime: maxTime)
    }

    /// The entry for `hash` in a run, if the run holds it.
    static func find(_ hash: DedupHash, header: DedupRunHeader, runID: UInt64, topicID: UInt32, txn: LMDBTransaction, dbi: DedupDatabases) throws -> DedupEntry? {
        guard BlockedBloom.mayContain(hash, in: header.filter), let chunk = header.chunk(for: hash) else { return nil }
        guard let value = try txn.get(dbi.chunks, DedupKeys.chunk(runID, UInt32(chunk))), let base = value.baseAddress else { return nil }
        var low = 0
        var high = value.count / DedupEntry.size
        while low < high {
            let middle = (low + high) / 2
            let candidate = DedupEntry.hash(at: base + middle * DedupEntry.size)
            if candidate == hash { return DedupEntry(reading: base + middle * DedupEntry.size) }
            if candidate < hash { low = middle + 1 } else { high = middle }
        }
        return nil
    }

    /// Every entry of a run, in hash order.
    static func entries(runID: UInt64, topicID: UInt32, txn: LMDBTransaction, dbi: DedupDatabases) throws -> [DedupEntry] {
        let prefix = DedupKeys.chunkPrefix(runID)
        let cursor = try LMDBCursor(txn, dbi.chunks)
        defer { cursor.close() }
        var entries: [DedupEntry] = []
        var current = try cursor.get(MDB_SET_RANGE, key: prefix)
        while let entry = current, Keys.hasPrefix(entry.key, prefix), let base = entry.value.baseAddress {
            for position in 0..<(entry.value.count / DedupEntry.size) { entries.append(DedupEntry(reading: base + position * DedupEntry.size)) }
            current = try cursor.get(MDB_NEXT)
        }
        return entries
    }

    /// Deletes a run's header and chunks.
    static func delete(runID: UInt64, topicID: UInt32, txn: LMDBTransaction, dbi: DedupDatabases) throws {
        try txn.delete(dbi.runs, DedupKeys.run(topicID, runID))
        let prefix = DedupKeys.chunkPrefix(runID)
        let cursor = try LMDBCursor(txn, dbi.chunks)
        defer { cursor.close() }
        while let entry = try cursor.get(MDB_SET_RANGE, key: prefix), Keys.hasPrefix(entry.key, prefix) { try cursor.delete() }
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

extension DedupRuns {
    /// Merges runs (each sorted by hash) into one sorted list: entries older than `notBefore`
    /// are dropped, and of a hash in several runs (a key that expired and came back) the
    /// newest entry is kept.
    static func merge(_ runs: [[DedupEntry]], notBefore: UInt32) -> [DedupEntry] {
        var positions = [Int](repeating: 0, count: runs.count)
        var merged: [DedupEntry] = []
        merged.reserveCapacity(runs.reduce(0) { $0 + $1.count })
        while true {
            var smallest: Int?
            for run in runs.indices where positions[run] < runs[run].count {
                if let current = smallest, !(runs[run][positions[run]].hash < runs[current][positions[current]].hash) { continue }
                smallest = run
            }
            guard let run = smallest else { break }
            let entry = runs[run][positions[run]]
            positions[run] += 1
            guard entry.timeSeconds >= notBefore else { continue }
            if let last = merged.last, last.hash == entry.hash {
                if entry.timeSeconds > last.timeSeconds { merged[merged.count - 1] = entry }
            } else {
                merged.append(entry)
            }
        }
        return merged
    }
}
