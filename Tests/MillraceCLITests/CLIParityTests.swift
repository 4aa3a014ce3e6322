import Foundation
import Testing

/// What a user of rpk or kcat reaches for: short flags, MILLRACE_BROKER, headers and event
/// times on produce, relative start times, durations, --if-not-exists, --json summaries.
@Suite(.serialized) struct CLIParityTests {
    let cli = CLITests()

    @Test func shortFlagsHeadersEventTimesAndDurations() async throws {
        try await withTestBroker { broker, _ in
            let created = try cli.millrace(["topic", "create", "events", "-p", "2", "--retention", "7d", "--json", "-b", broker])
            #expect(created.status == 0 && created.stdout == #"{"created":true,"owner":null,"partitions":2,"retention_ms":604800000,"schema_version":null,"topic":"events"}"# + "\n")
            let again = try cli.millrace(["topic", "create", "events", "--if-not-exists", "-b", broker])
            #expect(again.status == 0 && again.stdout == "topic events exists; nothing changed (--if-not-exists)\n")
            #expect(try cli.millrace(["topic", "create", "events", "-b", broker]).status == 1)
            #expect(try cli.millrace(["topic", "describe", "events", "-b", broker]).stdout.hasPrefix("topic events: 2 partitions, retention 7d, "))
            let bad = try cli.millrace(["topic", "create", "other", "--retention", "soon", "-b", broker])
            #expect(bad.status == 2 && bad.stderr == "error: --retention takes a duration such as 7d, 12h or 90m (got soon)\n")

            // Event times from the payload in three forms; headers on every record; one key.
            let lines = [
                #"{"ts":"2026-11-27T06:00:00.250+01:00","lot":"L1"}"#, #"{"ts":1700000000000,"lot":"L2"}"#, #"{"ts":"2026-11-27T05:00:01Z","lot":"L3"}"#,
            ]
            let produced = try cli.millrace(
                ["produce", "events", "-k", "gw-3", "-H", "source=gateway-3", "-H", "line=7", "--timestamp-field", "/ts", "-b", broker],
                input: lines.joined(separator: "\n") + "\n")
            #expect(produced.status == 0 && produced.stdout == "produced 3 records to events\n", "\(produced.stderr)")
            // MILLRACE_BROKER names the broker when -b does not.
            let consumed = try cli.millrace(["consume", "events", "-n", "3", "--format", "json"], environment: ["MILLRACE_BROKER": broker])
            #expect(consumed.status == 0, "\(consumed.stderr)")
            let records = consumed.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(records.compactMap { $0["timestamp"] as? Int } == [1_795_755_600_250, 1_700_000_000_000, 1_795_755_601_000])
            #expect(records.allSatisfy { $0["key"] as? String == "gw-3" && $0["partition"] as? Int == records.first?["partition"] as? Int })
            let headers = records.first?["headers"] as? [[String: String]]
            #expect(headers == [["name": "source", "value": "gateway-3"], ["name": "line", "value": "7"]])
            // -b wins over MILLRACE_BROKER.
            #expect(try cli.millrace(["topic", "list", "-b", broker], environment: ["MILLRACE_BROKER": "127.0.0.1:1"]).status == 0)
            #expect(try cli.millrace(["topic", "list"], environment: ["MILLRACE_BROKER": "127.0.0.1:1"]).status == 1)

            // A start relative to now: records stamped in the last two hours (the event times
            // above are older; these take the send time).
            let recent = try cli.millrace(["produce", "events", "-p", "0", "-b", broker], input: "{\"lot\":\"L4\"}\n{\"lot\":\"L5\"}\n")
            #expect(recent.status == 0)
            let fromRecent = try cli.millrace(["consume", "events", "--from", "time:-2h", "-b", broker])
            #expect(fromRecent.stdout == "{\"lot\":\"L4\"}\n{\"lot\":\"L5\"}\n", "\(fromRecent.stdout)")
            let missing = try cli.millrace(["produce", "events", "--timestamp-field", "/ts", "-b", broker], input: "{\"lot\":\"L6\"}\n")
            #expect(missing.status == 1 && missing.stderr.contains("line 1: /ts is missing or not a time"))
            let badHeader = try cli.millrace(["produce", "events", "-H", "novalue", "-b", broker], input: "x\n")
            #expect(badHeader.status == 2 && badHeader.stderr == "error: -H/--header takes NAME=VALUE (got novalue)\n")

            // group reset --json, with a relative time.
            let reset = try cli.millrace(["group", "reset", "erp", "--topic", "events", "--to", "time:-2h", "--json", "-b", broker])
            #expect(reset.status == 0, "\(reset.stderr)")
            let plan = try #require(try JSONSerialization.jsonObject(with: Data(reset.stdout.utf8)) as? [String: Any])
            #expect(plan["applied"] as? Bool == false && (plan["partitions"] as? [[String: Any]])?.count == 2)
        }
    }

