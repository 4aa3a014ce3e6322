import Foundation
import MillraceFormat
import Testing

@testable import MillraceStorage

#if canImport(Glibc)
import Glibc
#endif

/// Answers that were wrong or misleading (issue 22, item 8): each says what happened and
/// what to do.
@Suite struct AnswerTests {
    /// `groups_probe.py`: committing -1 said "the log ends at 10".
    @Test func commitsOutsideTheLogSayWhy() async throws {
        try await withStorage { storage, _ in
            _ = try await storage.createTopic("t", partitions: 1)
            for _ in 0..<3 { _ = try await storage.append("t", 0, batch(["a"])) }
            let negative = await caughtError { try await storage.commitOffsets([OffsetCommit(group: "g", topic: "t", partition: 0, offset: -1)]) }
            #expect(negative?.code == .offsetOutOfRange)
            #expect(negative?.message.contains("never negative") == true && negative?.message.contains("ends at") == false, "\(String(describing: negative))")
            let past = await caughtError { try await storage.commitOffsets([OffsetCommit(group: "g", topic: "t", partition: 0, offset: 4)]) }
            #expect(past?.code == .offsetOutOfRange && past?.message.contains("past the log end, 3") == true, "\(String(describing: past))")
            try await storage.commitOffsets([OffsetCommit(group: "g", topic: "t", partition: 0, offset: 3)])
        }
    }

    /// `backup_probe.py`: a relative path went to the broker's working directory; one with a
    /// NUL byte succeeded, writing to the path cut at the NUL.
    @Test func backupDestinationsAreAbsolutePathsWithoutNul() async throws {
        try await withStorage { storage, directory in
            let relative = "relative-backup-\(getpid())"
            for destination in [relative, "", "./x", directory.path + "/bk\0tail"] {
                let error = await caughtError { _ = try storage.backup(to: destination) }
                #expect(error?.code == .invalidRequest, "\(destination.debugDescription): \(String(describing: error))")
                let words = destination.contains("\0") ? "NUL" : "absolute path"
                #expect(error?.message.contains(words) == true, "\(String(describing: error))")
            }
            #expect(!FileManager.default.fileExists(atPath: directory.path + "/bk"))
            #expect(!FileManager.default.fileExists(atPath: FileManager.default.currentDirectoryPath + "/" + relative))
            let bytes = try storage.backup(to: directory.path + "/good")
            #expect(bytes > 0)
        }
    }

    /// `backup_probe.py`: a full destination blamed "the disk holding the data directory".
    @Test func aFullBackupDiskIsTheDestinations() {
        let error = Storage.backupFull(ENOSPC, "/mnt/small/bk", dataBytes: 10_485_760)
        #expect(error?.message.contains("backup destination /mnt/small/bk is full") == true, "\(String(describing: error))")
        #expect(error?.message.contains("data directory") == false && error?.message.contains("10485760 bytes") == true)
        #expect(Storage.backupFull(EDQUOT, "/q", dataBytes: 1) != nil)
        #expect(Storage.backupFull(EACCES, "/x", dataBytes: 1) == nil)
    }
}
