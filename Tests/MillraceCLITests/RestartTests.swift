import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import TestSupport
import Testing

/// A broker process stopped gracefully and then killed with SIGKILL under a `consume
/// --follow`, a `consume --group --follow` and a streaming `produce`: after each restart all
/// three carry on by themselves; nothing acknowledged is lost, the follower prints nothing
/// twice, the group reads at least once, and nothing hangs.
@Suite(.serialized) struct RestartTests {
    final class Broker {
        let directory: String
        var process: Process
        let port: Int
        /// The Kafka listener's port, when the broker was started with one.
        let kafkaPort: Int?
        /// What the last start logged up to its "serving" line.
        var startLog: String

        init(directory: String, port: Int = 0, kafka: Bool = false) throws {
            self.directory = directory
            (process, self.port, kafkaPort, startLog) = try Self.start(directory: directory, port: port, kafkaPort: kafka ? 0 : nil)
        }

        static func start(directory: String, port: Int, kafkaPort: Int?) throws -> (Process, Int, Int?, String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try CLITests.binary())
            process.arguments =
                ["serve", "--data-dir", directory, "--listen", "127.0.0.1:\(port)", "--http-listen", "127.0.0.1:0"]
                + (kafkaPort.map { ["--kafka-listen", "127.0.0.1:\($0)"] } ?? [])
            let log = Pipe()
            process.standardError = log
            try process.run()
            var text = ""
            func bound(_ pattern: String) -> Int? {
                text.range(of: pattern, options: .regularExpression).flatMap { Int(text[$0].split(separator: ":").last!) }
            }
            while true {
                let data = log.fileHandleForReading.availableData
                if data.isEmpty { throw MillraceError(.unexpected, "the broker did not start: \(text)") }
                text += String(decoding: data, as: UTF8.self)
                if let native = bound(#"on 127\.0\.0\.1:(\d+)"#) {
                    let kafka = bound(#"Kafka clients on 127\.0\.0\.1:(\d+)"#)
                    guard kafkaPort == nil || kafka != nil else { continue }
                    log.fileHandleForReading.readabilityHandler = { _ = $0.availableData }  // keep draining
                    return (process, native, kafka, text)
                }
            }
        }

        func restart() throws { (process, _, _, startLog) = try Self.start(directory: directory, port: port, kafkaPort: kafkaPort) }

        func stop(signal: Int32) {
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
        }
    }