    @Test func topicAlterChangesRetentionCompressionAndPolicy() async throws {
        try await withTestBroker { broker, storage in
            #expect(try cli.millrace(["topic", "create", "orders", "-b", broker]).status == 0)
            let altered = try cli.millrace(["topic", "alter", "orders", "--retention", "30d", "--retention-bytes", "1048576", "--compression", "zstd", "-b", broker])
            #expect(altered.status == 0 && altered.stdout == "altered topic orders: retention 30d, size limit 1.0 MiB per partition, compression zstd\n", "\(altered)")
            #expect(
                try cli.millrace(["topic", "describe", "orders", "-b", broker]).stdout.hasPrefix(
                    "topic orders: 1 partition, retention 30d or 1.0 MiB per partition, compression zstd, "))
            let config = try #require(storage.topicInfo("orders")?.config)
            #expect(config.retentionMs == 30 * 86_400_000 && config.retentionBytes == 1_048_576 && config.compression == .zstd)
            let json = try cli.millrace(["topic", "alter", "orders", "--retention", "forever", "--retention-bytes", "none", "--on-invalid", "quarantine", "--json", "-b", broker])
            #expect(json.stdout == #"{"on_invalid":"quarantine","retention":"forever","retention_bytes":"none","topic":"orders"}"# + "\n", "\(json)")
            let after = try #require(storage.topicInfo("orders")?.config)
            #expect(after.retentionMs == nil && after.retentionBytes == nil && after.onInvalid == .quarantine && after.compression == .zstd)
            let nothing = try cli.millrace(["topic", "alter", "orders", "-b", broker])
            #expect(nothing.status == 2 && nothing.stderr.hasPrefix("error: name something to change"))
            let missing = try cli.millrace(["topic", "alter", "nope", "--retention", "1d", "-b", broker])
            #expect(missing.status == 1 && missing.stderr == "error: topic \"nope\" does not exist\n", "\(missing.stderr)")
        }
    }

    /// Commands that print a result print it as one JSON object with --json.
    @Test func everyResultHasAJSONForm() async throws {
        try await withTestBroker { broker, _ in
            func json(_ arguments: [String]) throws -> [String: Any] {
                let run = try cli.millrace(arguments + ["--json", "-b", broker])
                #expect(run.status == 0, "\(arguments): \(run.stderr)")
                return try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(arguments): \(run.stdout)")
            }
            _ = try json(["topic", "create", "t"])
            let schemaFile = NSTemporaryDirectory() + "millrace-schema-\(UUID().uuidString).json"
            defer { try? FileManager.default.removeItem(atPath: schemaFile) }
            try #"{"type":"object"}"#.write(toFile: schemaFile, atomically: true, encoding: .utf8)
            #expect(try cli.millrace(["schema", "register", "t", schemaFile, "-b", broker]).status == 0)
            let shown = try json(["schema", "show", "t"])
            #expect(shown["version"] as? Int == 1 && (shown["schema"] as? [String: String]) == ["type": "object"])
            let dedup = try json(["dedup", "set", "t", "--key", "json:/id", "--window", "1h"])
            #expect(dedup["key"] as? String == "json:/id" && dedup["window_ms"] as? Int == 3_600_000)
            let index = try json(["index", "set", "t", "--index", "/lot"])
            #expect(index["fields"] as? [String] == ["/lot"])
            _ = try cli.millrace(["group", "reset", "g", "--topic", "t", "--to", "earliest", "--execute", "-b", broker])
            #expect(try json(["group", "delete", "g"])["deleted"] as? Bool == true)
            #expect(try json(["topic", "delete", "t"])["deleted"] as? Bool == true)
        }
    }

    /// Every command's --help ends its description with examples.
    @Test func everyCommandsHelpHasExamples() throws {
        let commands = [
            ["serve"], ["topic", "create"], ["topic", "alter"], ["topic", "list"], ["topic", "describe"], ["topic", "delete"], ["produce"], ["consume"],
            ["group", "list"], ["group", "describe"], ["group", "reset"], ["group", "delete"], ["schema", "register"], ["schema", "check"],
            ["schema", "list"], ["schema", "show"], ["schema", "validate"], ["quarantine", "list"], ["quarantine", "redrive"], ["dedup", "set"],
            ["dedup", "check"], ["trace"], ["index", "set"], ["index", "status"], ["index", "rebuild"], ["status"], ["top"], ["data", "inspect"],
            ["data", "verify"], ["data", "backup"], ["data", "restore"], ["generate"],
        ]
        for command in commands {
            let help = try cli.millrace(command + ["--help"])
            #expect(help.status == 0 && help.stdout.contains("Examples:\n  "), "\(command)")
        }
    }
}
