import CLMDB
import MillraceFormat

extension Writer {
    func runRetention() -> Result<RetentionReport, MillraceError> {
        let started = monotonicNanoseconds()
        let result = withTransaction { context -> RetentionReport in
            var report = try context.enforceRetention()
            (report.producersExpired, report.producerExpiryEntriesRead) = try context.expireProducers()
            report.dedupKeysExpired = try context.expireDedup()
            report.indexRunsDeleted = try context.pruneIndexRuns()
            try context.flushDedup()
            try context.flushIndex()
            try context.flushStates()
            return report
        }
        if case .success(let report) = result {
            statistics.withLock { $0.retentionBatchesDeleted += report.batchesDeleted }
            events?.retentionRan(report, seconds: Double(monotonicNanoseconds() - started) / 1e9)
        }
        return result
    }
}
