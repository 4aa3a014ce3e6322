import CLMDB
import MillraceFormat

#if canImport(Glibc)
import Glibc
#endif

// The writer's queue and its loop: callers queue operations; the writer thread takes all of
// them at once (waiting a moment for stragglers) and hands them to the group commit.

extension Writer {
    /// Queues without waiting. Fails the operation at once when the storage is closed, or
    /// when the queue is full unless the caller has just waited for space.
    func submitNow(_ op: WriteOperation, afterWaiting: Bool = false) {
        lock.lock()
        if stopping {
            lock.unlock()
            return op.fail(MillraceError(.storageClosed, "storage is closed"))
        }
        guard afterWaiting || queue.count < pendingWritesMax else {
            lock.unlock()
            return op.fail(MillraceError(.writerBusy, "\(pendingWritesMax) writes are already waiting; retry shortly"))
        }
        queue.append(op)
        if queue.count >= wakeThreshold { lock.signal() }
        lock.unlock()
    }

    /// Back-pressure: returns once the queue has room (or the writer is stopping). The queue
    /// can pass its bound only by the callers woken together, each adding one operation.
    func waitForSpace() async {
        while true {
            let hasRoom = lock.withLock { stopping || queue.count < pendingWritesMax }
            if hasRoom { return }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                lock.withLock {
                    if stopping || queue.count < pendingWritesMax {
                        continuation.resume()
                    } else {
                        spaceWaiters.append(continuation)
                    }
                }
            }
        }
    }

    /// Group-commit merge window. Callers whose acknowledgements the syncer is delivering
    /// (or just delivered) usually append again at once. When many are on their way back,
    /// the writer waits a moment for most of them rather than commit half a group now and
    /// the other half one flush later. Called with `lock` held. See docs/DECISIONS.md,
    /// "Group-commit merge window".
    func waitForStragglers() {
        guard !paused else { return }
        guard lastGroupSize >= Self.mergeGroupMin, queue.count < lastGroupSize * 3 / 4,
            syncer.returningCallers(withinNanoseconds: Self.mergeWindowNanoseconds) >= Self.mergeGroupMin
        else { return }
        let target = lastGroupSize * 3 / 4
        let deadline = monotonicNanoseconds() + Self.mergeWindowNanoseconds
        wakeThreshold = target
        defer { wakeThreshold = 1 }
        while queue.count < target && !stopping {
            let now = monotonicNanoseconds()
            if now >= deadline { break }
            lock.wait(nanoseconds: deadline - now)
        }
    }

    static let mergeGroupMin = 8
    static let mergeWindowNanoseconds: UInt64 = 250_000

    func run() {
        var retentionDue = retentionIntervalNanoseconds.map { monotonicNanoseconds() + $0 }
        while true {
            lock.lock()
            while (queue.isEmpty || paused) && !stopping {
                if let due = retentionDue {
                    let now = monotonicNanoseconds()
                    if now >= due { break }
                    lock.wait(nanoseconds: due - now)
                } else {
                    lock.wait()
                }
            }
            if queue.isEmpty && stopping {
                lock.unlock()
                flushIndexMemory()
                return
            }
            waitForStragglers()
            let taken = queue
            queue.removeAll(keepingCapacity: true)
            let waiters = spaceWaiters
            spaceWaiters.removeAll()
            lock.unlock()
            for waiter in waiters { waiter.resume() }

            if let due = retentionDue, monotonicNanoseconds() >= due {
                let result = withReserve { runRetention() }
                deliver([Delivery(result: result) { _ in }], wrote: (try? result.get().batchesDeleted) ?? 0 > 0)
                retentionDue = monotonicNanoseconds() + retentionIntervalNanoseconds!
            }
            process(taken)
        }
    }

    /// On stopping: the key index's entries in memory go into a run, so the next start has
    /// nothing to index again. (If this fails, or the process dies first, the next start does.)
    func flushIndexMemory() {
        guard index.memorySnapshot.count > 0, full == nil, !lock.withLock({ skipIndexFlushForTesting }) else { return }
        let result = withTransaction { context in try context.flushIndex(forceMemory: true) }
        if case .success = result { deliver([], wrote: true) }
    }
}
