import CLMDB
import MillraceFormat

#if canImport(Glibc)
import Glibc
#endif

/// The single writer. One thread owns every write transaction: it takes all queued
/// appends and offset commits, writes them in one transaction, commits with sync, and only
/// then completes each caller (group commit). A failed transaction fails exactly the
/// callers it held. The queue is bounded: past `pendingWritesMax` callers wait.
final class Writer: @unchecked Sendable {
    let env: LMDBEnvironment
    let gate: ReadWriteGate
    let databases: SystemDatabases
    let catalog: Locked<CatalogSnapshot>
    let clock: any MillraceClock
    let pendingWritesMax: Int
    let retentionIntervalNanoseconds: UInt64?
    let mapGrowthStepMaxBytes = 8 << 30
    let directory: String
    let reserve: ReserveFile
    let fullRetryIntervalMs: Int64
    /// How long producer ids are kept (with their sequences), and how many unused ones.
    let producerPolicy: ProducerPolicy
    /// Business-key dedup: run lists and filters per topic.
    let dedup: DedupStore
    /// The key index's runs.
    let index: IndexStore
    /// Buffers the writer thread's run writers reuse.
    let runScratch = RunScratch()
    /// Set while the disk is full (writer thread only): the error writes get, and when one
    /// was last tried.
    var full: (error: MillraceError, lastAttemptMs: Int64)?
    var lastReserveAttemptMs: Int64 = 0
    /// How long the last commit took (writer thread only).
    var lastCommitSeconds = 0.0

    let lock = ConditionLock()
    var queue: [WriteOperation] = []
    var spaceWaiters: [CheckedContinuation<Void, Never>] = []
    var stopping = false
    /// Operations in the last group-commit transaction (writer thread only).
    var lastGroupSize = 0
    /// Queue length at which a submit wakes the writer: 1, or a merge window's target.
    var wakeThreshold = 1
    /// Tests hold the writer still to line up operations for one transaction.
    var paused = false
    /// Tests make the next commits fail with this engine error.
    var injectedCommitFailures: [Int32] = []
    var thread: pthread_t?
    /// Makes each commit's meta page durable, then tells its callers; see `deliver`.
    var syncer: Syncer!
    let statistics = Locked(WriterStatistics())
    let events: (any StorageEvents)?
    /// For readers: when the writer last finished a transaction (storage clock), and the
    /// full-disk error while there is one.
    let progress: Locked<(lastProgressMs: Int64, diskFull: MillraceError?)>
    /// Called on the writer thread after each commit that appended to a partition.
    let commitObservers = Locked<[@Sendable (Set<TopicPartition>) -> Void]>([])

    init(
        env: LMDBEnvironment, gate: ReadWriteGate, databases: SystemDatabases, catalog: Locked<CatalogSnapshot>,
        clock: any MillraceClock, pendingWritesMax: Int, retentionIntervalMs: Int64?, directory: String, reserve: ReserveFile,
        fullRetryIntervalMs: Int64, producerPolicy: ProducerPolicy, dedup: DedupStore, index: IndexStore, events: (any StorageEvents)? = nil
    ) {
        self.events = events
        progress = Locked((clock.nowMilliseconds(), nil))
        self.dedup = dedup
        self.index = index
        self.producerPolicy = producerPolicy
        self.directory = directory
        self.reserve = reserve
        self.fullRetryIntervalMs = fullRetryIntervalMs
        self.env = env
        self.gate = gate
        self.databases = databases
        self.catalog = catalog
        self.clock = clock
        self.pendingWritesMax = pendingWritesMax
        self.retentionIntervalNanoseconds = retentionIntervalMs.map { UInt64($0) * 1_000_000 }
    }

    func start() {
        reserve.create()
        let directory = self.directory
        syncer = Syncer(env: env, statistics: statistics, events: events) { code, detail in Self.classify(code, detail, directory: directory) }
        syncer.start()
        thread = startThread(named: "writer") { self.run() }
    }

    /// Drains what is queued, then stops the thread.
    func stop() {
        stopThread(&thread, parkedOn: lock) { stopping = true }
        syncer?.stop()
        let waiters = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            defer { spaceWaiters = [] }
            return spaceWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var health: WriterHealth {
        let queued = lock.withLock { queue.count }
        let (last, diskFull) = progress.withLock { ($0.lastProgressMs, $0.diskFull) }
        return WriterHealth(queued: queued, millisecondsSinceProgress: max(0, clock.nowMilliseconds() - last), diskFull: diskFull)
    }

    /// Stopping leaves the key index's entries in memory unwritten, as a crash would.
    var skipIndexFlushForTesting = false

    func leaveIndexMemoryOnStopForTesting() { lock.withLock { skipIndexFlushForTesting = true } }

    func setPausedForTesting(_ value: Bool) {
        lock.withLock {
            paused = value
            lock.broadcast()
        }
    }

    func failNextCommitForTesting(errno code: Int32) {
        lock.withLock { injectedCommitFailures.append(code) }
    }

    var queuedCountForTesting: Int { lock.withLock { queue.count } }
    /// Async appends waiting for room in the queue.
    var spaceWaiterCountForTesting: Int { lock.withLock { spaceWaiters.count } }
}
