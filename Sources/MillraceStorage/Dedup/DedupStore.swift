import Synchronization
import CLMDB
import MillraceFormat

/// What the writer keeps in memory for a topic's duplicate detection: the list of its runs
/// (not their keys) and one filter of a fixed size over every key held. Memory does not grow
/// with the number of keys; the filter's false positives do (then a look-up asks the runs).
final class DedupTopicState {
    var runs: [RunMeta] = []
    let filter: UnsafeMutableRawBufferPointer
    var duplicatesTotal: UInt64 = 0
    /// Duplicates caught per minute, the last few minutes (for a recent rate).
    var recent: [(minute: Int64, count: Int)] = []

    init(filterBytes: Int) {
        filter = UnsafeMutableRawBufferPointer.allocate(byteCount: max(BlockedBloom.blockBytes, filterBytes), alignment: 64)
        filter.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit { filter.deallocate() }

    func resetFilter() { filter.initializeMemory(as: UInt8.self, repeating: 0) }

    var keysHeld: Int { runs.reduce(0) { $0 + $1.count } }
}

/// Counters a transaction changes, applied to the writer's memory only once it commits.
struct DedupChanges {
    var runs = RunChanges()
    var newHashes: [DedupHash] = []
    var duplicates = 0
    /// Set when runs were deleted: the filter rebuilt from every key still held.
    var rebuiltFilter: [UInt8]?
}

/// A topic's dedup state as reported (`topic describe`, metrics).
public struct DedupStatus: Sendable, Equatable {
    public var policy: DedupPolicy
    public var keysHeld: Int
    public var runs: Int
    /// When the oldest key held was first seen (ms), nil when none is held.
    public var oldestKeyMs: Int64?
    public var duplicatesTotal: UInt64
    /// Duplicates caught in the last five minutes.
    public var duplicatesRecent: Int
}

/// What `Storage.dedupPrecheck` found: per batch, per record, the original (nil: not held).
public struct DedupPrecheck: Sendable {
    public var originals: [[DedupHit?]]
    public var checkedThrough: UInt64
}

/// Where a key's first record went.
public struct DedupHit: Sendable, Equatable {
    public var partition: Int32
    public var offset: Int64
    public var firstSeenMs: Int64
}

/// The writer's dedup state for every topic that has a dedup policy (and the quarantine of
/// each, for parked records: `CatalogSnapshot.dedupPolicy(of:)`). Mutated only on the
/// writer thread; `lock` guards it for the readers of counters.
final class DedupStore: @unchecked Sendable {
    let filterBytes: Int
    private let lock = Mutex(())
    private var topics: [UInt32: DedupTopicState] = [:]
    /// Run ids are unique across topics and only grow (chunks are appended in id order).
    private(set) var nextRunID: UInt64 = 1

    init(filterBytes: Int) { self.filterBytes = filterBytes }

    /// Reads every run header and counter, and fills each topic's filter from its runs' keys.
    func load(txn: LMDBTransaction, dbi: RunDatabases) throws {
        let loaded = try RunSet<DedupLayout>.load(txn: txn, dbi: dbi) { topicID, tag, _, value in
            guard tag == DedupKeys.statsTag else { return }
            var reader = ByteReader(value)
            let total: UInt64 = try reader.readInteger("dedup duplicates")
            lock.withLock { topicState(topicID) }.duplicatesTotal = total
        }
        nextRunID = max(nextRunID, loaded.nextRunID)
        var runTopics: [UInt64: DedupTopicState] = [:]
        for (topicID, run) in loaded.runs {
            let state = lock.withLock { topicState(topicID) }
            state.runs.append(run)
            runTopics[run.id] = state
        }
        try txn.forEach(dbi.chunks) { chunk in
            var reader = ByteReader(chunk.key)
            let runID: UInt64 = try reader.readInteger("dedup chunk run")
            if let state = runTopics[runID], let base = chunk.value.baseAddress {
                for position in 0..<(chunk.value.count / DedupEntry.size) {
                    BlockedBloom.insert(DedupLayout.hash(at: base + position * DedupEntry.size), into: state.filter)
                }
            }
        }
    }

