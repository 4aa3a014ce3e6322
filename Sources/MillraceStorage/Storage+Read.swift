import CLMDB
import MillraceFormat

extension Storage {
    /// Runs `body` in a short read transaction. Never blocks the writer (LMDB's MVCC);
    /// waits only while the map is being grown or a topic dropped.
    func withReadTransaction<T>(_ body: (LMDBTransaction, CatalogSnapshot) throws -> T) throws -> T {
        do {
            return try gate.withShared {
                let snapshot = catalog.withLock { $0 }
                let txn = try readTransactions.take()
                defer { readTransactions.give(txn) }
                return try body(txn, snapshot)
            }
        } catch let error as LMDBError {
            throw error.millraceError
        }
    }

    func resolve(_ topic: String, _ partition: Int32, in snapshot: CatalogSnapshot) throws -> (TopicInfo, PartitionID, MDB_dbi) {
        guard let info = snapshot.topics[topic] else {
            throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist")
        }
        guard partition >= 0, partition < info.partitionCount else {
            throw MillraceError(.unknownPartition, "topic \"\(topic)\" has partitions 0...\(info.partitionCount - 1); \(partition) is not one")
        }
        let id = PartitionID(topicID: info.id, partition: partition)
        return (info, id, snapshot.logDatabases[id]!)
    }

    /// A topic's catalog entry, from memory (no transaction); nil when there is none.
    public func topicInfo(_ name: String) -> TopicInfo? {
        catalog.withLock { $0.topics[name] }
    }

    public func listTopics() throws -> [TopicInfo] {
        catalog.withLock { $0.topics.values.sorted { $0.name < $1.name } }
    }

    public func describeTopic(_ name: String) throws -> TopicDescription {
        try withReadTransaction { txn, snapshot in
            guard let info = snapshot.topics[name] else {
                throw MillraceError(.unknownTopic, "topic \"\(name)\" does not exist")
            }
            var partitions: [PartitionOffsets] = []
            for partition in 0..<info.partitionCount {
                let state = try databases.partitionState(txn, PartitionID(topicID: info.id, partition: partition))
                partitions.append(Self.offsets(partition, state))
            }
            return TopicDescription(info: info, partitions: partitions)
        }
    }

    public func offsets(topic: String, partition: Int32) throws -> PartitionOffsets {
        try withReadTransaction { txn, snapshot in
            let (_, id, _) = try resolve(topic, partition, in: snapshot)
            return Self.offsets(partition, try databases.partitionState(txn, id))
        }
    }

    static func offsets(_ partition: Int32, _ state: PartitionState) -> PartitionOffsets {
        PartitionOffsets(
            partition: partition, logStartOffset: state.logStartOffset, nextOffset: state.nextOffset, bytes: state.bytes,
            batchCount: state.batchCount)
    }

