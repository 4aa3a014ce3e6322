import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import TestSupport
import Testing

/// Kafka clients nobody here wrote against a broker process, as a plant uses them: an
/// idempotent librdkafka producer through `kill -9`s, and kafka-python told which field of
/// its record broke the topic's schema, and acknowledged at the original's offset for a
/// duplicate. The clients come from `scripts/install-deps`; a machine without them fails here.
@Suite(.serialized) struct KafkaPlantTests {
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("KafkaClients")

    /// Runs a client script to its end. The scripts bound every wait themselves (each has a
    /// deadline and exits non-zero past it), so the test reads no clock; scripts/test's
    /// watchdog names a test that hangs all the same.
    static func python(_ script: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try run(["python3", scripts.appendingPathComponent(script).path] + arguments)
    }

    /// Runs a program found on PATH to its end, both of its pipes read while it runs (one
    /// that fills a pipe nobody reads never ends).
    static func run(_ command: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let drain = PipeDrain([output, errors])
        process.waitUntilExit()
        let read = drain.wait()
        let (stdout, errorText) = (String(decoding: read[0], as: UTF8.self), String(decoding: read[1], as: UTF8.self))
        if errorText.contains("ModuleNotFoundError") || (process.terminationStatus == 127 && errorText.contains("No such file")) {
            throw MillraceError(.unexpected, "\(command.first ?? ""): a Kafka client is missing; run scripts/install-deps (\(errorText))")
        }
        return (process.terminationStatus, stdout.trimmingCharacters(in: .newlines), errorText)
    }