    /// The topic's state, made on first use (writer thread; inside `apply` the lock is held).
    func topicState(_ topicID: UInt32) -> DedupTopicState {
        if let state = topics[topicID] { return state }
        let state = DedupTopicState(filterBytes: filterBytes)
        topics[topicID] = state
        return state
    }

    func existingState(_ topicID: UInt32) -> DedupTopicState? { topics[topicID] }

    /// A run with its header, as one transaction reads it.
    struct RunView {
        var id: UInt64
        var maxTime: UInt32
        var header: RunHeader
    }

    /// The topic's runs, largest first (a key is most likely in the largest run, and is in
    /// one run only, unless it expired and came back), headers read in `txn`; nil if a run is
    /// missing there (merged or expired after the list was taken).
    static func views(_ runs: [RunMeta], topicID: UInt32, txn: LMDBTransaction, dbi: RunDatabases) throws -> [RunView]? {
        var views: [RunView] = []
        views.reserveCapacity(runs.count)
        for run in runs.sorted(by: { $0.count > $1.count }) {
            guard let bytes = try txn.get(dbi.runs, RunKeys.run(topicID, run.id)) else { return nil }
            views.append(RunView(id: run.id, maxTime: run.maxTime, header: try DedupRuns.header(bytes)))
        }
        return views
    }

    static func search(_ hash: DedupHash, in views: [RunView], after: UInt64, notBefore: UInt32, topicID: UInt32, txn: LMDBTransaction, dbi: RunDatabases) throws
        -> DedupEntry?
    {
        for view in views {
            // Runs up to `after` were searched before; runs all older than the window hold nothing.
            guard view.id > after, view.maxTime >= notBefore else { continue }
            if let found = try DedupRuns.find(hash, header: view.header, runID: view.id, txn: txn, dbi: dbi), found.timeSeconds >= notBefore {
                return found
            }
        }
        return nil
    }

    /// On the writer thread: the first record with `hash` still inside the window
    /// (`notBefore`, seconds), in runs newer than `after` (those up to it were searched before
    /// the append reached the writer). `views` caches the runs for the transaction.
    func find(
        _ hash: DedupHash, topicID: UInt32, notBefore: UInt32, after: UInt64, txn: LMDBTransaction, dbi: RunDatabases, views: inout [RunView]?
    ) throws -> DedupEntry? {
        guard let state = topics[topicID], let newest = state.runs.last, newest.id > after else { return nil }
        // After a look-up on the lane only the few newest runs are left: their own filters
        // answer; otherwise the topic's filter first.
        if after == 0, !BlockedBloom.mayContain(hash, in: UnsafeRawBufferPointer(state.filter)) { return nil }
        if views == nil { views = try Self.views(state.runs, topicID: topicID, txn: txn, dbi: dbi) ?? [] }
        return try Self.search(hash, in: views ?? [], after: after, notBefore: notBefore, topicID: topicID, txn: txn, dbi: dbi)
    }

