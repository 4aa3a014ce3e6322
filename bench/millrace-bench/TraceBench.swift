import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceStorage
import MillraceWire

/// `millrace-bench trace`: a release `millrace serve` holding many records with three indexed
/// fields each; trace latency for a lot with 100 hits, a 1,000-node genealogy walk, durable
/// produce with the index against the same produce without it, and the index's bytes per entry.
struct TraceBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace", abstract: "Key index: trace and genealogy-walk latency with many records held, produce cost of indexing, bytes per entry.")

    @Option(help: "Records with three indexed fields (lot, serial, order) loaded before measuring.") var records = 10_000_000
    @Option(help: "Hits per traced lot (records / this many lots).") var hitsPerLot = 100
    @Option(help: "Traces timed (random lots).") var traces = 500
    @Option(help: "Walks timed.") var walks = 20
    @Option(help: "Records per measured produce run (1 M: the index writes its in-memory entries about twice in each).") var produceRecords = 1_000_000
    @Option(help: "Measured produce pairs (index off, then on).") var rounds = 3
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() async throws {
        guard records >= hitsPerLot, hitsPerLot >= 1, traces >= 1, walks >= 1, produceRecords >= 1, rounds >= 1 else {
            throw ValidationError("--records must be at least --hits-per-lot; every count takes 1 or more")
        }
        let directory = NSTemporaryDirectory() + "millrace-trace-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ServerProcess(directory: directory)
        let client = MillraceClient(host: "127.0.0.1", port: server.port)
        let fields = IndexPolicy(fields: ["/lot", "/serial", "/order"])
        for name in ["indexed", "plain"] { try await client.createTopic(CreateTopicRequest(name: name, partitions: 4)) }
        try await client.setIndexPolicy(topic: "indexed", policy: fields)
        try await client.createTopic(CreateTopicRequest(name: "genealogy", partitions: 1))
        try await client.setIndexPolicy(topic: "genealogy", policy: IndexPolicy(links: [IndexLink(parent: "/parentLot", child: "/childLot")]))
        let lots = max(1, records / hitsPerLot)
        if json {
            print(Report.jsonLine(Report.conditions(extra: ["bench": "trace", "records": records, "hits_per_lot": hitsPerLot, "produce_records": produceRecords])))
        }
        var results: [BenchResult] = []

        // Held records: lot i % lots (so each lot has hitsPerLot records), a unique serial, an order of ten.
        let preload = try await produce(client: client, server: server, topic: "indexed", count: records) { Self.confirmation($0, lots: lots) }
        results.append(preload.result(name: "preload", note: "\(records) records, 3 indexed fields each (lot, serial, order)"))

        // A six-ary tree of 1,000 lots over five levels (root, then 6, 36, 216, 741).
        let producer = Producer(client: client)
        for child in 1..<1_000 {
            try await producer.send(
                topic: "genealogy", key: nil, value: Array(#"{"parentLot":"G\#(child)","childLot":"G\#((child - 1) / 6)","qty":1}"#.utf8)) { _ in }
        }
        try await producer.flush()

        var random = SystemRandomNumberGenerator()
        var traceMs: [Double] = []
        var hitCounts: [Int] = []
        for _ in 0..<traces {
            let lot = "L\(Int.random(in: 0..<lots, using: &random))"
            let started = monotonicSeconds()
            let page = try await client.tracePage(key: Array(lot.utf8), topics: ["indexed"], limit: Limits.traceHitsPerPageMax)
            traceMs.append((monotonicSeconds() - started) * 1_000)
            hitCounts.append(page.hits.count)
        }
        traceMs.sort()
        let hitsSeen = hitCounts.reduce(0, +) / max(1, hitCounts.count)
        results.append(
            BenchResult(
                name: "trace", records: traces, bytes: 0, seconds: traceMs.reduce(0, +) / 1_000,
                fields: ["p50_ms": percentile(traceMs, 0.5), "p99_ms": percentile(traceMs, 0.99), "max_ms": traceMs.last ?? 0, "hits": hitsSeen],
                note: String(
                    format: "a random lot's %d hits, one page, client to client: p50 %.2f ms, p99 %.2f ms, max %.2f ms", hitsSeen, percentile(traceMs, 0.5),
                    percentile(traceMs, 0.99), traceMs.last ?? 0)))

        var walkMs: [Double] = []
        var nodes = 0
        for _ in 0..<walks {
            let started = monotonicSeconds()
            let tree = try await client.walk(key: "G0", direction: .down, depth: 10, nodesMax: 10_000)
            walkMs.append((monotonicSeconds() - started) * 1_000)
            nodes = tree.nodes.count
        }
        walkMs.sort()
        let levels = 5
        results.append(
            BenchResult(
                name: "walk", records: walks, bytes: 0, seconds: walkMs.reduce(0, +) / 1_000,
                fields: ["p50_ms": percentile(walkMs, 0.5), "max_ms": walkMs.last ?? 0, "nodes": nodes],
                note: String(format: "where-used from the root, %d nodes over %d levels: p50 %.1f ms, max %.1f ms", nodes, levels, percentile(walkMs, 0.5), walkMs.last ?? 0)))

        // Produce: the same new confirmations to a topic without an index, then with it.
        var pairs: [Double] = []
        for round in 0..<rounds {
            let base = records + round * produceRecords
            var plain: ProducePass?
            for indexed in [false, true] {
                let run = try await produce(client: client, server: server, topic: indexed ? "indexed" : "plain", count: produceRecords) {
                    Self.confirmation(base + $0, lots: lots)
                }
                results.append(run.result(name: indexed ? "produce-indexed" : "produce-plain", note: indexed ? "3 indexed fields" : "same records, no index"))
                if let plain { pairs.append(run.recordsPerSecond / plain.recordsPerSecond) } else { plain = run }
            }
        }
        let status = try await client.indexStatus(topic: "indexed")
        await client.close()
        server.stop()
        var options = Storage.Options()
        options.readOnly = true
        let storage = try Storage.open(directory: directory, options: options)
        let held = try storage.indexStatus(topic: "indexed")
        storage.close()
        let bytesPerEntry = Double(held?.diskBytes ?? 0) / Double(max(1, held?.entriesHeld ?? 0))
        let median = pairs.sorted()[pairs.count / 2]
        if json {
            for result in results { print(Report.jsonLine(result.json)) }
            print(
                Report.jsonLine([
                    "case": "summary", "entries_held": held?.entriesHeld ?? 0, "runs": held?.runs ?? 0, "index_disk_bytes": held?.diskBytes ?? 0,
                    "bytes_per_entry": bytesPerEntry, "produce_ratios": pairs, "median_ratio": median, "entries_written": status.entriesWritten,
                ]))
        } else {
            print("millrace-bench trace: \(records) records held (3 indexed fields each), \(lots) lots of \(hitsPerLot); release broker on loopback, 4 partitions")
            Report.printTable(results)
            print(
                String(
                    format: "indexed / plain durable produce, each pair: %@ (median %.2f); index: %d entries in %d runs, %d bytes on disk = %.1f B per entry",
                    pairs.map { String(format: "%.2f", $0) }.joined(separator: ", "), median, held?.entriesHeld ?? 0, held?.runs ?? 0, held?.diskBytes ?? 0,
                    bytesPerEntry))
        }
    }

    func produce(client: MillraceClient, server: ServerProcess, topic: String, count: Int, record: (Int) -> [UInt8]) async throws -> ProducePass {
        try await ProducePass.run(client: client, server: server, topic: topic, count: count, progress: !json, record: record)
    }

    static func confirmation(_ id: Int, lots: Int) -> [UInt8] {
        Array(
            #"{"type":"production.confirmation","ts":"2026-11-27T06:00:00.000Z","plant":"DE01","order":"O\#(id / 10)","operation":"0020","lot":"L\#(id % lots)","serial":"SN-\#(id)","yield_qty":499,"uom":"PC","final":true}"#
                .utf8)
    }
}
