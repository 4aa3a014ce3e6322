import CLMDB
import MillraceFormat

/// How long the writer keeps producer ids, and how many unused ones (from `Storage.Options`).
struct ProducerPolicy: Sendable {
    /// An id that wrote is forgotten after this long without writing.
    var idleMs: Int64
    /// An id never used for a batch is forgotten after this long.
    var unusedIdleMs: Int64 = Limits.producerUnusedIdleMs
    /// At most this many unused ids are held; a new one pushes out the oldest.
    var unusedMax: Int = Limits.producerIdsUnusedMax

    /// A producer's last-write time is stored again only once it has moved by this much.
    var activityStepMs: Int64 { max(1, min(Limits.producerActivityStepMs, idleMs / 16)) }
}

/// Producer ids in the order they fall due, so a pass that forgets idle ones reads only
/// those: a pass that walked every id stalled the writer 0.3 s per minute with a million ids
/// held (issue 22). Two databases, keys (time, id) as big-endian integers, empty values:
/// `unused` holds ids given out and never used for a batch, by when they were given out
/// (its entry count is the number `producerIdsUnusedMax` bounds); `active` holds the others,
/// by their last write as stored in their `ProducerRecord`.
enum ProducerExpiry {
    struct Databases {
        var unused: MDB_dbi
        var active: MDB_dbi
        /// Made by this open: producers stored before them (if any) are not in them yet.
        var created: Bool

        static func open(_ txn: LMDBTransaction, create: Bool) throws -> Databases? {
            if let unused = try txn.openDatabase("producerunused", create: false), let active = try txn.openDatabase("produceractive", create: false) {
                return Databases(unused: unused, active: active, created: false)
            }
            guard create, let unused = try txn.openDatabase("producerunused", create: true),
                let active = try txn.openDatabase("produceractive", create: true)
            else { return nil }
            return Databases(unused: unused, active: active, created: true)
        }

        func database(for record: ProducerRecord) -> MDB_dbi { record.wrote ? active : unused }
    }

    static func key(_ timeMs: Int64, _ producerId: Int64) -> [UInt8] {
        var writer = ByteWriter(capacity: 16)
        // Times before 1970 (a test clock) sort first rather than last.
        writer.writeInteger(max(0, timeMs))
        writer.writeInteger(producerId)
        return writer.bytes
    }

    static func parse(_ key: UnsafeRawBufferPointer) throws -> (timeMs: Int64, producerId: Int64) {
        var reader = ByteReader(key)
        return (try reader.readInteger("producer expiry time"), try reader.readInteger("producer id"))
    }

    static func key(_ producerId: Int64, _ record: ProducerRecord) -> [UInt8] { key(record.lastActiveMs, producerId) }

    /// Moves a producer's entry from where `old` put it (nil: a new id) to where `new` goes.
    static func move(_ txn: LMDBTransaction, _ databases: Databases, producerId: Int64, from old: ProducerRecord?, to new: ProducerRecord) throws {
        if let old {
            guard old.wrote != new.wrote || old.lastActiveMs != new.lastActiveMs else { return }
            try txn.delete(databases.database(for: old), key(producerId, old))
        }
        try txn.put(databases.database(for: new), key(producerId, new), [])
    }

    /// Fills the databases from the producer records of a directory written before them
    /// (once, in the transaction that made them). Such a record has no "wrote" flag, and
    /// reads as having written. One with sequence states (its partitions' keys follow its
    /// own) did, and is listed as active; one without never wrote and is forgotten here, as
    /// it would be 10 minutes after being given out (its producer, if any, asks again), so an
    /// InitProducer flood's ids do not stay for days. Rewriting them instead grew a million-id
    /// data file from 28.6 to 113 MB.
    static func indexExisting(_ txn: LMDBTransaction, producers: MDB_dbi, _ databases: Databases) throws -> (indexed: Int, forgotten: Int) {
        var indexed = 0
        var forgotten = 0
        let cursor = try LMDBCursor(txn, producers)
        defer { cursor.close() }
        var entry = try cursor.get(MDB_FIRST)
        while let current = entry {
            // Producer records have 8-byte keys; their partitions' 16-byte keys follow them.
            guard current.key.count == 8 else {
                entry = try cursor.get(MDB_NEXT)
                continue
            }
            let prefix = Array(current.key)
            var reader = ByteReader(current.key)
            let id: Int64 = try reader.readInteger("producer id")
            let record = try ProducerRecord(decoding: current.value)
            let flagged = current.value.count > 10
            entry = try cursor.get(MDB_NEXT)
            if !flagged, !(entry.map { $0.key.count == 16 && Keys.hasPrefix($0.key, prefix) } ?? false) {
                try txn.delete(producers, prefix)
                // The cursor stood on the next entry, which the delete does not move.
                entry = try cursor.get(MDB_SET_RANGE, key: prefix)
                forgotten += 1
                continue
            }
            try txn.put(databases.database(for: record), key(id, record), [])
            indexed += 1
        }
        return (indexed, forgotten)
    }

    /// Forgets the producers of `database` whose time is at or before `cutoffMs`, oldest
    /// first, at most `limit`: each with its partitions' sequence states and its entry. Reads
    /// one entry past the last it forgets. `keep` is an id not to forget (one just given out).
    static func forget(
        _ txn: LMDBTransaction, producers: MDB_dbi, _ database: MDB_dbi, through cutoffMs: Int64, limit: Int, keep: Int64? = nil
    ) throws -> (forgotten: Int, read: Int) {
        let cursor = try LMDBCursor(txn, database)
        defer { cursor.close() }
        var forgotten = 0
        var read = 0
        while forgotten < limit, let entry = try cursor.get(MDB_FIRST) {
            read += 1
            let (timeMs, producerId) = try parse(entry.key)
            guard timeMs <= max(0, cutoffMs), producerId != keep else { break }
            try cursor.delete()
            try txn.deleteAll(producers, prefix: Keys.producer(producerId))
            forgotten += 1
        }
        return (forgotten, read)
    }
}
