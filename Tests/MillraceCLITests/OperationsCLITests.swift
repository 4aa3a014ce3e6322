import Foundation
import Logging
import MillraceClient
import MillraceFormat
import MillraceServer
import MillraceStorage
import MillraceWire
import TestSupport
import Testing

/// `status`, `top --once`, and a backup taken through the broker while a producer writes,
/// restored with `data restore` and checked record by record.
@Suite(.serialized) struct OperationsCLITests {
    let cli = CLITests()

    func withBroker(_ body: (String, Storage) async throws -> Void) async throws { try await withTestBroker(body) }

    @Test func statusAndTopShowTopicsAndLag() async throws {
        try await withBroker { broker, _ in
            _ = try cli.millrace(["topic", "create", "orders", "--partitions", "2", "--broker", broker])
            let lines = (0..<40).map { "{\"order\":\"O\($0)\"}" }.joined(separator: "\n") + "\n"
            #expect(try cli.millrace(["produce", "orders", "--broker", broker], input: lines).status == 0)
            let client = MillraceClient(host: "127.0.0.1", port: Int(broker.split(separator: ":")[1])!)
            try await client.commitOffsets(group: "erp", topic: "orders", offsets: [OffsetEntry(partition: 0, offset: 0), OffsetEntry(partition: 1, offset: 0)])
            await client.close()

            let status = try cli.millrace(["status", "--broker", broker])
            #expect(status.status == 0, "\(status.stderr)")
            let text = status.stdout.split(separator: "\n").map(String.init)
            #expect(text[0].hasPrefix("broker \(broker): millrace \(MillraceVersion.current), up ") && text[0].hasSuffix(", ready"), "\(text[0])")
            #expect(text.contains("TOPIC   PARTITIONS  RECORDS     BYTES") || text.contains { $0.hasPrefix("TOPIC") && $0.contains("RECORDS") })
            #expect(text.contains { $0.hasPrefix("orders ") && $0.contains(" 40 ") }, "\(status.stdout)")
            #expect(text.contains("GROUP  MEMBERS  LAG  PARTITIONS") && text.contains("erp          0   40           2"), "\(status.stdout)")
            let quiet = try cli.millrace(["status", "--broker", broker, "--behind", "40"])
            #expect(quiet.stdout.hasSuffix("no group is behind by more than 40 records\n"), "\(quiet.stdout)")

            let json = try cli.millrace(["status", "--broker", broker, "--json"])
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect(object["ready"] as? Bool == true && object["version"] as? String == MillraceVersion.current)
            #expect((object["groups_behind"] as? [[String: Any]])?.first?["lag"] as? Int == 40)

            let top = try cli.millrace(["top", "--once", "--interval", "1", "--json", "--broker", broker])
            #expect(top.status == 0, "\(top.stderr)")
            let frame = try #require(try JSONSerialization.jsonObject(with: Data(top.stdout.utf8)) as? [String: Any])
            let topics = try #require(frame["topics"] as? [[String: Any]])
            #expect(topics.first?["name"] as? String == "orders" && topics.first?["records"] as? Int == 40)
            let sizes = try #require(topics.first?["partition_sizes"] as? [[String: Any]])
            #expect(sizes.map { $0["partition"] as? Int } == [0, 1] && sizes.compactMap { $0["records"] as? Int }.reduce(0, +) == 40)
            let view = try cli.millrace(["top", "--once", "--interval", "1", "--broker", broker])
            let row = view.stdout.split(separator: "\n").first { $0.hasPrefix("orders ") }.map(String.init) ?? ""
            let perPartition = sizes.map { "\($0["records"] as? Int ?? -1)" }.joined(separator: " / ")
            #expect(view.stdout.contains("RECORDS PER PARTITION") && row.hasSuffix(perPartition), "\(view.stdout)")
            #expect((frame["groups"] as? [[String: Any]])?.first?["lag_trend_per_second"] as? Double == 0)

            #expect(try cli.millrace(["status", "--broker", "127.0.0.1:1"]).status == 1)
            #expect(try cli.millrace(["top", "--json", "--broker", broker]).status == 2)
        }
    }

    /// A producer writes the whole time; the backup holds every record acknowledged before it
    /// started, whole and in order, and `data restore` checks it and makes a directory a broker
    /// serves.
    @Test func aBackupTakenUnderLoadRestoresAndVerifies() async throws {
        try await withBroker { broker, storage in
            _ = try await storage.createTopic("confirmations", partitions: 2)
            let stop = Locked(false)
            let acknowledged = Locked<[Int32: Int64]>([:])
            let producer = Task {
                var sequence = 0
                while !stop.withLock({ $0 }) {
                    let partition = Int32(sequence % 2)
                    let values = (0..<50).map { Array("{\"seq\":\(sequence),\"n\":\($0)}".utf8) }
                    let result = try await storage.append(topic: "confirmations", partition: partition, batch: try RecordBatch(timestamp: 1, values: values).encoded())
                    acknowledged.withLock { $0[partition] = result.lastOffset + 1 }
                    sequence += 1
                }
            }
            // Let some land first.
            try #require(try await eventually { acknowledged.withLock({ $0.values.reduce(0, +) }) >= 2_000 })
            let before = acknowledged.withLock { $0 }
            let backup = NSTemporaryDirectory() + "millrace-backup-\(UUID().uuidString)"
            let restored = NSTemporaryDirectory() + "millrace-restored-\(UUID().uuidString)"
            defer {
                try? FileManager.default.removeItem(atPath: backup)
                try? FileManager.default.removeItem(atPath: restored)
            }
            let made = try cli.millrace(["data", "backup", backup, "--broker", broker, "--json"])
            stop.withLock { $0 = true }
            try await producer.value
            #expect(made.status == 0, "\(made.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(made.stdout.utf8)) as? [String: Any])
            #expect((report["bytes"] as? Int ?? 0) > 0 && report["online"] as? Bool == true)

            let restore = try cli.millrace(["data", "restore", backup, "--data-dir", restored])
            #expect(restore.status == 0, "\(restore.stderr)")
            #expect(restore.stdout.hasPrefix("restored \(backup) into \(restored): 2 topics, "), "\(restore.stdout)")
            // Every record acknowledged before the backup began is there, whole and in order.
            var options = Storage.Options()
            options.readOnly = true
            options.createIfMissing = false
            let copy = try Storage.open(directory: restored, options: options)
            defer { copy.close() }
            #expect(try copy.verify().problems.isEmpty)
            for partition in Int32(0)..<2 {
                let offsets = try copy.offsets(topic: "confirmations", partition: partition)
                #expect(offsets.nextOffset >= before[partition] ?? 0, "partition \(partition): \(offsets.nextOffset) < \(before[partition] ?? 0)")
                var expected: Int64 = 0
                try copy.forEachBatch(topic: "confirmations", partition: partition, from: 0) { header, bytes in
                    #expect(header.baseOffset == expected)
                    expected = header.nextOffset
                    return true
                }
                #expect(expected == offsets.nextOffset)
            }
            // A second backup to the same place, and a restore over a directory in use, are refused.
            #expect(try cli.millrace(["data", "backup", backup, "--broker", broker]).status == 1)
            let over = try cli.millrace(["data", "restore", backup, "--data-dir", restored])
            #expect(over.status == 1 && over.stderr.contains("is not empty"), "\(over.stderr)")
        }
    }
}
