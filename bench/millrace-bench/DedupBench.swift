import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceStorage
import MillraceWire

/// `millrace-bench dedup`: durable produce to a topic that catches duplicates by
/// `json:/event_id` while it already holds many keys, against the same records to a topic
/// without duplicate detection, alternating, through a release `millrace serve`.
struct DedupBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dedup", abstract: "Durable produce with business-key dedup holding many keys, against the same produce without it.")

    @Option(help: "Distinct keys the dedup topic holds before the measured runs.") var keys = 10_000_000
    @Option(help: "Records per measured run.") var records = 1_000_000
    @Option(help: "Percent of each measured run's records that repeat a key already held.") var duplicatePercent = 10
    @Option(help: "Measured pairs (dedup off, then on).") var rounds = 2
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() async throws {
        guard keys >= 1, records >= 1, (0...100).contains(duplicatePercent), rounds >= 1 else {
            throw ValidationError("--keys and --records take 1 or more, --duplicate-percent 0...100, --rounds 1 or more")
        }
        let directory = NSTemporaryDirectory() + "millrace-dedup-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ServerProcess(directory: directory)
        let client = MillraceClient(host: "127.0.0.1", port: server.port)
        try await client.createTopic(CreateTopicRequest(name: "checked", partitions: 4))
        try await client.setDedupPolicy(topic: "checked", key: "json:/event_id", windowMs: DedupPolicy.defaultWindowMs)
        try await client.createTopic(CreateTopicRequest(name: "plain", partitions: 4))
        if json { print(Report.jsonLine(Report.conditions(extra: ["bench": "dedup", "keys": keys, "records": records, "duplicate_percent": duplicatePercent]))) }

        // Held keys: small records, each a new key.
        var results: [BenchResult] = []
        let preload = try await produce(client: client, server: server, topic: "checked", count: keys, expectDuplicates: 0) { index in
            Self.small(id: index)
        }
        results.append(preload.result(name: "preload", note: "\(keys) distinct keys into the dedup topic (~60 B records)"))
        // Measured: confirmations (~390 B); a share repeat held keys, the rest are new.
        var random = SystemRandomNumberGenerator()
        for round in 0..<rounds {
            let base = keys + round * records
            let stream = (0..<records).map { index -> Int in
                Int.random(in: 0..<100, using: &random) < duplicatePercent ? Int.random(in: 0..<keys, using: &random) : base + index
            }
            let repeats = stream.enumerated().filter { $0.element != keys + round * records + $0.offset }.count
            for checked in [false, true] {
                let run = try await produce(
                    client: client, server: server, topic: checked ? "checked" : "plain", count: records, expectDuplicates: checked ? repeats : 0
                ) { Self.confirmation(id: stream[$0]) }
                results.append(
                    run.result(
                        name: checked ? "produce-dedup" : "produce-plain",
                        note: checked ? "\(run.duplicates) duplicates caught (\(repeats) sent)" : "same records, no duplicate detection"))
            }
        }
        let status = try await client.dedupStatus(topic: "checked")
        await client.close()
        server.stop()
        var options = Storage.Options()
        options.readOnly = true
        let storage = try Storage.open(directory: directory, options: options)
        let dedupBytes = try storage.dedupDiskBytes()
        storage.close()
        let bytesPerKey = Double(dedupBytes) / Double(max(1, status.keysHeld))
        let plain = results.filter { $0.name == "produce-plain" }.map(\.recordsPerSecond)
        let checked = results.filter { $0.name == "produce-dedup" }.map(\.recordsPerSecond)
        let pairs = zip(plain, checked).map { $1 / $0 }
        let median = pairs.sorted()[pairs.count / 2]
        if json {
            for result in results { print(Report.jsonLine(result.json)) }
            print(Report.jsonLine(["case": "summary", "keys_held": status.keysHeld, "runs": status.runs, "dedup_disk_bytes": dedupBytes, "bytes_per_key": bytesPerKey, "ratios": pairs, "median_ratio": median]))
        } else {
            print("millrace-bench dedup: \(keys) keys held, \(records) records per run, \(duplicatePercent)% repeats; release broker on loopback, one producer, 4 partitions")
            Report.printTable(results)
            print(
                String(format: "dedup / plain durable produce, each pair: %@ (median %.2f); keys held %d in %d runs; dedup state on disk %d bytes = %.1f B per key (keys are stored as 16-byte hashes)",
                    pairs.map { String(format: "%.2f", $0) }.joined(separator: ", "), median, status.keysHeld, status.runs, dedupBytes, bytesPerKey))
        }
    }

    /// A produce pass that must report exactly `expectDuplicates` duplicates.
    func produce(
        client: MillraceClient, server: ServerProcess, topic: String, count: Int, expectDuplicates: Int, record: (Int) -> [UInt8]
    ) async throws -> ProducePass {
        let pass = try await ProducePass.run(
            client: client, server: server, topic: topic, count: count, progress: !json, key: { Array("ORDER-\($0 % 9_973)".utf8) }, record: record)
        guard pass.duplicates == expectDuplicates else { throw ValidationError("\(topic): \(pass.duplicates) duplicates reported, \(expectDuplicates) expected") }
        return pass
    }

    static func small(id: Int) -> [UInt8] {
        Array(#"{"event_id":"E\#(id)","order_id":"\#(100_000_000_000 + id % 9_000_000)","yield_qty":1}"#.utf8)
    }

    static func confirmation(id: Int) -> [UInt8] {
        Array(
            #"{"type":"production.confirmation","event_id":"E\#(id)","ts":"2026-11-27T06:00:00.000Z","plant":"DE01","order_id":"\#(100_000_000_000 + id % 9_000_000)","operation":"0020","work_center":"WC-CNC-02","material":"MAT-1383-433","lot_id":"L25112700001","serial":"SN-DE01-\#(id)","yield_qty":499,"scrap_qty":0,"uom":"PC","start_ts":"2026-11-27T05:40:00.000Z","operator":"OP-0042","final":true}"#
                .utf8)
    }
}
