import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire

struct GroupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "group", abstract: "Consumer groups: list, describe with lag, reset offsets.",
        subcommands: [List.self, Describe.self, Reset.self, Delete.self])

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an idle group's committed offsets (refused while it has live members).", discussion: Help.exampleLines("millrace group delete old-erp", "millrace group delete old-erp --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Group.") var group: String
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            try await withClient(broker) { try await $0.deleteGroup(group) }
            print(json ? Output.json(["group": group, "deleted": true]) : "deleted group \(group)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List groups with live members or committed offsets.", discussion: Help.exampleLines("millrace group list", "millrace group list --json"))
        @OptionGroup var broker: BrokerOptions
        @Flag(help: "Print JSON instead of a table.") var json = false

        func run() async throws {
            let groups = try await withClient(broker) { try await $0.listGroups() }
            if json {
                print(Output.json(["groups": groups.map { ["group": $0.group, "state": $0.state, "members": Int($0.memberCount)] as [String: Any] }]))
            } else if groups.isEmpty {
                print("no groups")
            } else {
                print(Output.table(["GROUP", "STATE", "MEMBERS"], groups.map { [$0.group, $0.state, "\($0.memberCount)"] }, rightAligned: [2]))
            }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a group's state, members, and per partition committed offset, log end and lag.", discussion: Help.exampleLines("millrace group describe erp", "millrace group describe erp --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Group.") var group: String
        @Flag(help: "Print JSON instead of a table.") var json = false

        func run() async throws {
            let described = try await withClient(broker) { try await $0.describeGroup(group) }
            let rows = described.offsets.flatMap { topic in topic.entries.map { (topic.topic, $0) } }
            if json {
                print(
                    Output.json([
                        "group": group, "state": described.state, "generation": Int(described.generation),
                        "protocol": described.groupProtocol,
                        "members": described.members.map(\.memberID),
                        "clients": described.clients.map { ["member": $0.memberID, "client_id": $0.clientID, "host": $0.host] },
                        "partitions": rows.map { topic, row in
                            [
                                "topic": topic, "partition": Int(row.partition), "committed": row.committedOffset, "end": row.logEndOffset, "lag": row.lag,
                                "member": row.memberID,
                            ] as [String: Any]
                        },
                    ]))
                return
            }
            let total = rows.reduce(Int64(0)) { $0 + $1.1.lag }
            let kind = described.groupProtocol == "kafka" ? " (Kafka consumers)" : ""
            print("group \(group)\(kind): \(described.state), generation \(described.generation), \(described.members.count) member\(described.members.count == 1 ? "" : "s"), total lag \(Output.count(total))")
            if !described.clients.isEmpty {
                print(Output.table(["MEMBER", "CLIENT ID", "HOST"], described.clients.map { [$0.memberID, $0.clientID, $0.host] }))
                print("")
            }
            print(
                Output.table(
                    ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"],
                    rows.map { topic, row in
                        [topic, "\(row.partition)", row.committedOffset < 0 ? "-" : Output.count(row.committedOffset), Output.count(row.logEndOffset),
                         Output.count(row.lag), row.memberID.isEmpty ? "-" : row.memberID]
                    }, rightAligned: [1, 2, 3, 4]))
        }
    }

    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a group's committed offsets. Shows before/after; changes nothing without --execute.",
            discussion: "Refused while the group has live members: stop its consumers first." + Help.examples("millrace group reset erp --topic confirmations --to time:-2h", "millrace group reset erp --topic confirmations --to earliest --execute --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Group.") var group: String
        @Option(help: "Topic.") var topic: String
        @Option(help: "earliest, latest, offset:N, time:ISO8601 or time:-DURATION (first record at or after), or shift:±N.") var to: String
        @Option(help: "Only this partition (default: all).") var partition: Int32?
        @Flag(help: "Apply the change (the default only shows it).") var execute = false
        @Flag(help: "Print one JSON object instead of a table.") var json = false

        func run() async throws {
            let rows = try await withClient(broker) { client -> [(Int32, Int64, Int64)] in
                let count = try await client.partitionCount(topic)
                let partitions = partition.map { [$0] } ?? Array(0..<count)
                let before = try await client.committedOffsets(group: group, topic: topic, partitions: partitions)
                let starts = try await client.listOffsets(topic, partitions: partitions, timestamp: ListOffsetsPartition.earliest)
                let ends = try await client.listOffsets(topic, partitions: partitions, timestamp: ListOffsetsPartition.latest)
                var targets: [Int64]
                if to == "earliest" {
                    targets = starts.map(\.offset)
                } else if to == "latest" {
                    targets = ends.map(\.offset)
                } else if to.hasPrefix("offset:"), let offset = Int64(to.dropFirst(7)) {
                    targets = partitions.map { _ in offset }
                } else if to.hasPrefix("shift:"), let shift = Int64(to.dropFirst(6)) {
                    targets = zip(before, starts).map { ($0.offset >= 0 ? $0.offset : $1.offset) + shift }
                } else if case .timestamp(let ms)? = ConsumeCommand.parseStart(to) {
                    targets = try await client.listOffsets(topic, partitions: partitions, timestamp: ms).map(\.offset)
                } else {
                    throw MillraceError(.invalidRequest, "--to takes earliest, latest, offset:N, time:ISO8601, time:-DURATION (time:-2h) or shift:±N (got \(to))")
                }
                // Clamp into each partition's log, as a consumer would be.
                targets = targets.indices.map { min(max(targets[$0], starts[$0].offset), ends[$0].offset) }
                if execute {
                    try await client.commitOffsets(
                        group: group, topic: topic, offsets: zip(partitions, targets).map { OffsetEntry(partition: $0, offset: $1, metadata: "reset \(to)") })
                }
                return zip(partitions, zip(before, targets)).map { ($0, $1.0.offset, $1.1) }
            }
            if json {
                print(
                    Output.json([
                        "group": group, "topic": topic, "applied": execute,
                        "partitions": rows.map { ["partition": Int($0.0), "before": $0.1 < 0 ? NSNull() : $0.1 as Any, "after": $0.2] as [String: Any] },
                    ]))
                return
            }
            print(
                Output.table(
                    ["TOPIC", "PARTITION", "BEFORE", "AFTER"],
                    rows.map { [topic, "\($0.0)", $0.1 < 0 ? "-" : Output.count($0.1), Output.count($0.2)] }, rightAligned: [1, 2, 3]))
            print(execute ? "reset applied to group \(group)" : "dry run: nothing changed; add --execute to apply")
        }
    }
}
