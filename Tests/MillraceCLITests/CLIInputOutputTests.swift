import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import TestSupport
import Testing

/// `millrace produce` reads bytes and streams; `millrace consume` flushes and writes JSON.
@Suite(.serialized) struct CLIInputOutputTests {
    let cli = CLITests()
    let brokers = BrokerCLITests()

    func values(_ broker: String, _ topic: String) throws -> [String] {
        let run = try cli.millrace(["consume", topic, "--broker", broker])
        #expect(run.status == 0, "\(run.stderr)")
        return run.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    @Test func windowsLineEndingsAByteOrderMarkAndNoFinalNewline() async throws {
        try await brokers.withBroker { broker in
            _ = try cli.millrace(["topic", "create", "crlf", "--broker", broker])
            let input = "\u{FEFF}{\"lot\":\"L1\"}\r\n{\"lot\":\"L2\"}\r\n\r\n{\"lot\":\"L3\"}"
            let run = try cli.millrace(["produce", "crlf", "--key-field", "/lot", "--broker", broker], input: input)
            #expect(run.status == 0 && run.stdout == "produced 3 records to crlf\n", "\(run.stderr)")
            #expect(try values(broker, "crlf") == ["{\"lot\":\"L1\"}", "{\"lot\":\"L2\"}", "{\"lot\":\"L3\"}"])
        }
    }

    @Test func badLinesAreToldApartAndTheAcknowledgedLinesListed() async throws {
        try await brokers.withBroker { broker in
            _ = try cli.millrace(["topic", "create", "mixed", "--broker", broker])
            // Issue 23, item 4: a line the CLI cannot key goes without a key (the topic's policy
            // decides, here: appended), never dropped by the CLI.
            let notJSON = try cli.millrace(["produce", "mixed", "--key-field", "/lot", "--broker", broker], input: "{\"lot\":\"A\"}\n{lot: B}\n{\"lot\":\"C\"}\n")
            #expect(notJSON.status == 0 && notJSON.stdout == "produced 3 records to mixed\n", "\(notJSON.stderr)")
            #expect(try values(broker, "mixed") == ["{\"lot\":\"A\"}", "{lot: B}", "{\"lot\":\"C\"}"])
            // A key field that is no JSON pointer is refused before anything is sent; a
            // number or an escaped string is a key like any other.
            let noSlash = try cli.millrace(["produce", "mixed", "--key-field", "lot", "--broker", broker], input: "{\"lot\":\"A\"}\n")
            #expect(noSlash.status == 2 && noSlash.stderr.contains("--key-field: JSON pointer \"lot\" must start with \"/\""), "\(noSlash.stderr)")
            _ = try cli.millrace(["topic", "create", "keys", "--broker", broker])
            let keys = try cli.millrace(["produce", "keys", "--key-field", "/lot", "--broker", broker], input: "{\"lot\":7}\n{\"lot\":\"L\\u0031\"}\n")
            #expect(keys.status == 0, "\(keys.stderr)")
            let printed = try cli.millrace(["consume", "keys", "--format", "json", "--broker", broker]).stdout
            #expect(printed.contains(#""key":"7""#) && printed.contains(#""key":"L1""#), "\(printed)")
            // --rejected writes the lines that were not acknowledged, as read, to resend.
            let rejected = FileManager.default.temporaryDirectory.appendingPathComponent("rejected-\(UUID().uuidString).ndjson").path
            defer { try? FileManager.default.removeItem(atPath: rejected) }
            let long = String(repeating: "x", count: Limits.batchBytesMax)
            // Lines without the key field go keyless, not to the --rejected file.
            let missing = try cli.millrace(
                ["produce", "mixed", "--key-field", "/lot", "--rejected", rejected, "--broker", broker], input: "{\"order\":\"O1\"}\r\n{\"lot\":\"D\"}\n{\"order\":\"O2\"}\n")
            #expect(missing.status == 0 && missing.stdout == "produced 3 records to mixed\n", "\(missing.stderr)")
            let kept = (try? String(contentsOfFile: rejected, encoding: .utf8)) ?? ""
            #expect(kept.isEmpty, "\(kept)")
            let oversize = try cli.millrace(["produce", "mixed", "--broker", broker], input: "short\n\(long)\nafter\n")
            #expect(oversize.status == 1)
            #expect(oversize.stderr.contains("(first: line 2: 1,048,576 bytes; one record takes at most"), "\(oversize.stderr)")
            // Each refused line is listed with its reason (issue 23, item 5).
            #expect(oversize.stderr.contains("\n  line 2: 1,048,576 bytes; one record takes at most"), "\(oversize.stderr)")
            #expect(oversize.stderr.hasSuffix("acknowledged lines: 1,3\n"))
            #expect(
                try values(broker, "mixed") == [
                    "{\"lot\":\"A\"}", "{lot: B}", "{\"lot\":\"C\"}", "{\"order\":\"O1\"}", "{\"lot\":\"D\"}", "{\"order\":\"O2\"}", "short", "after",
                ])
        }
    }

