import CLMDB
import MillraceFormat
import TestSupport
import Testing

@testable import MillraceStorage

/// The run layouts storage has: the suite below runs every test over each.
enum LayoutUnderTest: String, CaseIterable, CustomStringConvertible, Sendable {
    case dedup, index

    var description: String { rawValue }
}

/// A layout whose entries a test can make from a hash, a time and a serial number.
protocol TestableRunLayout: RunLayout {
    static func entry(hash: DedupHash, seconds: UInt32, serial: Int) -> [UInt8]
}

extension DedupLayout: TestableRunLayout {
    static func entry(hash: DedupHash, seconds: UInt32, serial: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: DedupEntry.size)
        bytes.withUnsafeMutableBytes { DedupEntry(hash: hash, partition: 0, timeSeconds: seconds, offset: Int64(serial)).write(to: $0.baseAddress!) }
        return bytes
    }
}

extension IndexLayout: TestableRunLayout {
    static func entry(hash: DedupHash, seconds: UInt32, serial: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: IndexEntry.size)
        let entry = IndexEntry(hash: hash, timeMs: Int64(seconds) * 1_000, offset: Int64(serial), topicID: 1, partition: 0, slot: 0)
        bytes.withUnsafeMutableBytes { entry.write(to: $0.baseAddress!) }
        return bytes
    }
}

/// One owner's runs in a fresh LMDB environment, with the memory its owner would keep (the
/// committed run list and next id), changed only after a commit as the writer does.
private final class RunFixture<Layout: TestableRunLayout> {
    static var owner: UInt32 { 7 }
    let directory = TemporaryDirectory()
    let env: LMDBEnvironment
    let dbi: RunDatabases
    var committed: [RunMeta] = []
    var nextRunID: UInt64 = 1
    var generator = SeededGenerator(seed: 24)
    var serial = 0

    init() throws {
        env = try LMDBEnvironment(directory: directory.path, mapSizeBytes: 256 << 20, maxDatabases: 4, maxReaders: 16, readOnly: false)
        let txn = try LMDBTransaction.begin(env, readOnly: false)
        dbi = RunDatabases(runs: try txn.openDatabase("runs", create: true)!, chunks: try txn.openDatabase("chunks", create: true)!)
        try txn.commit()
    }

    deinit {
        env.close()
        directory.remove()
    }

    /// `count` entries with fresh random hashes, in the layout's order.
    func entries(_ count: Int, seconds: UInt32 = 1_000) -> [[UInt8]] {
        let made = (0..<count).map { _ -> [UInt8] in
            serial += 1
            return Layout.entry(hash: DedupHash(high: generator.next(), low: generator.next()), seconds: seconds, serial: serial)
        }
        return made.sorted { left, right in
            left.withUnsafeBytes { l in right.withUnsafeBytes { r in Layout.precedes(l.baseAddress!, r.baseAddress!) } }
        }
    }

    /// Runs `body` on the run set in one write transaction; commits (then memory learns of
    /// the changes) unless `commit` is false.
    func transaction(commit: Bool = true, _ body: (inout RunSet<Layout>) throws -> Void) throws {
        let txn = try LMDBTransaction.begin(env, readOnly: false)
        var runs = RunSet<Layout>(
            owner: Self.owner, committed: committed, changes: RunChanges(), firstNew: nextRunID, nextRunID: 0, txn: txn, dbi: dbi, scratch: RunScratch())
        do {
            try body(&runs)
            try runs.storeNextRunID()
        } catch {
            txn.abort()
            throw error
        }
        guard commit else { return txn.abort() }
        try txn.commit()
        committed = runs.changes.applied(to: committed)
        nextRunID = runs.nextRunID
    }

    /// The owner's runs as a restart would load them: every stored header, in id order.
    func stored() throws -> [RunMeta] {
        let txn = try LMDBTransaction.begin(env, readOnly: true)
        defer { txn.abort() }
        return try (0..<nextRunID + 2).compactMap { id in
            try txn.get(dbi.runs, RunKeys.run(Self.owner, id)).map { RunMeta(id: id, header: try RunHeader(parsing: $0, as: Layout.self)) }
        }
    }

    /// A stored run's entries, in order, read from the map.
    func read(_ run: RunMeta) throws -> [[UInt8]] {
        let txn = try LMDBTransaction.begin(env, readOnly: true)
        defer { txn.abort() }
        let reader = try RunReader<Layout>(runID: run.id, txn: txn, dbi: dbi, copying: false)
        var read: [[UInt8]] = []
        while let entry = reader.current {
            read.append(Array(UnsafeRawBufferPointer(start: entry, count: Layout.entrySize)))
            try reader.advance()
        }
        return read
    }

    /// Whether any chunk of run `id` is still stored.
    func hasChunks(_ id: UInt64) throws -> Bool {
        let txn = try LMDBTransaction.begin(env, readOnly: true)
        defer { txn.abort() }
        return try RunKeys.withChunk(id, 0) { try txn.get(dbi.chunks, $0) } != nil
    }
}

extension RunSet {
    @discardableResult
    mutating func write(_ entries: [[UInt8]]) throws -> RunMeta {
        return try write(keysAtMost: entries.count) { writer in
            for entry in entries { try entry.withUnsafeBytes { try writer.append(raw: $0.baseAddress!) } }
        }
    }
}

