import CLMDB
import MillraceFormat

#if canImport(Glibc)
import Glibc
#endif

extension Storage {
    /// A consistent copy of the data file in `destination` (a new directory, by its absolute
    /// path: it must not exist), made from one read transaction while writes go on — LMDB's
    /// `mdb_env_copy2`, with `compact` leaving out freed pages. The copy is synced before this
    /// returns. While it runs the map cannot grow (a writer that needs a larger map waits for
    /// it). Returns the copy's size in bytes.
    public func backup(to destination: String, compact: Bool = true) throws -> Int64 {
        if let problem = Self.backupDestinationProblem(destination) { throw problem }
        var info = stat()
        // lstat: a symbolic link (even one to nothing) is there already too.
        guard lstat(destination, &info) != 0 else {
            throw MillraceError(.invalidRequest, "\(destination) already exists; name a new directory for the backup")
        }
        guard mkdir(destination, 0o700) == 0 else {
            let code = errno
            throw Self.backupFull(code, destination, dataBytes: DiskSpace.fileBytes(directory + "/" + DataDirectory.dataFile))
                ?? MillraceError(.storageError, "cannot create \(destination): \(String(cString: strerror(code))); check that its parent exists and is writable")
        }
        do {
            try gate.withShared {
                let code = mdb_env_copy2(env.handle, destination, compact ? UInt32(MDB_CP_COMPACT) : 0)
                guard code == 0 else {
                    // The copy writes to the destination only: a full disk there is not the data directory's.
                    throw Self.backupFull(code, destination, dataBytes: DiskSpace.fileBytes(directory + "/" + DataDirectory.dataFile))
                        ?? LMDBError(code: code, operation: "mdb_env_copy2").millraceError
                }
            }
            let file = destination + "/" + DataDirectory.dataFile
            for path in [file, destination] {
                let descriptor = Glibc.open(path, O_RDONLY)
                guard descriptor >= 0 else { throw MillraceError(.storageError, "cannot open \(path) to sync it: \(String(cString: strerror(errno)))") }
                defer { Glibc.close(descriptor) }
                guard fsync(descriptor) == 0 else {
                    let code = errno
                    throw Self.backupFull(code, destination, dataBytes: DiskSpace.fileBytes(directory + "/" + DataDirectory.dataFile))
                        ?? MillraceError(.storageError, "cannot sync \(path): \(String(cString: strerror(code)))")
                }
            }
            return DiskSpace.fileBytes(file)
        } catch {
            // Leave nothing half-made behind.
            unlink(destination + "/" + DataDirectory.dataFile)
            rmdir(destination)
            throw error
        }
    }

    /// Why a backup destination is refused before anything is made, or nil. A relative path
    /// would be resolved against the broker's working directory, which the person asking
    /// neither sees nor chose; a NUL byte would cut the path short where the system reads it.
    static func backupDestinationProblem(_ destination: String) -> MillraceError? {
        if let nul = destination.utf8.firstIndex(of: 0) {
            let at = destination.utf8.distance(from: destination.utf8.startIndex, to: nul)
            return MillraceError(
                .invalidRequest, "the backup destination holds a NUL byte (at byte \(at)), which no path can; name the directory without it")
        }
        guard destination.hasPrefix("/") else {
            let shown = destination.isEmpty ? "is empty" : "\"\(destination)\" is a relative path"
            return MillraceError(
                .invalidRequest,
                "the backup destination \(shown); name the new directory by its absolute path, e.g. /backups/millrace-1 "
                    + "(`millrace data backup` makes a relative one absolute from the directory it runs in)")
        }
        return nil
    }

    /// The error for a backup that ran out of space at its destination (nil: another error).
    static func backupFull(_ code: Int32, _ destination: String, dataBytes: Int64) -> MillraceError? {
        guard code == ENOSPC || code == EDQUOT else { return nil }
        return MillraceError(
            .storageError,
            "the disk holding the backup destination \(destination) is full (\(String(cString: strerror(code)))); nothing was left there. "
                + "The data file is \(dataBytes) bytes (a compacted copy can be smaller): free space there or name a destination on a disk with room. "
                + "The broker's own data is not affected")
    }
}