    /// An idempotent confluent-kafka producer streams numbered records while the broker is
    /// killed twice with batches in flight: every record is acknowledged, and each is stored
    /// once (a batch whose answer a kill swallowed is sent again and recognised).
    @Test func anIdempotentKafkaProducerStoresEachRecordOnceAcrossKills() async throws {
        let directory = NSTemporaryDirectory() + "millrace-kafka-kill-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try RestartTests.Broker(directory: directory, kafka: true)
        let kafkaPort = try #require(broker.kafkaPort)
        let client = MillraceClient(host: "127.0.0.1", port: broker.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 2))
        let total = 10_000
        let progress = directory + "-progress"
        defer { try? FileManager.default.removeItem(atPath: progress) }
        let finished = Locked(false)
        let run = Task.detached {
            defer { finished.withLock { $0 = true } }
            return try Self.python("kill_restart_producer.py", ["127.0.0.1:\(kafkaPort)", "confirmations", "\(total)", progress])
        }
        func acknowledged() -> Int { (try? String(contentsOfFile: progress, encoding: .utf8)).flatMap { Int($0) } ?? 0 }
        // Kill when the stream is well under way, and again further on. A producer that stops
        // moving ends at its own deadline, which ends these waits too and fails the test below.
        for mark in [total / 5, total / 2] {
            while acknowledged() < mark && !finished.withLock({ $0 }) { try await Task.sleep(nanoseconds: 20_000_000) }
            broker.stop(signal: SIGKILL)
            try broker.restart()
        }
        let result = try await run.value
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr.suffix(2_000))")
        #expect(result.stdout.contains("\"acknowledged\": \(total)"), "\(result.stdout)")
        let stored = try CLITests().millrace(["consume", "confirmations", "--broker", "127.0.0.1:\(broker.port)"]).stdout.split(separator: "\n").map(String.init)
        #expect(stored.count == total, "\(stored.count - Set(stored).count) stored twice, \(total - Set(stored).count) missing")
        #expect(Set(stored) == Set((0..<total).map { "{\"n\": \($0)}" }))
        await client.close()
        broker.stop(signal: SIGTERM)
    }

    /// A topic with a schema (reject), and one with a dedup key: kafka-python is told the
    /// field its record broke, and a duplicate is acknowledged with the original's offset.
    @Test func aKafkaProducerHearsTheSchemaFieldAndItsDuplicatesOriginalOffset() async throws {
        let directory = NSTemporaryDirectory() + "millrace-kafka-contract-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try RestartTests.Broker(directory: directory, kafka: true)
        let kafka = "127.0.0.1:\(try #require(broker.kafkaPort))"
        let cli = CLITests()
        let native = "127.0.0.1:\(broker.port)"
        let schema = directory + "-schema.json"
        defer { try? FileManager.default.removeItem(atPath: schema) }
        try #"{"type":"object","required":["lot","qty"],"properties":{"lot":{"type":"string"},"qty":{"type":"integer","minimum":0}}}"#
            .write(toFile: schema, atomically: true, encoding: .utf8)
        for arguments in [
            ["topic", "create", "confirmations", "--partitions", "1"], ["schema", "register", "confirmations", schema],
            ["topic", "create", "genealogy", "--partitions", "1"], ["dedup", "set", "genealogy", "--key", "json:/link_id"],
        ] {
            let made = try cli.millrace(arguments + ["--broker", native])
            #expect(made.status == 0, "\(arguments): \(made.stderr)")
        }
        let checked = try Self.python("contract_producer.py", [kafka, "confirmations", #"{"lot":"A","qty":3}"#, #"{"lot":"B","qty":-3}"#, #"{"lot":"C"}"#])
        let answers = checked.stdout.split(separator: "\n")
        #expect(answers.count == 3, "\(checked.stdout) \(checked.stderr.suffix(1_000))")
        #expect(answers.first == #"{"offset": 0, "partition": 0}"#)
        #expect(answers.dropFirst().first?.contains("InvalidRecordError") == true && answers.dropFirst().first?.contains("/qty: -3 is less than minimum 0") == true, "\(answers)")
        #expect(answers.last?.contains("InvalidRecordError") == true && answers.last?.contains("qty") == true, "\(answers)")
        // Refused records are not stored.
        #expect(try cli.millrace(["consume", "confirmations", "--broker", native]).stdout == "{\"lot\":\"A\",\"qty\":3}\n")

        let linked = try Self.python(
            "contract_producer.py", [kafka, "genealogy", #"{"link_id":"L1"}"#, #"{"link_id":"L2"}"#, #"{"link_id":"L1"}"#, #"{"link_id":"L3"}"#])
        #expect(
            linked.stdout.split(separator: "\n").map(String.init) == [
                #"{"offset": 0, "partition": 0}"#, #"{"offset": 1, "partition": 0}"#, #"{"offset": 0, "partition": 0}"#, #"{"offset": 2, "partition": 0}"#,
            ], "\(linked.stdout) \(linked.stderr.suffix(1_000))")
        #expect(try cli.millrace(["consume", "genealogy", "--broker", native]).stdout.split(separator: "\n").count == 3)
        broker.stop(signal: SIGTERM)
    }

    /// One group namespace: a Kafka consumer cannot join a live native group (and is told
    /// INCONSISTENT_GROUP_PROTOCOL, the log naming the native group), a native consumer
    /// cannot join a live Kafka group (told so by name); `status` shows both listeners and
    /// `group describe` the Kafka member's client id and host.
    @Test func oneGroupNamespaceAndTheKafkaListenerInStatusAndDescribe() async throws {
        let directory = NSTemporaryDirectory() + "millrace-kafka-groups-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try RestartTests.Broker(directory: directory, kafka: true)
        let kafka = "127.0.0.1:\(try #require(broker.kafkaPort))"
        let native = "127.0.0.1:\(broker.port)"
        let cli = CLITests()
        #expect(try cli.millrace(["topic", "create", "t", "--partitions", "2", "--broker", native]).status == 0)

        // A native member holds the group: the Kafka consumer is refused.
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: try CLITests.binary())
        follower.arguments = ["consume", "t", "--group", "line3", "--follow", "--broker", native]
        follower.standardOutput = FileHandle.nullDevice
        follower.standardError = FileHandle.nullDevice
        try follower.run()
        defer { if follower.isRunning { follower.terminate() } }
        #expect(try await eventually { try cli.millrace(["group", "describe", "line3", "--broker", native]).stdout.contains("1 member") })
        let refused = try Self.python("group_member.py", [kafka, "line3", "t", "20", "mes-line-3"])
        #expect(refused.stdout.contains(#"{"error": "INCONSISTENT_GROUP_PROTOCOL"}"#), "\(refused.stdout) \(refused.stderr.suffix(1_000))")
        follower.terminate()
        follower.waitUntilExit()

        // A Kafka member holds it now: the native consumer is refused, by name.
        let member = Process()
        member.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        member.arguments = ["python3", Self.scripts.appendingPathComponent("group_member.py").path, kafka, "line3", "t", "60", "mes-line-3"]
        let input = Pipe()
        let output = Pipe()
        member.standardInput = input
        member.standardOutput = output
        member.standardError = FileHandle.nullDevice
        let lines = LineCollector(output.fileHandleForReading)
        try member.run()
        defer { if member.isRunning { member.terminate() } }
        #expect(try await eventually { lines.lines.contains(#"{"assigned": [0, 1]}"#) })
        let describe = try cli.millrace(["group", "describe", "line3", "--broker", native])
        #expect(describe.stdout.contains("group line3 (Kafka consumers): stable"), "\(describe.stdout)")
        #expect(describe.stdout.contains("mes-line-3") && describe.stdout.contains("/127.0.0.1"), "\(describe.stdout)")
        let status = try cli.millrace(["status", "--broker", native])
        #expect(status.stdout.contains("listeners: native on \(native) ("), "\(status.stdout)")
        #expect(status.stdout.contains("kafka on \(kafka) ("), "\(status.stdout)")
        let top = try cli.millrace(["top", "--once", "--interval", "1s", "--broker", native])
        #expect(top.stdout.contains("KAFKA GROUP") && top.stdout.contains("line3") && top.stdout.contains("mes-line-3"), "\(top.stdout)")
        let nativeRefused = try cli.millrace(["consume", "t", "--group", "line3", "--limit", "1", "--broker", native])
        #expect(nativeRefused.status != 0)
        #expect(nativeRefused.stderr.contains("group line3 is a Kafka consumer group"), "\(nativeRefused.stderr)")
        try input.fileHandleForWriting.close()
        member.waitUntilExit()
        #expect(member.terminationStatus == 0)
        broker.stop(signal: SIGTERM)
    }

    /// kcat's balanced consumer (`-G`, librdkafka's group protocol with client-side
    /// assignment): reads every record once and commits; `group describe` shows no lag.
    @Test func kcatReadsAsAGroupAndCommits() async throws {
        let directory = NSTemporaryDirectory() + "millrace-kcat-group-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try RestartTests.Broker(directory: directory, kafka: true)
        let kafka = "127.0.0.1:\(try #require(broker.kafkaPort))"
        let native = "127.0.0.1:\(broker.port)"
        let cli = CLITests()
        #expect(try cli.millrace(["topic", "create", "t", "--partitions", "2", "--broker", native]).status == 0)
        let lines = (1...50).map { "{\"n\":\($0)}" }
        let produced = try cli.millrace(["produce", "t", "--broker", native], input: lines.joined(separator: "\n") + "\n")
        #expect(produced.status == 0, "\(produced.stderr)")
        let read = try Self.run(["kcat", "-b", kafka, "-G", "readers", "-o", "beginning", "-c", "50", "-e", "-q", "-f", "%s\\n", "t"])
        #expect(read.status == 0, "\(read.stderr.suffix(2_000))")
        #expect(read.stdout.split(separator: "\n").map(String.init).sorted() == lines.sorted())
        let described = try cli.millrace(["group", "describe", "readers", "--json", "--broker", native]).stdout
        let object = try #require(try JSONSerialization.jsonObject(with: Data(described.utf8)) as? [String: Any])
        let partitions = try #require(object["partitions"] as? [[String: Any]])
        #expect(partitions.count == 2)
        // Every partition that holds records is committed to its end (an empty one may have no commit).
        #expect(partitions.allSatisfy { ($0["lag"] as? Int) == 0 }, "\(described)")
        #expect(partitions.filter { ($0["end"] as? Int ?? 0) > 0 }.allSatisfy { ($0["committed"] as? Int) == ($0["end"] as? Int) }, "\(described)")
        #expect(partitions.reduce(0) { $0 + ($1["end"] as? Int ?? 0) } == 50)
        broker.stop(signal: SIGTERM)
    }
}