    /// Calls `body` with each stored batch from the one holding `offset` on, without copying,
    /// until it returns false or the log ends. Each batch's CRC is checked after reading.
    /// Throws `offsetOutOfRange` below the log start or past the log end.
    public func forEachBatch(
        topic: String, partition: Int32, from offset: Int64, wanting: (Int) -> Bool = { _ in true },
        _ body: (RecordBatchHeader, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try withReadTransaction { txn, snapshot in
            let (_, id, dbi) = try resolve(topic, partition, in: snapshot)
            let state = try databases.partitionState(txn, id)
            try Self.checkReadable(offset, in: state, topic: topic, partition: partition)
            try walkBatches(txn, dbi, from: offset, end: state.nextOffset, name: "\(topic)/\(partition)", wanting: wanting, body)
        }
    }

    /// Reading starts inside the log, or at its end.
    static func checkReadable(_ offset: Int64, in state: PartitionState, topic: String, partition: Int32) throws {
        guard offset >= state.logStartOffset, offset <= state.nextOffset else {
            throw MillraceError(
                .offsetOutOfRange,
                "offset \(offset) is outside \(topic)/\(partition)'s log [\(state.logStartOffset), \(state.nextOffset)); read from the log start or end")
        }
    }

    /// `checkCRC: false` is for look-ups that read a few fields of a batch and return no
    /// bytes: they still parse defensively, and every read that returns bytes checks the CRC.
    func walkBatches(
        _ txn: LMDBTransaction, _ dbi: MDB_dbi, from offset: Int64, end: Int64, name: String, checkCRC: Bool = true,
        wanting: (Int) -> Bool = { _ in true }, _ body: (RecordBatchHeader, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        guard offset < end else { return }
        let cursor = try LMDBCursor(txn, dbi)
        defer { cursor.close() }
        var entry = try Self.positionCursor(cursor, at: offset)
        while let current = entry {
            // A batch the caller has no room for ends the walk before its CRC is computed.
            guard wanting(current.value.count) else { return }
            let header: RecordBatchHeader
            do {
                header = checkCRC ? try RecordBatch.verify(current.value) : try RecordBatchHeader(parsing: current.value)
            } catch let error as MillraceError {
                throw MillraceError(
                    .storageError,
                    "stored batch \(name) @\(Keys.offset(from: current.key)) fails its check: \(error.message); run `millrace data verify`")
            }
            guard try body(header, current.value) else { return }
            entry = try cursor.get(MDB_NEXT)
        }
    }

    /// Places the cursor on the batch holding `offset`: the last batch whose base is at or
    /// below it.
    static func positionCursor(_ cursor: LMDBCursor, at offset: Int64) throws -> LMDBCursor.Entry? {
        let found = try Keys.withOffsetKey(offset) { try cursor.get(MDB_SET_RANGE, key: $0) }
        guard let found else { return try cursor.get(MDB_LAST) }
        if Keys.offset(from: found.key) == offset { return found }
        return try cursor.get(MDB_PREV) ?? found
    }

    /// Reads whole batches from the one holding `offset`, up to `maxBytes`. With
    /// `firstBatchMayExceed` (the default) at least one batch comes back, so a consumer makes
    /// progress even past a large batch; without it nothing over `maxBytes` does. Reading at
    /// the log end returns nothing.
    public func read(topic: String, partition: Int32, from offset: Int64, maxBytes: Int, firstBatchMayExceed: Bool = true) throws -> ReadResult {
        var bytes: [UInt8] = []
        let summary = try read(topic: topic, partition: partition, from: offset, maxBytes: maxBytes, firstBatchMayExceed: firstBatchMayExceed) {
            bytes.append(contentsOf: $0)
        }
        return ReadResult(
            bytes: bytes, batchCount: summary.batchCount, recordCount: summary.recordCount, logStartOffset: summary.logStartOffset,
            nextOffset: summary.nextOffset, nextReadOffset: summary.nextReadOffset)
    }

    /// `read`, handing each batch's stored bytes to `append` (straight from the map, in one
    /// read transaction) instead of collecting them; the answer's `bytes` is empty and
    /// `byteCount` says how many were handed over.
    public func read(
        topic: String, partition: Int32, from offset: Int64, maxBytes: Int, firstBatchMayExceed: Bool = true,
        appending append: (UnsafeRawBufferPointer) -> Void
    ) throws -> ReadSummary {
        try withReadTransaction { txn, snapshot in
            let (_, id, dbi) = try resolve(topic, partition, in: snapshot)
            let state = try databases.partitionState(txn, id)
            try Self.checkReadable(offset, in: state, topic: topic, partition: partition)
            var summary = ReadSummary(byteCount: 0, batchCount: 0, recordCount: 0, logStartOffset: state.logStartOffset, nextOffset: state.nextOffset, nextReadOffset: offset)
            let fits = { (size: Int) in (summary.batchCount == 0 && firstBatchMayExceed) || summary.byteCount + size <= maxBytes }
            try walkBatches(txn, dbi, from: offset, end: state.nextOffset, name: "\(topic)/\(partition)", wanting: fits) { header, batch in
                append(batch)
                summary.byteCount += batch.count
                summary.batchCount += 1
                summary.recordCount += Int(header.recordCount)
                summary.nextReadOffset = header.nextOffset
                return true
            }
            return summary
        }
    }

    /// The first record whose timestamp is at or after `timestamp` (the log end when none is).
    /// The time index is sparse: its last entry below `timestamp` names a batch before which
    /// every record is older; records are walked from there (from the log start when there is
    /// no such entry). One read transaction.
    public func offset(forTimestamp timestamp: Int64, topic: String, partition: Int32) throws -> TimestampLookup {
        try withReadTransaction { txn, snapshot in
            let (_, id, dbi) = try resolve(topic, partition, in: snapshot)
            let state = try databases.partitionState(txn, id)
            let notFound = TimestampLookup(offset: state.nextOffset, timestamp: nil)
            let cursor = try LMDBCursor(txn, databases.timeIndex)
            defer { cursor.close() }
            let prefix = Keys.partition(id.topicID, id.partition)
            // The entry before the first at or after `timestamp`: the batch where the
            // partition's highest timestamp rose to a value still below it.
            let atOrAfter = try cursor.get(MDB_SET_RANGE, key: Keys.timeIndex(id.topicID, id.partition, timestamp))
            let before = try atOrAfter == nil ? cursor.get(MDB_LAST) : cursor.get(MDB_PREV)
            var indexed: Int64 = 0
            if let before, Keys.hasPrefix(before.key, prefix) {
                var reader = ByteReader(before.value)
                indexed = try reader.readInteger("time index offset")
            }
            guard state.maxTimestamp >= timestamp else { return notFound }
            let start = max(indexed, state.logStartOffset)
            var found: TimestampLookup?
            try walkBatches(txn, dbi, from: start, end: state.nextOffset, name: "\(topic)/\(partition)", checkCRC: false) {
                header, batch in
                guard header.maxTimestamp >= timestamp,
                    let (delta, recordTimestamp) = try RecordBatch.firstRecord(atOrAfter: timestamp, in: batch, header: header)
                else { return true }
                found = TimestampLookup(offset: header.baseOffset + Int64(delta), timestamp: recordTimestamp)
                return false
            }
            return found ?? notFound
        }
    }

    /// The offsets a partition's time-index entries point at, in order (for tests).
    func timeIndexOffsets(topic: String, partition: Int32) throws -> [Int64] {
        try withReadTransaction { txn, snapshot in
            let (_, id, _) = try resolve(topic, partition, in: snapshot)
            let cursor = try LMDBCursor(txn, databases.timeIndex)
            defer { cursor.close() }
            let prefix = Keys.partition(id.topicID, id.partition)
            var offsets: [Int64] = []
            var entry = try cursor.get(MDB_SET_RANGE, key: prefix)
            while let current = entry, Keys.hasPrefix(current.key, prefix) {
                var reader = ByteReader(current.value)
                offsets.append(try reader.readInteger("time index offset"))
                entry = try cursor.get(MDB_NEXT)
            }
            return offsets
        }
    }

    public func committedOffset(group: String, topic: String, partition: Int32) throws -> CommittedOffset? {
        try withReadTransaction { txn, _ in
            let key = Keys.committedOffset(group: group, topic: topic, partition: partition)
            guard let value = try txn.get(databases.offsets, key) else { return nil }
            let decoded = try CommittedOffsetValue.decode(value)
            return CommittedOffset(
                group: group, topic: topic, partition: partition, offset: decoded.offset, metadata: decoded.metadata,
                committedAtMs: decoded.committedAtMs)
        }
    }

    /// Every committed offset of a group, ordered by topic and partition.
    public func committedOffsets(group: String) throws -> [CommittedOffset] {
        try withReadTransaction { txn, _ in
            var result: [CommittedOffset] = []
            try txn.forEach(databases.offsets, prefix: Keys.groupPrefix(group)) { result.append(try CommittedOffset(stored: $0)) }
            return result
        }
    }

    /// Whether `group` has any committed offset (one seek).
    public func hasCommittedOffsets(group: String) throws -> Bool {
        try withReadTransaction { txn, _ in
            let prefix = Keys.groupPrefix(group)
            let cursor = try LMDBCursor(txn, databases.offsets)
            defer { cursor.close() }
            guard let entry = try cursor.get(MDB_SET_RANGE, key: prefix) else { return false }
            return Keys.hasPrefix(entry.key, prefix)
        }
    }

    /// Every committed offset of every group, in one read transaction and one pass (for a
    /// scrape: linear in offsets, where a seek per group would pay the transaction each time).
    public func allCommittedOffsets() throws -> [CommittedOffset] {
        try withReadTransaction { txn, _ in
            var result: [CommittedOffset] = []
            try txn.forEach(databases.offsets) { result.append(try CommittedOffset(stored: $0)) }
            return result
        }
    }

    /// Every group that has committed offsets, sorted.
    public func groupsWithCommittedOffsets() throws -> [String] {
        try withReadTransaction { txn, _ in
            var groups: [String] = []
            try txn.forEach(databases.offsets) { entry in
                let group = try Keys.parseCommittedOffset(entry.key).group
                if groups.last != group { groups.append(group) }
            }
            return groups
        }
    }

    public var info: StorageInfo {
        StorageInfo(
            directory: directory, formatVersion: Self.formatVersion, mapSizeBytes: env.mapSizeBytes, usedBytes: env.usedBytes,
            fileBytes: DataDirectory.fileBytes(directory))
    }
}
