import CLMDB
import MillraceFormat
import Testing

@testable import MillraceStorage

/// Damage stored data behind the storage's back, as a failing disk or a bug would.
@Suite struct VerifyTests {
    func damage(_ storage: Storage, topic: String, partition: Int32, _ body: (LMDBTransaction, MDB_dbi) throws -> Void) throws {
        let snapshot = storage.catalog.withLock { $0 }
        let info = try #require(snapshot.topics[topic])
        let dbi = try #require(snapshot.logDatabases[PartitionID(topicID: info.id, partition: partition)])
        let txn = try LMDBTransaction.begin(storage.env, readOnly: false)
        try body(txn, dbi)
        try txn.commit()
    }

    func fill(_ storage: Storage) async throws {
        _ = try await storage.createTopic("t", partitions: 2)
        for index in 0..<5 { _ = try await storage.append(topic: "t", partition: 1, batch: batch(["a\(index)", "b\(index)"])) }
    }

    @Test func aCleanDirectoryVerifiesClean() async throws {
        try await withStorage { storage, _ in
            try await fill(storage)
            let report = try storage.verify()
            #expect(report.problems.isEmpty)
            #expect(report.batchesChecked == 5 && report.recordsChecked == 10 && report.partitionsChecked == 2)
        }
    }

    @Test func aFlippedBitIsReportedWithItsPlace() async throws {
        try await withStorage { storage, _ in
            try await fill(storage)
            try damage(storage, topic: "t", partition: 1) { txn, dbi in
                try Keys.withOffsetKey(4) { key in
                    var bytes = Array(try #require(try txn.get(dbi, key)))
                    bytes[bytes.count - 2] ^= 0x10
                    try bytes.withUnsafeBytes { try txn.put(dbi, key, $0) }
                }
            }
            let problems = try storage.verify().problems
            #expect(problems.count == 1)
            #expect(problems.first?.topic == "t" && problems.first?.partition == 1 && problems.first?.offset == 4)
            #expect(problems.first?.message.contains("CRC") == true)
            // Reads of the damaged batch fail loudly rather than serve bad bytes.
            #expect(await errorCode { _ = try storage.read(topic: "t", partition: 1, from: 4, maxBytes: 1 << 20) } == .storageError)
            #expect(try storage.read(topic: "t", partition: 1, from: 0, maxBytes: 10).batchCount == 1)
        }
    }

    @Test func aMissingBatchIsReportedAsAGap() async throws {
        try await withStorage { storage, _ in
            try await fill(storage)
            try damage(storage, topic: "t", partition: 1) { txn, dbi in
                _ = try Keys.withOffsetKey(2) { try txn.delete(dbi, $0) }
            }
            let problems = try storage.verify().problems
            #expect(problems.contains { $0.offset == 4 && $0.message.contains("gap") })
            #expect(problems.contains { $0.offset == nil && $0.message.contains("batches") })
        }
    }
}
