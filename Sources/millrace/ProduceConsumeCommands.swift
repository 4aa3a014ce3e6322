import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceSchema
import MillraceWire

struct ProduceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Send one record per input line; exit 0 only when every record was acknowledged.",
        discussion: """
            Lines end at \\n; a \\r before it and a UTF-8 byte-order mark at the start are dropped; empty \
            lines are skipped. Standard input is streamed: records go out as lines arrive. On failure the \
            summary lists the acknowledged line numbers, so a rerun can skip them, and --rejected FILE \
            writes the lines that were not acknowledged, to resend with --file FILE. Exit codes: 0 every \
            record acknowledged, 1 some were not (or the broker could not be reached), 2 bad usage.
            """ + Help.examples("millrace produce confirmations -f events.ndjson --key-field /order_id", "tail -F gateway.log | millrace produce confirmations -H source=line-3 --timestamp-field /ts", "millrace produce confirmations -f events.ndjson --rejected failed.ndjson --json"))

    @OptionGroup var broker: BrokerOptions
    @Argument(help: "Topic.") var topic: String
    @Option(name: [.customShort("f"), .long], help: "Read lines from this file instead of standard input.") var file: String?
    @Option(name: [.customShort("k"), .long], help: "Use this key for every record.") var key: String?
    @Option(name: [.customShort("p"), .long], parsing: .unconditional, help: "Send every record to this partition (default: by key, or spread when there is none).")
    var partition: Int32?
    @Option(help: "Take each record's key from this JSON pointer into the line, e.g. /lot_id.") var keyField: String?
    @Option(name: [.customShort("H"), .customLong("header")], help: "A header on every record, NAME=VALUE (repeat for more).") var headers: [String] = []
    @Option(help: "Take each record's event time from this JSON pointer: an ISO 8601 time (2026-11-27T06:00:00Z) or milliseconds since 1970.")
    var timestampField: String?
    @Option(help: "Compress batches: none or zstd (default: the topic's setting).") var compression: String?
    @Option(help: "zstd level, 1-19 (default: 15 for batches of at most 1 KiB, 3 for larger ones).") var compressionLevel: Int32?
    @Option(help: "Write every line that was not acknowledged to this file, as it was read, so `--file` can resend exactly those.")
    var rejected: String?
    @Flag(help: "End with a JSON summary instead of a sentence (it lists each duplicate line with where its original is).") var json = false

    /// The longest line sent as one record: a batch of one, with room for its header and key.
    static let lineBytesMax = Limits.batchBytesMax - Limits.keyBytesMax - 1_024

    struct Tally {
        var acknowledged = LineRanges()
        var failed = 0
        var firstError: String?
        /// The first `errorsShownMax` failures, each with its line and reason.
        var errors: [(line: Int, reason: String)] = []
        static let errorsShownMax = 20
        /// With --rejected: each line sent or refused and not (yet) acknowledged.
        var keepLines = false
        var unacknowledged: [Int: [UInt8]] = [:]

        mutating func fail(_ line: Int, _ reason: String, _ bytes: [UInt8]? = nil) {
            failed += 1
            if firstError == nil { firstError = "line \(line): \(reason)" }
            if errors.count < Self.errorsShownMax { errors.append((line, reason)) }
            if keepLines, let bytes { unacknowledged[line] = bytes }
        }

        mutating func sending(_ line: Int, _ bytes: [UInt8]) {
            if keepLines { unacknowledged[line] = bytes }
        }

        mutating func acknowledge(_ line: Int) {
            acknowledged.insert(line)
            unacknowledged[line] = nil
        }

        /// Parked by the broker in the quarantine: acknowledged (not to be sent again), but
        /// not in the topic.
        var quarantined = 0
        var firstQuarantined: String?
        var quarantineTopic = ""

        /// Not stored because the topic already holds its business key: acknowledged.
        var duplicates: [(line: Int, partition: Int32, offset: Int64)] = []

        mutating func duplicate(_ line: Int, _ original: RecordDuplicate) {
            acknowledge(line)
            duplicates.append((line, original.partition, original.offset))
        }

        mutating func quarantine(_ line: Int, _ parked: RecordQuarantined) {
            acknowledge(line)
            quarantined += 1
            quarantineTopic = parked.topic
            if firstQuarantined == nil { firstQuarantined = "line \(line): \(parked.path.isEmpty ? "/" : parked.path): \(parked.message)" }
        }
    }

    func run() async throws {
        guard key == nil || keyField == nil else {
            Output.standardError("error: give --key or --key-field, not both")
            throw ExitCode(2)
        }
        if let partition, partition < 0 {
            Output.standardError("error: --partition takes a partition number, 0 or more (got \(partition))")
            throw ExitCode(2)
        }
        let keyPointer: JSONPointer?
        let timePointer: JSONPointer?
        do {
            keyPointer = try keyField.map { try JSONPointer($0) }
        } catch let error as MillraceError {
            Output.standardError("error: --key-field: \(error.message)")
            throw ExitCode(2)
        }
        do {
            timePointer = try timestampField.map { try JSONPointer($0) }
        } catch let error as MillraceError {
            Output.standardError("error: --timestamp-field: \(error.message)")
            throw ExitCode(2)
        }
        var extraHeaders: [RecordHeader] = []
        for header in headers {
            guard let equals = header.firstIndex(of: "="), equals != header.startIndex else {
                Output.standardError("error: -H/--header takes NAME=VALUE (got \(header))")
                throw ExitCode(2)
            }
            extraHeaders.append(RecordHeader(key: String(header[..<equals]), value: Array(header[header.index(after: equals)...].utf8)))
        }
        var codec: CompressionCodec?
        if let compression {
            guard let chosen = CompressionCodec.allCases.first(where: { $0.description == compression }), chosen.isSupported else {
                Output.standardError("error: --compression takes none or zstd (got \(compression))")
                throw ExitCode(2)
            }
            codec = chosen
        }
        if let compressionLevel, !(1...19).contains(compressionLevel) {
            Output.standardError("error: --compression-level takes 1 to 19 (got \(compressionLevel))")
            throw ExitCode(2)
        }
        let descriptor: Int32
        if let file {
            descriptor = try InputFile.open(file)
        } else {
            descriptor = 0
        }
        var info = stat()
        let fileBytes = file != nil && fstat(descriptor, &info) == 0 ? Int(info.st_size) : 0
        let showProgress = file != nil && Output.standardErrorIsTerminal

        let client = try broker.client()
        var configuration = Producer.Configuration()
        configuration.compression = codec
        configuration.compressionLevel = compressionLevel
        let producer = Producer(client: client, configuration: configuration)
        let tally = Locked(Tally(keepLines: rejected != nil))
        let (topic, key, timestampField, partition) = (topic, key, timestampField, partition)
        let work = Task { () throws -> (lines: Int, records: Int, complete: Bool) in
            // A topic that rejects invalid records refuses a whole batch for one bad line:
            // check lines here first, so a bad line is named by its number and its good
            // neighbours still go. (Under quarantine they are sent: the broker parks them.)
            // Every record names the version it was produced under, so consumers see it.
            var reachedEnd = false
            let schema = try await Self.topicSchema(client, topic)
            let contract = schema.flatMap { $0.rejects ? (version: $0.version, schema: $0.schema) : nil }
            let versionHeader = (schema.map { [RecordHeader(key: schemaVersionHeader, value: Array(String($0.version).utf8))] } ?? []) + extraHeaders
            var tape = JSONTape()
            let reader = InputReader(descriptor: descriptor)
            var splitter = LineSplitter(lineBytesMax: Self.lineBytesMax)
            var records = 0
            var bytesRead = 0
            let started = Date()
            func handle(_ lines: [LineSplitter.Line]) async throws {
                for line in lines {
                    switch line {
                    case .tooLong(let number, let bytes):
                        tally.withLock { $0.fail(number, "\(Output.count(Int64(bytes))) bytes; one record takes at most \(Output.count(Int64(Self.lineBytesMax)))") }
                        records += 1
                    case .text(let number, let bytes):
                        records += 1
                        var recordKey = key.map { Array($0.utf8) }
                        // One parse of the line serves both the key field and the schema.
                        var parseError: JSONSyntaxError?
                        if keyPointer != nil || contract != nil || timePointer != nil {
                            do {
                                try tape.parse(bytes, depthMax: Limits.jsonDepthMax)
                            } catch {
                                parseError = error
                            }
                        }
                        // A line with no key to take goes without one: the broker (its schema and
                        // quarantine) decides, the CLI never drops it.
                        if let keyPointer, parseError == nil, let found = keyPointer.keyBytes(in: tape) { recordKey = found }
                        var eventTime: Int64?
                        if let timePointer, let timestampField {
                            guard parseError == nil else {
                                tally.withLock { $0.fail(number, "not valid JSON, so it has no \(timestampField)", bytes) }
                                continue
                            }
                            guard let raw = timePointer.keyBytes(in: tape), let time = EventTime.milliseconds(raw) else {
                                tally.withLock { $0.fail(number, "\(timestampField) is missing or not a time (ISO 8601, or milliseconds since 1970)", bytes) }
                                continue
                            }
                            eventTime = time
                        }
                        if let contract {
                            let problem: String?
                            if let parseError {
                                problem = InputFile.syntax(parseError, in: bytes).message
                            } else {
                                problem = contract.schema.isValid(tape) ? nil : contract.schema.validate(tape, limit: 1).first?.description
                            }
                            if let problem {
                                tally.withLock { $0.fail(number, "\(problem) (schema version \(contract.version); not sent)", bytes) }
                                continue
                            }
                        }
                        tally.withLock { $0.sending(number, bytes) }
                        try await producer.send(
                            ProducerRecord(topic: topic, partition: partition, key: recordKey, value: bytes, headers: versionHeader, timestampMs: eventTime)
                        ) { result in
                            tally.withLock { tally in
                                switch result {
                                case .success: tally.acknowledge(number)
                                case .failure(let parked as RecordQuarantined): tally.quarantine(number, parked)
                                case .failure(let original as RecordDuplicate): tally.duplicate(number, original)
                                case .failure(let error): tally.fail(number, (error as? MillraceError)?.message ?? "\(error)")
                                }
                            }
                        }
                    }
                }
            }
            do {
                for try await chunk in reader {
                    bytesRead += chunk.count
                    try await handle(splitter.feed(chunk))
                    reader.consumed()
                    if showProgress { Self.progress(bytesRead, fileBytes, records, started) }
                    if Task.isCancelled { break }
                }
                if !Task.isCancelled {
                    try await handle(splitter.finish())
                    reachedEnd = true
                }
            } catch is CancellationError {}
            // Whatever was sent is waited for; after a signal, for a few seconds at most.
            if Task.isCancelled {
                _ = try await producer.flush(within: .seconds(5))
            } else {
                try await producer.flush()
            }
            if showProgress { Self.progress(bytesRead, fileBytes, records, started, done: true) }
            return (splitter.linesSeen, records, reachedEnd)
        }
        let signals = TerminationSignals(graceSeconds: 10) { work.cancel() }
        defer { signals.cancel() }
        let outcome: (lines: Int, records: Int, complete: Bool)
        do {
            outcome = try await signals.wait(for: work)
        } catch let error as MillraceError {
            await client.close()
            let result = tally.withLock { $0 }
            Output.standardError("error: \(error.message)")
            reportUnacknowledged(result)
            throw ExitCode(1)
        }
        await client.close()
        let result = tally.withLock { $0 }
        let acknowledged = result.acknowledged.count
        let stopped = signals.signalled ? " (stopped by a signal after line \(outcome.lines))" : ""
        let duplicates = result.duplicates.sorted { $0.line < $1.line }
        if json {
            var summary: [String: Any] = [
                "topic": topic, "lines": outcome.records, "acknowledged": acknowledged,
                "appended": acknowledged - result.quarantined - duplicates.count, "quarantined": result.quarantined,
                "not_acknowledged": outcome.records - acknowledged,
                "duplicates": duplicates.map { ["line": $0.line, "partition": Int($0.partition), "offset": $0.offset] as [String: Any] },
            ]
            if signals.signalled { summary["stopped_after_line"] = outcome.lines }
            summary["errors"] = result.errors.map { ["line": $0.line, "reason": $0.reason] as [String: Any] }
            summary["errors_not_listed"] = result.failed - result.errors.count
            print(Output.json(summary))
        }
        let duplicateNote = duplicates.isEmpty ? "" : "; \(Output.count(Int64(duplicates.count))) duplicate\(duplicates.count == 1 ? "" : "s") not stored again (first: line \(duplicates[0].line), original at partition \(duplicates[0].partition) offset \(duplicates[0].offset))"
        let parkedNote = result.quarantined == 0 ? nil : "\(Output.count(Int64(result.quarantined))) record\(result.quarantined == 1 ? "" : "s") broke the topic's schema and were parked in \(result.quarantineTopic) (first: \(result.firstQuarantined ?? "")); see `millrace quarantine list \(topic)`, fix, then `millrace quarantine redrive \(topic)`"
        if result.failed == 0 && acknowledged == outcome.records, let parkedNote {
            let appended = acknowledged - result.quarantined - duplicates.count
            if !json { print("produced \(Output.count(Int64(appended))) record\(appended == 1 ? "" : "s") to \(topic)\(duplicateNote)\(stopped)") }
            Output.standardError("error: \(parkedNote)")
            throw ExitCode(1)
        } else if result.failed == 0 && acknowledged == outcome.records {
            let appended = acknowledged - duplicates.count
            if !json { print("produced \(Output.count(Int64(appended))) record\(appended == 1 ? "" : "s") to \(topic)\(duplicateNote)\(stopped)") }
        } else {
            let missed = outcome.records - acknowledged
            Output.standardError(
                "error: \(Output.count(Int64(missed))) of \(Output.count(Int64(outcome.records))) records were not acknowledged (first: \(result.firstError ?? "no answer came before the command stopped"))\(stopped)"
            )
            // Each refused line with its reason, as many as a person reads; --rejected has all.
            for error in result.errors { Output.standardError("  line \(error.line): \(error.reason)") }
            if result.failed > result.errors.count {
                Output.standardError("  and \(Output.count(Int64(result.failed - result.errors.count))) more refused (--rejected FILE keeps every line not acknowledged)")
            }
            if let parkedNote { Output.standardError("error: \(parkedNote)") }
            reportUnacknowledged(result)
            throw ExitCode(1)
        }
        // Interrupted before the end of its input, the command did not do what it was asked:
        // `produce -f x && mv x done/` must not move a file half sent (OPERATIONS.md: exit 1).
        if !outcome.complete {
            Output.standardError("error: stopped by a signal after line \(outcome.lines), before the end of the input; the lines after it were not sent")
            throw ExitCode(1)
        }
    }

    /// The topic's latest schema when its policy is to reject invalid records; nil otherwise.
    /// The topic's latest schema, and whether the topic rejects invalid records; nil when it
    /// has no schema.
    static func topicSchema(_ client: MillraceClient, _ topic: String) async throws -> (version: Int32, schema: Schema, rejects: Bool)? {
        let list: MillraceClient.SchemaVersions
        do {
            list = try await client.listSchemas(topic: topic)
        } catch let error as MillraceError where error.code == .unknownApi {
            return nil  // a broker from before schemas
        }
        guard !list.versions.isEmpty else { return nil }
        let latest = try await client.compiledSchema(topic: topic)
        return (latest.version, latest.schema, list.onInvalid == .reject)
    }

    /// Says exactly which lines were acknowledged, and with --rejected writes the others out.
    private func reportUnacknowledged(_ result: Tally) {
        if let rejected {
            let lines = result.unacknowledged.sorted { $0.key < $1.key }
            var bytes: [UInt8] = []
            for (_, line) in lines {
                bytes += line
                bytes.append(UInt8(ascii: "\n"))
            }
            if FileManager.default.createFile(atPath: rejected, contents: Data(bytes)) {
                let fileArgument = rejected.contains(" ") ? "'\(rejected)'" : rejected
                Output.standardError(
                    "wrote the \(Output.count(Int64(lines.count))) line\(lines.count == 1 ? "" : "s") that were not acknowledged to \(rejected); resend them with: millrace produce \(topic) --file \(fileArgument)")
            } else {
                Output.standardError("error: could not write \(rejected): \(String(cString: strerror(errno)))")
            }
        }
        if let rejected, result.acknowledged.ranges.count > 20 {
            Output.standardError("acknowledged lines: \(Output.count(Int64(result.acknowledged.count))) in \(Output.count(Int64(result.acknowledged.ranges.count))) ranges (the others are in \(rejected))")
        } else {
            Output.standardError("acknowledged lines: \(result.acknowledged.description)")
        }
    }

    static func progress(_ bytes: Int, _ total: Int, _ records: Int, _ started: Date, done finished: Bool = false) {
        let rate = Double(records) / max(Date().timeIntervalSince(started), 0.001)
        let width = 30
        let filled = total <= 0 ? width : min(width, width * bytes / total)
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(
            Data("\r[\(bar)] \(Output.bytes(Int64(bytes)))/\(Output.bytes(Int64(total))), \(Output.count(Int64(records))) records, \(Output.count(Int64(rate)))/s\(finished ? "\n" : "")".utf8))
    }

}

struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Print records of a topic. Without --follow, stops at the log end as it was at the start.", discussion: Help.exampleLines("millrace consume confirmations --from earliest -n 10", "millrace consume confirmations --from time:-2h --format json", "millrace consume confirmations --group erp --follow"))

    @OptionGroup var broker: BrokerOptions
    @Argument(help: "Topic.") var topic: String
    @Option(help: "Where to start: earliest, latest, offset:N, time:ISO8601 (time:2026-11-27T06:00:00Z) or time:-DURATION (time:-2h: two hours ago).")
    var from = "earliest"
    @Option(name: [.customShort("p"), .long], parsing: .unconditional, help: "Only this partition (default: all).") var partition: Int32?
    @Option(name: [.customShort("n"), .long], parsing: .unconditional, help: "Stop after this many records.") var limit: Int?
    @Flag(help: "Keep waiting for new records.") var follow = false
    @Option(help: "value (each record's value on a line), key-value (the key, a tab, the value; an empty key when there is none) or json (one object per record).")
    var format = "value"
    @Flag(help: "Print one JSON object per record (the same as --format json).") var json = false

    /// The output form: --json is --format json.
    private var output: RecordWriter.Form { json ? .json : RecordWriter.Form(rawValue: format) ?? .value }
    @Option(help: "Consume as a member of this group: resume from its commits, and commit what was printed when stopping.")
    var group: String?
    @Option(help: "With --group: the member is dropped after this long without a heartbeat, and its partitions go to the others: a duration, 1s to 5m (default 10s).")
    var sessionTimeout: String?
    @Option(help: .hidden) var sessionTimeoutMs: Int32?

    /// --session-timeout, or the older --session-timeout-ms, in milliseconds (exits 2 when wrong).
    private func sessionTimeoutMilliseconds() throws -> Int32 {
        let range: ClosedRange<Int64> = 1_000...300_000
        switch (sessionTimeout, sessionTimeoutMs) {
        case (nil, nil): return 10_000
        case (let text?, nil): return Int32(try Durations.option(text, "--session-timeout", within: range, examples: "10s or 30s"))
        case (nil, let milliseconds?):
            guard range.contains(Int64(milliseconds)) else {
                Output.standardError("error: --session-timeout-ms takes 1000 to 300000 milliseconds (got \(milliseconds)); --session-timeout takes a duration such as 10s")
                throw ExitCode(2)
            }
            return milliseconds
        case (.some, .some):
            Output.standardError("error: give --session-timeout or --session-timeout-ms, not both")
            throw ExitCode(2)
        }
    }

    func run() async throws {
        try validateCommon()
        if let group { return try await consumeInGroup(group) }
        guard let start = Self.parseStart(from) else {
            Output.standardError("error: --from takes earliest, latest, offset:N, time:ISO8601 such as time:2026-11-27T06:00:00Z, or time:-DURATION such as time:-2h (got \(from))")
            throw ExitCode(2)
        }
        let client = try broker.client()
        let writer = RecordWriter(output, flushEachRecord: follow)
        let consumer = Consumer(client: client, topic: topic, partitions: partition.map { [$0] }, from: start, stopAtEnd: !follow)
        let limit = self.limit
        let work = Task { try await Self.print(consumer, to: writer, limit: limit) }
        let signals = TerminationSignals { work.cancel() }
        defer { signals.cancel() }
        do {
            let finished = try await signals.wait(for: work)
            writer.flush()
            await client.close()
            try interrupted(finished)
        } catch let error as MillraceError {
            writer.flush()
            await client.close()
            Output.standardError("error: \(error.message)")
            throw ExitCode(1)
        }
    }

    /// Writes records until `limit`, the end of `records`, a closed output or cancellation;
    /// false when cancellation (a signal) ended it first.
    static func print<Records: AsyncSequence>(_ records: Records, to writer: RecordWriter, limit: Int?) async throws -> Bool
    where Records.Element == ConsumedRecord {
        guard limit.map({ $0 > 0 }) ?? true else { return true }
        var printed = 0
        do {
            for try await record in records {
                guard writer.write(record) else { return true }  // the reader of our output went away
                printed += 1
                if let limit, printed >= limit { return true }
            }
        } catch is CancellationError {
            return false
        }
        return !Task.isCancelled
    }

    /// A bounded consume (`--limit`, or to the end without `--follow`) that a signal stopped
    /// did not do what it was asked (exit 1); an unbounded `--follow` ends so normally.
    private func interrupted(_ finished: Bool) throws {
        guard !finished, limit != nil || !follow else { return }
        Output.standardError("error: stopped by a signal before \(limit.map { "\($0) records were read" } ?? "the end of the topic")")
        throw ExitCode(1)
    }

    private func validateCommon() throws {
        guard RecordWriter.Form(rawValue: format) != nil else {
            Output.standardError("error: --format takes value, key-value or json (got \(format))")
            throw ExitCode(2)
        }
        guard !json || format == "value" || format == "json" else {
            Output.standardError("error: give --json or --format \(format), not both")
            throw ExitCode(2)
        }
        if let limit, limit < 0 {
            Output.standardError("error: --limit takes a count of 0 or more (got \(limit))")
            throw ExitCode(2)
        }
        _ = try sessionTimeoutMilliseconds()
        if let partition, partition < 0 {
            Output.standardError("error: --partition takes a partition number, 0 or more (got \(partition))")
            throw ExitCode(2)
        }
    }

    /// As a group member: the broker assigns partitions; exactly the records written to
    /// standard output are committed — every few seconds while it runs, before a rebalance
    /// takes partitions away, and on --limit, the log end, Ctrl-C or SIGTERM — so the next
    /// run continues with no gap and no overlap. Then it leaves the group.
    private func consumeInGroup(_ group: String) async throws {
        guard from == "earliest" || from == "latest", partition == nil else {
            Output.standardError("error: with --group, --from only says where to start without commits (earliest or latest), and --partition is not allowed")
            throw ExitCode(2)
        }
        let client = try broker.client()
        var configuration = GroupConsumer.Configuration()
        configuration.resetPolicy = from == "latest" ? .latest : .earliest
        configuration.stopAtEnd = !follow
        configuration.sessionTimeoutMs = try sessionTimeoutMilliseconds()
        configuration.autoCommit = false
        let consumer = GroupConsumer(client: client, group: group, topic: topic, configuration: configuration)
        let writer = RecordWriter(output, flushEachRecord: follow)
        writer.onFlushed = { consumer.commit($0) }
        let limit = self.limit
        let work = Task { try await Self.print(consumer, to: writer, limit: limit) }
        let signals = TerminationSignals(graceSeconds: 10) { work.cancel() }
        defer { signals.cancel() }
        var failure: MillraceError?
        var finished = true
        do {
            finished = try await signals.wait(for: work)
        } catch let error as MillraceError {
            failure = error
        }
        writer.flush()
        await consumer.close()
        await client.close()
        if let failure {
            Output.standardError("error: \(failure.message)")
            throw ExitCode(1)
        }
        try interrupted(finished)
    }

    static func parseStart(_ text: String) -> StartPosition? {
        switch text {
        case "earliest": return .earliest
        case "latest": return .latest
        default:
            if text.hasPrefix("offset:"), let offset = Int64(text.dropFirst(7)), offset >= 0 { return .offset(offset) }
            if text.hasPrefix("time:-"), let ago = Durations.parse(String(text.dropFirst(6))) {
                return .timestamp(Int64(Date().timeIntervalSince1970 * 1000) - ago)
            }
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

}

/// Writes consumed records to standard output in large writes; under `--follow` each record
/// is written as it comes, so a pipe sees it at once. Always flushed before the command ends.
final class RecordWriter: @unchecked Sendable {
    enum Form: String {
        case value
        case keyValue = "key-value"
        case json
    }

    private let form: Form
    private let flushEachRecord: Bool
    private var buffer: [UInt8] = []
    private var broken = false
    /// Told of the last record of each partition once it is out (a group commits those).
    var onFlushed: ((ConsumedRecord) -> Void)?
    private var unflushed: [Int32: ConsumedRecord] = [:]
    private var times = TimeText()

    init(_ form: Form, flushEachRecord: Bool) {
        self.form = form
        self.flushEachRecord = flushEachRecord
        signal(SIGPIPE, SIG_IGN)
        buffer.reserveCapacity(1 << 16)
    }

    /// False once standard output is closed (say, `| head`): stop reading.
    func write(_ record: ConsumedRecord) -> Bool {
        switch form {
        case .json: Self.appendJSON(record, to: &buffer, times: &times)
        case .value: buffer.append(contentsOf: record.value ?? [])
        case .keyValue:
            buffer.append(contentsOf: record.key ?? [])
            buffer.append(UInt8(ascii: "\t"))
            buffer.append(contentsOf: record.value ?? [])
        }
        buffer.append(UInt8(ascii: "\n"))
        if onFlushed != nil { unflushed[record.partition] = record }
        if flushEachRecord || buffer.count >= 1 << 16 { flush() }
        return !broken
    }

    func flush() {
        var written = 0
        while written < buffer.count && !broken {
            let count = buffer[written...].withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                broken = true
            } else {
                written += count
            }
        }
        buffer.removeAll(keepingCapacity: true)
        guard !broken, let onFlushed else { return }
        for record in unflushed.values { onFlushed(record) }
        unflushed.removeAll(keepingCapacity: true)
    }

    /// One object per record: topic, partition, offset, timestamp (ms) and time (ISO 8601),
    /// key, headers, and the value as JSON when it is JSON (copied, not re-encoded), else as a string.
    static func appendJSON(_ record: ConsumedRecord, to out: inout [UInt8], times: inout TimeText) {
        out.append(contentsOf: "{\"topic\":".utf8)
        JSONText.appendString(record.topic.utf8, to: &out)
        out.append(contentsOf: ",\"partition\":".utf8)
        JSONText.appendInteger(Int64(record.partition), to: &out)
        out.append(contentsOf: ",\"offset\":".utf8)
        JSONText.appendInteger(record.offset, to: &out)
        out.append(contentsOf: ",\"timestamp\":".utf8)
        JSONText.appendInteger(record.timestamp, to: &out)
        out.append(contentsOf: ",\"time\":\"".utf8)
        out.append(contentsOf: times.text(milliseconds: record.timestamp))
        out.append(contentsOf: "\",\"key\":".utf8)
        if let key = record.key { JSONText.appendText(key, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: ",\"headers\":[".utf8)
        for (index, header) in record.headers.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: "{\"name\":".utf8)
            JSONText.appendText(Array(header.key.utf8), to: &out)
            out.append(contentsOf: ",\"value\":".utf8)
            if let value = header.value { JSONText.appendText(value, to: &out) } else { out.append(contentsOf: "null".utf8) }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        if let version = record.schemaVersion {
            out.append(contentsOf: ",\"schema_version\":".utf8)
            JSONText.appendInteger(Int64(version), to: &out)
        }
        out.append(contentsOf: ",\"value\":".utf8)
        if let value = record.value {
            if JSONText.isValid(value) {
                out.append(contentsOf: value.drop { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 })
                while let last = out.last, last == 0x20 || last == 0x0A || last == 0x0D || last == 0x09 { out.removeLast() }
            } else {
                JSONText.appendText(value, to: &out)
            }
        } else {
            out.append(contentsOf: "null".utf8)
        }
        out.append(UInt8(ascii: "}"))
    }
}

/// ISO 8601 times of record timestamps, the last one kept: the records of a batch mostly
/// share their millisecond.
struct TimeText {
    private var milliseconds = Int64.min
    private var bytes: [UInt8] = []

    mutating func text(milliseconds: Int64) -> [UInt8] {
        if milliseconds != self.milliseconds {
            self.milliseconds = milliseconds
            bytes = Array(JSONText.isoTime(milliseconds: milliseconds).utf8)
        }
        return bytes
    }
}
