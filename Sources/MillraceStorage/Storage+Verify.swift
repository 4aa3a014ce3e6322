import CLMDB
import MillraceFormat

extension Storage {
    /// Walks every stored batch: CRC and record framing, base offset against its key, offset
    /// continuity from the log start to the log end, and the partition state's totals.
    /// Also reports log databases that no topic owns. `progress` gets (partitions done, total).
    public func verify(progress: (Int, Int) -> Void = { _, _ in }) throws -> VerifyReport {
        try withReadTransaction { txn, snapshot in
            var report = VerifyReport()
            let topics = snapshot.topics.values.sorted { $0.name < $1.name }
            let total = topics.reduce(0) { $0 + Int($1.partitionCount) }
            for info in topics {
                for partition in 0..<info.partitionCount {
                    let id = PartitionID(topicID: info.id, partition: partition)
                    try verifyPartition(txn, info: info, id: id, dbi: snapshot.logDatabases[id]!, into: &report)
                    report.partitionsChecked += 1
                    progress(report.partitionsChecked, total)
                }
            }
            try findOrphanLogs(txn, snapshot: snapshot, into: &report)
            return report
        }
    }

    private func verifyPartition(
        _ txn: LMDBTransaction, info: TopicInfo, id: PartitionID, dbi: MDB_dbi, into report: inout VerifyReport
    ) throws {
        func problem(_ offset: Int64?, _ message: String) {
            report.problems.append(VerifyProblem(topic: info.name, partition: id.partition, offset: offset, message: message))
        }
        let state: PartitionState
        do {
            state = try databases.partitionState(txn, id)
        } catch let error as MillraceError {
            return problem(nil, "partition state unreadable: \(error.message)")
        }
        let cursor = try LMDBCursor(txn, dbi)
        defer { cursor.close() }
        var expected: Int64? = nil
        var bytes: Int64 = 0
        var batches: Int64 = 0
        var entry = try cursor.get(MDB_FIRST)
        while let current = entry {
            defer { report.batchesChecked += 1 }
            guard current.key.count == 8 else {
                problem(nil, "log key of \(current.key.count) bytes (expected 8)")
                entry = try cursor.get(MDB_NEXT)
                continue
            }
            let key = Keys.offset(from: current.key)
            bytes += Int64(current.value.count)
            batches += 1
            if expected == nil && key != state.logStartOffset {
                problem(key, "first batch is at \(key) but the log start is \(state.logStartOffset)")
            }
            if let expected, key != expected {
                problem(key, "offset gap: the previous batch ends before \(expected), this one starts at \(key)")
            }
            do {
                let header = try RecordBatch.verify(current.value, depth: .records)
                if header.baseOffset != key {
                    problem(key, "batch header says base offset \(header.baseOffset), stored at \(key)")
                }
                report.recordsChecked += Int64(header.recordCount)
                expected = key + Int64(header.recordCount)
            } catch let error as MillraceError {
                problem(key, "\(error.code): \(error.message)")
                // Carry on from the stored header's count when it still parses.
                let parsed = try? RecordBatchHeader(parsing: current.value)
                expected = parsed.map { key + Int64(max($0.recordCount, 1)) }
            }
            entry = try cursor.get(MDB_NEXT)
        }
        if batches == 0 {
            if state.logStartOffset != state.nextOffset {
                problem(nil, "no batches stored, but the state says the log spans [\(state.logStartOffset), \(state.nextOffset))")
            }
        } else if let expected, expected != state.nextOffset {
            problem(nil, "the last batch ends before \(expected), but the log end is \(state.nextOffset)")
        }
        if bytes != state.bytes || batches != state.batchCount {
            problem(nil, "state counts \(state.batchCount) batches / \(state.bytes) bytes; stored are \(batches) / \(bytes)")
        }
    }

    private func findOrphanLogs(_ txn: LMDBTransaction, snapshot: CatalogSnapshot, into report: inout VerifyReport) throws {
        var owned: Set<String> = []
        for info in snapshot.topics.values {
            for partition in 0..<info.partitionCount { owned.insert(Keys.logDatabaseName(info.id, partition)) }
        }
        guard let main = try txn.openDatabase(nil, create: false) else { return }
        let cursor = try LMDBCursor(txn, main)
        defer { cursor.close() }
        var entry = try cursor.get(MDB_FIRST)
        while let current = entry {
            let name = String(decoding: current.key, as: UTF8.self)
            if name.hasPrefix("log/") && !owned.contains(name) {
                report.problems.append(VerifyProblem(topic: "?", partition: -1, offset: nil, message: "log database \(name) belongs to no topic"))
            }
            entry = try cursor.get(MDB_NEXT)
        }
    }
}
