import Foundation
import Testing

/// Tracing from the command line: topics created with index fields, records produced, a lot
/// traced across them as a table and as JSON, the index shown and turned off.
@Suite(.serialized) struct TraceCLITests {
    let cli = CLITests()
    let brokers = BrokerCLITests()

    @Test func createProduceTrace() async throws {
        try await brokers.withBroker { broker in
            let path = NSTemporaryDirectory() + "millrace-trace-\(UUID().uuidString).ndjson"
            try [#"{"lot":"L1","components":[{"lot":"C9"}]}"#, #"{"lot":"L2","from":"L1"}"#, #"{"lot":"L3","components":[{"lot":"L1"},{"lot":"C9"}]}"#]
                .joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }

            let refused = try cli.millrace(["topic", "create", "c", "--index", "lot", "--broker", broker])
            #expect(refused.status == 2 && refused.stderr.contains("must be a JSON pointer"), "\(refused.stderr)")
            let badLink = try cli.millrace(["topic", "create", "c", "--link", "/a/b", "--broker", broker])
            #expect(badLink.status == 2 && badLink.stderr.contains("PARENT->CHILD"), "\(badLink.stderr)")
            let created = try cli.millrace(
                ["topic", "create", "c", "--index", "/lot", "--index", "/components/*/lot", "--link", "/lot:/from", "--broker", broker])
            #expect(created.status == 0 && created.stdout.contains("records are indexed by /lot, /components/*/lot, link /lot:/from"), "\(created.stderr)")
            #expect(try cli.millrace(["topic", "create", "i", "--index-key", "--broker", broker]).status == 0)
            #expect(try cli.millrace(["produce", "c", "--file", path, "--broker", broker]).status == 0)
            let keyed = try cli.millrace(["produce", "i", "--key", "L1", "--broker", broker], input: #"{"result":"ok"}"# + "\n")
            #expect(keyed.status == 0, "\(keyed.stderr)")

            let table = try cli.millrace(["trace", "L1", "--broker", broker])
            let lines = table.stdout.split(separator: "\n")
            #expect(lines.count == 6 && lines[0].hasPrefix("TIME") && lines.last == "4 records in 2 topics", "\(table.stdout)")
            #expect(lines[1].contains("c ") && lines[1].contains("/lot=L1 /components/*/lot=C9") && lines[4].contains("key=L1"), "\(table.stdout)")
            let json = try cli.millrace(["trace", "C9", "--json", "--topic", "c", "--broker", broker])
            let objects = try json.stdout.split(separator: "\n").map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            #expect(objects.count == 3 && objects.prefix(2).map { $0["offset"] as? Int } == [0, 2] && objects[2]["hits"] as? Int == 2, "\(json.stdout)")
            #expect(try cli.millrace(["trace", "nothing", "--broker", broker]).stdout == "nothing: no records hold it in an indexed field\n")
            let unknown = try cli.millrace(["trace", "L1", "--topic", "nope", "--broker", broker])
            #expect(unknown.status != 0 && unknown.stderr.contains("does not exist"))

            let walked = try cli.millrace(["trace", "L1", "--down", "--broker", broker])
            #expect(walked.stdout == "L1\n└─ L2  (c 0/1)\n1 linked value built from L1 (where-used)\n", "\(walked.stdout)\(walked.stderr)")
            #expect(try cli.millrace(["trace", "L1", "--where-used", "--broker", broker]).stdout == walked.stdout)
            let upward = try cli.millrace(["trace", "L2", "--up", "--json", "--broker", broker])
            let tree = try #require(JSONSerialization.jsonObject(with: Data(upward.stdout.utf8)) as? [String: Any])
            #expect((tree["nodes"] as? [[String: Any]])?.map { $0["value"] as? String } == ["L2", "L1"], "\(upward.stdout)")
            #expect(try cli.millrace(["trace", "L2", "--where-from", "--broker", broker]).stdout == "L2\n└─ L1  (c 0/1)\n1 linked value L2 was built from (where-from)\n")
            #expect(try cli.millrace(["trace", "L1", "--down", "--up", "--broker", broker]).status == 2)

            let described = try cli.millrace(["topic", "describe", "c", "--broker", broker])
            #expect(described.stdout.contains("index: indexes /lot, /components/*/lot, link /lot:/from; 10 entries written"), "\(described.stdout)")
            #expect(try cli.millrace(["index", "set", "i", "--off", "--broker", broker]).stdout == "i: new records are not indexed\n")
            #expect(try cli.millrace(["index", "status", "i", "--broker", broker]).stdout == "i: nothing indexed\n")

            // Records held before the index was set: traced once a rebuild indexed them.
            #expect(try cli.millrace(["topic", "create", "late", "--broker", broker]).status == 0)
            #expect(try cli.millrace(["produce", "late", "--file", path, "--broker", broker]).status == 0)
            #expect(try cli.millrace(["index", "set", "late", "--index", "/lot", "--broker", broker]).status == 0)
            #expect(try cli.millrace(["trace", "L3", "--topic", "late", "--broker", broker]).stdout.contains("no records"))
            let rebuilt = try cli.millrace(["index", "rebuild", "late", "--broker", broker])
            #expect(rebuilt.status == 0 && rebuilt.stdout == "late: 3 entries indexed; the records held before its index was set are traced too\n", "\(rebuilt.stdout)\(rebuilt.stderr)")
            #expect(rebuilt.stderr.contains("partition 0: up to offset 3 of 3"))
            #expect(try cli.millrace(["trace", "L3", "--topic", "late", "--broker", broker]).stdout.hasSuffix("1 record in 1 topic\n"))
        }
    }
}

/// Issue 23, item 8: `millrace generate`'s genealogy read through the link its help
/// documents — a component lot's where-used reaches the lot it was consumed into (a recall),
/// and that lot's where-from reaches the component; --down and --up are the same walks.
@Suite(.serialized) struct GeneratedGenealogyCLITests {
    let cli = CLITests()
    let brokers = BrokerCLITests()

