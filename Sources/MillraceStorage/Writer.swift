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
    private let env: LMDBEnvironment
    private let gate: ReadWriteGate
    let databases: SystemDatabases
    let catalog: Locked<CatalogSnapshot>
    private let clock: any MillraceClock
    private let pendingWritesMax: Int
    private let retentionIntervalNanoseconds: UInt64?
    private let mapGrowthStepMaxBytes = 8 << 30
    private let directory: String
    private let reserve: ReserveFile
    private let fullRetryIntervalMs: Int64
    /// How long producer ids are kept (with their sequences), and how many unused ones.
    private let producerPolicy: ProducerPolicy
    /// Business-key dedup: run lists and filters per topic.
    let dedup: DedupStore
    /// The key index's runs.
    let index: IndexStore
    /// Buffers the writer thread's run writers reuse.
    private let runScratch = RunScratch()
    /// Set while the disk is full (writer thread only): the error writes get, and when one
    /// was last tried.
    private var full: (error: MillraceError, lastAttemptMs: Int64)?
    private var lastReserveAttemptMs: Int64 = 0
    /// How long the last commit took (writer thread only).
    private var lastCommitSeconds = 0.0

    private let lock = ConditionLock()
    private var queue: [WriteOperation] = []
    private var spaceWaiters: [CheckedContinuation<Void, Never>] = []
    private var stopping = false
    /// Operations in the last group-commit transaction (writer thread only).
    private var lastGroupSize = 0
    /// Queue length at which a submit wakes the writer: 1, or a merge window's target.
    private var wakeThreshold = 1
    /// Tests hold the writer still to line up operations for one transaction.
    private var paused = false
    /// Tests make the next commits fail with this engine error.
    private var injectedCommitFailures: [Int32] = []
    private var thread: pthread_t?
    /// Makes each commit's meta page durable, then tells its callers; see `deliver`.
    private var syncer: Syncer!
    let statistics = Locked(WriterStatistics())
    let events: (any StorageEvents)?
    /// For readers: when the writer last finished a transaction (storage clock), and the
    /// full-disk error while there is one.
    private let progress: Locked<(lastProgressMs: Int64, diskFull: MillraceError?)>
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
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        if let thread { pthread_join(thread, nil) }
        thread = nil
        syncer?.stop()
        let waiters = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            defer { spaceWaiters = [] }
            return spaceWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

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

    var health: WriterHealth {
        let queued = lock.withLock { queue.count }
        let (last, diskFull) = progress.withLock { ($0.lastProgressMs, $0.diskFull) }
        return WriterHealth(queued: queued, millisecondsSinceProgress: max(0, clock.nowMilliseconds() - last), diskFull: diskFull)
    }

    /// Stopping leaves the key index's entries in memory unwritten, as a crash would.
    private var skipIndexFlushForTesting = false

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

    /// Group-commit merge window. Callers whose acknowledgements the syncer is delivering
    /// (or just delivered) usually append again at once. When many are on their way back,
    /// the writer waits a moment for most of them rather than commit half a group now and
    /// the other half one flush later. Called with `lock` held. See docs/DECISIONS.md,
    /// "Group-commit merge window".
    private func waitForStragglers() {
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

    private func run() {
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
    private func flushIndexMemory() {
        guard index.memorySnapshot.count > 0, full == nil, !lock.withLock({ skipIndexFlushForTesting }) else { return }
        let result = withTransaction { context in try context.flushIndex(forceMemory: true) }
        if case .success = result { deliver([], wrote: true) }
    }

    /// Runs consecutive appends and commits as one group; catalog and retention work alone.
    private func process(_ ops: [WriteOperation]) {
        var start = ops.startIndex
        while start < ops.endIndex {
            if !ops[start].joinsGroupCommit {
                processAlone(ops[start])
                start += 1
                continue
            }
            var end = start
            var bytes = 0
            while end < ops.endIndex && ops[end].joinsGroupCommit && (end == start || bytes < Limits.groupCommitBytesMax) {
                bytes += ops[end].batchBytes
                end += 1
            }
            processGroup(ops[start..<end])
            start = end
        }
    }

    private enum Outcome {
        case append(Result<AppendResult, MillraceError>)
        case commit(Result<Void, MillraceError>)
    }

    /// While the disk is full, writes fail at once, except one try per `fullRetryIntervalMs`
    /// (which, when it succeeds, ends the full state).
    private func refusedWhileFull() -> MillraceError? {
        guard let full else { return nil }
        let now = clock.nowMilliseconds()
        if now - full.lastAttemptMs < fullRetryIntervalMs { return full.error }
        self.full?.lastAttemptMs = now
        return nil
    }

    /// After each transaction: note whether the disk is full, and keep the reserve in place.
    private func noteOutcome(_ error: MillraceError?) {
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
    private func withReserve<T>(_ body: () -> Result<T, MillraceError>) -> Result<T, MillraceError> {
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
    private func advanceTransaction() -> Result<Void, MillraceError> {
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

    private func processGroup(_ ops: ArraySlice<WriteOperation>) {
        lastGroupSize = ops.count
        if let refused = refusedWhileFull() {
            for op in ops { op.fail(refused) }
            return
        }
        let result = withTransaction { context -> ([Outcome], Set<PartitionID>) in
            var outcomes: [Outcome] = []
            outcomes.reserveCapacity(ops.count)
            for op in ops {
                switch op {
                case .append(let append): outcomes.append(.append(try context.append(append)))
                case .commitOffsets(let commit): outcomes.append(.commit(try context.commitOffsets(commit)))
                case .createTopic, .deleteTopic, .retention, .deleteGroup, .registerSchema, .setSchemaPolicy, .initProducer, .indexRecords, .storeDictionary:
                    preconditionFailure("not a group-commit operation")
                }
            }
            try context.flushDedup()
            try context.flushIndex()
            try context.flushStates()
            return (outcomes, context.appendedPartitions)
        }
        noteOutcome(result.failureValue)
        switch result {
        case .failure(let error):
            for op in ops { op.fail(error) }
        case .success(let (outcomes, touched)):
            events?.committed(writes: ops.count, commitSeconds: lastCommitSeconds)
            // Statistics first: a caller that wakes up may read them at once.
            statistics.withLock { statistics in
                for (op, outcome) in zip(ops, outcomes) {
                    switch (op, outcome) {
                    case (.append, .append(.success)): statistics.appends += 1
                    case (.commitOffsets(let commit), .commit(.success)): statistics.offsetCommits += commit.commits.count
                    default: break
                    }
                }
            }
            var deliveries: [Delivery] = []
            deliveries.reserveCapacity(ops.count)
            var wrote = false
            for (op, outcome) in zip(ops, outcomes) {
                switch (op, outcome) {
                case (.append(let append), .append(let result)):
                    if case .success = result { wrote = true }
                    deliveries.append(Delivery(result: result, append.completion))
                case (.commitOffsets(let commit), .commit(let result)):
                    if case .success = result { wrote = true }
                    deliveries.append(Delivery(result: result, commit.completion))
                default: preconditionFailure("outcome does not match its operation")
                }
            }
            deliver(deliveries, wrote: wrote)
            if !touched.isEmpty { notifyCommitObservers(touched) }
        }
    }

    private func notifyCommitObservers(_ touched: Set<PartitionID>) {
        let observers = commitObservers.withLock { $0 }
        guard !observers.isEmpty else { return }
        let snapshot = catalog.withLock { $0 }
        var names: [UInt32: String] = [:]
        for info in snapshot.topics.values { names[info.id] = info.name }
        let partitions = Set(touched.compactMap { id in names[id.topicID].map { TopicPartition(topic: $0, partition: id.partition) } })
        for observer in observers { observer(partitions) }
    }

    private func processAlone(_ op: WriteOperation) {
        switch op {
        case .createTopic(let create):
            if let refused = refusedWhileFull() { return create.completion(.failure(refused)) }
            let result = createTopic(create)
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, create.completion)], wrote: (try? result.get()) != nil)
        case .deleteTopic(let delete):
            let result = withReserve { deleteTopic(delete) }
            deliver([Delivery(result: result, delete.completion)], wrote: (try? result.get()) != nil)
        case .retention(let retention):
            let result = withReserve { runRetention() }
            deliver([Delivery(result: result, retention.completion)], wrote: (try? result.get().batchesDeleted) ?? 0 > 0)
        case .deleteGroup(let delete):
            let result = withReserve { deleteGroup(delete.group) }
            deliver([Delivery(result: result, delete.completion)], wrote: ((try? result.get()) ?? 0) > 0)
        case .registerSchema(let register):
            if let refused = refusedWhileFull() { return register.completion(.failure(refused)) }
            let result = registerSchema(register)
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, register.completion)], wrote: (try? result.get().created) ?? false)
        case .initProducer(let initialize):
            if let refused = refusedWhileFull() { return initialize.completion(.failure(refused)) }
            let result = withTransaction { context in try context.initProducer(initialize) }
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result.flatMap { $0 }, initialize.completion)], wrote: (try? result.get().get()) != nil)
        case .setSchemaPolicy(let policy):
            if let refused = refusedWhileFull() { return policy.completion(.failure(refused)) }
            let result = setSchemaPolicy(policy)
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, policy.completion)], wrote: (try? result.get()) != nil)
        case .indexRecords(let records):
            if let refused = refusedWhileFull() { return records.completion(.failure(refused)) }
            let result = withTransaction { context -> Result<IndexRebuildStep, MillraceError> in
                let step = try context.indexRecords(records)
                try context.flushIndex()
                return step
            }.flatMap { $0 }
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, records.completion)], wrote: (try? result.get()) != nil)
        case .storeDictionary(let store):
            if let refused = refusedWhileFull() { return store.completion(.failure(refused)) }
            let result = storeDictionary(store)
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, store.completion)], wrote: (try? result.get()) != nil)
        case .append, .commitOffsets: preconditionFailure("group-commit operation run alone")
        }
    }

    /// Hands results to callers once what they wrote is durable. The environment runs with
    /// MDB_NOMETASYNC: a commit has synced its data pages but its meta page may still be in
    /// the page cache, so the syncer thread runs one more fdatasync (shared by every commit
    /// that finished meanwhile) before the callers hear of it, while this thread goes on with
    /// the next transaction. Callers whose operations wrote nothing are told at once.
    /// See docs/DECISIONS.md, "Meta-page sync off the writer thread".
    private func deliver(_ deliveries: [Delivery], wrote: Bool) {
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
    private func growMap(gateHeld: Bool) -> Bool {
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

    private func createTopic(_ op: CreateTopicOperation) -> Result<TopicInfo, MillraceError> {
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

    private func deleteTopic(_ op: DeleteTopicOperation) -> Result<Void, MillraceError> {
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
    private func deleteGroup(_ group: String) -> Result<Int, MillraceError> {
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

    private func deleteCommittedOffsets(_ txn: LMDBTransaction, topic: String) throws {
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

    private func runRetention() -> Result<RetentionReport, MillraceError> {
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

public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

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
    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

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

/// Starts a dedicated thread running `body` (the writer and syncer loops are synchronous
/// LMDB work that must not occupy Swift's cooperative pool).
func startThread(named name: String, _ body: @escaping () -> Void) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(body))
    var handle = pthread_t()
    let result = pthread_create(&handle, nil, { raw in
        Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box.toOpaque())
    precondition(result == 0, "cannot start the \(name) thread: \(result)")
    return handle
}

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
