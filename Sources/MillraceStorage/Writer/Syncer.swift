import CLMDB
import MillraceFormat

#if canImport(Glibc)
import Glibc
#endif

/// A result waiting to be handed to its caller.
struct Delivery {
    let succeed: () -> Void
    let fail: (MillraceError) -> Void

    init<T>(result: Result<T, MillraceError>, _ completion: @escaping @Sendable (Result<T, MillraceError>) -> Void) {
        succeed = { completion(result) }
        fail = { error in
            if case .success = result { completion(.failure(error)) } else { completion(result) }
        }
    }
}

/// The second thread of the writer: forces the data file to disk after commits and then
/// completes their callers. One fdatasync covers every commit handed over since the last.
final class Syncer: @unchecked Sendable {
    private let env: LMDBEnvironment
    private let statistics: Locked<WriterStatistics>
    /// Says whether a failed sync means a full disk (then the callers get `storage_full`).
    private let classify: (Int32, String) -> MillraceError?
    private let lock = ConditionLock()
    private var pending: [Delivery] = []
    private var syncing = 0
    private var delivered = 0
    private var deliveredAt: UInt64 = 0
    private var stopping = false
    private var thread: pthread_t?

    private let events: (any StorageEvents)?

    init(env: LMDBEnvironment, statistics: Locked<WriterStatistics>, events: (any StorageEvents)?, classify: @escaping (Int32, String) -> MillraceError?) {
        self.env = env
        self.statistics = statistics
        self.events = events
        self.classify = classify
    }

    func start() {
        thread = startThread(named: "syncer") { self.run() }
    }

    func submit(_ deliveries: [Delivery]) {
        lock.withLock {
            pending.append(contentsOf: deliveries)
            lock.signal()
        }
    }

    /// Callers waiting for their acknowledgement, plus those told within the window: the
    /// ones likely to append again soon.
    func returningCallers(withinNanoseconds window: UInt64) -> Int {
        lock.withLock {
            // Callers told in the last round count only while no newer round is under way:
            // by then they are back, and counted in it.
            let inFlight = pending.count + syncing
            guard inFlight == 0 else { return inFlight }
            return monotonicNanoseconds() - deliveredAt < window ? delivered : 0
        }
    }

    /// Syncs and delivers on the caller's thread when nothing is pending here (so the order
    /// of deliveries holds); false when the caller must `submit` instead.
    func syncIfIdle(_ deliveries: [Delivery]) -> Bool {
        let idle = lock.withLock { () -> Bool in
            guard pending.isEmpty && syncing == 0 else { return false }
            syncing = deliveries.count
            return true
        }
        guard idle else { return false }
        syncAndDeliver(deliveries)
        return true
    }

    private func syncAndDeliver(_ taken: [Delivery]) {
        do {
            let started = monotonicNanoseconds()
            try env.sync(force: true)
            events?.synced(seconds: Double(monotonicNanoseconds() - started) / 1e9)
            statistics.withLock { $0.explicitSyncs += 1 }
            for delivery in taken { delivery.succeed() }
        } catch {
            let code = (error as? LMDBError)?.code ?? 0
            let failure =
                classify(code, "the sync after a commit failed: \(error)")
                ?? MillraceError(.storageError, "written but not confirmed on disk (\(error)); check the disk and retry")
            for delivery in taken { delivery.fail(failure) }
        }
        lock.withLock {
            syncing = 0
            delivered = taken.count
            deliveredAt = monotonicNanoseconds()
        }
    }

    /// Delivers what is pending, then stops.
    func stop() { stopThread(&thread, parkedOn: lock) { stopping = true } }

    private func run() {
        while true {
            lock.lock()
            while pending.isEmpty && !stopping { lock.wait() }
            if pending.isEmpty && stopping {
                lock.unlock()
                return
            }
            let taken = pending
            pending.removeAll(keepingCapacity: true)
            syncing = taken.count
            lock.unlock()
            syncAndDeliver(taken)
        }
    }
}
