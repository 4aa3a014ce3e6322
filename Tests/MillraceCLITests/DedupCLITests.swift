import Foundation
import Testing

/// Duplicate detection from the command line: a topic created with a dedup key, a file sent
/// twice, the duplicates counted (not an error), listed with --json, and looked up by key.
@Suite(.serialized) struct DedupCLITests {
    let cli = CLITests()
    let brokers = BrokerCLITests()

    @Test func createProduceTwiceCheck() async throws {
        try await brokers.withBroker { broker in
            let path = NSTemporaryDirectory() + "millrace-dedup-\(UUID().uuidString).ndjson"
            try (1...4).map { #"{"event_id":"E-\#($0 % 3)","order_id":"\#($0)"}"# }.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }

            let refused = try cli.millrace(["topic", "create", "t", "--dedup-key", "body:/x", "--broker", broker])
            #expect(refused.status == 2 && refused.stderr.contains("key, header:NAME, json:/pointer"), "\(refused.stderr)")
            let tooLong = try cli.millrace(["topic", "create", "t", "--dedup-key", "key", "--dedup-window", "31d", "--broker", broker])
            #expect(tooLong.status == 2 && tooLong.stderr.contains("1s to 30d"))

            let created = try cli.millrace(["topic", "create", "t", "--dedup-key", "json:/event_id", "--dedup-window", "36h", "--broker", broker])
            #expect(created.stdout == "created topic t with 1 partition\nduplicates by json:/event_id are caught for 36h\n", "\(created.stderr)")
            // Line 4 repeats line 1's key.
            let first = try cli.millrace(["produce", "t", "--file", path, "--broker", broker])
            #expect(first.status == 0 && first.stdout == "produced 3 records to t; 1 duplicate not stored again (first: line 4, original at partition 0 offset 0)\n", "\(first.stdout)\(first.stderr)")
            let again = try cli.millrace(["produce", "t", "--file", path, "--json", "--broker", broker])
            #expect(again.status == 0)
            let summary = try #require(JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])
            #expect(summary["appended"] as? Int == 0 && (summary["duplicates"] as? [[String: Any]])?.count == 4)
            #expect((summary["duplicates"] as? [[String: Any]])?.map { $0["offset"] as? Int } == [0, 1, 2, 0])

            let described = try cli.millrace(["topic", "describe", "t", "--broker", broker])
            #expect(described.stdout.contains("dedup: by json:/event_id for 36h; 3 keys held, the oldest"), "\(described.stdout)")
            #expect(described.stdout.contains("5 duplicates caught, 5 in the last 5 minutes"))
            let found = try cli.millrace(["dedup", "check", "t", "E-2", "--broker", broker])
            #expect(found.status == 0 && found.stdout.hasPrefix("E-2: held; first record at t partition 0 offset 1, first seen"), "\(found.stdout)")
            let missing = try cli.millrace(["dedup", "check", "t", "E-9", "--json", "--broker", broker])
            #expect(missing.stdout.contains(#""found":false"#))

            let off = try cli.millrace(["dedup", "set", "t", "--off", "--broker", broker])
            #expect(off.stdout == "t: duplicate detection is off\n")
            #expect(try cli.millrace(["produce", "t", "--file", path, "--broker", broker]).stdout == "produced 4 records to t\n")
        }
    }
}