    func child(_ arguments: [String], input: Pipe? = nil) throws -> (Process, LineCollector, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try CLITests.binary())
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        if let input { process.standardInput = input }
        try process.run()
        return (process, LineCollector(output.fileHandleForReading), errors)
    }

    /// An idempotent producer streams while the broker is killed twice with batches in
    /// flight: every record is acknowledged and stored exactly once (a batch whose answer the
    /// kill swallowed is sent again and recognised by its sequence numbers).
    @Test func anIdempotentProducerStoresEachRecordOnceAcrossKills() async throws {
        let directory = NSTemporaryDirectory() + "millrace-idempotent-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try Broker(directory: directory)
        let client = MillraceClient(host: "127.0.0.1", port: broker.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 4))
        var configuration = Producer.Configuration()
        configuration.lingerMs = 1
        configuration.batchBytesMax = 4 << 10
        let producer = Producer(client: client, configuration: configuration)
        let total = 20_000
        let acknowledged = Locked(0)
        let failures = Locked<[String]>([])
        for index in 0..<total {
            if index == 6_000 || index == 13_000 {
                broker.stop(signal: SIGKILL)
                try broker.restart()
            }
            try await producer.send(topic: "confirmations", key: Array("ORDER-\(index % 97)".utf8), value: Array("{\"seq\":\(index)}".utf8)) { result in
                switch result {
                case .success: acknowledged.withLock { $0 += 1 }
                case .failure(let error): failures.withLock { $0.append("\(index): \(error)") }
                }
            }
        }
        try await producer.flush()
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(3) })")
        #expect(acknowledged.withLock { $0 } == total)
        let stored = try CLITests().millrace(["consume", "confirmations", "--broker", "127.0.0.1:\(broker.port)"]).stdout.split(separator: "\n").map(String.init)
        #expect(stored.count == total, "\(stored.count - Set(stored).count) stored twice")
        #expect(Set(stored) == Set((0..<total).map { "{\"seq\":\($0)}" }))
        await client.close()
        broker.stop(signal: SIGTERM)
    }

    /// Duplicate detection under a `kill -9`: a stream where many records repeat earlier keys,
    /// the broker killed twice mid-stream. Every record is answered (stored or duplicate), and
    /// each key is stored exactly once.
    @Test func dedupHoldsAcrossKills() async throws {
        let directory = NSTemporaryDirectory() + "millrace-dedup-kill-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try Broker(directory: directory)
        let client = MillraceClient(host: "127.0.0.1", port: broker.port)
        try await client.createTopic(CreateTopicRequest(name: "confirmations", partitions: 4))
        try await client.setDedupPolicy(topic: "confirmations", key: "json:/event_id")
        var configuration = Producer.Configuration()
        configuration.lingerMs = 1
        configuration.batchBytesMax = 4 << 10
        let producer = Producer(client: client, configuration: configuration)
        var generator = SeededGenerator(seed: 3)
        let ids = (0..<20_000).map { _ in Int.random(in: 0..<12_000, using: &generator) }
        let answered = Locked(0)
        let failures = Locked<[String]>([])
        for (index, id) in ids.enumerated() {
            if index == 7_000 || index == 14_000 {
                broker.stop(signal: SIGKILL)
                try broker.restart()
            }
            try await producer.send(topic: "confirmations", key: Array("ORDER-\(id % 31)".utf8), value: Array("{\"event_id\":\"E\(id)\"}".utf8)) { result in
                switch result {
                case .success, .failure(is RecordDuplicate): answered.withLock { $0 += 1 }
                case .failure(let error): failures.withLock { $0.append("\(index): \(error)") }
                }
            }
        }
        try await producer.flush()
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(3) })")
        #expect(answered.withLock { $0 } == ids.count)
        let stored = try CLITests().millrace(["consume", "confirmations", "--broker", "127.0.0.1:\(broker.port)"]).stdout.split(separator: "\n").map(String.init)
        #expect(stored.count == Set(ids).count, "\(stored.count - Set(stored).count) stored twice")
        #expect(Set(stored) == Set(ids.map { "{\"event_id\":\"E\($0)\"}" }))
        await client.close()
        broker.stop(signal: SIGTERM)
    }

    @Test func followersAndAStreamingProducerCarryOnAcrossAGracefulStopAndAKill() async throws {
        let directory = NSTemporaryDirectory() + "millrace-restart-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try Broker(directory: directory)
        let address = "127.0.0.1:\(broker.port)"
        let cli = CLITests()
        #expect(try cli.millrace(["topic", "create", "flow", "--partitions", "2", "--broker", address]).status == 0)

        let (follower, followed, _) = try child(["consume", "flow", "--follow", "--broker", address])
        let (member, grouped, memberErrors) = try child(["consume", "flow", "--group", "erp", "--follow", "--broker", address])
        let stdin = Pipe()
        let (producer, produced, producerErrors) = try child(["produce", "flow", "--broker", address], input: stdin)
        func send(_ range: ClosedRange<Int>) {
            stdin.fileHandleForWriting.write(Data(range.map { "{\"seq\":\($0)}\n" }.joined().utf8))
        }
        func seen(_ collector: LineCollector) -> Set<String> { Set(collector.lines) }
        func all(_ upTo: Int) -> Set<String> { Set((1...upTo).map { "{\"seq\":\($0)}" }) }

        send(1...100)
        #expect(try await eventually { seen(followed) == all(100) && seen(grouped) == all(100) })

        // A graceful stop, as at an upgrade; lines keep coming while the broker is down.
        broker.stop(signal: SIGTERM)
        send(101...200)
        try broker.restart()
        #expect(try await eventually { seen(followed) == all(200) && seen(grouped) == all(200) }, "after the graceful restart: follower \(seen(followed).count), group \(seen(grouped).count) of 200")

        // A crash.
        broker.stop(signal: SIGKILL)
        send(201...300)
        try broker.restart()
        #expect(try await eventually { seen(followed) == all(300) && seen(grouped) == all(300) }, "after the kill: follower \(seen(followed).count), group \(seen(grouped).count) of 300")

        try stdin.fileHandleForWriting.close()
        producer.waitUntilExit()
        let producerStderr = String(decoding: producerErrors.fileHandleForReading.availableData, as: UTF8.self)
        #expect(producer.terminationStatus == 0, "\(producerStderr)")
        // Its last line may still be on its way from the pipe when the process has exited.
        #expect(try await eventually { produced.lines == ["produced 300 records to flow"] }, "\(produced.lines)")
        // The follower resumes at its next offset: it printed nothing twice, unless the
        // producer resent a record whose first acknowledgement the kill swallowed.
        let stored = try cli.millrace(["consume", "flow", "--broker", address]).stdout.split(separator: "\n").map(String.init)
        #expect(followed.lines.sorted() == stored.sorted())
        // The producer is idempotent: a resent record is stored once.
        #expect(stored.sorted() == all(300).sorted())
        for process in [follower, member] {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
        // The group committed everything it printed before leaving.
        let described = try cli.millrace(["group", "describe", "erp", "--broker", address])
        let memberStderr = String(decoding: memberErrors.fileHandleForReading.availableData, as: UTF8.self)
        #expect(described.stdout.hasPrefix("group erp: empty, generation 0, 0 members, total lag 0"), "\(described.stdout)\(described.stderr)\(memberStderr)")
        broker.stop(signal: SIGTERM)
        let verify = try cli.millrace(["data", "verify", directory])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    /// Issue 23, item 13: `top` rides through a broker restart — it says it is reconnecting
    /// and goes on when the broker is back — and into a pipe each refresh is readable while it
    /// runs (block buffering held everything until it exited); SIGTERM still ends it.
    @Test func topWaitsThroughARestartAndFlushesEachRefreshIntoAPipe() async throws {
        let directory = NSTemporaryDirectory() + "millrace-top-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try Broker(directory: directory)
        let address = "127.0.0.1:\(broker.port)"
        let (top, output, errors) = try child(["top", "--interval", "1s", "--broker", address])
        func frames() -> Int { output.lines.filter { $0.contains(" at \(address), up ") }.count }
        #expect(try await eventually { frames() >= 1 }, "\(output.lines)")

        broker.stop(signal: SIGTERM)
        #expect(try await eventually { output.lines.contains("millrace top: lost the broker; reconnecting to \(address)…") }, "\(output.lines)")
        #expect(top.isRunning)
        try broker.restart()
        #expect(try await eventually { output.lines.contains("millrace top: reconnected to \(address); waiting 1 s for a second sample to compute rates…") }, "\(output.lines)")
        let before = frames()
        #expect(try await eventually { frames() > before }, "\(output.lines)")

        kill(top.processIdentifier, SIGTERM)
        top.waitUntilExit()
        let stderr = String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
        #expect(top.terminationStatus == 0, "\(stderr)")
        broker.stop(signal: SIGTERM)
    }

    /// Issue 23, item 14: a directory restored from a backup taken while the broker ran (the
    /// key index's newest entries only in memory then) starts clean: no "the last stop was not
    /// clean" in the log, and its records are traced.
    @Test func aRestoredDirectoryStartsClean() async throws {
        let base = NSTemporaryDirectory() + "millrace-restore-clean-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let cli = CLITests()
        let broker = try Broker(directory: base + "/live")
        let address = "127.0.0.1:\(broker.port)"
        #expect(try cli.millrace(["topic", "create", "lots", "--index", "/lot", "--broker", address]).status == 0)
        #expect(try cli.millrace(["produce", "lots", "--broker", address], input: "{\"lot\":\"L1\"}\n{\"lot\":\"L2\"}\n").status == 0)
        let backup = try cli.millrace(["data", "backup", base + "/backup", "--broker", address])
        #expect(backup.status == 0, "\(backup.stderr)")
        broker.stop(signal: SIGTERM)

        let restored = try cli.millrace(["data", "restore", base + "/backup", "--data-dir", base + "/restored"])
        #expect(restored.status == 0, "\(restored.stderr)")
        let again = try Broker(directory: base + "/restored")
        #expect(again.startLog.contains("serving") && !again.startLog.contains("not clean"), "\(again.startLog)")
        let traced = try cli.millrace(["trace", "L2", "--broker", "127.0.0.1:\(again.port)"])
        #expect(traced.stdout.hasSuffix("1 record in 1 topic\n"), "\(traced.stdout)\(traced.stderr)")
        again.stop(signal: SIGTERM)
    }
}