    /// Each node of a walk as value@depth.
    func walk(_ key: String, _ direction: String, _ broker: String) throws -> [String] {
        let run = try cli.millrace(["trace", key, direction, "--depth", "1", "--json", "--broker", broker])
        #expect(run.status == 0, "\(run.stderr)")
        let tree = try #require(JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)")
        let nodes = try #require(tree["nodes"] as? [[String: Any]])
        return nodes.map { "\($0["value"] as? String ?? "?")@\($0["depth"] as? Int ?? -1)" }
    }

    @Test func aComponentLotsWhereUsedReachesTheLotItWentInto() async throws {
        let help = try cli.millrace(["generate", "--help"]).stdout
        let documented = try #require(help.range(of: #"--link\s+/[a-z_]+:/[a-z_]+"#, options: .regularExpression), "\(help)")
        let link = String(help[documented].split(whereSeparator: \.isWhitespace).last ?? "")
        #expect(link == "/parent_lot:/child_lot")
        try await brokers.withBroker { broker in
            let path = NSTemporaryDirectory() + "millrace-genealogy-\(UUID().uuidString).ndjson"
            defer { try? FileManager.default.removeItem(atPath: path) }
            let generated = try cli.millrace(["generate", "--count", "200", "--seed", "7", "--type", "genealogy.link", "--output", path])
            #expect(generated.status == 0, "\(generated.stderr)")
            #expect(try cli.millrace(["topic", "create", "genealogy", "--link", link, "--broker", broker]).status == 0)
            let produced = try cli.millrace(["produce", "genealogy", "--file", path, "--broker", broker])
            #expect(produced.status == 0, "\(produced.stderr)")

            let first = try #require(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first)
            let event = try #require(JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
            let built = try #require(event["parent_lot"] as? String)
            let component = try #require(event["child_lot"] as? String)

            let whereUsed = try walk(component, "--where-used", broker)
            #expect(whereUsed.first == "\(component)@0" && whereUsed.contains("\(built)@1"), "\(whereUsed)")
            let whereFrom = try walk(built, "--where-from", broker)
            #expect(whereFrom.first == "\(built)@0" && whereFrom.contains("\(component)@1"), "\(whereFrom)")
            #expect(try walk(component, "--down", broker) == whereUsed)
            #expect(try walk(built, "--up", broker) == whereFrom)
            // The plant words are in the help, beside the old names.
            let traceHelp = try cli.millrace(["trace", "--help"]).stdout
            #expect(traceHelp.contains("--where-used, --down") && traceHelp.contains("--where-from, --up"), "\(traceHelp)")
        }
    }
}
