import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire

/// `millrace-bench kafka`: one release broker with its Kafka listener, durable produce and
/// replay of the same records through librdkafka (kcat) and through the native Swift client,
/// alternated round by round so both see the same machine. Every produce is acknowledged only
/// after fdatasync, whichever port it came in on.
struct KafkaBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka", abstract: "Kafka-protocol produce and replay (librdkafka via kcat) against the native client, same broker, same run.")

    @Option(help: "Records per case (256-byte values).") var records = 1_000_000
    @Option(help: "Rounds; each runs native and Kafka produce, then native and Kafka replay, on fresh topics.") var rounds = 1
    @Option(help: "Partitions of each topic.") var partitions: Int32 = 4
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    static let valueBytes = 256

    func run() async throws {
        guard let kcat = Self.which("kcat") else {
            throw ValidationError("kcat is not installed; scripts/install-deps installs it (Debian package kcat)")
        }
        let version = Self.kcatVersion(kcat)
        let directory = NSTemporaryDirectory() + "millrace-kafka-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ServerProcess(directory: directory, kafka: true)
        defer { server.stop() }
        guard let kafkaPort = server.kafkaPort else { throw MillraceError(.unexpected, "the broker did not start its Kafka listener") }
        let bootstrap = "127.0.0.1:\(kafkaPort)"
        let input = directory + "-input"
        defer { try? FileManager.default.removeItem(atPath: input) }
        try Self.writeInput(input, records: records)

        if json {
            print(Report.jsonLine(Report.conditions(extra: ["bench": "kafka", "records": records, "value_bytes": Self.valueBytes, "rounds": rounds, "kcat": version])))
        }
        let admin = MillraceClient(host: "127.0.0.1", port: server.port)
        let e2e = try E2EBench.parse(["--records", "\(records)"])
        var results: [BenchResult] = []
        var ratios: (produce: [Double], replay: [Double]) = ([], [])
        func report(_ result: BenchResult) {
            results.append(result)
            if json { print(Report.jsonLine(result.json)) } else { FileHandle.standardError.write(Data("  done: \(result.name)\n".utf8)) }
        }
        /// Adds the broker's CPU-seconds per million records to a case: what each port costs
        /// the broker, apart from what each client costs itself.
        func brokerCPU(_ body: () async throws -> BenchResult) async throws -> BenchResult {
            let before = server.cpuSeconds
            var result = try await body()
            let perMillion = (server.cpuSeconds - before) * 1_000_000 / Double(max(1, result.records))
            result.fields["server_cpu_s_per_million"] = (perMillion * 100).rounded() / 100
            result.note += String(format: "; broker CPU %.2f s per million records", perMillion)
            return result
        }
        for round in 1...rounds {
            let native = "native-\(round)"
            let kafka = "kafka-\(round)"
            try await admin.createTopic(CreateTopicRequest(name: native, partitions: partitions))
            try await admin.createTopic(CreateTopicRequest(name: kafka, partitions: partitions))
            var nativeProduce = try await brokerCPU { try await e2e.produceCase(name: "native-produce-r\(round)", producers: 1, port: server.port, topic: native) }
            nativeProduce.note = "Swift Producer, one connection, 5 ms linger; " + nativeProduce.note
            report(nativeProduce)
            let kafkaProduce = try await brokerCPU { try Self.kcatProduce(kcat, bootstrap: bootstrap, topic: kafka, input: input, records: records, round: round) }
            let stored = try await Self.storedRecords(admin, topic: kafka, partitions: partitions)
            guard stored == records else { throw MillraceError(.unexpected, "kcat's produce left \(stored) of \(records) records in \(kafka)") }
            report(kafkaProduce)
            var nativeReplay = try await brokerCPU { try await e2e.consumeCase(port: server.port, topic: native) }
            nativeReplay.name = "native-replay-r\(round)"
            report(nativeReplay)
            let kafkaReplay = try await brokerCPU { try Self.kcatReplay(kcat, bootstrap: bootstrap, topic: kafka, records: records, round: round) }
            report(kafkaReplay)
            ratios.produce.append(kafkaProduce.recordsPerSecond / nativeProduce.recordsPerSecond)
            ratios.replay.append(kafkaReplay.recordsPerSecond / nativeReplay.recordsPerSecond)
            try await admin.deleteTopic(native)
            try await admin.deleteTopic(kafka)
        }
        await admin.close()
        let median = { (values: [Double]) in values.sorted()[values.count / 2] }
        let summary = BenchResult(
            name: "kafka-vs-native", records: 0, bytes: 0, seconds: 1,
            fields: [
                "produce_ratio_median": (median(ratios.produce) * 100).rounded() / 100, "replay_ratio_median": (median(ratios.replay) * 100).rounded() / 100,
                "produce_ratios": ratios.produce.map { ($0 * 100).rounded() / 100 }, "replay_ratios": ratios.replay.map { ($0 * 100).rounded() / 100 },
            ],
            note: String(
                format: "Kafka protocol (kcat) ÷ native client, median of %d round%@: produce %.2f×, replay %.2f×", rounds, rounds == 1 ? "" : "s",
                median(ratios.produce), median(ratios.replay)))
        report(summary)
        if !json {
            print(
                "millrace-bench kafka: \(records) records of \(Self.valueBytes) B per case, \(partitions) partitions; \(version); broker and clients share this machine's \(ProcessInfo.processInfo.activeProcessorCount) cores; every produce acknowledged only when durable (fdatasync)"
            )
            Report.printTable(results)
        }
    }

    /// kcat reads one record per line: `records` lines of 256 bytes, like the native case's values.
    static func writeInput(_ path: String, records: Int) throws {
        let line = Data(repeating: 0x61, count: valueBytes) + Data([0x0A])
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let writer = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        var chunk = Data()
        for _ in 0..<min(records, 4_096) { chunk.append(line) }
        var written = 0
        while written < records {
            let count = min(4_096, records - written)
            writer.write(count == 4_096 ? chunk : chunk.prefix(count * line.count))
            written += count
        }
        try writer.close()
    }

    static func which(_ name: String) -> String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    static func kcatVersion(_ kcat: String) -> String {
        let output = (try? run(kcat, ["-V"]))?.stdout ?? ""
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("Version") }) else { return "kcat (version unknown)" }
        let librdkafka = line.range(of: #"librdkafka [0-9.]+"#, options: .regularExpression).map { String(line[$0]) } ?? "librdkafka ?"
        return "kcat \(line.split(separator: " ").dropFirst().first ?? "?"), \(librdkafka)"
    }

    /// Runs a program to its end; its standard output, and standard input from `input`.
    static func run(_ program: String, _ arguments: [String], input: String? = nil) throws -> (status: Int32, stdout: String, seconds: Double) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        process.standardInput = try input.map { try FileHandle(forReadingFrom: URL(fileURLWithPath: $0)) } ?? FileHandle.nullDevice
        let start = monotonicSeconds()
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self), monotonicSeconds() - start)
    }

    /// kcat -P: every record of `input` sent with librdkafka's defaults (acks all, 5 ms
    /// linger); kcat exits once every delivery is reported.
    static func kcatProduce(_ kcat: String, bootstrap: String, topic: String, input: String, records: Int, round: Int, settings: [String] = []) throws -> BenchResult {
        let (status, _, seconds) = try run(kcat, ["-P", "-b", bootstrap, "-t", topic, "-X", "acks=all", "-q"] + settings, input: input)
        guard status == 0 else { throw MillraceError(.unexpected, "kcat -P exited with \(status)") }
        return BenchResult(
            name: "kafka-produce-r\(round)", records: records, bytes: records * valueBytes, seconds: seconds,
            fields: ["msgs_per_s": (Double(records) / seconds).rounded()],
            note: "kcat -P (librdkafka defaults: acks all, 5 ms linger), from process start to its exit after the last delivery report")
    }

    /// kcat -C from the beginning of every partition until it has read every record (`-c`):
    /// timed from process start to its exit. (With `-e` instead, kcat waits one more fetch, up
    /// to librdkafka's fetch.wait.max.ms of 500 ms, to learn that each partition is at its
    /// end, against any Kafka broker: not throughput. Its output to a pipe is buffered until
    /// it exits, so the time of the last record cannot be read from it either.)
    static func kcatReplay(_ kcat: String, bootstrap: String, topic: String, records: Int, round: Int, settings: [String] = []) throws -> BenchResult {
        let (status, output, seconds) = try run(kcat, ["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-c", "\(records)", "-q", "-f", "%o\\n"] + settings)
        guard status == 0 else { throw MillraceError(.unexpected, "kcat -C exited with \(status)") }
        let count = output.utf8.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
        guard count == records else { throw MillraceError(.unexpected, "kcat -C read \(count) of \(records) records") }
        return BenchResult(
            name: "kafka-replay-r\(round)", records: count, bytes: count * valueBytes, seconds: seconds,
            fields: ["msgs_per_s": (Double(count) / seconds).rounded()],
            note: "kcat -C -o beginning -c N (librdkafka defaults: 1 MiB per partition per fetch), every partition, records decoded, from process start to its exit")
    }

    static func storedRecords(_ client: MillraceClient, topic: String, partitions: Int32) async throws -> Int {
        let description = try await client.describeTopic(topic)
        return description.partitions.reduce(0) { $0 + Int($1.logEndOffset - $1.logStartOffset) }
    }
}
