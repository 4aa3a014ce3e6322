import Foundation
import MillraceFormat
import Testing

@testable import MillraceStorage

/// Runs the built `millrace` binary and checks its exact output and exit codes.
@Suite struct CLITests {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func binary() throws -> String {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("millrace").path,
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent(".build/debug/millrace").path,
        ]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw MillraceError(.unexpected, "millrace binary not built (looked in \(candidates))")
        }
        return found
    }

    func millrace(_ arguments: String...) throws -> Run { try millrace(arguments) }

    func millrace(_ arguments: [String], input: String? = nil, environment: [String: String]? = nil) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.binary())
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    func makeDirectory() async throws -> String {
        let path = NSTemporaryDirectory() + "millrace-cli-\(UUID().uuidString)"
        var options = Storage.Options()
        options.retentionCheckIntervalMs = nil
        let storage = try Storage.open(directory: path, options: options)
        defer { storage.close() }
        _ = try await storage.createTopic("confirmations", partitions: 2)
        _ = try await storage.createTopic("genealogy", partitions: 1)
        let values = (0..<1500).map { Array("{\"lot\":\"LOT-\($0)\"}".utf8) }
        let batch = try RecordBatch(timestamp: 1_700_000_000_000, values: values).encoded()
        _ = try await storage.append(topic: "confirmations", partition: 1, batch: batch)
        _ = try await storage.append(topic: "confirmations", partition: 1, batch: batch)
        return path
    }

    @Test func version() throws {
        let run = try millrace("--version")
        #expect(run.status == 0)
        #expect(run.stdout == MillraceVersion.current + "\n")
    }

    @Test func inspectPrintsATableAndJSON() async throws {
        let directory = try await makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try millrace("data", "inspect", directory)
        #expect(run.status == 0)
        let lines = run.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("data directory \(directory): format 1, ") == true)
        #expect(
            Array(lines.dropFirst()) == [
                "TOPIC          PARTITION  EARLIEST  LATEST  RECORDS  BATCHES     BYTES",
                "confirmations          0         0       0        0        0       0 B",
                "confirmations          1         0   3,000    3,000        2  74.0 KiB",
                "genealogy              0         0       0        0        0       0 B",
            ])

        let json = try millrace("data", "inspect", directory, "--json")
        #expect(json.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
        let topics = object["topics"] as! [[String: Any]]
        #expect(topics.map { $0["name"] as! String } == ["confirmations", "genealogy"])
        let partition = (topics[0]["partitions"] as! [[String: Any]])[1]
        #expect(partition["latest"] as? Int == 3_000 && partition["batches"] as? Int == 2)
    }

    @Test func verifyExitsZeroOnlyWhenClean() async throws {
        let directory = try await makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let clean = try millrace("data", "verify", directory)
        #expect(clean.status == 0)
        #expect(clean.stdout == "ok: 3 partitions, 2 batches, 3,000 records checked; no problems\n")

        // Flip one byte of the second batch's payload.
        let storage = try Storage.open(directory: directory, options: Storage.Options())
        let snapshot = storage.catalog.withLock { $0 }
        let info = snapshot.topics["confirmations"]!
        let dbi = snapshot.logDatabases[PartitionID(topicID: info.id, partition: 1)]!
        let txn = try LMDBTransaction.begin(storage.env, readOnly: false)
        try Keys.withOffsetKey(1500) { key in
            var bytes = Array(try txn.get(dbi, key)!)
            bytes[100] ^= 1
            try bytes.withUnsafeBytes { try txn.put(dbi, key, $0) }
        }
        try txn.commit()
        storage.close()

        let damaged = try millrace("data", "verify", directory)
        #expect(damaged.status == 1)
        let lines = damaged.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "TOPIC          PARTITION  OFFSET  PROBLEM")
        #expect(lines.dropFirst().first?.hasPrefix("confirmations  1          1500    corrupt_batch: CRC-32C mismatch") == true)
        #expect(lines.last == "1 problem found in 3 partitions; the data directory needs attention")
        let json = try millrace("data", "verify", directory, "--json")
        #expect(json.status == 1)
        #expect(json.stdout.contains("\"ok\":false"))
    }

    @Test func refusedWhileABrokerHoldsTheDirectory() async throws {
        let directory = try await makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let holder = try Storage.open(directory: directory, options: Storage.Options())
        defer { holder.close() }
        let run = try millrace("data", "inspect", directory)
        #expect(run.status == 2)
        #expect(run.stdout.isEmpty)
        #expect(run.stderr == "error: \(directory) is in use by a running broker (pid \(getpid())); stop it first, or use the network commands\n")
    }

    @Test func refusesWhatIsNotADataDirectory() throws {
        let run = try millrace("data", "verify", "/nonexistent/millrace")
        #expect(run.status == 2)
        #expect(run.stderr == "error: no data directory at /nonexistent/millrace; check the path\n")
        let file = try millrace("data", "inspect", "/etc")
        #expect(file.status == 2)
        #expect(file.stderr.hasPrefix("error: /etc is not a Millrace data directory"))
    }

    /// Issue 23, item 11: a negative number is a bad value, named as such, not a missing one
    /// (it was read as a flag: "Missing value for '-p <partitions>'"). Nothing is contacted.
    @Test func negativeNumbersAreNamedAsBadValues() throws {
        let cases: [([String], String)] = [
            (["topic", "create", "neg", "-p", "-1"], "error: --partitions takes 1...1024 (got -1)"),
            (["consume", "t", "-n", "-5"], "error: --limit takes a count of 0 or more (got -5)"),
            (["produce", "t", "-p", "-3"], "error: --partition takes a partition number, 0 or more (got -3)"),
            (["consume", "t", "-p", "-2"], "error: --partition takes a partition number, 0 or more (got -2)"),
            (["topic", "create", "neg", "--retention", "-1d"], "error: --retention takes a duration such as 7d, 12h or 90m (got -1d)"),
        ]
        for (arguments, message) in cases {
            let run = try millrace(arguments + ["--broker", "127.0.0.1:1"], input: "")
            #expect(run.status == 2, "\(arguments): \(run.stderr)")
            #expect(run.stderr == message + "\n", "\(arguments): \(run.stderr)")
        }
    }

    /// Issue 23, item 15: a mistyped command is named with the nearest one; help says what
    /// exists (`index set --index`, not a `--field` that does not) and that it replaces.
    @Test func mistypedCommandsAreSuggestedAndHelpIsTrue() throws {
        let typo = try millrace("topc", "list")
        #expect(typo.status == 2)
        #expect(typo.stderr == "error: topc is not a millrace command; did you mean `millrace topic list`?\n")
        let unknown = try millrace("xyzzy")
        #expect(unknown.status == 2 && unknown.stderr == "error: xyzzy is not a millrace command; `millrace --help` lists them\n")
        // Help wraps lines: read it as one.
        let trace = try millrace("trace", "--help").stdout.replacingOccurrences(of: "\n", with: " ")
        #expect(trace.contains("millrace index set T --index /lot") && !trace.contains("--field"), "\(trace)")
        let set = try millrace("index", "set", "--help").stdout.replacingOccurrences(of: "\n", with: " ")
        #expect(set.contains("replacing what it indexed before"), "\(set)")
    }

    /// Issue 23, item 13 (in part): `top --interval` takes a duration like every other time
    /// value (a bare number is still seconds).
    @Test func topTakesADurationInterval() throws {
        let refused = try millrace("top", "--interval", "1500ms", "--broker", "127.0.0.1:1")
        #expect(refused.status == 2 && refused.stderr == "error: --interval takes 1s to 1h in whole seconds, such as 2s or 1m (got 1500ms)\n", "\(refused.stderr)")
        // Accepted: what fails next is reaching the broker (exit 1), not the value (exit 2).
        for value in ["1s", "2"] {
            let run = try millrace("top", "--once", "--interval", value, "--broker", "127.0.0.1:1")
            #expect(run.status == 1 && run.stderr.contains("no broker at 127.0.0.1:1"), "\(value): \(run.stderr)")
        }
    }
}
