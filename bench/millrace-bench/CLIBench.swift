import ArgumentParser
import Foundation
import MillraceClient
import MillraceWire

/// `millrace-bench cli`: the `millrace` command line loading and dumping generated events
/// against a release broker, as an operator would after an outage or for an audit: `produce
/// --file`, `produce` from standard input, `consume --format value` and `--format json` to
/// files. Each prints lines per second and the command's peak RSS.
struct CLIBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cli", abstract: "The CLI loading and dumping events: lines/s and peak RSS.")

    @Option(help: "Events to generate (`millrace generate`, mixed confirmations and genealogy links).") var events = 1_000_000
    @Option(help: "Partitions of the topics.") var partitions: Int32 = 4
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() async throws {
        let directory = NSTemporaryDirectory() + "millrace-cli-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let input = directory + "/events.ndjson"
        let generated = try Self.command(["generate", "--count", "\(events)", "--output", input])
        guard generated.status == 0 else { throw MillraceError(.unexpected, "millrace generate failed") }
        let inputBytes = (try FileManager.default.attributesOfItem(atPath: input)[.size] as? Int) ?? 0
        let server = try ServerProcess(directory: directory + "/data")
        defer { server.stop() }
        let broker = "127.0.0.1:\(server.port)"
        let admin = MillraceClient(host: "127.0.0.1", port: server.port)
        for topic in ["loaded", "piped"] { try await admin.createTopic(CreateTopicRequest(name: topic, partitions: partitions)) }
        await admin.close()

        var results: [BenchResult] = []
        func report(_ name: String, _ run: Run, lines: Int, bytes: Int, expectLines: Int? = nil, note: String) throws {
            guard run.status == 0 else { throw MillraceError(.unexpected, "\(name) exited with \(run.status)") }
            if let expectLines, lines != expectLines { throw MillraceError(.unexpected, "\(name) wrote \(lines) lines, not \(expectLines)") }
            let result = BenchResult(
                name: name, records: lines, bytes: bytes, seconds: run.seconds,
                fields: ["lines_per_s": (Double(lines) / run.seconds).rounded(), "peak_rss_mb": run.peakRSS >> 20],
                note: note + "; peak RSS \(run.peakRSS >> 20) MB")
            results.append(result)
            if json { print(Report.jsonLine(result.json)) } else { FileHandle.standardError.write(Data("  done: \(name)\n".utf8)) }
        }
        if json {
            print(Report.jsonLine(Report.conditions(extra: ["bench": "cli", "events": events, "input_bytes": inputBytes, "partitions": Int(partitions)])))
        }

        let loaded = try Self.command(["produce", "loaded", "--file", input, "-b", broker])
        try report("produce --file", loaded, lines: events, bytes: inputBytes, note: "millrace produce loaded --file events.ndjson")
        let piped = try Self.command(["produce", "piped", "-b", broker], stdin: input)
        try report("produce < stdin", piped, lines: events, bytes: inputBytes, note: "millrace produce piped < events.ndjson")
        let values = directory + "/values.ndjson"
        let dumped = try Self.command(["consume", "loaded", "--format", "value", "-b", broker], stdout: values)
        try report(
            "consume --format value", dumped, lines: try Self.lineCount(values), bytes: try Self.size(values), expectLines: events,
            note: "millrace consume loaded --format value > file")
        let objects = directory + "/records.ndjson"
        let audited = try Self.command(["consume", "loaded", "--format", "json", "-b", broker], stdout: objects)
        try report(
            "consume --format json", audited, lines: try Self.lineCount(objects), bytes: try Self.size(objects), expectLines: events,
            note: "millrace consume loaded --format json > file")
        if !json {
            print(
                "millrace-bench cli: \(events) generated events (\(inputBytes >> 20) MiB, \(inputBytes / max(1, events)) B a line on average), topics of \(partitions) partitions, a release broker on this machine (\(ProcessInfo.processInfo.activeProcessorCount) cores shared); records/s is lines/s; MB/s counts the file's bytes"
            )
            Report.printTable(results)
        }
    }

    struct Run {
        var status: Int32
        var seconds: Double
        var peakRSS: Int
    }

    /// Runs the `millrace` binary beside this one, timing it and sampling its peak RSS
    /// (VmHWM) until it exits.
    static func command(_ arguments: [String], stdin: String? = nil, stdout: String? = nil) throws -> Run {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("millrace").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        if let stdin { process.standardInput = FileHandle(forReadingAtPath: stdin) }
        if let stdout {
            _ = FileManager.default.createFile(atPath: stdout, contents: nil)
            process.standardOutput = FileHandle(forWritingAtPath: stdout)
        } else {
            process.standardOutput = FileHandle.nullDevice
        }
        let started = monotonicSeconds()
        try process.run()
        var peak = 0
        while process.isRunning {
            if let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
                let kb = Int(line.split(whereSeparator: \.isWhitespace)[1])
            {
                peak = max(peak, kb << 10)
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        return Run(status: process.terminationStatus, seconds: monotonicSeconds() - started, peakRSS: peak)
    }

    static func size(_ path: String) throws -> Int { (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }

    static func lineCount(_ path: String) throws -> Int {
        guard let handle = FileHandle(forReadingAtPath: path) else { return 0 }
        defer { try? handle.close() }
        var count = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { count += chunk.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } }
        return count
    }
}
