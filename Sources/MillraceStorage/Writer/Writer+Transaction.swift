import CLMDB
import MillraceFormat

// One write transaction: begin, run the operations' work, commit, grow the map when full,
// apply the committed changes to memory, and hand results to the syncer.

extension Writer {
    /// Hands results to callers once what they wrote is durable. The environment runs with
    /// MDB_NOMETASYNC: a commit has synced its data pages but its meta page may still be in
    /// the page cache, so the syncer thread runs one more fdatasync (shared by every commit
    /// that finished meanwhile) before the callers hear of it, while this thread goes on with
    /// the next transaction. Callers whose operations wrote nothing are told at once.
    /// See docs/DECISIONS.md, "Meta-page sync off the writer thread".
    func deliver(_ deliveries: [Delivery], wrote: Bool) {
        guard wrote else {
            for delivery in deliveries { delivery.succeed() }
            return
        }
        // With nothing queued the writer has nothing to overlap the sync with: it syncs
        // itself and saves the hand-over to another thread.
        if lock.withLock({ queue.isEmpty }) && syncer.syncIfIdle(deliveries) { return }
        syncer.submit(deliveries)
    }

    /// Runs `body` in a write transaction and commits with sync. On a full map it grows the
    /// map and runs `body` again from the start; other engine errors fail the transaction.
    func withTransaction<T>(gateHeld: Bool = false, _ body: (inout WriteContext) throws -> T) -> Result<T, MillraceError> {
        var resizes = 0
        while true {
            let txn: LMDBTransaction
            do {
                txn = try LMDBTransaction.begin(env, readOnly: false)
            } catch let error as LMDBError {
                return .failure(error.millraceError)
            } catch {
                return .failure(MillraceError(.unexpected, "\(error)"))
            }
            let began = monotonicNanoseconds()
            var context = WriteContext(txn: txn, databases: databases, catalog: catalog.withLock { $0 }, nowMs: clock.nowMilliseconds(), dedup: dedup, index: index, runScratch: runScratch)
            context.producerPolicy = producerPolicy
            let value: T
            do {
                value = try body(&context)
            } catch let error as LMDBError {
                txn.abort()
                if error.isMapFull && resizes < 16, growMap(gateHeld: gateHeld) {
                    resizes += 1
                    continue
                }
                statistics.withLock { $0.failedTransactions += 1 }
                return .failure(Self.classify(error.code, error.description, directory: directory) ?? error.millraceError)
            } catch let error as MillraceError {
                txn.abort()
                statistics.withLock { $0.failedTransactions += 1 }
                return .failure(error)
            } catch {
                txn.abort()
                statistics.withLock { $0.failedTransactions += 1 }
                return .failure(MillraceError(.unexpected, "\(error)"))
            }
            let committing = monotonicNanoseconds()
            do {
                if let injected = lock.withLock({ injectedCommitFailures.isEmpty ? nil : injectedCommitFailures.removeFirst() }) {
                    txn.abort()
                    throw LMDBError(code: injected, operation: "injected commit failure")
                }
                try txn.commit()
            } catch let error as LMDBError {
                if error.isMapFull && resizes < 16, growMap(gateHeld: gateHeld) {
                    resizes += 1
                    continue
                }
                statistics.withLock { $0.failedTransactions += 1 }
                return .failure(Self.classify(error.code, error.description, directory: directory) ?? error.millraceError)
            } catch {
                statistics.withLock { $0.failedTransactions += 1 }
                return .failure(MillraceError(.unexpected, "\(error)"))
            }
            if !context.dedupChanges.isEmpty { dedup.apply(context.dedupChanges, nextRunID: context.dedupNextRunID, nowMs: context.nowMs) }
            index.apply(context.indexChanges)
            let finished = monotonicNanoseconds()
            progress.withLock { $0.lastProgressMs = clock.nowMilliseconds() }
            lastCommitSeconds = Double(finished - committing) / 1e9
            statistics.withLock {
                $0.transactions += 1
                $0.busyNanoseconds += finished - began
                $0.commitNanoseconds += finished - committing
            }
            return .success(value)
        }
    }

    /// Doubles the map (by at most `mapGrowthStepMaxBytes`) with no read transaction open.
    func growMap(gateHeld: Bool) -> Bool {
        let current = env.mapSizeBytes
        let next = current + min(current, mapGrowthStepMaxBytes)
        do {
            if gateHeld {
                try env.setMapSize(next)
            } else {
                try gate.withExclusive { try env.setMapSize(next) }
            }
            statistics.withLock { $0.mapResizes += 1 }
            return true
        } catch {
            return false
        }
    }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
