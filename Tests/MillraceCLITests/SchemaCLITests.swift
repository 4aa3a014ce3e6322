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
            #expect(redriven.status == 0 && redriven.stdout.hasSuffix("re-drove 1 record to confirmations; 0 still invalid (parked again)\n"), "\(redriven.stdout)\(redriven.stderr)")
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
