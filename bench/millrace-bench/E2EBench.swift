import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire

/// `millrace-bench e2e`: a release `millrace serve` on a fresh data directory, driven over
/// loopback by the Swift client: durable produce from 1 and 4 producers, consume from
/// earliest, and a fixed-rate latency run; with the server's peak RSS.
struct E2EBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "e2e", abstract: "End-to-end benchmark over loopback.")

    @Option(help: "Records per throughput case (256-byte values).") var records = 2_000_000
    @Option(help: "Rate of the latency case, records per second.") var rate = 20_000
    @Option(help: "Length of the latency case in seconds.") var latencySeconds = 5.0
    @Option(help: "Records sent one at a time in the produce-1-in-flight case.") var oneInFlightRecords = 1_000
    @Option(
        help:
            "Cases to run, comma-separated (default: all): engine, produce-x1, produce-x4, consume-earliest, fixed-rate, produce-1-in-flight; with --tls: native-produce, kafka-produce, native-replay, kafka-replay (a replay reads what its produce wrote)."
    )
    var cases: String?
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false
    @Flag(help: "Instead: plain TCP against TLS with SCRAM logins, round by round on two brokers of the same build, native client and librdkafka (kcat, SASL_SSL).")
    var tls = false
    @Option(help: "With --tls: rounds.") var rounds = 3

    func selected(_ name: String) -> Bool {
        guard let cases else { return true }
        return cases.split(separator: ",").contains { name.hasPrefix($0.trimmingCharacters(in: .whitespaces)) }
    }

    static let valueBytes = 256

    func run() async throws {
        if tls { return try await SecureBench(records: records, rounds: rounds, json: json, cases: cases).run() }
        let directory = NSTemporaryDirectory() + "millrace-e2e-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ServerProcess(directory: directory)
        defer { server.stop() }
        let monitor = RSSMonitor(pid: server.process.processIdentifier)
        monitor.start()
        var results: [BenchResult] = []
        func report(_ result: BenchResult) {
            results.append(result)
            if json { print(Report.jsonLine(result.json)) } else { FileHandle.standardError.write(Data("  done: \(result.name)\n".utf8)) }
        }
        if json { print(Report.jsonLine(Report.conditions(extra: ["bench": "e2e", "records": records, "value_bytes": Self.valueBytes, "data_dir": directory]))) }

        let admin = MillraceClient(host: "127.0.0.1", port: server.port)
        try await admin.createTopic(CreateTopicRequest(name: "bench", partitions: 4))
        try await admin.createTopic(CreateTopicRequest(name: "latency", partitions: 1))
        // The storage engine alone, in this process on the same disk: what the network path
        // around it is compared with.
        var engine: BenchResult?
        if selected("engine") || selected("produce-x") {
            let engineRoot = directory + "-engine"
            try FileManager.default.createDirectory(atPath: engineRoot, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: engineRoot) }
            let storageBench = try StorageBench.parse(["--records", "\(records)"])
            var measured = try await storageBench.appendCase(
                engineRoot, name: "engine-append-b1000-x1", values: Array(repeating: [UInt8](repeating: 0x61, count: Self.valueBytes), count: 1_000), appenders: 1)
            measured.note = "the storage engine alone (no network), 1,000-record batches, one appender: " + measured.note
            engine = measured
            report(measured)
        }
        func versusEngine(_ result: BenchResult) -> BenchResult {
            guard let engine else { return result }
            var result = result
            let ratio = result.recordsPerSecond / engine.recordsPerSecond
            result.fields["ratio_to_engine"] = (ratio * 100).rounded() / 100
            result.note += String(format: "; %.2f× the storage engine's append rate", ratio)
            return result
        }
        if selected("produce-x1") { report(versusEngine(try await withCPU(server, monitor) { try await produceCase(name: "produce-x1", producers: 1, port: server.port) })) }
        if selected("produce-x4") { report(versusEngine(try await withCPU(server, monitor) { try await produceCase(name: "produce-x4", producers: 4, port: server.port) })) }
        if selected("consume-earliest") { report(try await withCPU(server, monitor) { try await consumeCase(port: server.port) }) }
        if selected("fixed-rate") { report(try await withCPU(server, monitor) { try await latencyCase(port: server.port) }) }
        if selected("produce-1-in-flight") {
            report(try await withCPU(server, monitor) { try await oneInFlightCase(port: server.port, directory: directory, count: oneInFlightRecords) })
        }
        await admin.close()
        monitor.stop()
        let rss = monitor.peak
        let rssResult = BenchResult(
            name: "server-peak-rss", records: 0, bytes: 0, seconds: 1,
            fields: ["peak_rss_mb": rss.total >> 20, "peak_rss_anon_mb": rss.anonymous >> 20, "peak_rss_file_mb": rss.file >> 20],
            note: "peak RSS \(rss.total >> 20) MB = \(rss.anonymous >> 20) MB anonymous + \(rss.file >> 20) MB file-backed (LMDB's mapped pages of data.mdb that were touched; the kernel can drop them)")
        report(rssResult)
        if !json {
            print("millrace-bench e2e: \(records) records of \(Self.valueBytes) B per throughput case; server and client share this machine's \(ProcessInfo.processInfo.activeProcessorCount) cores; every produce acknowledged only when durable")
            Report.printTable(results)
        }
    }

    /// Runs a case and adds the broker's and this process's CPU-seconds per million records
    /// to it, so gains show on a machine the two share.
    func withCPU(_ server: ServerProcess, _ monitor: RSSMonitor, _ body: () async throws -> BenchResult) async throws -> BenchResult {
        let (serverBefore, clientBefore) = (server.cpuSeconds, ownCPUSeconds())
        _ = monitor.takeWindow()
        var result = try await body()
        let memory = monitor.takeWindow()
        result.fields["server_anon_mb"] = memory.anonymous >> 20
        result.fields["server_file_mb"] = memory.file >> 20
        let perMillion = 1_000_000 / Double(max(1, result.records))
        let serverCPU = (server.cpuSeconds - serverBefore) * perMillion
        let clientCPU = (ownCPUSeconds() - clientBefore) * perMillion
        result.fields["server_cpu_s_per_million"] = (serverCPU * 100).rounded() / 100
        result.fields["client_cpu_s_per_million"] = (clientCPU * 100).rounded() / 100
        result.note += String(format: "; CPU s per million records: broker %.2f, client %.2f", serverCPU, clientCPU)
        result.note += "; broker memory peak \(memory.anonymous >> 20) MB anonymous, \(memory.file >> 20) MB file-backed"
        return result
    }

    func produceCase(name: String, producers: Int, port: Int, topic: String = "bench", configure: (inout MillraceClient.Configuration) -> Void = { _ in }) async throws
        -> BenchResult
    {
        var configuration = MillraceClient.Configuration()
        configuration.brokers = ["127.0.0.1:\(port)"]
        configure(&configuration)
        let clientConfiguration = configuration
        let perProducer = records / producers
        let latencies = LatencyRecorder(count: perProducer * producers)
        let value = [UInt8](repeating: 0x61, count: Self.valueBytes)
        let start = monotonicSeconds()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<producers {
                group.addTask {
                    let client = MillraceClient(configuration: clientConfiguration)
                    let producer = Producer(client: client)
                    for record in 0..<perProducer {
                        let slot = index * perProducer + record
                        let sent = monotonicSeconds()
                        try await producer.send(topic: topic, value: value) { result in
                            if case .success = result { latencies.record(slot, (monotonicSeconds() - sent) * 1e6) }
                        }
                    }
                    try await producer.flush()
                    await client.close()
                }
            }
            try await group.waitForAll()
        }
        let elapsed = monotonicSeconds() - start
        let (p50, p99, p999, acknowledged) = latencies.percentiles()
        precondition(acknowledged == perProducer * producers, "only \(acknowledged) of \(perProducer * producers) records were acknowledged")
        return BenchResult(
            name: name, records: acknowledged, bytes: acknowledged * Self.valueBytes, seconds: elapsed,
            fields: ["msgs_per_s": (Double(acknowledged) / elapsed).rounded(), "producers": producers, "p50_us": p50, "p99_us": p99, "p999_us": p999],
            note: String(format: "ack latency p50 %.0f µs, p99 %.0f µs, p99.9 %.0f µs (5 ms linger)", p50, p99, p999))
    }

    func consumeCase(port: Int, topic: String = "bench", configure: (inout MillraceClient.Configuration) -> Void = { _ in }) async throws -> BenchResult {
        var configuration = MillraceClient.Configuration()
        configuration.brokers = ["127.0.0.1:\(port)"]
        configure(&configuration)
        let client = MillraceClient(configuration: configuration)
        var count = 0
        var bytes = 0
        let start = monotonicSeconds()
        for try await record in Consumer(client: client, topic: topic, from: .earliest, stopAtEnd: true) {
            count += 1
            bytes += record.value?.count ?? 0
        }
        let elapsed = monotonicSeconds() - start
        await client.close()
        return BenchResult(
            name: "consume-earliest", records: count, bytes: bytes, seconds: elapsed,
            fields: ["msgs_per_s": (Double(count) / elapsed).rounded()], note: "all 4 partitions from earliest, records decoded")
    }

    /// Fixed-rate producing while a consumer follows: produce-ack and produce-to-consume latency.
    /// One record at a time: no linger, the next sent when the previous is acknowledged;
    /// beside the floor the disk sets, measured on the same directory in the same run (write
    /// 4 KiB and fdatasync). An isolated LMDB commit needs two ordered flushes (data, then
    /// meta), so about twice the floor is the physical limit.
    func oneInFlightCase(port: Int, directory: String, count: Int = 1_000) async throws -> BenchResult {
        let floor = Self.fdatasyncFloor(directory: directory, count: 200)
        let client = MillraceClient(host: "127.0.0.1", port: port)
        var configuration = Producer.Configuration()
        configuration.lingerMs = 0
        let producer = Producer(client: client, configuration: configuration)
        let value = [UInt8](repeating: 0x63, count: Self.valueBytes)
        _ = try await producer.send(topic: "latency", key: nil, value: value, headers: []).delivery()  // connect, producer id
        var micros: [Double] = []
        micros.reserveCapacity(count)
        let start = monotonicSeconds()
        for _ in 0..<count {
            let sent = monotonicSeconds()
            _ = try await producer.send(topic: "latency", key: nil, value: value, headers: []).delivery()
            micros.append((monotonicSeconds() - sent) * 1e6)
        }
        let elapsed = monotonicSeconds() - start
        // The request path without storage: ApiVersions, one at a time, on the same connection.
        var trips: [Double] = []
        for _ in 0..<count {
            let sent = monotonicSeconds()
            _ = try await client.send(.apiVersions)
            trips.append((monotonicSeconds() - sent) * 1e6)
        }
        trips.sort()
        try await producer.close()
        await client.close()
        micros.sort()
        let (p50, p99) = (percentile(micros, 0.5), percentile(micros, 0.99))
        let (tripP50, tripP99) = (percentile(trips, 0.5), percentile(trips, 0.99))
        return BenchResult(
            name: "produce-1-in-flight", records: count, bytes: count * Self.valueBytes, seconds: elapsed,
            fields: [
                "ack_p50_us": p50, "ack_p99_us": p99, "fdatasync_p50_us": floor.p50, "fdatasync_p99_us": floor.p99, "round_trip_p50_us": tripP50,
                "round_trip_p99_us": tripP99,
            ],
            note: String(
                format:
                    "ack p50 %.0f / p99 %.0f µs; fdatasync floor (4 KiB, same directory) p50 %.0f / p99 %.0f µs: p50 %.1f× the floor, p99 %.1f×; a request without storage (ApiVersions) p50 %.0f / p99 %.0f µs",
                p50, p99, floor.p50, floor.p99, p50 / max(1, floor.p50), p99 / max(1, floor.p99), tripP50, tripP99))
    }

    /// Write 4 KiB and fdatasync, `count` times, in a file of `directory`: the disk's floor.
    static func fdatasyncFloor(directory: String, count: Int) -> (p50: Double, p99: Double) {
        let path = directory + "/fdatasync-floor.tmp"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { return (0, 0) }
        defer {
            close(descriptor)
            unlink(path)
        }
        let block = [UInt8](repeating: 0x66, count: 4_096)
        var micros: [Double] = []
        for index in 0..<count {
            let started = monotonicSeconds()
            _ = block.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(index % 16 * 4_096)) }
            fdatasync(descriptor)
            micros.append((monotonicSeconds() - started) * 1e6)
        }
        micros.sort()
        return (percentile(micros, 0.5), percentile(micros, 0.99))
    }

    func latencyCase(port: Int) async throws -> BenchResult {
        let total = Int(Double(rate) * latencySeconds)
        let acks = LatencyRecorder(count: total)
        let deliveries = LatencyRecorder(count: total)
        let consumerClient = MillraceClient(host: "127.0.0.1", port: port)
        let producerClient = MillraceClient(host: "127.0.0.1", port: port)
        var configuration = Producer.Configuration()
        configuration.lingerMs = 0
        let producer = Producer(client: producerClient, configuration: configuration)
        let consumer = Task {
            var seen = 0
            for try await record in Consumer(client: consumerClient, topic: "latency", from: .latest, stopAtEnd: false, maxWaitMs: 200) {
                let sentNanos = record.value!.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                deliveries.record(Int(record.offset) % total, Double(monotonicNanos() - sentNanos) / 1000)
                seen += 1
                if seen == total { break }
            }
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        let start = monotonicSeconds()
        var sent = 0
        while sent < total {
            // Send what is due by now (catching up after a late wake-up), then sleep ~0.5 ms.
            let due = min(total, Int(Double(rate) * (monotonicSeconds() - start)) + 1)
            while sent < due {
                let now = monotonicNanos()
                var value = withUnsafeBytes(of: now.bigEndian, Array.init)
                value += [UInt8](repeating: 0x62, count: Self.valueBytes - 8)
                let slot = sent
                let sentAt = monotonicSeconds()
                try await producer.send(topic: "latency", value: value) { result in
                    if case .success = result { acks.record(slot, (monotonicSeconds() - sentAt) * 1e6) }
                }
                sent += 1
            }
            try await Task.sleep(nanoseconds: 500_000)
        }
        try await producer.flush()
        let elapsed = monotonicSeconds() - start
        let deadline = monotonicSeconds() + 10
        while deliveries.recorded < total && monotonicSeconds() < deadline { try await Task.sleep(nanoseconds: 10_000_000) }
        consumer.cancel()
        _ = try? await consumer.value
        await producerClient.close()
        await consumerClient.close()
        let (p50, p99, p999, _) = acks.percentiles()
        let (d50, d99, _, delivered) = deliveries.percentiles()
        return BenchResult(
            name: "fixed-rate-\(rate / 1000)k", records: total, bytes: total * Self.valueBytes, seconds: elapsed,
            fields: [
                "msgs_per_s": (Double(total) / elapsed).rounded(), "p50_us": p50, "p99_us": p99, "p999_us": p999, "e2e_p50_us": d50,
                "e2e_p99_us": d99, "delivered": delivered,
            ],
            note: String(format: "ack p50 %.0f / p99 %.0f / p99.9 %.0f µs; produce-to-consume p50 %.0f / p99 %.0f µs", p50, p99, p999, d50, d99))
    }
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Latencies by slot, written from any thread.
final class LatencyRecorder: @unchecked Sendable {
    private var values: [Double]
    private let lock = NSLock()
    private(set) var recorded = 0

    init(count: Int) { values = Array(repeating: -1, count: count) }

    func record(_ slot: Int, _ micros: Double) {
        lock.lock()
        if values[slot] < 0 { recorded += 1 }
        values[slot] = micros
        lock.unlock()
    }

    func percentiles() -> (Double, Double, Double, Int) {
        lock.lock()
        let sorted = values.filter { $0 >= 0 }.sorted()
        lock.unlock()
        func round(_ value: Double) -> Double { (value * 10).rounded() / 10 }
        return (round(percentile(sorted, 0.5)), round(percentile(sorted, 0.99)), round(percentile(sorted, 0.999)), sorted.count)
    }
}

/// `millrace serve` in a child process on a free port.
final class ServerProcess {
    let process = Process()
    let port: Int
    /// Where `/metrics` is served.
    let httpPort: Int
    /// The Kafka listener's port, when started with one.
    let kafkaPort: Int?

    init(directory: String, kafka: Bool = false, extra: [String] = []) throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("millrace").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw MillraceError(.unexpected, "\(binary) not found; build it with `swift build -c release`")
        }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments =
            ["serve", "--data-dir", directory, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"] + (kafka ? ["--kafka-listen", "127.0.0.1:0"] : []) + extra
        let log = Pipe()
        process.standardError = log
        try process.run()
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let data = log.fileHandleForReading.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
            if let range = text.range(of: #"on 127\.0\.0\.1:(\d+)"#, options: .regularExpression),
                let http = text.range(of: #"https?://127\.0\.0\.1:(\d+)"#, options: .regularExpression)
            {
                let kafkaRange = text.range(of: #"Kafka clients on 127\.0\.0\.1:(\d+)"#, options: .regularExpression)
                if kafka && kafkaRange == nil { continue }
                port = Int(text[range].split(separator: ":").last!)!
                httpPort = Int(text[http].split(separator: ":").last!)!
                kafkaPort = kafkaRange.flatMap { Int(text[$0].split(separator: ":").last!) }
                log.fileHandleForReading.readabilityHandler = { _ = $0.availableData }  // keep draining
                return
            }
        }
        process.terminate()
        throw MillraceError(.unexpected, "the server did not start: \(text)")
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }

    /// Bytes the server has caused to be written to storage so far (/proc/PID/io write_bytes;
    /// 0 where unreadable).
    var bytesWritten: Int { ioCounter("write_bytes") }

    /// Bytes the server has handed to write system calls so far (/proc/PID/io wchar: what
    /// LMDB writes, before the page cache; 0 where unreadable).
    var bytesHandedToWrite: Int { ioCounter("wchar") }

    private func ioCounter(_ name: String) -> Int {
        guard let io = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/io", encoding: .utf8) else { return 0 }
        for line in io.split(separator: "\n") where line.hasPrefix(name + ":") {
            return Int(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    /// User + system CPU seconds the server has used so far (from /proc; 0 where unreadable).
    var cpuSeconds: Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        // Fields after the command name start at field 3 (state); utime and stime are 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Samples the server's resident memory from /proc every 50 ms.
final class RSSMonitor: @unchecked Sendable {
    struct Sample { var total = 0, anonymous = 0, file = 0 }
    private let pid: Int32
    private let lock = NSLock()
    private var best = Sample()
    /// Each part's peak since the last `takeWindow`.
    private var window = Sample()
    private var running = true
    private var thread: Thread?

    init(pid: Int32) { self.pid = pid }

    var peak: Sample { lock.lock(); defer { lock.unlock() }; return best }

    func start() {
        let thread = Thread { [self] in
            while lock.withLock({ running }) {
                if let sample = read() { note(sample) }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        self.thread = thread
        thread.start()
    }

    func stop() { lock.withLock { running = false } }

    private func note(_ sample: Sample) {
        lock.withLock {
            if sample.total > best.total { best = sample }
            window = Sample(
                total: max(window.total, sample.total), anonymous: max(window.anonymous, sample.anonymous), file: max(window.file, sample.file))
        }
    }

    /// The peaks of anonymous and file-backed memory since the last call (sampled every 50 ms
    /// and now), and starts a new window.
    func takeWindow() -> Sample {
        if let sample = read() { note(sample) }
        return lock.withLock {
            defer { window = Sample() }
            return window
        }
    }

    private func read() -> Sample? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        var sample = Sample()
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: \.isWhitespace)
            guard parts.count >= 2, let kb = Int(parts[1]) else { continue }
            switch parts[0] {
            case "VmRSS:": sample.total = kb << 10
            case "RssAnon:": sample.anonymous = kb << 10
            case "RssFile:": sample.file = kb << 10
            default: break
            }
        }
        return sample
    }
}
