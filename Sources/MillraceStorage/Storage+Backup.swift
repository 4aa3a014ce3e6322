import CLMDB
import MillraceFormat

#if canImport(Glibc)
import Glibc
#endif

extension Storage {
    /// A consistent copy of the data file in `destination` (a new directory: it must not
    /// exist), made from one read transaction while writes go on — LMDB's `mdb_env_copy2`,
    /// with `compact` leaving out freed pages. The copy is synced before this returns. While
    /// it runs the map cannot grow (a writer that needs a larger map waits for it). Returns
    /// the copy's size in bytes.
    public func backup(to destination: String, compact: Bool = true) throws -> Int64 {
        var info = stat()
        guard stat(destination, &info) != 0 else {
            throw MillraceError(.invalidRequest, "\(destination) already exists; name a new directory for the backup")
        }
        guard mkdir(destination, 0o750) == 0 else {
            throw MillraceError(.storageError, "cannot create \(destination): \(String(cString: strerror(errno))); check that its parent exists and is writable")
        }
        do {
            try gate.withShared {
                let code = mdb_env_copy2(env.handle, destination, compact ? UInt32(MDB_CP_COMPACT) : 0)
                guard code == 0 else { throw LMDBError(code: code, operation: "mdb_env_copy2").millraceError }
            }
            let file = destination + "/" + DataDirectory.dataFile
            for path in [file, destination] {
                let descriptor = Glibc.open(path, O_RDONLY)
                guard descriptor >= 0 else { throw MillraceError(.storageError, "cannot open \(path) to sync it: \(String(cString: strerror(errno)))") }
                defer { Glibc.close(descriptor) }
                guard fsync(descriptor) == 0 else { throw MillraceError(.storageError, "cannot sync \(path): \(String(cString: strerror(errno)))") }
            }
            return DiskSpace.fileBytes(file)
        } catch {
            // Leave nothing half-made behind.
            unlink(destination + "/" + DataDirectory.dataFile)
            rmdir(destination)
            throw error
        }
    }
}
