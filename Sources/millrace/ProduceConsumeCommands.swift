import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import NIOConcurrencyHelpers

struct ProduceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce", abstract: "Send one record per input line; exit 0 only when every record was acknowledged.")

    @OptionGroup var broker: BrokerOptions
    @Argument(help: "Topic.") var topic: String
    @Option(help: "Read lines from this file instead of standard input.") var file: String?
    @Option(help: "Use this key for every record.") var key: String?
    @Option(help: "Take each record's key from this JSON pointer into the line, e.g. /lot_id.") var keyField: String?
    @Option(help: "Compress batches: none or zstd.") var compression = "none"

    func run() async throws {
        guard key == nil || keyField == nil else {
            Output.standardError("error: give --key or --key-field, not both")
            throw ExitCode(2)
        }
        guard let codec = CompressionCodec.allCases.first(where: { $0.description == compression }), codec.isSupported else {
            Output.standardError("error: --compression takes none or zstd (got \(compression))")
            throw ExitCode(2)
        }
        let text: String
        do {
            text = try file.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } catch {
            Output.standardError("error: cannot read \(file ?? "standard input"): \(error.localizedDescription)")
            throw ExitCode(2)
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        let showProgress = file != nil && Output.standardErrorIsTerminal
        let tally = NIOLockedValueBox((acknowledged: 0, failed: 0, firstError: String?.none))
        let started = Date()
        var unsent = 0
        var configuration = Producer.Configuration()
        configuration.compression = codec
        try await withClient(broker) { client in
            let producer = Producer(client: client, configuration: configuration)
            for (index, line) in lines.enumerated() {
                var recordKey = key.map { Array($0.utf8) }
                if let keyField {
                    guard let found = Self.jsonPointer(keyField, in: line) else {
                        unsent += 1
                        tally.withLockedValue { if $0.firstError == nil { $0.firstError = "line \(index + 1) has no \(keyField)" } }
                        continue
                    }
                    recordKey = Array(found.utf8)
                }
                try await producer.send(topic: topic, key: recordKey, value: Array(line.utf8)) { result in
                    tally.withLockedValue { tally in
                        switch result {
                        case .success: tally.acknowledged += 1
                        case .failure(let error):
                            tally.failed += 1
                            if tally.firstError == nil { tally.firstError = (error as? MillraceError)?.message ?? "\(error)" }
                        }
                    }
                }
                if showProgress && index % 1000 == 999 { Self.progress(tally.withLockedValue { $0.acknowledged }, lines.count, started) }
            }
            try await producer.flush()
        }
        if showProgress { Self.progress(lines.count, lines.count, started, done: true) }
        let result = tally.withLockedValue { $0 }
        let missed = result.failed + unsent
        if missed == 0 {
            print("produced \(Output.count(Int64(result.acknowledged))) record\(result.acknowledged == 1 ? "" : "s") to \(topic)")
        } else {
            Output.standardError(
                "error: \(Output.count(Int64(missed))) of \(Output.count(Int64(lines.count))) records were not acknowledged (first: \(result.firstError ?? "unknown")); \(Output.count(Int64(result.acknowledged))) were"
            )
            throw ExitCode(1)
        }
    }

    static func progress(_ done: Int, _ total: Int, _ started: Date, done finished: Bool = false) {
        let rate = Double(done) / max(Date().timeIntervalSince(started), 0.001)
        let width = 30
        let filled = total == 0 ? width : width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(Output.count(Int64(done)))/\(Output.count(Int64(total))) records, \(Output.count(Int64(rate)))/s\(finished ? "\n" : "")".utf8))
    }

    /// A string or number at a JSON pointer (RFC 6901) in one JSON line; nil when absent.
    static func jsonPointer(_ pointer: String, in line: Substring) -> String? {
        guard var node = try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed]) else { return nil }
        for token in pointer.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            let name = token.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            if let object = node as? [String: Any], let next = object[name] {
                node = next
            } else if let array = node as? [Any], let index = Int(name), array.indices.contains(index) {
                node = array[index]
            } else {
                return nil
            }
        }
        if let string = node as? String { return string }
        if let number = node as? NSNumber { return number.stringValue }
        return nil
    }
}

struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Print records of a topic. Without --follow, stops at the log end as it was at the start.")

    @OptionGroup var broker: BrokerOptions
    @Argument(help: "Topic.") var topic: String
    @Option(help: "Where to start: earliest, latest, offset:N or time:ISO8601.") var from = "earliest"
    @Option(help: "Only this partition (default: all).") var partition: Int32?
    @Option(help: "Stop after this many records.") var limit: Int?
    @Flag(help: "Keep waiting for new records.") var follow = false
    @Option(help: "value (each record's value on a line) or json (one object per record).") var format = "value"
    @Option(help: "Consume as a member of this group: resume from its commits, and commit what was printed when stopping.")
    var group: String?

    func run() async throws {
        if let group { return try await consumeInGroup(group) }
        guard let start = Self.parseStart(from) else {
            Output.standardError("error: --from takes earliest, latest, offset:N or time:ISO8601 such as time:2026-11-27T06:00:00Z (got \(from))")
            throw ExitCode(2)
        }
        guard format == "value" || format == "json" else {
            Output.standardError("error: --format takes value or json (got \(format))")
            throw ExitCode(2)
        }
        var printed = 0
        try await withClient(broker) { client in
            let consumer = Consumer(client: client, topic: topic, partitions: partition.map { [$0] }, from: start, stopAtEnd: !follow)
            for try await record in consumer {
                if let limit, printed >= limit { break }
                print(format == "json" ? Self.json(record) : String(decoding: record.value ?? [], as: UTF8.self))
                printed += 1
                if let limit, printed >= limit { break }
            }
        }
    }

    /// As a group member: the broker assigns partitions; on --limit, the log end, or Ctrl-C
    /// the offsets of exactly the records printed are committed, so the next run continues
    /// with no gap and no overlap.
    private func consumeInGroup(_ group: String) async throws {
        guard from == "earliest" || from == "latest", partition == nil else {
            Output.standardError("error: with --group, --from only says where to start without commits (earliest or latest), and --partition is not allowed")
            throw ExitCode(2)
        }
        guard format == "value" || format == "json" else {
            Output.standardError("error: --format takes value or json (got \(format))")
            throw ExitCode(2)
        }
        let format = self.format
        let limit = self.limit
        let consumer = GroupConsumer(
            client: try broker.client(), group: group, topic: topic, whenNoCommit: from == "latest" ? .latest : .earliest, stopAtEnd: !follow)
        let work = Task { () throws -> Int in
            var iterator = consumer.makeAsyncIterator()
            var printed = 0
            do {
                while limit.map({ printed < $0 }) ?? true, let record = try await iterator.next() {
                    print(format == "json" ? Self.json(record) : String(decoding: record.value ?? [], as: UTF8.self))
                    printed += 1
                }
            } catch is CancellationError {
                // Ctrl-C: fall through and commit what was printed.
            }
            for warning in iterator.warnings { Output.standardError("warning: \(warning)") }
            try await iterator.commit()
            await iterator.leave()
            return printed
        }
        signal(SIGINT, SIG_IGN)
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        interrupt.setEventHandler { work.cancel() }
        interrupt.resume()
        defer { interrupt.cancel() }
        do {
            _ = try await work.value
            await consumer.client.close()
        } catch let error as MillraceError {
            await consumer.client.close()
            Output.standardError("error: \(error.message)")
            throw ExitCode(1)
        }
    }

    static func parseStart(_ text: String) -> StartPosition? {
        switch text {
        case "earliest": return .earliest
        case "latest": return .latest
        default:
            if text.hasPrefix("offset:"), let offset = Int64(text.dropFirst(7)), offset >= 0 { return .offset(offset) }
            if text.hasPrefix("time:") {
                let formatter = ISO8601DateFormatter()
                formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                let value = String(text.dropFirst(5))
                if let date = formatter.date(from: value) ?? ISO8601DateFormatter().date(from: value) {
                    return .timestamp(Int64(date.timeIntervalSince1970 * 1000))
                }
            }
            return nil
        }
    }

    static func json(_ record: ConsumedRecord) -> String {
        var object: [String: Any] = [
            "topic": record.topic, "partition": Int(record.partition), "offset": record.offset, "timestamp": record.timestamp,
            "key": record.key.map { String(decoding: $0, as: UTF8.self) as Any } ?? NSNull(),
        ]
        let value = record.value.map { String(decoding: $0, as: UTF8.self) }
        if let value, let parsed = try? JSONSerialization.jsonObject(with: Data(value.utf8)) {
            object["value"] = parsed
        } else {
            object["value"] = value.map { $0 as Any } ?? NSNull()
        }
        return Output.json(object)
    }
}
