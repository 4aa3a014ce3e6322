import Foundation
import Testing

/// Issue 23, items 6 and 12: the same mistake gets the same exit code (usage and unreadable
/// input 2, runtime failures 1) and one message that starts once with "error:" and says what
/// is wrong in the words the other commands use.
@Suite(.serialized) struct CLIMistakeTests {
    let cli = CLITests()
    let brokers = BrokerCLITests()
    let schemas = SchemaCLITests()

    @Test func quarantineOfAMissingTopicOrOfATopicWithoutOne() async throws {
        try await brokers.withBroker { broker in
            for command in ["list", "redrive"] {
                let missing = try cli.millrace(["quarantine", command, "nope", "--broker", broker])
                #expect(missing.status == 1)
                #expect(missing.stderr == "error: topic \"nope\" does not exist; create it with `millrace topic create nope`\n")
            }
            #expect(try cli.millrace(["topic", "create", "plain", "--broker", broker]).status == 0)
            for command in ["list", "redrive"] {
                let none = try cli.millrace(["quarantine", command, "plain", "--broker", broker])
                #expect(none.status == 1)
                #expect(
                    none.stderr
                        == "error: topic plain has no quarantine: invalid records are not parked; to park them in plain.quarantine, run `millrace topic alter plain --on-invalid quarantine`\n"
                )
            }
        }
    }

    @Test func quarantineWithoutASchemaIsExplained() async throws {
        try await brokers.withBroker { broker in
            let created = try cli.millrace(["topic", "create", "parked", "--on-invalid", "quarantine", "--broker", broker])
            #expect(created.status == 0)
            #expect(
                created.stdout
                    == "created topic parked with 1 partition\nno schema yet, so nothing is checked or parked; register one with `millrace schema register parked FILE`\n"
            )
            #expect(try cli.millrace(["quarantine", "list", "parked", "--broker", broker]).stdout == "nothing parked for parked\n")

            #expect(try cli.millrace(["topic", "create", "later", "--broker", broker]).status == 0)
            let altered = try cli.millrace(["topic", "alter", "later", "--on-invalid", "quarantine", "--broker", broker])
            #expect(altered.status == 0)
            #expect(
                altered.stdout
                    == "altered topic later: invalid records quarantine\nno schema yet, so nothing is checked or parked; register one with `millrace schema register later FILE`\n"
            )
        }
    }

    /// `topic create --if-not-exists --schema` on a topic that exists without that schema is
    /// an error, not a quiet success that leaves the records unchecked; with it, nothing to do.
    @Test func ifNotExistsWithASchemaComparesIt() async throws {
        let schema = try schemas.file(#"{"type":"object","required":["id"]}"#)
        defer { try? FileManager.default.removeItem(atPath: schema) }
        try await brokers.withBroker { broker in
            #expect(try cli.millrace(["topic", "create", "bare", "--broker", broker]).status == 0)
            let bare = try cli.millrace(["topic", "create", "bare", "--schema", schema, "--if-not-exists", "--broker", broker])
            #expect(bare.status == 1)
            #expect(bare.stderr.hasPrefix("error: topic bare exists without a schema, so its records are not checked;"))
            #expect(try cli.millrace(["topic", "create", "checked", "--schema", schema, "--broker", broker]).status == 0)
            let again = try cli.millrace(["topic", "create", "checked", "--schema", schema, "--if-not-exists", "--json", "--broker", broker])
            #expect(again.status == 0 && again.stdout == #"{"created":false,"topic":"checked"}"# + "\n")
        }
    }

    @Test func topicDeleteTakesItsQuarantine() async throws {
        try await brokers.withBroker { broker in
            #expect(try cli.millrace(["topic", "create", "parked", "--on-invalid", "quarantine", "--broker", broker]).status == 0)
            #expect(try cli.millrace(["topic", "create", "other", "--on-invalid", "quarantine", "--broker", broker]).status == 0)
            let deleted = try cli.millrace(["topic", "delete", "parked", "--broker", broker])
            #expect(deleted.status == 0)
            #expect(deleted.stdout == "deleted topic parked and its quarantine parked.quarantine\n")
            let json = try cli.millrace(["topic", "delete", "other", "--json", "--broker", broker])
            #expect(json.stdout == #"{"deleted":true,"quarantine_deleted":"other.quarantine","topic":"other"}"# + "\n")
            #expect(try cli.millrace(["topic", "list", "--broker", broker]).stdout == "no topics; create one with `millrace topic create NAME`\n")
        }
    }

    @Test func aBrokenSchemaFileIsNamedWithLineAndColumnEverywhere() async throws {
        let broken = try schemas.file("{\n  \"type\": \"object\"\n  \"required\": [\"a\"]\n}\n")
        let reason = "the schema is not valid JSON at line 3, column 3: expected ',' or '}' in an object, found '\"'"
        // Refused before connecting: no broker listens on port 1.
        let registered = try cli.millrace(["schema", "register", "t", broken, "--broker", "127.0.0.1:1"])
        #expect(registered.status == 2)
        #expect(registered.stderr == "error: \(broken) is not a schema Millrace accepts: \(reason); nothing registered\n")
        let checked = try cli.millrace(["schema", "check", "t", broken, "--broker", "127.0.0.1:1"])
        #expect(checked.status == 2)
        #expect(checked.stderr == "error: \(broken) is not a schema Millrace accepts: \(reason); it could not be registered\n")
        let created = try cli.millrace(["topic", "create", "t", "--schema", broken, "--broker", "127.0.0.1:1"])
        #expect(created.status == 2)
        #expect(created.stderr == "error: \(broken) is not a schema Millrace accepts: \(reason); nothing was created\n")
    }

    @Test func produceFromADirectoryIsUnreadableInput() throws {
        let directory = NSTemporaryDirectory() + "millrace-produce-dir-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fromDirectory = try cli.millrace(["produce", "t", "-f", directory, "--broker", "127.0.0.1:1"])
        #expect(fromDirectory.status == 2)
        #expect(fromDirectory.stderr == "error: cannot read \(directory): Is a directory\n")
        let missing = try cli.millrace(["produce", "t", "-f", directory + "/missing", "--broker", "127.0.0.1:1"])
        #expect(missing.status == 2)
        #expect(missing.stderr == "error: cannot read \(directory)/missing: No such file or directory\n")
    }
}

