import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceSchema
import MillraceWire

/// Records a topic refused into `<topic>.quarantine`, and putting them back once fixed.
///
/// Re-drive keeps a cursor (`RedriveCursor`): the committed offset of group
/// `millrace.redrive` on the quarantine, before which every record has been looked at, and
/// the records before it that were still invalid then. Those stay where they are and are
/// looked at again by every run; the rest were re-driven, or found already in the topic. So
/// each parked record is re-driven at most once, re-drive never parks anything, and `list`
/// shows exactly the records not yet re-driven.
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

    /// The parked records: with `from`, every record from there to the log end as it is now;
    /// else those the cursor says are not yet re-driven.
    struct Found {
        var cursor: RedriveCursor
        var end: Int64
        var records: [Parked]
        /// How many of `records` were still invalid when re-drive last looked at them.
        var stillInvalid: Int { records.count(where: { record in cursor.stillInvalid.contains { $0.contains(record.record.offset) } }) }
    }

    static func parked(_ client: MillraceClient, topic: String, from: Int64?) async throws -> Found {
        let quarantine = topic + InvalidRecordPolicy.quarantineSuffix
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
        let committed = try await client.committedOffsets(group: cursorGroup, topic: quarantine, partitions: [0]).first
        let cursor = RedriveCursor(committed: committed, logStart: logStart)
        let ranges = from.map { from in max(from, logStart) < end ? [max(from, logStart)...(end - 1)] : [] } ?? cursor.parked(end: end)
        var records: [Parked] = []
        for range in ranges {
            for try await record in Consumer(client: client, topic: quarantine, partitions: [0], from: .offset(range.lowerBound), stopAtEnd: true) {
                guard record.offset <= range.upperBound else { break }
                let header = Dictionary(record.headers.map { ($0.key, String(decoding: $0.value ?? [], as: UTF8.self)) }, uniquingKeysWith: { first, _ in first })
                records.append(Parked(record: record, header: header))
            }
        }
        return Found(cursor: cursor, end: end, records: records)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the records still parked for TOPIC (not yet re-driven), grouped by the rule they broke.",
            discussion: Help.exampleLines("millrace quarantine list checked", "millrace quarantine list checked --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "The topic (not its .quarantine).") var topic: String
        @Flag(help: "List every record, not only the groups.") var records = false
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let found = try await withClient(broker) { try await QuarantineCommand.parked($0, topic: topic, from: nil) }
            var groups: [String: [Parked]] = [:]
            for parked in found.records { groups[parked.rule, default: []].append(parked) }
            let ordered = groups.sorted { $0.value.count != $1.value.count ? $0.value.count > $1.value.count : $0.key < $1.key }
            let first = found.records.first?.record.offset ?? found.cursor.next
            if json {
                print(
                    Output.json([
                        "topic": topic, "parked": found.records.count, "from_offset": first, "still_invalid": found.stillInvalid, "cursor": found.cursor.next,
                        "rules": ordered.map { ["rule": $0.key, "count": $0.value.count, "example": $0.value[0].reason] as [String: Any] },
                        "records": records
                            ? found.records.map {
                                ["offset": $0.record.offset, "source_partition": Int($0.sourcePartition ?? -1), "rule": $0.rule, "reason": $0.reason] as [String: Any]
                            } : [],
                    ]))
                return
            }
            guard let last = found.records.last else {
                print("nothing parked for \(topic)")
                return
            }
            print("\(Output.count(Int64(found.records.count))) record\(found.records.count == 1 ? "" : "s") parked in \(topic).quarantine (offsets \(first)...\(last.record.offset)):")
            if found.stillInvalid > 0 {
                print(
                    "\(Output.count(Int64(found.stillInvalid))) of them still invalid when re-drive last looked; the other records before offset \(found.cursor.next) were re-driven or already in the topic"
                )
            }
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
}