    /// Off the writer thread, before an append is queued: which records' keys the topic holds
    /// as of now, and the newest run searched (the writer then searches only newer ones, and
    /// this transaction's keys). `read` opens a read transaction after the run list is taken.
    func precheck(
        _ hashes: [[DedupHash?]], topicID: UInt32, notBefore: UInt32, dbi: RunDatabases,
        read: ((LMDBTransaction) throws -> ([[DedupEntry?]], UInt64)) throws -> ([[DedupEntry?]], UInt64)
    ) throws -> (originals: [[DedupEntry?]], checkedThrough: UInt64) {
        let nothing = hashes.map { [DedupEntry?](repeating: nil, count: $0.count) }
        // The run list and the filter's answers, together, under the lock.
        let (runs, maybe): ([RunMeta], [[Bool]]) = lock.withLock {
            guard let state = topics[topicID], !state.runs.isEmpty else { return ([], []) }
            let filter = UnsafeRawBufferPointer(state.filter)
            return (state.runs, hashes.map { batch in batch.map { $0.map { BlockedBloom.mayContain($0, in: filter) } ?? false } })
        }
        guard let newest = runs.last else { return (nothing, 0) }
        guard maybe.contains(where: { $0.contains(true) }) else { return (nothing, newest.id) }
        return try read { txn in
            guard let views = try Self.views(runs, topicID: topicID, txn: txn, dbi: dbi) else { return (nothing, 0) }
            var originals = nothing
            for (batch, batchHashes) in hashes.enumerated() {
                for (record, hash) in batchHashes.enumerated() where maybe[batch][record] {
                    guard let hash else { continue }
                    originals[batch][record] = try Self.search(hash, in: views, after: 0, notBefore: notBefore, topicID: topicID, txn: txn, dbi: dbi)
                }
            }
            return (originals, newest.id)
        }
    }

    /// Applies a committed transaction's changes.
    func apply(_ changes: [UInt32: DedupChanges], nextRunID: UInt64, nowMs: Int64) {
        lock.withLock {
            self.nextRunID = max(self.nextRunID, nextRunID)
            for (topicID, change) in changes {
                let state = topicState(topicID)
                state.runs = change.runs.applied(to: state.runs)
                if let rebuilt = change.rebuiltFilter, rebuilt.count == state.filter.count {
                    rebuilt.withUnsafeBytes { state.filter.copyMemory(from: $0) }
                }
                for hash in change.newHashes { BlockedBloom.insert(hash, into: state.filter) }
                if change.duplicates > 0 { Self.count(change.duplicates, in: state, nowMs: nowMs) }
            }
        }
    }

    func forget(_ topicID: UInt32) { lock.withLock { topics[topicID] = nil } }

    /// Topics whose duplicate count changed off the writer since it last wrote counters.
    private var countsChanged: Set<UInt32> = []

    /// Duplicates caught before the writer (on a validation lane): counted at once, stored
    /// with the writer's next transaction.
    func countDuplicates(_ count: Int, topicID: UInt32, nowMs: Int64) {
        guard count > 0 else { return }
        lock.withLock {
            Self.count(count, in: topicState(topicID), nowMs: nowMs)
            countsChanged.insert(topicID)
        }
    }

    /// The topics whose counters the writer should store now.
    func takeChangedCounts() -> Set<UInt32> {
        lock.withLock {
            defer { countsChanged = [] }
            return countsChanged
        }
    }

    var hasChangedCounts: Bool { lock.withLock { !countsChanged.isEmpty } }

    private static func count(_ count: Int, in state: DedupTopicState, nowMs: Int64) {
        state.duplicatesTotal += UInt64(count)
        let minute = nowMs / 60_000
        if state.recent.last?.minute == minute { state.recent[state.recent.count - 1].count += count } else { state.recent.append((minute, count)) }
        state.recent.removeAll { $0.minute <= minute - 5 }
    }

    func duplicatesTotal(_ topicID: UInt32) -> UInt64 { lock.withLock { topics[topicID]?.duplicatesTotal ?? 0 } }

    func status(_ topicID: UInt32, policy: DedupPolicy, nowMs: Int64) -> DedupStatus {
        lock.withLock {
            let state = topics[topicID]
            let oldest = state?.runs.filter { $0.count > 0 }.map(\.minTime).min()
            let minute = nowMs / 60_000
            return DedupStatus(
                policy: policy, keysHeld: state?.keysHeld ?? 0, runs: state?.runs.count ?? 0, oldestKeyMs: oldest.map { Int64($0) * 1_000 },
                duplicatesTotal: state?.duplicatesTotal ?? 0,
                duplicatesRecent: state?.recent.filter { $0.minute > minute - 5 }.reduce(0) { $0 + $1.count } ?? 0)
        }
    }
}