/// Issue 23, item 13: every time value takes a duration; the older number-only names still
/// work, hidden from --help.
@Suite(.serialized) struct DurationOptionCLITests {
    let cli = CLITests()

    @Test func sessionTimeoutTakesADurationAndTheOldMillisecondsStillWork() async throws {
        let refused = try cli.millrace(["consume", "t", "--group", "g", "--session-timeout", "0s", "--broker", "127.0.0.1:1"])
        #expect(refused.status == 2 && refused.stderr == "error: --session-timeout takes a duration from 1s to 5m, such as 10s or 30s (got 0s)\n", "\(refused.stderr)")
        let both = try cli.millrace(["consume", "t", "--group", "g", "--session-timeout", "5s", "--session-timeout-ms", "5000", "--broker", "127.0.0.1:1"])
        #expect(both.status == 2 && both.stderr == "error: give --session-timeout or --session-timeout-ms, not both\n")
        let help = try cli.millrace(["consume", "--help"]).stdout
        #expect(help.contains("--session-timeout <session-timeout>") && !help.contains("session-timeout-ms"), "\(help)")
        let createHelp = try cli.millrace(["topic", "create", "--help"]).stdout
        #expect(createHelp.contains("--retention <retention>") && !createHelp.contains("retention-ms"), "\(createHelp)")
        try await withTestBroker { broker, storage in
            #expect(try cli.millrace(["topic", "create", "t", "--retention-ms", "60000", "--broker", broker]).status == 0)
            #expect(storage.topicInfo("t")?.config.retentionMs == 60_000)
            #expect(try cli.millrace(["produce", "t", "--broker", broker], input: "a\nb\n").status == 0)
            let new = try cli.millrace(["consume", "t", "--group", "g", "--session-timeout", "5s", "-n", "1", "--broker", broker])
            #expect(new.status == 0 && new.stdout == "a\n", "\(new.stderr)")
            let old = try cli.millrace(["consume", "t", "--group", "g", "--session-timeout-ms", "5000", "-n", "1", "--broker", broker])
            #expect(old.status == 0 && old.stdout == "b\n", "\(old.stderr)")
        }
    }
}

/// The last item of issue 23: `schema validate` reads its events file as `produce -f` and
/// `schema register` read theirs — unreadable input is exit 2 before connecting, one
/// "error:", and a line that is not JSON is named with its line and column.
@Suite(.serialized) struct SchemaValidateInputCLITests {
    let cli = CLITests()
    let schemas = SchemaCLITests()

    @Test func unreadableInputIsAUsageErrorBeforeConnecting() throws {
        let directory = NSTemporaryDirectory() + "millrace-validate-dir-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for path in [directory, directory + "/missing"] {
            let run = try cli.millrace(["schema", "validate", "t", path, "--broker", "127.0.0.1:1"])
            #expect(run.status == 2, "\(run.stderr)")
            let reason = path == directory ? "Is a directory" : "No such file or directory"
            #expect(run.stderr == "error: cannot read \(path): \(reason)\n")
        }
    }

    @Test func aLineThatIsNotJSONIsNamedWithItsLineAndColumn() async throws {
        try await withTestBroker { broker, _ in
            let schema = try schemas.file(SchemaCLITests.schema(minimum: 0))
            let events = try schemas.file(#"{"order_id":"1","yield_qty":5}"# + "\n" + #"{"order_id": "2" "yield_qty":1}"# + "\n")
            defer { for path in [schema, events] { try? FileManager.default.removeItem(atPath: path) } }
            #expect(try cli.millrace(["topic", "create", "checked", "--schema", schema, "--broker", broker]).status == 0)
            let reason = #"not valid JSON at column 18: expected ',' or '}' in an object, found '"'"#
            let text = try cli.millrace(["schema", "validate", "checked", events, "--broker", broker])
            #expect(text.status == 1)
            #expect(text.stdout == "line 2: \(reason)\n1 of 2 lines are valid against version 1 of checked\n", "\(text.stdout)")
            let json = try cli.millrace(["schema", "validate", "checked", events, "--json", "--broker", broker])
            let first = try #require(json.stdout.split(separator: "\n").first)
            let object = try #require(JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
            #expect(object["line"] as? Int == 2 && object["column"] as? Int == 18 && object["rule"] as? String == "json" && object["message"] as? String == reason, "\(json.stdout)")
            // produce names the same line the same way.
            let produced = try cli.millrace(["produce", "checked", "--file", events, "--broker", broker])
            #expect(produced.status == 1 && produced.stderr.contains("line 2: \(reason) (schema version 1; not sent)"), "\(produced.stderr)")
        }
    }
}
