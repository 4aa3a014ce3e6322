import CLMDB
import MillraceFormat

// Topic and group changes, each in a transaction of its own.

extension Writer {
    func createTopic(_ op: CreateTopicOperation) -> Result<TopicInfo, MillraceError> {
        do {
            try TopicInfo.validate(name: op.name)
            try op.config.validate()
        } catch let error as MillraceError {
            return .failure(error)
        } catch {
            return .failure(MillraceError(.unexpected, "\(error)"))
        }
        let snapshot = catalog.withLock { $0 }
        guard op.partitionCount >= 1, op.partitionCount <= Limits.partitionsPerTopicMax else {
            return .failure(
                MillraceError(.invalidPartitionCount, "a topic has 1...\(Limits.partitionsPerTopicMax) partitions; \(op.partitionCount) asked"))
        }
        guard snapshot.topics[op.name] == nil else {
            return .failure(MillraceError(.topicAlreadyExists, "topic \"\(op.name)\" already exists"))
        }
        if op.config.dedup != nil, let full = snapshot.checkDedupRoom(except: op.name) { return .failure(full) }
        guard snapshot.partitionTotal + Int(op.partitionCount) <= Limits.partitionsMax else {
            return .failure(
                MillraceError(
                    .invalidPartitionCount,
                    "this data directory holds \(snapshot.partitionTotal) partitions; \(op.partitionCount) more would pass the limit of \(Limits.partitionsMax)"
                ))
        }
        let id = snapshot.nextTopicID
        var opened: [PartitionID: MDB_dbi] = [:]
        let result = withTransaction { context -> TopicInfo in
            opened = [:]
            let info = TopicInfo(name: op.name, id: id, partitionCount: op.partitionCount, config: op.config, createdAtMs: context.nowMs)
            for partition in 0..<op.partitionCount {
                let pid = PartitionID(topicID: id, partition: partition)
                opened[pid] = try context.txn.openDatabase(Keys.logDatabaseName(id, partition), create: true)!
                try databases.putPartitionState(context.txn, pid, PartitionState())
            }
            try context.txn.put(databases.topics, Array(op.name.utf8), info.encoded())
            try context.txn.put(databases.meta, SystemDatabases.nextTopicIDKey, SystemDatabases.encode(id + 1))
            return info
        }
        if case .success(let info) = result {
            catalog.withLock {
                $0.topics[op.name] = info
                $0.nextTopicID = id + 1
                for (pid, dbi) in opened { $0.logDatabases[pid] = dbi }
            }
        }
        return result
    }

    func deleteTopic(_ op: DeleteTopicOperation) -> Result<Void, MillraceError> {
        guard let info = catalog.withLock({ $0.topics[op.name] }) else {
            return .failure(MillraceError(.unknownTopic, "topic \"\(op.name)\" does not exist"))
        }
        // Dropping closes the partitions' database handles: no reader may hold one meanwhile.
        return gate.withExclusive {
            let result = withTransaction(gateHeld: true) { context -> Void in
                for partition in 0..<info.partitionCount {
                    let pid = PartitionID(topicID: info.id, partition: partition)
                    if let dbi = context.catalog.logDatabases[pid] { try context.txn.dropDatabase(dbi) }
                }
                try deleteAll(context.txn, databases.partitions, prefix: Keys.topicPrefix(info.id))
                try deleteAll(context.txn, databases.timeIndex, prefix: Keys.topicPrefix(info.id))
                try deleteAll(context.txn, databases.meta, prefix: Keys.schemaPrefix(info.id))
                try deleteAll(context.txn, databases.meta, prefix: Keys.dictionaryPrefix(info.id))
                try deleteAll(context.txn, databases.meta, prefix: Keys.currentDictionary(info.id))
                if let dbi = databases.dedup {
                    for run in dedup.existingState(info.id)?.runs ?? [] { try SortedRuns.delete(runID: run.id, owner: info.id, txn: context.txn, dbi: dbi) }
                    try deleteAll(context.txn, dbi.runs, prefix: Keys.topicPrefix(info.id))
                }
                // The topic's index entries go when their runs are merged (or leave memory); a
                // trace skips them. Its counters, rebuild state, watermarks and times go now.
                if let dbi = databases.index { try context.txn.deleteAll(dbi.runs, prefix: Keys.topicPrefix(info.id)) }
                try context.txn.delete(databases.topics, Array(op.name.utf8))
                try deleteCommittedOffsets(context.txn, topic: op.name)
            }
            if case .success = result {
                dedup.forget(info.id)
                index.forget(info.id)
                catalog.withLock {
                    $0.topics[op.name] = nil
                    for partition in 0..<info.partitionCount {
                        $0.logDatabases[PartitionID(topicID: info.id, partition: partition)] = nil
                    }
                }
            }
            return result
        }
    }

    /// Deletes every committed offset of a group.
    func deleteGroup(_ group: String) -> Result<Int, MillraceError> {
        let result = withTransaction { context -> Int in
            let prefix = Keys.groupPrefix(group)
            let cursor = try LMDBCursor(context.txn, databases.offsets)
            defer { cursor.close() }
            var deleted = 0
            while let entry = try cursor.get(MDB_SET_RANGE, key: prefix), Keys.hasPrefix(entry.key, prefix) {
                try cursor.delete()
                deleted += 1
            }
            return deleted
        }
        if case .success(0) = result { return .failure(MillraceError(.unknownGroup, "group \(group) has no committed offsets")) }
        return result
    }

    func deleteAll(_ txn: LMDBTransaction, _ dbi: MDB_dbi, prefix: [UInt8]) throws { try txn.deleteAll(dbi, prefix: prefix) }

    func deleteCommittedOffsets(_ txn: LMDBTransaction, topic: String) throws {
        let cursor = try LMDBCursor(txn, databases.offsets)
        defer { cursor.close() }
        var doomed: [[UInt8]] = []
        var entry = try cursor.get(MDB_FIRST)
        while let current = entry {
            if try Keys.parseCommittedOffset(current.key).topic == topic { doomed.append(Array(current.key)) }
            entry = try cursor.get(MDB_NEXT)
        }
        for key in doomed { try txn.delete(databases.offsets, key) }
    }
}