/// The sorted-run set that dedup and the key index share, tested once over both layouts.
@Suite struct RunSetTests {
    private static func run(_ layout: LayoutUnderTest, _ body: (any TestableRunLayout.Type) throws -> Void) rethrows {
        switch layout {
        case .dedup: try body(DedupLayout.self)
        case .index: try body(IndexLayout.self)
        }
    }

    /// Sixteen runs of one size class, one per transaction, become one run in order holding
    /// every entry; the sources' headers and chunks are gone; a restart sees what memory holds.
    @Test(arguments: LayoutUnderTest.allCases) func runsPilingUpMergeIntoOne(_ layout: LayoutUnderTest) throws {
        try Self.run(layout) { try piledUpRunsMerge($0) }
    }

    private func piledUpRunsMerge<Layout: TestableRunLayout>(_: Layout.Type) throws {
        let fixture = try RunFixture<Layout>()
        var written: [[UInt8]] = []
        for round in 0..<16 {
            let entries = fixture.entries(Layout.chunkEntries / 8 - round)  // one size class
            written += entries
            try fixture.transaction { runs in
                try runs.write(entries)
                try runs.mergeDue(keep: { _ in true })
            }
            #expect(fixture.committed.count == (round < 15 ? round + 1 : 1))
            #expect(try fixture.stored() == fixture.committed)
        }
        let merged = try #require(fixture.committed.first)
        #expect(merged.count == written.count && merged.id == 17 && fixture.nextRunID == 18)
        let sorted = written.sorted { l, r in l.withUnsafeBytes { a in r.withUnsafeBytes { b in Layout.precedes(a.baseAddress!, b.baseAddress!) } } }
        #expect(try fixture.read(merged) == sorted, "the merged run holds every entry, in order, across \(merged.count / Layout.chunkEntries + 1) chunks")
        for id in UInt64(1)...16 { #expect(try !fixture.hasChunks(id)) }
    }

    /// A transaction that writes and merges, then aborts (as a crash would end it), leaves the
    /// stored runs and the owner's memory as they were; done again and committed, it merges.
    @Test(arguments: LayoutUnderTest.allCases) func anAbortedMergeLeavesNothing(_ layout: LayoutUnderTest) throws {
        try Self.run(layout) { try abortedMergeLeavesNothing($0) }
    }

    private func abortedMergeLeavesNothing<Layout: TestableRunLayout>(_: Layout.Type) throws {
        let fixture = try RunFixture<Layout>()
        for _ in 0..<15 { try fixture.transaction { try $0.write(fixture.entries(10)) } }
        let before = fixture.committed
        let last = fixture.entries(10)
        try fixture.transaction(commit: false) { runs in
            try runs.write(last)
            try runs.mergeDue(keep: { _ in true })
            #expect(runs.runs.count == 1 && runs.changes.removed.count == 16 && runs.changes.added.count == 1)
        }
        #expect(fixture.committed == before && fixture.nextRunID == 16)
        #expect(try fixture.stored() == before)
        for run in before { #expect(try fixture.hasChunks(run.id)) }
        try fixture.transaction { runs in
            try runs.write(last)
            try runs.mergeDue(keep: { _ in true })
        }
        #expect(fixture.committed.count == 1 && fixture.committed[0].count == 160)
        #expect(try fixture.stored() == fixture.committed)
    }

    /// Runs written in the transaction that merges them are copied out before being read; a
    /// merge drops what `keep` refuses; a run written and deleted in one transaction leaves no
    /// trace in its changes.
    @Test(arguments: LayoutUnderTest.allCases) func oneTransactionWritesMergesAndDeletes(_ layout: LayoutUnderTest) throws {
        try Self.run(layout) { try writesMergesAndDeletes($0) }
    }

    private func writesMergesAndDeletes<Layout: TestableRunLayout>(_: Layout.Type) throws {
        let fixture = try RunFixture<Layout>()
        var fresh: [[UInt8]] = []
        try fixture.transaction { runs in
            for round in 0..<16 {
                let old = fixture.entries(20, seconds: 100)
                let new = fixture.entries(20, seconds: 200)
                fresh += new
                try runs.write((old + new).sorted { l, r in l.withUnsafeBytes { a in r.withUnsafeBytes { b in Layout.precedes(a.baseAddress!, b.baseAddress!) } } })
                #expect(runs.runs.count == round + 1)
            }
            try runs.mergeDue(keep: { Layout.seconds(at: $0) >= 200 })
            let doomed = try runs.write(fixture.entries(3))
            try runs.delete(doomed.id)
            #expect(runs.changes.added.count == 1 && !runs.changes.removed.isEmpty)
        }
        let merged = try #require(fixture.committed.first)
        #expect(fixture.committed.count == 1 && merged.count == fresh.count && merged.minTime == 200)
        let sorted = fresh.sorted { l, r in l.withUnsafeBytes { a in r.withUnsafeBytes { b in Layout.precedes(a.baseAddress!, b.baseAddress!) } } }
        #expect(try fixture.read(merged) == sorted)
        #expect(try fixture.stored() == fixture.committed)
    }
}
