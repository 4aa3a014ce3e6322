import ArgumentParser
import Foundation
import Glibc
import MillraceClient
import MillraceFormat
import MillraceWire

/// `millrace-bench metrics`: does scraping `/metrics` slow produce? Pairs of durable produce
/// runs to a release `millrace serve`, one with nothing scraping and one with a scraper
/// fetching `/metrics` every `--scrape-ms` (as Prometheus would), alternating; a consumer
/// group commits meanwhile so the scrape has lag to compute. Reports each pair's ratio and
/// the scrapes' latency and size.
struct MetricsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics", abstract: "Produce throughput with a /metrics scrape every second against none; scrape latency and size.")

    @Option(help: "Records per produce run (3 M: several seconds, so several scrapes, each).") var records = 3_000_000
    @Option(help: "Pairs of runs (without, then with scraping).") var rounds = 3
    @Option(help: "Milliseconds between scrapes.") var scrapeMs = 1_000
    @Option(help: "Topics (each with 4 partitions) and groups, so a scrape has series to write.") var topics = 8
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() async throws {
        guard records >= 1, rounds >= 1, scrapeMs >= 10, topics >= 1 else { throw ValidationError("every count takes 1 or more; --scrape-ms at least 10") }
        let directory = NSTemporaryDirectory() + "millrace-metrics-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ServerProcess(directory: directory)
        defer { server.stop() }
        let client = MillraceClient(host: "127.0.0.1", port: server.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 4))
        for topic in 0..<topics {
            try await client.createTopic(CreateTopicRequest(name: "side-\(topic)", partitions: 4))
            try await client.commitOffsets(group: "group-\(topic)", topic: "side-\(topic)", offsets: (0..<4).map { OffsetEntry(partition: $0, offset: 0) })
        }
        if json { print(Report.jsonLine(Report.conditions(extra: ["bench": "metrics", "records": records, "scrape_ms": scrapeMs, "topics": topics]))) }
        var results: [BenchResult] = []
        var ratios: [Double] = []
        var scrapeMs: [Double] = []
        var scrapeBytes = 0
        for round in 0..<rounds {
            var plain: ProducePass?
            for scraping in [false, true] {
                let scraper = scraping ? Scraper(port: server.httpPort, everyMs: self.scrapeMs) : nil
                let run = try await ProducePass.run(client: client, server: server, topic: "confirmations", count: records, progress: false) {
                    Array(#"{"type":"production.confirmation","order":"O\#(round)-\#($0 / 10)","lot":"L\#($0 % 1000)","qty":1}"#.utf8)
                }
                let scraped = scraper?.stop() ?? []
                scrapeMs += scraped.map(\.ms)
                scrapeBytes = scraped.last?.bytes ?? scrapeBytes
                results.append(
                    run.result(
                        name: scraping ? "produce-scraped" : "produce-quiet",
                        note: scraping ? "/metrics every \(self.scrapeMs) ms (\(scraped.count) scrapes)" : "nothing scraping"))
                if let plain { ratios.append(run.recordsPerSecond / plain.recordsPerSecond) } else { plain = run }
            }
        }
        await client.close()
        scrapeMs.sort()
        let median = ratios.sorted()[ratios.count / 2]
        if json {
            for result in results { print(Report.jsonLine(result.json)) }
            print(
                Report.jsonLine([
                    "case": "summary", "ratios": ratios, "median_ratio": median, "scrapes": scrapeMs.count, "scrape_p50_ms": percentile(scrapeMs, 0.5),
                    "scrape_max_ms": scrapeMs.last ?? 0, "scrape_bytes": scrapeBytes,
                ]))
        } else {
            print("millrace-bench metrics: \(records) records per run, \(topics + 1) topics and \(topics) groups; release broker on loopback")
            Report.printTable(results)
            print(
                String(
                    format: "scraped / quiet durable produce, each pair: %@ (median %.2f); %d scrapes: p50 %.1f ms, max %.1f ms, %d bytes each",
                    ratios.map { String(format: "%.2f", $0) }.joined(separator: ", "), median, scrapeMs.count, percentile(scrapeMs, 0.5), scrapeMs.last ?? 0,
                    scrapeBytes))
        }
    }
}

/// Fetches `/metrics` over plain HTTP on a thread of its own, every `everyMs`, until stopped.
final class Scraper: @unchecked Sendable {
    struct Scrape {
        var ms: Double
        var bytes: Int
    }

    private let lock = NSLock()
    private var stopping = false
    private var scrapes: [Scrape] = []
    private let done = DispatchSemaphore(value: 0)

    init(port: Int, everyMs: Int) {
        Thread.detachNewThread { [self] in
            while !lock.withLock({ stopping }) {
                let started = monotonicSeconds()
                let bytes = Self.get(port: port)
                lock.withLock { scrapes.append(Scrape(ms: (monotonicSeconds() - started) * 1_000, bytes: bytes)) }
                let slept = monotonicSeconds() - started
                usleep(useconds_t(max(0, Double(everyMs) / 1_000 - slept) * 1_000_000))
            }
            done.signal()
        }
    }

    func stop() -> [Scrape] {
        lock.withLock { stopping = true }
        done.wait()
        return lock.withLock { scrapes }
    }

    /// The page's size in bytes (0 when the request failed).
    static func get(port: Int) -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return 0 }
        let request = Array("GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return 0 }
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let got = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if got <= 0 { break }
            total += got
        }
        return total
    }
}
