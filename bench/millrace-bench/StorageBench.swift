import ArgumentParser
import CLMDB
import Foundation
import MillraceFormat
import MillraceStorage

/// `millrace-bench storage`: durable appends through the group-commit writer, a full scan,
/// offset-for-timestamp look-ups, and raw LMDB writing the same bytes as a baseline.
struct StorageBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage", abstract: "Benchmark the storage engine (durable appends, scan, time look-ups, raw-LMDB baseline).")

    @Option(help: "Records per append case (256-byte values).") var records = 2_000_000
    @Option(help: "Longest any one case may run, in seconds; a case that hits it reports what it did.") var seconds = 20.0
    @Option(help: "Where to put the benchmark's data directories (removed afterwards).") var dir: String?
    @Option(help: "Newline-delimited JSON events (from `millrace generate`) for the realistic-payload cases.")
    var events: String?
    @Option(help: "Run each case this many times and report the median run (the disk here is noisy).") var runs: Int = 1
    @Option(help: "Run only these cases (comma-separated names, e.g. append-b1-x64,scan).") var only: String?
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func wanted(_ name: String) -> Bool { only.map { $0.split(separator: ",").contains(Substring(name)) } ?? true }

    static let valueBytes = 256
    static let mapBytes = 32 << 30

    func run() async throws {
        let root = dir ?? NSTemporaryDirectory() + "millrace-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var results: [BenchResult] = []
        func report(_ runs: [BenchResult]) {
            var result = runs.sorted { $0.recordsPerSecond < $1.recordsPerSecond }[runs.count / 2]
            if runs.count > 1 {
                let rates = runs.map(\.recordsPerSecond)
                result.fields["runs"] = runs.count
                result.fields["records_per_s_min"] = rates.min()!.rounded()
                result.fields["records_per_s_max"] = rates.max()!.rounded()
                result.note = String(format: "median of %d [%.0f–%.0f/s]; ", runs.count, rates.min()!, rates.max()!) + result.note
            }
            results.append(result)
            if json { print(Report.jsonLine(result.json)) }
            else { FileHandle.standardError.write(Data("  done: \(result.name)\n".utf8)) }
        }
        if json {
            print(Report.jsonLine(Report.conditions(extra: ["bench": "storage", "records": records, "runs": self.runs, "case_seconds_max": seconds, "data_dir": root, "value_bytes": Self.valueBytes])))
        }
        let fixed = (0..<Self.valueBytes).map { UInt8(0x61 + $0 % 26) }
        for (batchRecords, appenders) in [(1000, 1), (100, 1), (1, 1), (1000, 64), (100, 64), (1, 64)] {
            let values = Array(repeating: fixed, count: batchRecords)
            for style in appenders == 1 ? [AppenderStyle.task] : [.callback, .task] {
                let name = "append-b\(batchRecords)-x\(appenders)" + (style == .task && appenders > 1 ? "-tasks" : "")
                guard wanted(name) else { continue }
                var measured: [BenchResult] = []
                for _ in 0..<self.runs { measured.append(try await appendCase(root, name: name, values: values, appenders: appenders, style: style)) }
                report(measured)
            }
        }
        if wanted("lmdb-raw-baseline") {
            for batchRecords in [1000, 1] {
                report(try (0..<self.runs).map { _ in try rawBaseline(root, batchRecords: batchRecords, fixed: fixed) })
            }
        }
        if let events {
            let lines = try String(contentsOfFile: events, encoding: .utf8).split(separator: "\n").prefix(1000).map { Array($0.utf8) }
            for codec in [CompressionCodec.none, .zstd] {
                let name = codec == .none ? "append-events-b1000-x1" : "append-events-zstd-b1000-x1"
                guard wanted(name) else { continue }
                var measured: [BenchResult] = []
                for _ in 0..<self.runs { measured.append(try await appendCase(root, name: name, values: lines, appenders: 1, codec: codec)) }
                report(measured)
            }
        }
        if wanted("scan") || wanted("offset-for-timestamp") {
            for result in try await timelineCases(root, fixed: fixed) { report([result]) }
        }
        if !json {
            print("millrace-bench storage: \(records) records of \(Self.valueBytes) B per append case, each run capped at \(Int(seconds)) s, \(self.runs) run(s) per case")
            print("MB/s counts stored batch bytes (record framing and the 61-byte batch header included); every append is durable (fdatasync) before it is acknowledged")
            Report.printTable(results)
        }
    }

    func openStorage(_ path: String) throws -> Storage {
        var options = Storage.Options()
        options.initialMapSizeBytes = Self.mapBytes
        options.retentionCheckIntervalMs = nil
        return try Storage.open(directory: path, options: options)
    }

    /// How concurrent appenders call the storage: Swift tasks awaiting `append`, or chains of
    /// completion callbacks (each completion issues that appender's next append), which is
    /// how the network server calls it from its event loops.
    enum AppenderStyle { case task, callback }

    func appendCase(
        _ root: String, name: String, values: [[UInt8]], appenders: Int, style: AppenderStyle = .task,
        codec: CompressionCodec = .none
    ) async throws -> BenchResult {
        let path = root + "/" + name
        let storage = try openStorage(path)
        defer {
            storage.close()
            try? FileManager.default.removeItem(atPath: path)
        }
        let partitions: Int32 = 1
        _ = try await storage.createTopic("bench", partitions: partitions)
        let batch = try RecordBatch(timestamp: 1_700_000_000_000, values: values, codec: codec).encoded()
        let batchRecords = values.count
        let target = records
        let deadline = monotonicSeconds() + seconds
        let claimed = Claims(limit: target / batchRecords)
        let before = storage.writerStatistics
        let start = monotonicSeconds()
        switch style {
        case .task:
            try await withThrowingTaskGroup(of: Void.self) { group in
                for appender in 0..<appenders {
                    group.addTask {
                        let partition = Int32(appender) % partitions
                        while claimed.take(), monotonicSeconds() < deadline {
                            _ = try await storage.append(topic: "bench", partition: partition, batch: batch)
                        }
                    }
                }
                try await group.waitForAll()
            }
        case .callback:
            let finished = DispatchSemaphore(value: 0)
            let failures = Claims(limit: 0)
            for appender in 0..<appenders {
                let partition = Int32(appender) % partitions
                @Sendable func next() {
                    guard claimed.take(), monotonicSeconds() < deadline else {
                        finished.signal()
                        return
                    }
                    storage.append(topic: "bench", partition: partition, batch: batch) { result in
                        if case .failure = result { failures.fail() }
                        next()
                    }
                }
                next()
            }
            for _ in 0..<appenders { await withCheckedContinuation { continuation in
                DispatchQueue.global().async { finished.wait(); continuation.resume() }
            } }
            if failures.failed > 0 { throw MillraceError(.unexpected, "\(failures.failed) appends failed") }
        }
        let elapsed = monotonicSeconds() - start
        let after = storage.writerStatistics
        let appends = after.appends - before.appends
        let transactions = after.transactions - before.transactions
        let perTransaction = Double(appends) / Double(max(transactions, 1))
        let commitMicros = Double(after.commitNanoseconds - before.commitNanoseconds) / 1000 / Double(max(transactions, 1))
        let busyShare = Double(after.busyNanoseconds - before.busyNanoseconds) / 1e9 / elapsed
        let capped = appends < target / batchRecords
        return BenchResult(
            name: name, records: appends * batchRecords, bytes: appends * batch.count, seconds: elapsed,
            fields: [
                "batch_records": batchRecords, "appenders": appenders, "transactions": transactions,
                "appender_style": style == .task ? "tasks" : "callbacks",
                "appends_per_txn": (perTransaction * 10).rounded() / 10, "batch_bytes": batch.count, "codec": codec.description,
                "time_capped": capped, "commit_us_avg": commitMicros.rounded(), "writer_busy_share": (busyShare * 100).rounded() / 100,
            ],
            note: String(
                format: "%d txns, %.1f appends/txn, commit %.0f µs avg, writer busy %.0f%%%@", transactions, perTransaction, commitMicros,
                busyShare * 100, capped ? ", time cap hit" : ""))
    }

    /// Raw LMDB: the same batch bytes, one put with MDB_APPEND per transaction, with the sync
    /// policy Millrace's writer uses: MDB_NOMETASYNC (the commit syncs its data pages, then
    /// writes the meta page unsynced) and an explicit `mdb_env_sync` before the append counts,
    /// so both do the same two flushes per durable commit.
    func rawBaseline(_ root: String, batchRecords: Int, fixed: [UInt8]) throws -> BenchResult {
        let path = root + "/raw-\(batchRecords)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let batch = try RecordBatch(timestamp: 1_700_000_000_000, values: Array(repeating: fixed, count: batchRecords)).encoded()
        var env: OpaquePointer?
        precondition(mdb_env_create(&env) == 0)
        defer { mdb_env_close(env) }
        mdb_env_set_mapsize(env, Self.mapBytes)
        mdb_env_set_maxdbs(env, 4)
        precondition(mdb_env_open(env, path, UInt32(MDB_NOTLS | MDB_NOMETASYNC), 0o644) == 0)
        var txn: OpaquePointer?
        var dbi: MDB_dbi = 0
        mdb_txn_begin(env, nil, 0, &txn)
        mdb_dbi_open(txn, "log", UInt32(MDB_CREATE), &dbi)
        mdb_txn_commit(txn)
        let batches = records / batchRecords
        let deadline = monotonicSeconds() + seconds
        let start = monotonicSeconds()
        var written = 0
        var bytes = batch
        while written < batches && monotonicSeconds() < deadline {
            var key = UInt64(written * batchRecords).bigEndian
            try bytes.withUnsafeMutableBytes { value in
                try withUnsafeMutableBytes(of: &key) { keyBytes in
                    var k = MDB_val(mv_size: 8, mv_data: keyBytes.baseAddress)
                    var v = MDB_val(mv_size: value.count, mv_data: value.baseAddress)
                    mdb_txn_begin(env, nil, 0, &txn)
                    guard mdb_put(txn, dbi, &k, &v, UInt32(MDB_APPEND)) == 0, mdb_txn_commit(txn) == 0, mdb_env_sync(env, 1) == 0 else {
                        throw MillraceError(.storageError, "raw LMDB baseline write failed")
                    }
                }
            }
            written += 1
        }
        let elapsed = monotonicSeconds() - start
        return BenchResult(
            name: "lmdb-raw-baseline", records: written * batchRecords, bytes: written * batch.count, seconds: elapsed,
            fields: ["batch_records": batchRecords, "appenders": 1, "transactions": written, "time_capped": written < batches],
            note: "b\(batchRecords): one MDB_APPEND put per batch, committed with MDB_NOMETASYNC and then mdb_env_sync (Millrace's two flushes)")
    }

    /// Fills one partition with `records` records in 1000-record batches whose timestamps rise
    /// 1 ms per record (not timed), then times a full scan and offset-for-timestamp look-ups.
    func timelineCases(_ root: String, fixed: [UInt8]) async throws -> [BenchResult] {
        let storage = try openStorage(root + "/timeline")
        defer { storage.close() }
        _ = try await storage.createTopic("timeline", partitions: 1)
        let batchRecords = 1000
        let startTimestamp: Int64 = 1_700_000_000_000
        var template = try RecordBatch(
            baseTimestamp: startTimestamp,
            records: (0..<batchRecords).map { Record(timestampDelta: Int64($0), offsetDelta: Int32($0), value: fixed) }
        ).encoded()
        let batches = records / batchRecords
        for index in 0..<batches {
            let base = startTimestamp + Int64(index * batchRecords)
            template.withUnsafeMutableBytes { bytes in
                bytes.storeBytes(of: base.bigEndian, toByteOffset: RecordBatchLayout.baseTimestampAt, as: Int64.self)
                bytes.storeBytes(of: (base + Int64(batchRecords - 1)).bigEndian, toByteOffset: RecordBatchLayout.maxTimestampAt, as: Int64.self)
                let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[RecordBatchLayout.attributesAt...]))
                bytes.storeBytes(of: crc.bigEndian, toByteOffset: RecordBatchLayout.crcAt, as: UInt32.self)
            }
            _ = try await storage.append(topic: "timeline", partition: 0, batch: template)
        }
        let total = Int64(batches * batchRecords)

        var scanned = 0
        var scannedBytes = 0
        let scanStart = monotonicSeconds()
        try storage.forEachBatch(topic: "timeline", partition: 0, from: 0) { header, bytes in
            scanned += Int(header.recordCount)
            scannedBytes += bytes.count
            return true
        }
        let scanSeconds = monotonicSeconds() - scanStart
        precondition(Int64(scanned) == total, "scan saw \(scanned) of \(total) records")
        let scan = BenchResult(
            name: "scan", records: scanned, bytes: scannedBytes, seconds: scanSeconds,
            fields: ["batch_records": batchRecords, "crc_checked": true], note: "warm page cache, CRC checked per batch")

        var generator = SystemRandomNumberGenerator()
        var latencies: [Double] = []
        let lookups = 10_000
        let lookupStart = monotonicSeconds()
        for _ in 0..<lookups {
            let target = startTimestamp + Int64.random(in: 0..<total, using: &generator)
            let begin = monotonicSeconds()
            let answer = try storage.offset(forTimestamp: target, topic: "timeline", partition: 0)
            latencies.append((monotonicSeconds() - begin) * 1e6)
            precondition(answer.offset == target - startTimestamp, "look-up of \(target) gave \(answer.offset)")
        }
        let lookupSeconds = monotonicSeconds() - lookupStart
        latencies.sort()
        let p50 = percentile(latencies, 0.5)
        let p99 = percentile(latencies, 0.99)
        let lookup = BenchResult(
            name: "offset-for-timestamp", records: lookups, bytes: 0, seconds: lookupSeconds,
            fields: ["p50_us": (p50 * 10).rounded() / 10, "p99_us": (p99 * 10).rounded() / 10, "log_records": total],
            note: String(format: "over %lld records: median %.1f µs, p99 %.1f µs (each answer checked)", total, p50, p99))
        return [scan, lookup]
    }
}

/// Hands out batch slots to concurrent appenders until the limit, and counts failures.
final class Claims: @unchecked Sendable {
    private let lock = NSLock()
    private var remaining: Int
    private(set) var failed = 0
    init(limit: Int) { remaining = limit }
    func fail() {
        lock.lock()
        failed += 1
        lock.unlock()
    }
    func take() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard remaining > 0 else { return false }
        remaining -= 1
        return true
    }
}