    /// Records go out as lines arrive on standard input, before it is closed.
    @Test func standardInputIsStreamed() async throws {
        try await brokers.withBroker { broker in
            _ = try cli.millrace(["topic", "create", "live", "--broker", broker])
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try CLITests.binary())
            process.arguments = ["produce", "live", "--broker", broker]
            let input = Pipe()
            process.standardInput = input
            process.standardOutput = Pipe()
            try process.run()
            input.fileHandleForWriting.write(Data("first\nsecond\n".utf8))
            let client = MillraceClient(host: "127.0.0.1", port: Int(broker.split(separator: ":")[1])!)
            let arrived = try await eventually { (try? await client.describeTopic("live").partitions[0].logEndOffset) == 2 }
            #expect(arrived, "lines were not sent while standard input stayed open")
            input.fileHandleForWriting.write(Data("third\n".utf8))
            try input.fileHandleForWriting.close()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            #expect(try values(broker, "live") == ["first", "second", "third"])
            await client.close()
        }
    }

    /// Under --follow each record reaches a pipe at once; SIGTERM ends the command with exit 0.
    @Test func followFlushesEachRecordAndStopsOnSIGTERM() async throws {
        try await brokers.withBroker { broker in
            _ = try cli.millrace(["topic", "create", "tail", "--broker", broker])
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try CLITests.binary())
            process.arguments = ["consume", "tail", "--follow", "--broker", broker]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = Pipe()
            try process.run()
            let reader = LineCollector(output.fileHandleForReading)
            _ = try cli.millrace(["produce", "tail", "--broker", broker], input: "one\n")
            #expect(try await eventually { reader.lines == ["one"] })
            _ = try cli.millrace(["produce", "tail", "--broker", broker], input: "two\n")
            #expect(try await eventually { reader.lines == ["one", "two"] })
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
    }

    /// Issue 23, item 9: bounded work stopped by a signal did not do what it was asked, so it
    /// exits 1 (a script's `produce -f x && mv x done/` must not go on); `--follow` exits 0.
    @Test func boundedCommandsStoppedByASignalExitOne() async throws {
        try await brokers.withBroker { broker in
            _ = try cli.millrace(["topic", "create", "cut", "--broker", broker])
            // produce from a pipe that is not closed: stopped before the end of its input.
            let produce = Process()
            produce.executableURL = URL(fileURLWithPath: try CLITests.binary())
            produce.arguments = ["produce", "cut", "--broker", broker]
            let input = Pipe()
            produce.standardInput = input
            produce.standardOutput = Pipe()
            let produceErrors = Pipe()
            produce.standardError = produceErrors
            try produce.run()
            input.fileHandleForWriting.write(Data("first\n".utf8))
            #expect(try await eventually { (try? values(broker, "cut")) == ["first"] })
            kill(produce.processIdentifier, SIGINT)
            produce.waitUntilExit()
            #expect(produce.terminationStatus == 1)
            let said = String(decoding: produceErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(said.contains("stopped by a signal after line 1, before the end of the input"), "\(said)")
            // consume -n 5 with one record there: waiting, then stopped.
            let consume = Process()
            consume.executableURL = URL(fileURLWithPath: try CLITests.binary())
            consume.arguments = ["consume", "cut", "-n", "5", "--follow", "--broker", broker]
            let output = Pipe()
            consume.standardOutput = output
            consume.standardError = Pipe()
            try consume.run()
            let reader = LineCollector(output.fileHandleForReading)
            #expect(try await eventually { reader.lines == ["first"] })
            kill(consume.processIdentifier, SIGTERM)
            consume.waitUntilExit()
            #expect(consume.terminationStatus == 1)
        }
    }

    /// Issue 23, item 10: `--json` is `--format json`; `--format key-value` shows keys (kcat -K).
    @Test func consumeTakesJSONAndShowsKeys() async throws {
        try await brokers.withBroker { broker in
            _ = try cli.millrace(["topic", "create", "keyed", "--broker", broker])
            _ = try cli.millrace(["produce", "keyed", "--key-field", "/lot", "--broker", broker], input: #"{"lot":"L-1","qty":2}"# + "\n")
            _ = try cli.millrace(["produce", "keyed", "--broker", broker], input: "unkeyed\n")
            let json = try cli.millrace(["consume", "keyed", "--json", "--broker", broker])
            let format = try cli.millrace(["consume", "keyed", "--format", "json", "--broker", broker])
            #expect(json.status == 0 && !json.stdout.isEmpty)
            // The same objects (the time of printing aside, there is none).
            #expect(json.stdout == format.stdout, "\(json.stdout) vs \(format.stdout)")
            let keyed = try cli.millrace(["consume", "keyed", "--format", "key-value", "--broker", broker])
            #expect(keyed.status == 0)
            #expect(keyed.stdout == "L-1\t{\"lot\":\"L-1\",\"qty\":2}\n\tunkeyed\n", "\(keyed.stdout)")
            let both = try cli.millrace(["consume", "keyed", "--json", "--format", "key-value", "--broker", broker])
            #expect(both.status == 2 && both.stderr == "error: give --json or --format key-value, not both\n", "\(both.stderr)")
        }
    }

    @Test func jsonHasTimeHeadersAndValuesAsJSON() async throws {
        try await brokers.withBroker { broker in
            let client = MillraceClient(host: "127.0.0.1", port: Int(broker.split(separator: ":")[1])!)
            try await client.createTopic(CreateTopicRequest(name: "events", partitions: 1))
            let producer = Producer(client: client)
            _ = try await producer.send(
                topic: "events", key: Array("LOT-1".utf8), value: Array("{\"qty\": 5}".utf8),
                headers: [RecordHeader(key: "source", value: Array("mes\"1".utf8))]
            ).delivery()
            _ = try await producer.send(topic: "events", value: Array("not json \u{1}".utf8)).delivery()
            await client.close()
            let run = try cli.millrace(["consume", "events", "--format", "json", "--broker", broker])
            let objects = try run.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            #expect(objects.count == 2)
            #expect((objects[0]["value"] as? [String: Any])?["qty"] as? Int == 5)
            #expect(objects[0]["key"] as? String == "LOT-1")
            #expect((objects[0]["headers"] as? [[String: Any]])?.first?["value"] as? String == "mes\"1")
            let time = objects[0]["time"] as? String ?? ""
            #expect(time.hasSuffix("Z") && time.count == 24, "\(time)")
            #expect(objects[1]["value"] as? String == "not json \u{1}")
        }
    }

    @Test func producersUseTheTopicsCompression() async throws {
        try await brokers.withBroker { broker in
            _ = try cli.millrace(["topic", "create", "packed", "--compression", "zstd", "--broker", broker])
            let lines = (0..<50).map { "{\"lot\":\"LOT-\($0)\",\"plant\":\"P1\"}" }.joined(separator: "\n")
            #expect(try cli.millrace(["produce", "packed", "--broker", broker], input: lines).status == 0)
            let client = MillraceClient(host: "127.0.0.1", port: Int(broker.split(separator: ":")[1])!)
            let request = FetchRequest(maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, topics: [TopicEntries(topic: "packed", [FetchPartition(partition: 0, offset: 0, maxBytes: 1 << 20)])])
            guard case .fetch(let topics) = try await client.send(.fetch(request)), let records = topics.first?.entries.first?.records else {
                Issue.record("no fetch")
                return
            }
            let header = try records.withUnsafeReadableBytes { try RecordBatchHeader(parsing: $0) }
            #expect(header.attributes.codec == .zstd)
            await client.close()
        }
    }

    @Test func negativeCountsAreUsageErrors() throws {
        let run = try cli.millrace(["consume", "t", "--limit=-1"])
        #expect(run.status == 2 && run.stderr == "error: --limit takes a count of 0 or more (got -1)\n")
        let partitions = try cli.millrace(["topic", "create", "t", "--partitions", "0"])
        #expect(partitions.status == 2, "\(partitions.stderr)")
    }
}

/// Collects the lines a child process writes to a pipe, as they come.
final class LineCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var text = ""

    init(_ handle: FileHandle) {
        handle.readabilityHandler = { [self] handle in
            let data = handle.availableData
            lock.withLock { text += String(decoding: data, as: UTF8.self) }
        }
    }

    var lines: [String] { lock.withLock { text.split(separator: "\n").map(String.init) } }
}
