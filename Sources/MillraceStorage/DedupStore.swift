import CLMDB
import MillraceFormat

/// What the writer keeps in memory for a topic's duplicate detection: the list of its runs
/// (not their keys) and one filter of a fixed size over every key held. Memory does not grow
/// with the number of keys; the filter's false positives do (then a look-up asks the runs).
final class DedupTopicState {
    var runs: [DedupRunMeta] = []
    let filter: UnsafeMutableRawBufferPointer
    var duplicatesTotal: UInt64 = 0
    var nextRunID: UInt64 = 1
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
    var addedRuns: [DedupRunMeta] = []
    var removedRuns: Set<UInt64> = []
    var newHashes: [DedupHash] = []
    var duplicates = 0
    var nextRunID: UInt64 = 0
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

/// Where a key's first record went.
public struct DedupHit: Sendable, Equatable {
    public var partition: Int32
    public var offset: Int64
    public var firstSeenMs: Int64
}

/// The writer's dedup state for every topic that has a dedup policy. Mutated only on the
/// writer thread; `lock` guards it for the readers of counters.
final class DedupStore: @unchecked Sendable {
    let filterBytes: Int
    private let lock = ConditionLock()
    private var topics: [UInt32: DedupTopicState] = [:]

    init(filterBytes: Int) { self.filterBytes = filterBytes }

    /// Reads every run header and counter, and fills each topic's filter from its runs' keys.
    func load(txn: LMDBTransaction, dbi: MDB_dbi) throws {
        let cursor = try LMDBCursor(txn, dbi)
        defer { cursor.close() }
        var entry = try cursor.get(MDB_FIRST)
        while let current = entry {
            guard current.key.count >= 5 else {
                entry = try cursor.get(MDB_NEXT)
                continue
            }
            var reader = ByteReader(current.key)
            let topicID: UInt32 = try reader.readInteger("dedup topic")
            let tag: UInt8 = try reader.readInteger("dedup tag")
            let state = lock.withLock { topicState(topicID) }
            switch tag {
            case DedupKeys.runTag:
                let runID: UInt64 = try reader.readInteger("dedup run id")
                let header = try DedupRunHeader(parsing: current.value)
                state.runs.append(DedupRunMeta(id: runID, count: header.count, minTime: header.minTime, maxTime: header.maxTime))
                state.nextRunID = max(state.nextRunID, runID + 1)
            case DedupKeys.chunkTag:
                if let base = current.value.baseAddress {
                    for position in 0..<(current.value.count / DedupEntry.size) {
                        BlockedBloom.insert(DedupEntry.hash(at: base + position * DedupEntry.size), into: state.filter)
                    }
                }
            case DedupKeys.statsTag:
                var value = ByteReader(current.value)
                state.duplicatesTotal = try value.readInteger("dedup duplicates")
                state.nextRunID = max(state.nextRunID, try value.readInteger("dedup next run"))
            default:
                break
            }
            entry = try cursor.get(MDB_NEXT)
        }
        for state in topics.values { state.runs.sort { $0.id < $1.id } }
    }

    /// The topic's state, made on first use (writer thread; inside `apply` the lock is held).
    func topicState(_ topicID: UInt32) -> DedupTopicState {
        if let state = topics[topicID] { return state }
        let state = DedupTopicState(filterBytes: filterBytes)
        topics[topicID] = state
        return state
    }

    func existingState(_ topicID: UInt32) -> DedupTopicState? { topics[topicID] }

    /// The first record with `hash` still inside the window (`notBefore`, seconds), searching
    /// the newest runs first. `headers` caches run headers for the transaction.
    func find(
        _ hash: DedupHash, topicID: UInt32, notBefore: UInt32, txn: LMDBTransaction, dbi: MDB_dbi, headers: inout [UInt64: DedupRunHeader]
    ) throws -> DedupEntry? {
        guard let state = topics[topicID], !state.runs.isEmpty, BlockedBloom.mayContain(hash, in: UnsafeRawBufferPointer(state.filter)) else { return nil }
        for run in state.runs.reversed() where run.maxTime >= notBefore {
            let header: DedupRunHeader
            if let cached = headers[run.id] {
                header = cached
            } else {
                guard let bytes = try txn.get(dbi, DedupKeys.run(topicID, run.id)) else { continue }
                header = try DedupRunHeader(parsing: bytes)
                headers[run.id] = header
            }
            if let found = try DedupRuns.find(hash, header: header, runID: run.id, topicID: topicID, txn: txn, dbi: dbi), found.timeSeconds >= notBefore {
                return found
            }
        }
        return nil
    }

    /// Applies a committed transaction's changes.
    func apply(_ changes: [UInt32: DedupChanges], nowMs: Int64) {
        lock.withLock {
            for (topicID, change) in changes {
                let state = topicState(topicID)
                state.runs.removeAll { change.removedRuns.contains($0.id) }
                state.runs.append(contentsOf: change.addedRuns)
                state.runs.sort { $0.id < $1.id }
                state.nextRunID = max(state.nextRunID, change.nextRunID)
                if let rebuilt = change.rebuiltFilter, rebuilt.count == state.filter.count {
                    rebuilt.withUnsafeBytes { state.filter.copyMemory(from: $0) }
                }
                for hash in change.newHashes { BlockedBloom.insert(hash, into: state.filter) }
                if change.duplicates > 0 {
                    state.duplicatesTotal += UInt64(change.duplicates)
                    let minute = nowMs / 60_000
                    if state.recent.last?.minute == minute { state.recent[state.recent.count - 1].count += change.duplicates } else {
                        state.recent.append((minute, change.duplicates))
                    }
                    state.recent.removeAll { $0.minute <= minute - 5 }
                }
            }
        }
    }

    func forget(_ topicID: UInt32) { lock.withLock { topics[topicID] = nil } }

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
