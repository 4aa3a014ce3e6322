import CLMDB
import MillraceFormat

extension WriteContext {
    /// Deletes batches from the head of every partition whose topic has a retention limit.
    mutating func enforceRetention() throws -> RetentionReport {
        var report = RetentionReport()
        for info in catalog.topics.values where info.config.retentionMs != nil || info.config.retentionBytes != nil {
            for partition in 0..<info.partitionCount {
                let id = PartitionID(topicID: info.id, partition: partition)
                guard let dbi = catalog.logDatabases[id] else { continue }
                let (batches, bytes) = try trimHead(id, dbi, config: info.config)
                if batches > 0 {
                    report.batchesDeleted += batches
                    report.bytesDeleted += bytes
                    report.partitionsTrimmed += 1
                }
            }
        }
        return report
    }

    mutating func trimHead(_ id: PartitionID, _ dbi: MDB_dbi, config: TopicConfig) throws -> (Int, Int64) {
        var state = try state(id)
        let cursor = try LMDBCursor(txn, dbi)
        defer { cursor.close() }
        var deleted = 0
        var deletedBytes: Int64 = 0
        while deleted < Limits.retentionBatchesPerPassMax, let (_, value) = try cursor.get(MDB_FIRST) {
            // A batch that does not parse is left for `verify` to report, never deleted blind.
            guard let header = try? RecordBatchHeader(parsing: value) else { break }
            let batchBytes = Int64(value.count)
            let keep = !RetentionPolicy.shouldDelete(
                batchMaxTimestamp: header.maxTimestamp, batchBytes: batchBytes, partitionBytes: state.bytes, config: config,
                nowMs: nowMs)
            if keep { break }
            try cursor.delete()
            state.logStartOffset = header.nextOffset
            state.bytes -= batchBytes
            state.batchCount -= 1
            deleted += 1
            deletedBytes += batchBytes
        }
        guard deleted > 0 else { return (0, 0) }
        if state.batchCount == 0 { state.logStartOffset = state.nextOffset }
        states[id] = state
        try trimTimeIndex(id, below: state.logStartOffset)
        return (deleted, deletedBytes)
    }
}
