import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceSchema
import MillraceWire
import NIOConcurrencyHelpers

/// Records a topic refused into `<topic>.quarantine`, and putting them back once fixed.
///
/// Re-drive keeps a cursor: the committed offset of group `millrace.redrive` on the
/// quarantine topic. Everything before it has been handled — re-driven into the topic, or
/// still invalid and parked again at the end of the quarantine with its new reason — so each
/// parked record is re-driven at most once, and `list` shows only what is still parked.
struct QuarantineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine", abstract: "List records parked for breaking a topic's schema, and re-drive them after a fix.",
        subcommands: [List.self, Redrive.self])

    static let cursorGroup = "millrace.redrive"
    static let errorHeaders: Set<String> = ["millrace-error", "millrace-error-path", "millrace-error-rule", "millrace-source-topic", "millrace-source-partition"]

    struct Parked {
        var record: ConsumedRecord
        var header: [String: String]
        /// The error without its "record N: " (N was the record's place in the produce).
        var reason: String {
            guard let error = header["millrace-error"] else { return "(no reason recorded)" }
            guard error.hasPrefix("record "), let colon = error.firstIndex(of: ":") else { return error }
            return String(error[error.index(after: colon)...].drop { $0 == " " })
        }
        var rule: String { header["millrace-error-rule"] ?? "?" }
        var sourcePartition: Int32? { header["millrace-source-partition"].flatMap { Int32($0) } }
    }

    /// The parked records from the cursor (or `from`) to the log end as it is now.
    static func parked(_ client: MillraceClient, topic: String, from: Int64?) async throws -> (start: Int64, end: Int64, records: [Parked]) {
        let quarantine = topic + ".quarantine"
        // In the words the other commands use: the topic is missing, or it parks nothing.
        _ = try await client.partitionCount(topic)
        do {
            _ = try await client.partitionCount(quarantine)
        } catch let error as MillraceError where error.code == .unknownTopic {
            throw MillraceError(
                .unknownTopic,
                "topic \(topic) has no quarantine: invalid records are not parked; to park them in \(quarantine), run `millrace topic alter \(topic) --on-invalid quarantine`")
        }
        let end = try await client.listOffsets(quarantine, partitions: [0], timestamp: ListOffsetsPartition.latest)[0].offset
        let logStart = try await client.listOffsets(quarantine, partitions: [0], timestamp: ListOffsetsPartition.earliest)[0].offset
        let cursor = try await client.committedOffsets(group: cursorGroup, topic: quarantine, partitions: [0]).first?.offset ?? -1
        let start = max(from ?? (cursor >= 0 ? cursor : logStart), logStart)
        var records: [Parked] = []
        guard start < end else { return (start, end, []) }
        for try await record in Consumer(client: client, topic: quarantine, partitions: [0], from: .offset(start), stopAtEnd: true) {
            guard record.offset < end else { break }
            let header = Dictionary(record.headers.map { ($0.key, String(decoding: $0.value ?? [], as: UTF8.self)) }, uniquingKeysWith: { first, _ in first })
            records.append(Parked(record: record, header: header))
        }
        return (start, end, records)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the records still parked for TOPIC, grouped by the rule they broke.", discussion: Help.exampleLines("millrace quarantine list checked", "millrace quarantine list checked --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "The topic (not its .quarantine).") var topic: String
        @Flag(help: "List every record, not only the groups.") var records = false
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let found = try await withClient(broker) { try await QuarantineCommand.parked($0, topic: topic, from: nil) }
            var groups: [String: [Parked]] = [:]
            for parked in found.records { groups[parked.rule, default: []].append(parked) }
            let ordered = groups.sorted { $0.value.count != $1.value.count ? $0.value.count > $1.value.count : $0.key < $1.key }
            if json {
                print(
                    Output.json([
                        "topic": topic, "parked": found.records.count, "from_offset": found.start,
                        "rules": ordered.map { ["rule": $0.key, "count": $0.value.count, "example": $0.value[0].reason] as [String: Any] },
                        "records": records
                            ? found.records.map {
                                ["offset": $0.record.offset, "source_partition": Int($0.sourcePartition ?? -1), "rule": $0.rule, "reason": $0.reason] as [String: Any]
                            } : [],
                    ]))
                return
            }
            guard !found.records.isEmpty else {
                print("nothing parked for \(topic)")
                return
            }
            print("\(Output.count(Int64(found.records.count))) record\(found.records.count == 1 ? "" : "s") parked in \(topic).quarantine (offsets \(found.start)...\(found.end - 1)):")
            print(
                Output.table(
                    ["RULE", "RECORDS", "FIRST OFFSET", "EXAMPLE"],
                    ordered.map { [$0.key, Output.count(Int64($0.value.count)), "\($0.value[0].record.offset)", $0.value[0].reason] }, rightAligned: [1, 2]))
            if records {
                print()
                print(
                    Output.table(
                        ["OFFSET", "PARTITION", "RULE", "REASON"],
                        found.records.map { ["\($0.record.offset)", $0.sourcePartition.map { "\($0)" } ?? "-", $0.rule, $0.reason] }, rightAligned: [0, 1]))
            }
        }
    }

    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check parked records against the topic's latest schema; append those that pass to the topic, each at most once.",
            discussion: """
                Records that pass go back to the partition they came from, without the error headers and with the \
                schema version they passed. Records still invalid are parked again at the end of the quarantine \
                with their new reason. A cursor (group millrace.redrive) records how far re-drive got, so a second \
                run never re-drives the same record. --dry-run only reports.
                """ + Help.examples("millrace quarantine redrive checked --dry-run", "millrace quarantine redrive checked"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "The topic (not its .quarantine).") var topic: String
        @Option(help: "Start at this quarantine offset instead of the cursor.") var from: Int64?
        @Flag(help: "Only report what would happen.") var dryRun = false
        @Flag(help: "Print one JSON object per record and a summary.") var json = false

        func run() async throws {
            if let from, from < 0 {
                Output.standardError("error: --from takes an offset, 0 or more (got \(from))")
                throw ExitCode(2)
            }
            let (topic, from, dryRun, json) = (self.topic, self.from, self.dryRun, self.json)
            let stop = NIOLockedValueBox(false)
            // Ctrl-C / SIGTERM: finish the chunk in hand, move the cursor past it, stop.
            let signals = TerminationSignals(graceSeconds: 30) { stop.withLockedValue { $0 = true } }
            defer { signals.cancel() }
            let broker = self.broker
            let work = Task { try await withClient(broker) { client -> (passed: Int, failed: Int, stopped: Bool) in
                let found = try await QuarantineCommand.parked(client, topic: topic, from: from)
                guard !found.records.isEmpty else { return (0, 0, false) }
                let (version, schema) = try await client.compiledSchema(topic: topic)
                let producer = Producer(client: client)
                var (passed, failed) = (0, 0)
                // Chunks: after each, every send is acknowledged and the cursor moves past it,
                // so a stop (or a crash) re-drives at most the chunk in hand again.
                let chunkSize = 1_000
                for chunkStart in stride(from: 0, to: found.records.count, by: chunkSize) {
                    if stop.withLockedValue({ $0 }) { return (passed, failed, true) }
                    let chunk = found.records[chunkStart..<min(chunkStart + chunkSize, found.records.count)]
                    let results = NIOLockedValueBox<[(offset: Int64, line: String)]>([])
                    let failures = NIOLockedValueBox<[String]>([])
                    for parked in chunk {
                        let record = parked.record
                        var headers = record.headers.filter { !QuarantineCommand.errorHeaders.contains($0.key) && $0.key != schemaVersionHeader }
                        let problem = schema.validate(json: record.value ?? []).first
                        let offset = record.offset
                        if let problem {
                            failed += 1
                            results.withLockedValue { $0.append((offset, "still invalid against version \(version): \(problem.description)")) }
                            guard !dryRun else { continue }
                            // Parked again, at the end, with the reason it has now.
                            headers += [
                                RecordHeader(key: "millrace-error", value: Array(problem.description.utf8)),
                                RecordHeader(key: "millrace-error-path", value: Array(problem.path.utf8)),
                                RecordHeader(key: "millrace-error-rule", value: Array(problem.rule.utf8)),
                                RecordHeader(key: "millrace-source-topic", value: Array(topic.utf8)),
                                RecordHeader(key: "millrace-source-partition", value: Array((parked.header["millrace-source-partition"] ?? "0").utf8)),
                                RecordHeader(key: schemaVersionHeader, value: Array(String(version).utf8)),
                            ]
                            try await producer.send(topic: topic + ".quarantine", partition: 0, key: record.key, value: record.value ?? [], headers: headers) { result in
                                if case .failure(let error) = result { failures.withLockedValue { $0.append("offset \(offset): could not park again: \(error)") } }
                            }
                            continue
                        }
                        passed += 1
                        guard !dryRun else {
                            results.withLockedValue { $0.append((offset, "passes version \(version); would go back to \(topic)/\(parked.sourcePartition ?? 0)")) }
                            continue
                        }
                        headers.append(RecordHeader(key: schemaVersionHeader, value: Array(String(version).utf8)))
                        try await producer.send(topic: topic, partition: parked.sourcePartition ?? 0, key: record.key, value: record.value ?? [], headers: headers) { result in
                            switch result {
                            case .success(let placed): results.withLockedValue { $0.append((offset, "re-driven to \(topic)/\(placed.partition) at offset \(placed.offset)")) }
                            case .failure(let error): failures.withLockedValue { $0.append("offset \(offset): not re-driven: \(error)") }
                            }
                        }
                    }
                    try await producer.flush()
                    for (offset, line) in results.withLockedValue({ $0 }).sorted(by: { $0.offset < $1.offset }) {
                        print(json ? Output.json(["offset": offset, "outcome": line]) : "offset \(offset): \(line)")
                    }
                    let problems = failures.withLockedValue { $0 }
                    if !problems.isEmpty {
                        for problem in problems { Output.standardError("error: \(problem)") }
                        Output.standardError("error: the cursor stays before this chunk; run re-drive again once the broker takes writes")
                        throw ExitCode(1)
                    }
                    guard !dryRun, let last = chunk.last else { continue }
                    // Everything up to here is handled: the cursor moves past it (to the end
                    // as it was at the start once the last chunk is done).
                    let cursor = chunkStart + chunkSize >= found.records.count ? found.end : last.record.offset + 1
                    try await client.commitOffsets(
                        group: QuarantineCommand.cursorGroup, topic: topic + ".quarantine", offsets: [OffsetEntry(partition: 0, offset: cursor, metadata: "redrive")])
                }
                return (passed, failed, false)
            } }
            // Under swift-service-lifecycle; a signal lets the chunk in hand finish (not a cancel).
            let summary = try await signals.wait(for: work, cancelling: false)
            if summary.stopped { Output.standardError("stopped by a signal; the cursor is after the last record handled — run re-drive again to go on") }
            let verb = dryRun ? "would re-drive" : "re-drove"
            if json {
                print(Output.json(["topic": topic, "redriven": summary.passed, "still_invalid": summary.failed, "dry_run": dryRun]))
            } else if summary.passed + summary.failed == 0 {
                print("nothing parked for \(topic)")
            } else {
                print("\(verb) \(summary.passed) record\(summary.passed == 1 ? "" : "s") to \(topic); \(summary.failed) still invalid\(dryRun ? "" : " (parked again)")")
            }
        }
    }
}
