import Foundation
import Testing

/// The contract workflow from the command line: a topic created with a schema and
/// quarantine, a bad line parked, the schema widened, the parked record re-driven once.
@Suite(.serialized) struct SchemaCLITests {
    let cli = CLITests()
    let brokers = BrokerCLITests()

    func file(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "millrace-schema-\(UUID().uuidString).json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func schema(minimum: Int, required: String = #"["order_id","yield_qty"]"#, extra: String = "") -> String {
        #"{"type":"object","properties":{"order_id":{"type":"string"},"yield_qty":{"type":"number","minimum":\#(minimum)}\#(extra)},"required":\#(required)}"#
    }

    /// A re-drive of a large quarantine lists the first records one by one, as produce does
    /// with refused lines, and counts the rest; --verbose lists each, --json every record.
    @Test func redriveListsTheFirstRecordsAndCountsTheRest() async throws {
        try await brokers.withBroker { broker in
            let v1 = try file(Self.schema(minimum: 0))
            let events = try file((0..<25).map { #"{"order_id":"\#($0)","yield_qty":-1}"# }.joined(separator: "\n") + "\n")
            defer { for path in [v1, events] { try? FileManager.default.removeItem(atPath: path) } }
            #expect(try cli.millrace(["topic", "create", "parked", "--schema", v1, "--on-invalid", "quarantine", "--broker", broker]).status == 0)
            #expect(try cli.millrace(["produce", "parked", "--file", events, "--broker", broker]).status == 1)
            let short = try cli.millrace(["quarantine", "redrive", "parked", "--broker", broker])
            let lines = short.stdout.split(separator: "\n")
            #expect(short.status == 0 && lines.count == 22, "\(short.stdout)")
            #expect(lines.prefix(20).allSatisfy { $0.hasPrefix("offset ") && $0.hasSuffix("still invalid against version 1: /yield_qty: -1 is less than minimum 0") })
            #expect(lines[20].hasPrefix("… and 5 more records (--verbose lists each;"))
            #expect(lines[21] == "re-drove 0 records to parked; 25 still invalid (left parked)")
            let every = try cli.millrace(["quarantine", "redrive", "parked", "--verbose", "--broker", broker])
            #expect(every.stdout.split(separator: "\n").count == 26 && every.stdout.contains("offset 24: still invalid"), "\(every.stdout)")
            let json = try cli.millrace(["quarantine", "redrive", "parked", "--json", "--broker", broker])
            #expect(json.stdout.split(separator: "\n").count == 26)
        }
    }

    @Test func createProduceQuarantineWidenRedrive() async throws {
        try await brokers.withBroker { broker in
            let v1 = try file(Self.schema(minimum: 0))
            let events = try file(#"{"order_id":"1","yield_qty":5}"# + "\n" + #"{"order_id":"2","yield_qty":-3}"# + "\n" + #"{"order_id":"3","yield_qty":1}"# + "\n")
            defer { for path in [v1, events] { try? FileManager.default.removeItem(atPath: path) } }

            let created = try cli.millrace(["topic", "create", "confirmations", "--partitions", "2", "--schema", v1, "--on-invalid", "quarantine", "--broker", broker])
            #expect(created.status == 0 && created.stdout == "created topic confirmations with 2 partitions\nregistered \(v1) as schema version 1; invalid records: quarantine\n", "\(created.stderr)")

            // Checking a file writes nothing and names each bad line.
            let validated = try cli.millrace(["schema", "validate", "confirmations", events, "--broker", broker])
            #expect(validated.status == 1)
            #expect(validated.stdout == "line 2: /yield_qty: -3 is less than minimum 0\n2 of 3 lines are valid against version 1 of confirmations\n")

            let produced = try cli.millrace(["produce", "confirmations", "--file", events, "--key-field", "/order_id", "--broker", broker])
            #expect(produced.status == 1 && produced.stdout == "produced 2 records to confirmations\n", "\(produced.stderr)")
            #expect(produced.stderr.contains("1 record broke the topic's schema and were parked in confirmations.quarantine (first: line 2: /yield_qty: -3 is less than minimum 0)"), "\(produced.stderr)")

            let listed = try cli.millrace(["quarantine", "list", "confirmations", "--broker", broker])
            #expect(listed.status == 0 && listed.stdout.contains("1 record parked in confirmations.quarantine (offsets 0...0):"), "\(listed.stdout)\(listed.stderr)")
            #expect(listed.stdout.contains("minimum") && listed.stdout.contains("-3 is less than minimum 0"))

            // Not fixed yet: a dry run says so and moves nothing.
            let early = try cli.millrace(["quarantine", "redrive", "confirmations", "--dry-run", "--broker", broker])
            #expect(early.stdout.contains("offset 0: still invalid against version 1: /yield_qty: -3 is less than minimum 0"), "\(early.stdout)\(early.stderr)")
            #expect(early.stdout.hasSuffix("would re-drive 0 records to confirmations; 1 still invalid\n"))

            // An incompatible change is refused with its reason; a compatible one registers.
            let narrow = try file(Self.schema(minimum: 0, required: #"["order_id","yield_qty","plant"]"#, extra: #","plant":{"type":"string"}"#))
            let wide = try file(Self.schema(minimum: -10))
            defer { for path in [narrow, wide] { try? FileManager.default.removeItem(atPath: path) } }
            let refused = try cli.millrace(["schema", "check", "confirmations", narrow, "--broker", broker])
            #expect(refused.status == 1 && refused.stderr.contains("is not compatible with topic confirmations's schema:\n  - backward"), "\(refused.stderr)")
            #expect(refused.stderr.contains("/required: the new version requires \"plant\", version 1 does not"))
            let checked = try cli.millrace(["schema", "check", "confirmations", wide, "--broker", broker])
            #expect(checked.status == 0 && checked.stdout == "\(wide) is compatible; it would be version 2 of confirmations\n", "\(checked.stderr)")
            let registered = try cli.millrace(["schema", "register", "confirmations", wide, "--broker", broker])
            #expect(registered.stdout == "registered \(wide) as version 2 of confirmations\n", "\(registered.stderr)")
            let again = try cli.millrace(["schema", "register", "confirmations", wide, "--broker", broker])
            #expect(again.stdout == "\(wide) is identical to version 2 of confirmations; nothing registered\n")

            let redriven = try cli.millrace(["quarantine", "redrive", "confirmations", "--broker", broker])
            #expect(redriven.status == 0 && redriven.stdout.hasSuffix("re-drove 1 record to confirmations; 0 still invalid\n"), "\(redriven.stdout)\(redriven.stderr)")
            let twice = try cli.millrace(["quarantine", "redrive", "confirmations", "--broker", broker])
            #expect(twice.stdout == "nothing parked for confirmations\n")
            let consumed = try cli.millrace(["consume", "confirmations", "--format", "json", "--broker", broker])
            let lines = consumed.stdout.split(separator: "\n")
            #expect(lines.count == 3 && lines.filter { $0.contains("\"yield_qty\":-3") }.count == 1, "\(consumed.stdout)")
            // Each record names its version: the re-driven one the version it passed, the
            // others the version `produce` sent them under.
            #expect(lines.first { $0.contains("-3") }?.contains(#"{"name":"millrace-schema-version","value":"2"}],"schema_version":2,"value":"#) == true, "\(consumed.stdout)")
            #expect(lines.filter { $0.contains(#""schema_version":1,"#) }.count == 2)

            let versions = try cli.millrace(["schema", "list", "confirmations", "--broker", broker])
            #expect(versions.stdout.hasPrefix("topic confirmations: compatibility backward, invalid records: quarantine\nVERSION"), "\(versions.stdout)")
            let shown = try cli.millrace(["schema", "show", "confirmations", "--version", "1", "--broker", broker])
            #expect(shown.stdout == Self.schema(minimum: 0) + "\n")
        }
    }

    /// Counts the records of a topic (or a quarantine), from the start.
    func count(_ topic: String, _ broker: String) throws -> Int {
        try cli.millrace(["consume", topic, "--broker", broker]).stdout.split(separator: "\n").count
    }

    /// Issue 23, the reported case: on a deduplicating topic the same bad line sent twice (an
    /// ordinary retry) is parked once; a parked record the topic has meanwhile received (a
    /// corrected resend) is done when re-driven, not a failure, and re-drive finishes.
    @Test func redriveOnADeduplicatingTopicCountsWhatTheTopicHoldsAsDone() async throws {
        try await brokers.withBroker { broker in
            let (v1, v2) = (try file(Self.schema(minimum: 0)), try file(Self.schema(minimum: -10)))
            let (bad, fixed) = (#"{"order_id":"1","yield_qty":-3}"#, #"{"order_id":"2","yield_qty":-4}"#)
            defer { for path in [v1, v2] { try? FileManager.default.removeItem(atPath: path) } }
            _ = try cli.millrace(["topic", "create", "dq2", "--schema", v1, "--on-invalid", "quarantine", "--dedup-key", "json:/order_id", "--broker", broker])
            for line in [bad, bad, fixed] {
                let produced = try cli.millrace(["produce", "dq2", "--broker", broker], input: line + "\n")
                #expect(produced.status == 1 && produced.stderr.contains("parked in dq2.quarantine"), "\(produced.stderr)")
            }
            #expect(try count("dq2.quarantine", broker) == 2)
            // Order 2 is corrected at the source and sent again: it is in the topic now.
            let resent = try cli.millrace(["produce", "dq2", "--broker", broker], input: #"{"order_id":"2","yield_qty":4}"# + "\n")
            #expect(resent.status == 0, "\(resent.stderr)")
            _ = try cli.millrace(["schema", "register", "dq2", v2, "--broker", broker])

            let redriven = try cli.millrace(["quarantine", "redrive", "dq2", "--broker", broker])
            #expect(redriven.status == 0, "\(redriven.stderr)")
            #expect(
                redriven.stdout
                    == "offset 0: re-driven to dq2/0 at offset 1\noffset 1: already in the topic (duplicate of partition 0 offset 0)\nre-drove 1 record to dq2; 1 already in the topic; 0 still invalid\n",
                "\(redriven.stdout)")
            let json = try cli.millrace(["quarantine", "redrive", "dq2", "--from", "1", "--json", "--broker", broker])
            #expect(
                json.stdout
                    == #"{"offset":1,"outcome":"already in the topic (duplicate of partition 0 offset 0)"}"# + "\n"
                    + #"{"already_in_topic":1,"dry_run":false,"redriven":0,"still_invalid":0,"topic":"dq2"}"# + "\n", "\(json.stdout)\(json.stderr)")
            #expect(try cli.millrace(["quarantine", "redrive", "dq2", "--broker", broker]).stdout == "nothing parked for dq2\n")
            #expect(try cli.millrace(["quarantine", "list", "dq2", "--broker", broker]).stdout == "nothing parked for dq2\n")
            #expect(try count("dq2", broker) == 2 && count("dq2.quarantine", broker) == 2)
        }
    }

    /// Issue 23: re-drive never parks anything. A record still invalid stays where it is and
    /// every run looks at it again; the cursor moves past everything else, so nothing is
    /// re-driven twice, `list` shows only what is not yet re-driven, and the quarantine holds
    /// only what producers parked.
    @Test func redriveLeavesStillInvalidRecordsWhereTheyAreAndMovesOn() async throws {
        try await brokers.withBroker { broker in
            let (v1, v2) = (try file(Self.schema(minimum: 0)), try file(Self.schema(minimum: -10)))
            let v3 = try file(#"{"type":"object","properties":{"order_id":{"type":"string"},"yield_qty":{"type":["number","string"]}},"required":["order_id","yield_qty"]}"#)
            defer { for path in [v1, v2, v3] { try? FileManager.default.removeItem(atPath: path) } }
            _ = try cli.millrace(["topic", "create", "rq", "--schema", v1, "--on-invalid", "quarantine", "--broker", broker])
            let lines = [#"{"order_id":"1","yield_qty":-3}"#, #"{"order_id":"2","yield_qty":"x"}"#, #"{"order_id":"3","yield_qty":-5}"#]
            _ = try cli.millrace(["produce", "rq", "--broker", broker], input: lines.joined(separator: "\n") + "\n")
            _ = try cli.millrace(["schema", "register", "rq", v2, "--broker", broker])
            let stillInvalid = #"offset 1: still invalid against version 2: /yield_qty: "x" is a string, not a number"#

            let first = try cli.millrace(["quarantine", "redrive", "rq", "--broker", broker])
            #expect(first.status == 0, "\(first.stderr)")
            #expect(
                first.stdout == "offset 0: re-driven to rq/0 at offset 0\n\(stillInvalid)\noffset 2: re-driven to rq/0 at offset 1\nre-drove 2 records to rq; 1 still invalid (left parked)\n",
                "\(first.stdout)")
            let listed = try cli.millrace(["quarantine", "list", "rq", "--records", "--broker", broker])
            #expect(listed.stdout.hasPrefix("1 record parked in rq.quarantine (offsets 1...1):\n1 of them still invalid when re-drive last looked; the other records before offset 3 were re-driven or already in the topic\n"), "\(listed.stdout)")
            #expect(!listed.stdout.contains("-3 is less") && !listed.stdout.contains("-5 is less"))
            for _ in 0..<2 {
                let again = try cli.millrace(["quarantine", "redrive", "rq", "--broker", broker])
                #expect(again.status == 0 && again.stdout == "\(stillInvalid)\nre-drove 0 records to rq; 1 still invalid (left parked)\n", "\(again.stdout)\(again.stderr)")
            }
            #expect(try count("rq", broker) == 2 && count("rq.quarantine", broker) == 3)

            // A record parked later, and a fix for the one left: each re-driven once.
            _ = try cli.millrace(["produce", "rq", "--broker", broker], input: #"{"order_id":"4","yield_qty":-20}"# + "\n")
            _ = try cli.millrace(["schema", "register", "rq", v3, "--broker", broker])
            let last = try cli.millrace(["quarantine", "redrive", "rq", "--broker", broker])
            #expect(
                last.status == 0 && last.stdout == "offset 1: re-driven to rq/0 at offset 2\noffset 3: re-driven to rq/0 at offset 3\nre-drove 2 records to rq; 0 still invalid\n",
                "\(last.stdout)\(last.stderr)")
            #expect(try cli.millrace(["quarantine", "list", "rq", "--broker", broker]).stdout == "nothing parked for rq\n")
            #expect(try count("rq", broker) == 4 && count("rq.quarantine", broker) == 4)
        }
    }

    /// Issue 23: a record the broker refuses for good (here one naming a partition the topic
    /// does not have) stays parked with the reason, and re-drive goes on past it.
    @Test func redriveGoesOnPastARecordTheBrokerRefusesForGood() async throws {
        try await brokers.withBroker { broker in
            let v1 = try file(Self.schema(minimum: 0))
            defer { try? FileManager.default.removeItem(atPath: v1) }
            _ = try cli.millrace(["topic", "create", "lost", "--schema", v1, "--on-invalid", "quarantine", "--broker", broker])
            let placed = try cli.millrace(
                ["produce", "lost.quarantine", "-H", "millrace-source-partition=7", "--broker", broker], input: #"{"order_id":"1","yield_qty":1}"# + "\n")
            #expect(placed.status == 0, "\(placed.stderr)")
            _ = try cli.millrace(["produce", "lost.quarantine", "--broker", broker], input: #"{"order_id":"2","yield_qty":2}"# + "\n")
            for _ in 0..<2 {
                let redriven = try cli.millrace(["quarantine", "redrive", "lost", "--broker", broker])
                #expect(redriven.status == 0, "\(redriven.stderr)")
                #expect(redriven.stdout.hasPrefix("offset 0: refused by the broker (unknown_partition), left parked: topic lost has partitions 0...0; 7 is not one\n"), "\(redriven.stdout)")
                #expect(redriven.stdout.hasSuffix("still invalid (left parked)\n"))
            }
            #expect(try count("lost", broker) == 1 && count("lost.quarantine", broker) == 2)
        }
    }

    /// Under reject, `produce` checks lines itself first: a bad line is named by its number
    /// and never sent, and its neighbours are not refused with it.
    @Test func produceNamesBadLinesOfARejectingTopicAndSendsTheRest() async throws {
        try await brokers.withBroker { broker in
            let v1 = try file(Self.schema(minimum: 0))
            let events = try file(#"{"order_id":"1","yield_qty":5}"# + "\n" + #"{"order_id":"2","yield_qty":-3}"# + "\n" + #"{"order_id":"3","yield_qty":1}"# + "\n")
            defer { for path in [v1, events] { try? FileManager.default.removeItem(atPath: path) } }
            _ = try cli.millrace(["topic", "create", "strict", "--schema", v1, "--broker", broker])
            let produced = try cli.millrace(["produce", "strict", "--file", events, "--key-field", "/order_id", "--broker", broker])
            #expect(produced.status == 1)
            #expect(
                produced.stderr
                    == "error: 1 of 3 records were not acknowledged (first: line 2: /yield_qty: -3 is less than minimum 0 (schema version 1; not sent))\n  line 2: /yield_qty: -3 is less than minimum 0 (schema version 1; not sent)\nacknowledged lines: 1,3\n",
                "\(produced.stderr)")
            let consumed = try cli.millrace(["consume", "strict", "--broker", broker])
            #expect(consumed.stdout == #"{"order_id":"1","yield_qty":5}"# + "\n" + #"{"order_id":"3","yield_qty":1}"# + "\n")
        }
    }
}
