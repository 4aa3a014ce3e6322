import Foundation
import MillraceFormat
import Testing

@testable import MillraceStorage

/// A full disk: writes are refused with `storage_full` naming the device and its free bytes,
/// reads go on, topic deletes and retention still run (the reserve file gives them room),
/// writes resume by themselves once there is space, and the data stays clean.
@Suite(.serialized) struct FullDiskTests {
    /// A tmpfs of `megabytes` mounted for the test; nil (and a line saying the test is
    /// skipped) when this process may not mount one.
    static func mountSmallFilesystem(megabytes: Int) -> String? {
        let path = TemporaryDirectory().path
        guard getuid() == 0 else {
            print("SKIPPED: FullDiskTests needs root to mount a small tmpfs (running as uid \(getuid()))")
            return nil
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/mount")
        process.arguments = ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path]
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else {
            print("SKIPPED: FullDiskTests could not run mount")
            return nil
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            print("SKIPPED: FullDiskTests could not mount a tmpfs here (mount exited \(process.terminationStatus)); the full-disk path is covered by injected failures only")
            return nil
        }
        return path
    }

    static func unmount(_ path: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/umount")
        process.arguments = [path]
        try? process.run()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: path)
    }

    @Test func aRealFullDiskRefusesWritesKeepsReadsAndRecovers() async throws {
        guard let mount = Self.mountSmallFilesystem(megabytes: 24) else { return }
        defer { Self.unmount(mount) }
        let clock = TestClock()
        var options = testOptions(clock: clock)
        options.reserveBytes = 2 << 20
        options.fullRetryIntervalMs = 1_000
        let directory = mount + "/data"
        var storage = try Storage.open(directory: directory, options: options)
        _ = try await storage.createTopic("keep", partitions: 1)
        _ = try await storage.createTopic("scrap", partitions: 1, config: TopicConfig())
        let payload = String(repeating: "x", count: 2_000)
        let chunk = Array(repeating: payload, count: 50)  // ~100 KB a batch

        // Fill the disk: every acknowledged batch is remembered.
        var acknowledged: [String: Int64] = ["keep": 0, "scrap": 0]
        var refusal: MillraceError?
        for round in 0..<1_000 {
            let topic = round % 2 == 0 ? "keep" : "scrap"
            do {
                _ = try await storage.append(topic: topic, partition: 0, batch: batch(chunk))
                acknowledged[topic, default: 0] += Int64(chunk.count)
            } catch let error as MillraceError {
                refusal = error
                break
            }
        }
        let full = try #require(refusal, "the disk never filled")
        #expect(full.code == .storageFull, "\(full)")
        #expect(full.message.contains("tmpfs") && full.message.contains("free of"), "\(full.message)")
        print("full disk: \(full.message)")

        // Further writes fail at once (without touching the disk) until the retry interval.
        #expect(await errorCode { _ = try await storage.append(topic: "keep", partition: 0, batch: batch(["more"])) } == .storageFull)
        #expect(await errorCode { try await storage.commitOffsets([OffsetCommit(group: "g", topic: "keep", partition: 0, offset: 1)]) } == .storageFull)
        // Reads still work, and see everything acknowledged.
        #expect(try storage.offsets(topic: "keep", partition: 0).nextOffset == acknowledged["keep"])
        #expect(try values(in: storage.read(topic: "keep", partition: 0, from: 0, maxBytes: 1 << 20)).first == payload)

        // The operator frees space through Millrace: deleting a topic works on the full disk.
        do {
            try await storage.deleteTopic("scrap")
        } catch {
            Issue.record("topic delete on the full disk failed: \(error); reserve there: \(ReserveFile(directory: directory, bytes: options.reserveBytes).exists)")
            throw error
        }
        // Writes come back by themselves (LMDB reuses the pages the delete freed).
        clock.advance(by: 1_000)
        let resumed = try await storage.append(topic: "keep", partition: 0, batch: batch(chunk))
        #expect(resumed.baseOffset == acknowledged["keep"])
        acknowledged["keep", default: 0] += Int64(chunk.count)
        try await storage.commitOffsets([OffsetCommit(group: "g", topic: "keep", partition: 0, offset: 1)])

        // Nothing acknowledged was lost; the data is clean after a reopen.
        storage.close()
        storage = try Storage.open(directory: directory, options: options)
        #expect(try storage.offsets(topic: "keep", partition: 0).nextOffset == acknowledged["keep"])
        #expect(try storage.verify().problems.isEmpty)
        storage.close()
    }

    @Test func retentionRunsOnAFullDisk() async throws {
        guard let mount = Self.mountSmallFilesystem(megabytes: 24) else { return }
        defer { Self.unmount(mount) }
        let clock = TestClock()
        var options = testOptions(clock: clock)
        options.reserveBytes = 2 << 20
        let directory = mount + "/data"
        let storage = try Storage.open(directory: directory, options: options)
        defer { storage.close() }
        _ = try await storage.createTopic("rolling", partitions: 1, config: TopicConfig(retentionBytes: 1))
        let chunk = Array(repeating: String(repeating: "y", count: 2_000), count: 50)
        var full = false
        for _ in 0..<1_000 {
            if await errorCode({ _ = try await storage.append(topic: "rolling", partition: 0, batch: batch(chunk)) }) == .storageFull {
                full = true
                break
            }
        }
        #expect(full)
        let report = try await storage.enforceRetention()
        #expect(report.batchesDeleted > 0)
        clock.advance(by: 1_000)
        _ = try await storage.append(topic: "rolling", partition: 0, batch: batch(chunk))
        #expect(try storage.verify().problems.isEmpty)
    }

    /// Without a small filesystem: an injected ENOSPC is reported as storage_full with the
    /// device named, and the next write goes through.
    @Test func anInjectedNoSpaceIsStorageFull() async throws {
        let clock = TestClock()
        try await withStorage(clock: clock) { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            let writer = try #require(storage.writerForTesting)
            writer.failNextCommitForTesting(errno: ENOSPC)
            let error = await errorCode { _ = try await storage.append(topic: "t", partition: 0, batch: batch(["a"])) }
            #expect(error == .storageFull)
            #expect(await errorCode { _ = try await storage.append(topic: "t", partition: 0, batch: batch(["b"])) } == .storageFull)
            clock.advance(by: 1_000)
            #expect(try await storage.append(topic: "t", partition: 0, batch: batch(["c"])).baseOffset == 0)
        }
    }
}
