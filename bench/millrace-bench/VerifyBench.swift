import ArgumentParser
import Foundation
import MillraceFormat
import NIOCore
import NIOPosix

/// `millrace-bench verify`: what checking a produced batch costs (CRC-32C, every record's
/// framing, zstd decompressed), by batch size, against what handing work to a validation lane
/// and back costs: where the broker checks batches on the event loop and where on a lane.
struct VerifyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "Batch check cost by size against a lane hop.")

    @Option(help: "Checks timed per case.") var iterations = 2_000
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() async throws {
        if json { print(Report.jsonLine(Report.conditions(extra: ["bench": "verify", "iterations": iterations]))) }
        var rows: [[String]] = []
        var lines: [[String: Any]] = []
        let value = Array(#"{"order":"4711","operation":"0020","workCenter":"WC-17","plant":"1000","lot":"LOT-2026-000123","yield":12,"scrap":0,"confirmedAt":"2026-12-07T15:00:00Z"}"#.utf8)
        for kib in [1, 4, 16, 64, 256, 1_000] {
            let count = max(1, kib * 1_024 / (value.count + 8))
            for codec in [CompressionCodec.none, .zstd] {
                let bytes = try RecordBatch(timestamp: 1_700_000_000_000, values: Array(repeating: value, count: count), codec: codec).encoded()
                let microseconds = try Self.median(iterations: iterations) { _ = try RecordBatch.verify(bytes, depth: .records) }
                rows.append(["check", "\(kib) KiB of records", codec == .zstd ? "zstd (\(bytes.count) B sent)" : "none", String(format: "%.1f", microseconds)])
                lines.append(["case": "check", "records_kib": kib, "codec": codec == .zstd ? "zstd" : "none", "sent_bytes": bytes.count, "median_us": microseconds])
            }
        }
        let hop = try await Self.laneHop(iterations: iterations * 5)
        rows.append(["lane hop (mean)", "loop → lane → loop, nothing done", "—", String(format: "%.1f", hop)])
        lines.append(["case": "lane-hop", "median_us": hop])
        if json {
            for line in lines { print(Report.jsonLine(line)) }
        } else {
            print("millrace-bench verify: median of \(iterations) checks (RecordBatch.verify, depth .records) on one thread; \(ProcessInfo.processInfo.activeProcessorCount) cores")
            Report.printTable(["what", "batch", "codec", "median µs"], rows)
        }
    }

    static func median(iterations: Int, _ body: () throws -> Void) throws -> Double {
        var samples: [Double] = []
        samples.reserveCapacity(iterations)
        for _ in 0..<iterations {
            let started = monotonicSeconds()
            try body()
            samples.append((monotonicSeconds() - started) * 1e6)
        }
        return samples.sorted()[samples.count / 2]
    }

    /// Mean round trip from an event loop to a one-thread pool (a lane) and back, over a
    /// chain of `iterations` hops run on the loop.
    static func laneHop(iterations: Int) async throws -> Double {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let loop = group.next()
        @Sendable func chain(_ left: Int) -> EventLoopFuture<Void> {
            left == 0 ? loop.makeSucceededVoidFuture() : pool.runIfActive(eventLoop: loop) {}.flatMap { chain(left - 1) }
        }
        let started = monotonicSeconds()
        try await loop.flatSubmit { chain(iterations) }.get()
        let seconds = monotonicSeconds() - started
        try await pool.shutdownGracefully()
        try await group.shutdownGracefully()
        return seconds * 1e6 / Double(iterations)
    }
}
