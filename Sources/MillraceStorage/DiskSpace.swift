import MillraceFormat

#if canImport(Glibc)
import Glibc
#endif

/// The device under the data directory: its name, mount point and free bytes, for
/// `storage_full` errors a person can act on; and the reserve file that keeps room for the
/// copy-on-write pages a delete needs on a full disk.
struct DiskSpace: Equatable {
    var device: String
    var mountPoint: String
    var freeBytes: Int64
    var totalBytes: Int64

    /// Free and total bytes from statvfs, and the mount holding `path` from /proc/self/mountinfo.
    static func of(_ path: String) -> DiskSpace? {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return nil }
        let free = Int64(stats.f_bavail) * Int64(stats.f_frsize)
        let total = Int64(stats.f_blocks) * Int64(stats.f_frsize)
        var (device, mountPoint) = ("?", "?")
        var info = stat()
        if stat(path, &info) == 0, let table = try? readText("/proc/self/mountinfo") {
            let wanted = "\(major(info.st_dev)):\(minor(info.st_dev))"
            for line in table.split(separator: "\n") {
                // id parent major:minor root mount-point options ... - fstype source superoptions
                let fields = line.split(separator: " ")
                guard fields.count > 4, fields[2] == wanted, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
                mountPoint = String(fields[4])
                device = "\(fields[dash + 2]) (\(fields[dash + 1]))"
            }
        }
        return DiskSpace(device: device, mountPoint: mountPoint, freeBytes: free, totalBytes: total)
    }

    /// A file's size in bytes (0 when it cannot be read).
    static func fileBytes(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }

    /// "the disk holding DIR (tmpfs (tmpfs) on /mnt/x: 12 KiB free of 16.0 MiB) is full".
    func fullError(directory: String, detail: String) -> MillraceError {
        MillraceError(
            .storageFull,
            "the disk holding \(directory) (\(device) on \(mountPoint): \(Self.bytes(freeBytes)) free of \(Self.bytes(totalBytes))) is full (\(detail)); writes are refused until space returns — delete topics, shorten retention or free the disk; reads still work")
    }

    static func bytes(_ count: Int64) -> String { ByteCount.describe(count) }

    private static func major(_ device: dev_t) -> UInt64 { (UInt64(device) >> 8) & 0xFFF | ((UInt64(device) >> 32) & ~0xFFF) }
    private static func minor(_ device: dev_t) -> UInt64 { UInt64(device) & 0xFF | ((UInt64(device) >> 12) & ~0xFF) }

    private static func readText(_ path: String) throws -> String {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw MillraceError(.storageError, "cannot read \(path)") }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A file of `bytes` zeros in the data directory that exists only to be deleted: when the
/// disk fills, releasing it gives LMDB room for the pages a topic delete or a retention pass
/// writes (copy-on-write needs free pages even to delete). Made again once space returns.
struct ReserveFile {
    static let name = "millrace.reserve"
    let path: String
    let bytes: Int

    init(directory: String, bytes: Int) {
        path = directory + "/" + Self.name
        self.bytes = bytes
    }

    var exists: Bool {
        var info = stat()
        return stat(path, &info) == 0 && Int(info.st_size) >= bytes
    }

    /// Makes the file with its blocks allocated; false (and no file) when there is no room.
    @discardableResult
    func create() -> Bool {
        guard bytes > 0 else { return true }
        if exists { return true }
        let descriptor = open(path, O_WRONLY | O_CREAT, 0o600)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        if posix_fallocate(descriptor, 0, off_t(bytes)) == 0 && fdatasync(descriptor) == 0 { return true }
        unlink(path)
        return false
    }

    /// Deletes the file; true when there was one to free.
    @discardableResult
    func release() -> Bool { unlink(path) == 0 }
}

/// The data file and the disk under it, as metrics and `millrace status` show them.
public struct StorageSpace: Sendable, Equatable {
    /// LMDB's map: how large the file may grow before it is remapped larger.
    public var mapSizeBytes: Int
    public var pageBytes: Int
    /// Pages in the file's used part (up to the last page written).
    public var pagesUsed: Int
    /// Of those, pages freed and waiting for reuse.
    public var pagesFree: Int
    /// The size of data.mdb on disk.
    public var dataFileBytes: Int64
    public var diskFreeBytes: Int64
    public var diskTotalBytes: Int64
}
