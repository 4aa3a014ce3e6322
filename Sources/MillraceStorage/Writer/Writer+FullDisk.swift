import CLMDB
import MillraceFormat

#if canImport(Glibc)
import Glibc
#endif

// A full disk: writes refused while it lasts, deletes run from the reserve, and what
// an engine error means.

extension Writer {
    /// While the disk is full, writes fail at once, except one try per `fullRetryIntervalMs`
    /// (which, when it succeeds, ends the full state).
    func refusedWhileFull() -> MillraceError? {
        guard let full else { return nil }
        let now = clock.nowMilliseconds()
        if now - full.lastAttemptMs < fullRetryIntervalMs { return full.error }
        self.full?.lastAttemptMs = now
        return nil
    }

    /// After each transaction: note whether the disk is full, and keep the reserve in place.
    func noteOutcome(_ error: MillraceError?) {
        if let error, error.code == .storageFull {
            if full == nil {
                full = (error, clock.nowMilliseconds())
                events?.diskFull(error)
            } else {
                full?.error = error
            }
            progress.withLock { $0.diskFull = error }
            return
        }
        guard error == nil else { return }
        if full != nil {
            full = nil
            events?.diskFull(nil)
            progress.withLock { $0.diskFull = nil }
        }
        let now = clock.nowMilliseconds()
        if now - lastReserveAttemptMs >= 10_000 {
            lastReserveAttemptMs = now
            if !reserve.exists { reserve.create() }
        }
    }

    /// Runs a delete (topic, retention) and, if the disk is too full even for its
    /// copy-on-write pages, releases the reserve and runs it again.
    func withReserve<T>(_ body: () -> Result<T, MillraceError>) -> Result<T, MillraceError> {
        var result = body()
        if case .failure(let error) = result, error.code == .storageFull, reserve.release() {
            result = body()
        }
        guard case .success = result, full != nil else { return result }
        // LMDB reuses the pages a transaction freed only once a later transaction has
        // committed (a reader of the snapshot before might still see them). On a full disk no
        // write would get that far, so commit a small one now, from the reserve if need be;
        // then the next write can try at once.
        var advanced = advanceTransaction()
        if case .failure(let error) = advanced, error.code == .storageFull, reserve.release() { advanced = advanceTransaction() }
        if case .success = advanced { full?.lastAttemptMs = 0 }
        return result
    }

    /// A transaction that writes one small value, to move LMDB's oldest-snapshot mark on.
    func advanceTransaction() -> Result<Void, MillraceError> {
        withTransaction { context in
            var value = ByteWriter(capacity: 8)
            value.writeInteger(context.nowMs)
            try context.txn.put(databases.meta, Array("freed-at".utf8), value.bytes)
        }
    }

    /// What a failed write says: ENOSPC and EDQUOT are a full disk; so is an I/O error (LMDB
    /// reports a short write as EIO) when the device is nearly out of space.
    static func classify(_ code: Int32, _ detail: String, directory: String) -> MillraceError? {
        guard code == ENOSPC || code == EDQUOT || code == EIO || code == MDB_MAP_FULL else { return nil }
        let space = DiskSpace.of(directory)
        let nearlyFull = (space?.freeBytes ?? 0) < 4 << 20
        guard code == ENOSPC || code == EDQUOT || nearlyFull else { return nil }
        return (space ?? DiskSpace(device: "?", mountPoint: "?", freeBytes: 0, totalBytes: 0)).fullError(directory: directory, detail: detail)
    }
}
