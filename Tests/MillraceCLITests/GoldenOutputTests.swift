import Foundation
import MillraceFormat
import TestSupport
import Testing

/// Commands' exact output, table and JSON, against a broker on a fixed clock (so times in the
/// output are known): what a script or a person sees, byte for byte.
@Suite(.serialized) struct GoldenOutputTests {
    let cli = CLITests()

    @Test func tablesAndJSONByteForByte() async throws {
        let clock = ManualClock(epochMs: 1_795_000_000_000)  // 2026-11-18T11:06:40Z
        try await withTestBroker(clock: clock) { broker, _ in
            func run(_ arguments: [String], input: String? = nil) throws -> String {
                let result = try cli.millrace(arguments + ["-b", broker], input: input)
                #expect(result.status == 0, "\(arguments): \(result.stderr)")
                return result.stdout
            }
            _ = try run(["topic", "create", "orders", "-p", "2", "--retention", "7d", "--dedup-key", "json:/id", "--index", "/lot"])
            _ = try run(["topic", "create", "audit"])
            let lines = (0..<4).map { #"{"id":"E\#($0)","lot":"L\#($0 % 2)"}"# }.joined(separator: "\n") + "\n"
            _ = try run(["produce", "orders", "-p", "0"], input: lines)
            // offset:1 lands at 1 in partition 0 and is clamped to the end (0) in the empty partition 1.
            _ = try run(["group", "reset", "erp", "--topic", "orders", "--to", "offset:1", "--execute"])

            let schemaFile = NSTemporaryDirectory() + "millrace-golden-\(UUID().uuidString).json"
            defer { try? FileManager.default.removeItem(atPath: schemaFile) }
            try #"{"type":"object","required":["id"]}"#.write(toFile: schemaFile, atomically: true, encoding: .utf8)
            _ = try run(["schema", "register", "audit", schemaFile])
            #expect(
                try run(["schema", "list", "audit"]) == """
                    topic audit: compatibility backward, invalid records: reject
                    VERSION  REGISTERED                BYTES
                          1  2026-11-18T11:06:40.000Z     35

                    """)
            #expect(
                try run(["schema", "list", "audit", "--json"])
                    == #"{"compatibility":"backward","on_invalid":"reject","topic":"audit","versions":[{"bytes":35,"registered":"2026-11-18T11:06:40.000Z","version":1}]}"#
                    + "\n")
            #expect(
                try run(["topic", "describe", "orders", "--json"])
                    == #"{"compression":"none","dedup":{"duplicates_last_5_min":0,"duplicates_total":0,"key":"json:\/id","keys_held":4,"oldest_key":"2026-11-18T11:06:40.000Z","runs":1,"window_ms":86400000},"dictionary":null,"index":{"entries_written":4,"fields":["\/lot"],"index_disk_bytes":4096,"index_entries_held":4,"index_runs":0,"links":[],"record_key":false},"name":"orders","owner":null,"partitions":[{"batches":1,"bytes":177,"earliest":0,"latest":4,"partition":0},{"batches":0,"bytes":0,"earliest":0,"latest":0,"partition":1}],"retention_bytes":-1,"retention_ms":604800000,"stored_bytes_per_record":44.3,"timestamp":"create"}"#
                    + "\n")
            #expect(try run(["index", "status", "orders"]) == "orders: indexes /lot; 4 entries written for it; the index holds 4 entries in 0 runs, 4.0 KiB on disk\n")
            _ = try run(["topic", "create", "checked", "--schema", schemaFile, "--on-invalid", "quarantine"])
            let parked = try cli.millrace(["produce", "checked", "-p", "0", "-b", broker], input: "{\"id\":\"A\"}\n{\"lot\":\"no id\"}\n")
            #expect(parked.status == 1)
            #expect(
                try run(["quarantine", "list", "checked"]) == """
                    1 record parked in checked.quarantine (offsets 0...0):
                    RULE      RECORDS  FIRST OFFSET  EXAMPLE
                    required        1             0  /id: is required but missing

                    """)
            #expect(
                try run(["quarantine", "list", "checked", "--json"])
                    == #"{"cursor":0,"from_offset":0,"parked":1,"records":[],"rules":[{"count":1,"example":"\/id: is required but missing","rule":"required"}],"still_invalid":0,"topic":"checked"}"#
                    + "\n")
            // status: all but the disk line (free space is the machine's) is fixed.
            let status = try run(["status"]).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(status[0] == "broker \(broker): millrace \(MillraceVersion.current), up 0 s, ready")
            #expect(status[1].hasPrefix("data ") && status[1].contains(" data file; disk ") && status[2] == "connections 1, requests in flight 1")
            #expect(
                Array(status[3...]) == [
                    "", "TOPIC               PARTITIONS  RECORDS  BYTES", "audit                        1        0    0 B", "checked                      1        1  104 B",
                    "checked.quarantine           1        1  275 B", "orders                       2        4  177 B", "", "GROUP  MEMBERS  LAG  PARTITIONS",
                    "erp          0    3           2", "",
                ], "\(status)")
            // top --once: all but the first line (the machine's free disk) is fixed; nothing
            // moved between its two samples, so every rate and trend is 0.
            let top = try run(["top", "--once", "--interval", "1"]).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(top[0].hasPrefix("millrace \(MillraceVersion.current) at \(broker), up 0 s, ready; 1 connection; data file "), "\(top[0])")
            #expect(
                Array(top[1...]) == [
                    "", "TOPIC               IN/s  OUT/s  RECORDS  BYTES  RECORDS PER PARTITION", "audit                  0      0        0    0 B  0",
                    "checked                0      0        1  104 B  1", "checked.quarantine     0      0        1  275 B  1",
                    "orders                 0      0        4  177 B  4 / 0", "", "GROUP  MEMBERS  LAG  TREND/s", "erp          0    3        0", "",
                ], "\(top)")
            let v2 = NSTemporaryDirectory() + "millrace-golden-v2-\(UUID().uuidString).json"
            defer { try? FileManager.default.removeItem(atPath: v2) }
            try #"{"type":"object","required":["id","qty"]}"#.write(toFile: v2, atomically: true, encoding: .utf8)
            let events = NSTemporaryDirectory() + "millrace-golden-events-\(UUID().uuidString).ndjson"
            defer { try? FileManager.default.removeItem(atPath: events) }
            try "{\"id\":\"A\"}\n{\"qty\":1}\n".write(toFile: events, atomically: true, encoding: .utf8)
            func failing(_ arguments: [String]) throws -> String {
                let result = try cli.millrace(arguments + ["-b", broker])
                #expect(result.status == 1, "\(arguments): \(result.stderr)")
                return result.stdout + result.stderr
            }
            #expect(
                try run(["group", "reset", "erp", "--topic", "orders", "--to", "earliest"]) == """
                    TOPIC   PARTITION  BEFORE  AFTER
                    orders          0       1      0
                    orders          1       0      0
                    dry run: nothing changed; add --execute to apply

                    """)
            let problem = #"backward (records written with version 1 must still be accepted): /required: the new version requires "qty", version 1 does not"#
            let escaped = problem.replacingOccurrences(of: "/", with: "\\/").replacingOccurrences(of: "\"", with: "\\\"")
            #expect(try failing(["schema", "check", "audit", v2]) == "error: \(v2) is not compatible with topic audit's schema:\n  - \(problem)\n")
            #expect(try failing(["schema", "check", "audit", v2, "--json"]) == #"{"compatible":false,"problems":[""# + escaped + #""],"topic":"audit","version":-1}"# + "\n")
            #expect(try failing(["schema", "register", "audit", v2, "--json"]) == #"{"created":false,"problems":[""# + escaped + #""],"topic":"audit","version":-1}"# + "\n")
            #expect(try failing(["schema", "validate", "audit", events]) == "line 2: /id: is required but missing\n1 of 2 lines are valid against version 1 of audit\n")
            #expect(
                try failing(["schema", "validate", "audit", events, "--json"])
                    == #"{"line":2,"message":"is required but missing","path":"\/id","rule":"required"}"# + "\n"
                    + #"{"invalid":1,"lines":2,"stopped":false,"topic":"audit","version":1}"# + "\n")
            #expect(
                try run(["quarantine", "redrive", "checked", "--dry-run"])
                    == "offset 0: still invalid against version 1: /id: is required but missing\nwould re-drive 0 records to checked; 1 still invalid\n")
            #expect(
                try run(["quarantine", "redrive", "checked", "--dry-run", "--json"])
                    == #"{"offset":0,"outcome":"still invalid against version 1: \/id: is required but missing"}"# + "\n"
                    + #"{"already_in_topic":0,"dry_run":true,"redriven":0,"still_invalid":1,"topic":"checked"}"# + "\n")
            // topic describe: all but the oldest key's age (counted on the CLI's own clock).
            let described = try run(["topic", "describe", "orders"]).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(described[0] == "topic orders: 2 partitions, retention 7d, compression none, timestamps create")
            #expect(described[1].hasPrefix("dedup: by json:/id for 1d; 4 keys held, the oldest ") && described[1].hasSuffix(" old (first seen 2026-11-18T11:06:40.000Z); 0 duplicates caught, 0 in the last 5 minutes"))
            #expect(
                Array(described[2...]) == [
                    "index: indexes /lot; 4 entries written for it; the index holds 4 entries in 0 runs, 4.0 KiB on disk",
                    "stored: 4 records in 177 B, 44.3 bytes per record (batch headers included)", "PARTITION  EARLIEST  LATEST  RECORDS  BYTES",
                    "        0         0       4        4  177 B", "        1         0       0        0    0 B", "",
                ])
            #expect(try run(["topic", "list"]) == "TOPIC               PARTITIONS\naudit                        1\nchecked                      1\nchecked.quarantine           1\norders                       2\n")
            #expect(
                try run(["topic", "list", "--json"])
                    == #"{"topics":[{"name":"audit","partitions":1},{"name":"checked","partitions":1},{"name":"checked.quarantine","partitions":1},{"name":"orders","partitions":2}]}"#
                    + "\n")
            #expect(
                try run(["group", "describe", "erp"]) == """
                    group erp: empty, generation 0, 0 members, total lag 3
                    TOPIC   PARTITION  COMMITTED  END  LAG  MEMBER
                    orders          0          1    4    3  -
                    orders          1          0    0    0  -

                    """)
            #expect(
                try run(["group", "describe", "erp", "--json"])
                    == #"{"clients":[],"generation":0,"group":"erp","members":[],"partitions":[{"committed":1,"end":4,"lag":3,"member":"","partition":0,"topic":"orders"},{"committed":0,"end":0,"lag":0,"member":"","partition":1,"topic":"orders"}],"protocol":"","state":"empty"}"#
                    + "\n")
            #expect(try run(["group", "list"]) == "GROUP  STATE  MEMBERS\nerp    empty        0\n")
            #expect(
                try run(["dedup", "check", "orders", "E2", "--json"])
                    == #"{"first_seen":"2026-11-18T11:06:40.000Z","found":true,"key":"E2","offset":2,"partition":0,"topic":"orders","window_ms":86400000}"# + "\n")
            #expect(
                try run(["trace", "L1"]) == """
                    TIME                      TOPIC   PARTITION  OFFSET  MATCHED  FIELDS
                    2026-11-18T11:06:40.000Z  orders          0       1  /lot     /lot=L1
                    2026-11-18T11:06:40.000Z  orders          0       3  /lot     /lot=L1
                    2 records in 1 topic

                    """)
            #expect(
                try run(["status", "--json"]).hasPrefix(
                    #"{"broker":"\#(broker)","connections":1,"data_directory":"#))
        }
    }
}
