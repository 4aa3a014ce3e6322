import CLMDB
import MillraceFormat

/// One owner's sorted runs as a write transaction sees and changes them: a topic's dedup runs,
/// or the key index's (owner 0, every topic). The one place runs are written, merged and
/// deleted, for both layouts.
///
/// Crash consistency is the transaction's: every run written, merged or deleted here goes
/// into LMDB in the transaction that holds the records it belongs to, and the owner's memory
/// (its run list) learns of it only from `changes`, applied after that transaction commits
/// (`RunChanges.applied(to:)`). An aborted or killed transaction leaves both as they were.
struct RunSet<Layout: RunLayout> {
    let owner: UInt32
    let txn: LMDBTransaction
    let dbi: RunDatabases
    /// The writer thread's reusable run buffers.
    let scratch: RunScratch?
    /// The first id not committed before this transaction: runs from it on were written in
    /// it, and are copied out before a merge reads them (`RunReader`).
    let firstNew: UInt64
    private(set) var nextRunID: UInt64
    /// The runs as this transaction leaves them so far.
    private(set) var runs: [RunMeta]
    private(set) var changes: RunChanges

    /// `committed`: the owner's runs before this transaction; `changes`: what the transaction
    /// did to them already; `nextRunID`: the next id it would give (0: none given yet).
    init(
        owner: UInt32, committed: [RunMeta], changes: RunChanges, firstNew: UInt64, nextRunID: UInt64, txn: LMDBTransaction, dbi: RunDatabases,
        scratch: RunScratch?
    ) {
        self.owner = owner
        self.txn = txn
        self.dbi = dbi
        self.scratch = scratch
        self.firstNew = firstNew
        self.nextRunID = max(nextRunID, firstNew)
        self.changes = changes
        runs = committed.filter { !changes.removed.contains($0.id) } + changes.added
    }

    /// Writes one run of the entries `fill` appends to the writer, in the layout's order.
    @discardableResult
    mutating func write(keysAtMost: Int, _ fill: (RunWriter<Layout>) throws -> Void) throws -> RunMeta {
        let writer = RunWriter<Layout>(runID: nextRunID, owner: owner, keysAtMost: keysAtMost, txn: txn, dbi: dbi, scratch: scratch)
        try fill(writer)
        let written = try writer.finish()
        nextRunID += 1
        changes.added.append(written)
        runs.append(written)
        return written
    }

    /// Deletes a run, header and chunks.
    mutating func delete(_ runID: UInt64) throws {
        try SortedRuns.delete(runID: runID, owner: owner, txn: txn, dbi: dbi)
        changes.removed.insert(runID)
        changes.added.removeAll { $0.id == runID }
        runs.removeAll { $0.id == runID }
    }

    /// Merges runs that piled up (`RunMeta.mergeCandidates`) until none are due. `keep` and
    /// `replaces` are `SortedRuns.merge`'s; `merged` hears of each merge, its sources already
    /// deleted, for what the owner keeps beside its runs.
    mutating func mergeDue(
        keep: (UnsafeRawPointer) -> Bool, replaces: ((UnsafeRawPointer, UnsafeRawPointer) -> Bool)? = nil,
        merged: (_ sources: [RunMeta], _ result: RunMeta) throws -> Void = { _, _ in }
    ) throws {
        while let group = RunMeta.mergeCandidates(runs) {
            // Runs stored before this transaction are read in place; its own are copied.
            let sources = try group.map { try RunReader<Layout>(runID: $0.id, txn: txn, dbi: dbi, copying: $0.id >= firstNew) }
            let written = try write(keysAtMost: group.reduce(0) { $0 + $1.count }) { writer in
                try SortedRuns.merge(sources, into: writer, keep: keep, replaces: replaces)
            }
            for run in group { try delete(run.id) }
            try merged(group, written)
        }
    }

    /// Stores the next run id (`RunKeys.nextRun`): ids only grow, across restarts too, so
    /// every chunk is appended at the end of the chunk database.
    func storeNextRunID() throws { try Self.storeNextRunID(nextRunID, txn: txn, dbi: dbi) }

    static func storeNextRunID(_ id: UInt64, txn: LMDBTransaction, dbi: RunDatabases) throws {
        var next = ByteWriter(capacity: 8)
        next.writeInteger(id)
        try txn.put(dbi.runs, RunKeys.nextRun, next.bytes)
    }
}

/// What a transaction did to one owner's run list, applied to the owner's memory once it
/// commits.
struct RunChanges: Equatable {
    var added: [RunMeta] = []
    var removed: Set<UInt64> = []

    var isEmpty: Bool { added.isEmpty && removed.isEmpty }

    /// `runs` (the list before the transaction) with these changes, in id order.
    func applied(to runs: [RunMeta]) -> [RunMeta] {
        var result = runs
        result.removeAll { removed.contains($0.id) }
        result.append(contentsOf: added)
        result.sort { $0.id < $1.id }
        return result
    }
}
