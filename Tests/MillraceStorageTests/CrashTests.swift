import Foundation
import MillraceFormat
import Testing
import TestSupport

@testable import MillraceStorage

/// A child process appends and commits, printing each acknowledgement; the test kills it
/// with SIGKILL at a random moment, reopens the directory and checks that every acknowledged
/// record and commit is there byte for byte, offsets are contiguous, verify is clean, and
/// every acknowledged record's dedup key is held (and no key was stored twice).
/// Rounds: MILLRACE_CRASH_ROUNDS (default 20). The seed is printed; MILLRACE_CRASH_SEED replays it.
@Suite struct CrashTests {
    struct Ack {
        var partition: Int32
        var base: Int64
        var count: Int
        var appender: Int
        var firstSeq: Int
        var round: Int
    }

    static func childPath() throws -> String {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("millrace-crashwriter").path,
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent(".build/debug/millrace-crashwriter").path,
        ]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw MillraceError(.unexpected, "millrace-crashwriter not built (looked in \(candidates)); run `swift build` first")
        }
        return found
    }

    @Test func killedWritersLoseNothingAcknowledged() async throws {
        let environment = ProcessInfo.processInfo.environment
        let rounds = environment["MILLRACE_CRASH_ROUNDS"].flatMap(Int.init) ?? 20
        let seed = environment["MILLRACE_CRASH_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64(UInt32.max))
        print("crash test seed: \(seed) (MILLRACE_CRASH_SEED=\(seed) replays the kill timing), \(rounds) rounds")
        var random = SeededGenerator(seed: seed)
        let child = try Self.childPath()
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let dataDirectory = directory.path + "/data"
        var acks: [Ack] = []
        var lastCommit: [Int: (partition: Int32, offset: Int64)] = [:]
        var killedBeforeReady = 0

        for round in 0..<rounds {
            let output = directory.path + "/round-\(round).out"
            #expect(FileManager.default.createFile(atPath: output, contents: nil))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: child)
            process.arguments = [dataDirectory, "\(round)"]
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
            try process.run()
            // Most kills land mid-stream; every fifth lands during start-up.
            if round % 5 == 4 {
                try await Task.sleep(nanoseconds: UInt64(random.next(in: 0...40)) * 1_000_000)
            } else {
                // Until the child is writing (a bound on the poll, not a time the test relies on:
                // a child that never gets there is killed before it was ready, which is counted).
                _ = try await eventually("the child is ready", limitSeconds: 30) {
                    (try? String(contentsOfFile: output, encoding: .utf8))?.contains("READY") == true
                }
                try await Task.sleep(nanoseconds: UInt64(random.next(in: 5...250)) * 1_000_000)
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(process.terminationReason == .uncaughtSignal, "round \(round): the child exited on its own")

            let text = try String(contentsOfFile: output, encoding: .utf8)
            if !text.contains("READY") { killedBeforeReady += 1 }
            // Only whole lines count: a line cut by the kill was never fully acknowledged.
            for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
                let fields = line.split(separator: " ").map(String.init)
                switch fields.first {
                case "A":
                    acks.append(
                        Ack(partition: Int32(fields[1])!, base: Int64(fields[2])!, count: Int(fields[3])!, appender: Int(fields[4])!,
                            firstSeq: Int(fields[5])!, round: round))
                case "C":
                    lastCommit[Int(fields[1])!] = (Int32(fields[2])!, Int64(fields[3])!)
                case "X":
                    Issue.record("round \(round): a resent batch was not caught as duplicates: \(line)")
                default:
                    break
                }
            }
            try check(dataDirectory, acks: acks, commits: lastCommit, round: round)
        }
        print("crash test: \(rounds) rounds, \(acks.count) acknowledged batches checked, \(killedBeforeReady) kills during start-up")
        #expect(acks.count > rounds * 10, "the child acknowledged too little to test anything")
    }

    func check(_ directory: String, acks: [Ack], commits: [Int: (partition: Int32, offset: Int64)], round: Int) throws {
        guard FileManager.default.fileExists(atPath: directory + "/data.mdb") else { return }
        var options = testOptions()
        options.readOnly = true
        options.createIfMissing = false
        let storage = try Storage.open(directory: directory, options: options)
        defer { storage.close() }
        guard try storage.listTopics().contains(where: { $0.name == "crash" }) else {
            #expect(acks.isEmpty, "round \(round): acknowledged batches but no topic")
            return
        }
        let report = try storage.verify()
        #expect(report.problems.isEmpty, "round \(round): \(report.problems)")

        // Every stored record, acknowledged or not, is whole and keyed as the child wrote it.
        var stored: [Int32: [Int64: String]] = [:]
        for partition in Int32(0)..<3 {
            let offsets = try storage.offsets(topic: "crash", partition: partition)
            var records: [Int64: String] = [:]
            try storage.forEachBatch(topic: "crash", partition: partition, from: offsets.logStartOffset) { header, bytes in
                try RecordBatch.forEachRecord(in: bytes, header: header) { record, _ in
                    let key = String(decoding: record.key!, as: UTF8.self)
                    let value = String(decoding: record.value!, as: UTF8.self)
                    let seq = Int(key.split(separator: "-")[1].dropFirst())!
                    #expect(value == String(repeating: key + ";", count: 1 + seq % 8), "round \(round): bad value at \(key)")
                    records[header.baseOffset + Int64(record.offsetDelta)] = key
                }
                return true
            }
            #expect(records.count == Int(offsets.nextOffset), "round \(round): partition \(partition) is not dense")
            stored[partition] = records
        }
        // Dedup by record key: no key is stored twice, and acknowledged keys are held where
        // their records are (all of this round's, a sample of earlier ones).
        let keys = stored.values.flatMap(\.values)
        #expect(Set(keys).count == keys.count, "round \(round): \(keys.count - Set(keys).count) keys stored twice")
        for (position, ack) in acks.enumerated() where ack.round == round || position % 50 == 0 {
            let key = "a\(ack.appender)-s\(ack.firstSeq)-r\(ack.round)"
            let hit = try storage.dedupLookup(topic: "crash", key: Array(key.utf8))
            #expect(hit?.partition == ack.partition && hit?.offset == ack.base, "round \(round): dedup entry for \(key) is \(String(describing: hit))")
            // The key index agrees: one hit, that record (a resent batch added none).
            let traced = try storage.trace(key: Array(key.utf8)).hits.map { "\($0.partition)/\($0.offset)" }
            #expect(traced == ["\(ack.partition)/\(ack.base)"], "round \(round): trace of \(key) is \(traced)")
        }
        // Each appender's first record past its last acknowledgement was in flight at the
        // kill: stored and traced, or neither (its entry commits with it).
        let where_ = Dictionary(stored.flatMap { partition, records in records.map { ($0.value, "\(partition)/\($0.key)") } }, uniquingKeysWith: { first, _ in first })
        for appender in 0..<6 {
            let next = acks.filter { $0.appender == appender && $0.round == round }.map { $0.firstSeq + $0.count }.max() ?? 0
            let key = "a\(appender)-s\(next)-r\(round)"
            let traced = try storage.trace(key: Array(key.utf8)).hits.map { "\($0.partition)/\($0.offset)" }
            #expect(traced == (where_[key].map { [$0] } ?? []), "round \(round): \(key) stored at \(where_[key] ?? "nowhere") but traced at \(traced)")
        }
        for ack in acks {
            for index in 0..<ack.count {
                let expected = "a\(ack.appender)-s\(ack.firstSeq + index)-r\(ack.round)"
                #expect(stored[ack.partition]?[ack.base + Int64(index)] == expected, "round \(round): lost \(expected)")
            }
        }
        for (appender, commit) in commits {
            let committed = try storage.committedOffset(group: "g\(appender)", topic: "crash", partition: commit.partition)
            #expect((committed?.offset ?? -1) >= commit.offset, "round \(round): commit of g\(appender) went back")
        }
    }
}
