import CLMDB
import Foundation
import MillraceFormat
import Testing

@testable import MillraceStorage

@Suite struct DataDirectoryTests {
    @Test func createsAndReopensWithTheCatalog() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        var storage = try Storage.open(directory: directory.path, options: testOptions())
        _ = try await storage.createTopic("orders", partitions: 3, config: TopicConfig(retentionMs: 60_000))
        _ = try await storage.append(topic: "orders", partition: 1, batch: batch(["a", "b"]))
        storage.close()
        storage = try Storage.open(directory: directory.path, options: testOptions())
        defer { storage.close() }
        let topics = try storage.listTopics()
        #expect(topics.map(\.name) == ["orders"])
        #expect(topics[0].partitionCount == 3)
        #expect(topics[0].config.retentionMs == 60_000)
        #expect(try storage.offsets(topic: "orders", partition: 1).nextOffset == 2)
        #expect(storage.info.formatVersion == Storage.formatVersion)
    }

    @Test func refusesADirectoryThatIsNotMillraces() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        #expect(FileManager.default.createFile(atPath: directory.path + "/notes.txt", contents: Data("hi".utf8)))
        #expect { try Storage.open(directory: directory.path, options: testOptions()) } throws: { error in
            guard let error = error as? MillraceError else { return false }
            return error.code == .notDataDirectory && error.message.contains("notes.txt")
        }
    }

    @Test func refusesAMissingDirectoryWhenNotCreating() throws {
        var options = testOptions()
        options.createIfMissing = false
        #expect { try Storage.open(directory: "/nonexistent/millrace-\(getpid())", options: options) } throws: {
            ($0 as? MillraceError)?.code == .notDataDirectory
        }
    }

    @Test func refusesAnLMDBFileWithoutMillraceMetadata() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        var env: OpaquePointer?
        mdb_env_create(&env)
        #expect(mdb_env_open(env, directory.path, 0, 0o644) == 0)
        mdb_env_close(env)
        #expect { try Storage.open(directory: directory.path, options: testOptions()) } throws: {
            ($0 as? MillraceError)?.code == .notDataDirectory
        }
    }

    @Test func refusesANewerFormat() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let storage = try Storage.open(directory: directory.path, options: testOptions())
        let txn = try LMDBTransaction.begin(storage.env, readOnly: false)
        try txn.put(storage.databases.meta, SystemDatabases.formatKey, SystemDatabases.encode(Storage.formatVersion + 1))
        try txn.commit()
        storage.close()
        #expect { try Storage.open(directory: directory.path, options: testOptions()) } throws: { error in
            guard let error = error as? MillraceError else { return false }
            return error.code == .newerFormatVersion && error.message.contains("upgrade")
        }
    }

    @Test func aSecondOpenIsRefusedWhileTheFirstHoldsTheDirectory() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let first = try Storage.open(directory: directory.path, options: testOptions())
        #expect { try Storage.open(directory: directory.path, options: testOptions()) } throws: { error in
            guard let error = error as? MillraceError else { return false }
            return error.code == .dataDirectoryLocked && error.message.contains("pid \(getpid())")
        }
        first.close()
        let second = try Storage.open(directory: directory.path, options: testOptions())
        second.close()
    }

    @Test func theMapGrowsInsteadOfFailing() async throws {
        var options = testOptions()
        options.initialMapSizeBytes = 1 << 20
        try await withStorage(options: options) { storage, _ in
            _ = try await storage.createTopic("big", partitions: 1)
            let value = String(repeating: "x", count: 1000)
            let payload = batch(Array(repeating: value, count: 200))
            for _ in 0..<60 { _ = try await storage.append(topic: "big", partition: 0, batch: payload) }
            #expect(storage.writerStatistics.mapResizes > 0)
            #expect(storage.info.mapSizeBytes > 8 << 20)
            #expect(try storage.offsets(topic: "big", partition: 0).nextOffset == 12_000)
            #expect(try storage.verify().problems.isEmpty)
        }
    }
}
