import MillraceFormat

#if canImport(Glibc)
import Glibc
#endif

/// The data directory on disk: its files, and the lock that keeps two processes out of it.
enum DataDirectory {
    static let dataFile = "data.mdb"
    static let lockFile = "millrace.lock"
    /// Files LMDB or Millrace put there; anything else means the directory is not ours.
    static let knownFiles: Set<String> = [dataFile, "lock.mdb", lockFile, ReserveFile.name]

    /// Checks the directory before LMDB touches it. Returns true when it holds a data file.
    static func prepare(_ path: String, create: Bool) throws -> Bool {
        var info = stat()
        if stat(path, &info) != 0 {
            guard create else {
                throw MillraceError(.notDataDirectory, "no data directory at \(path); check the path")
            }
            try makeDirectories(path)
            return false
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw MillraceError(.notDataDirectory, "\(path) is a file, not a data directory; name a directory")
        }
        let entries = try listDirectory(path)
        if entries.contains(dataFile) { return true }
        let foreign = entries.subtracting(knownFiles)
        if !foreign.isEmpty {
            let sample = foreign.sorted().prefix(3).joined(separator: ", ")
            throw MillraceError(
                .notDataDirectory,
                "\(path) is not a Millrace data directory (it holds \(sample) but no \(dataFile)); choose an empty or new directory")
        }
        guard create else {
            throw MillraceError(.notDataDirectory, "\(path) holds no Millrace data (\(dataFile) is missing)")
        }
        return false
    }

    private static func makeDirectories(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        let components = path.split(separator: "/")
        for (index, component) in components.enumerated() {
            prefix += component + "/"
            // The data directory itself is the broker's account's alone (0700); parents made on
            // the way are ordinary directories.
            if mkdir(prefix, index == components.count - 1 ? 0o700 : 0o755) != 0 && errno != EEXIST {
                throw MillraceError(.storageError, "cannot create \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }

    private static func listDirectory(_ path: String) throws -> Set<String> {
        guard let dir = opendir(path) else {
            throw MillraceError(.storageError, "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        var names: Set<String> = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.insert(name) }
        }
        return names
    }

    /// An exclusive `flock` on `millrace.lock`, released when the process exits (even by
    /// SIGKILL), so a crash never leaves the directory locked.
    struct Lock {
        let descriptor: Int32

        static func acquire(_ directory: String) throws -> Lock {
            let path = directory + "/" + lockFile
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                throw MillraceError(.storageError, "cannot open \(path): \(String(cString: strerror(errno)))")
            }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                var buffer = [UInt8](repeating: 0, count: 32)
                let count = pread(fd, &buffer, buffer.count, 0)
                let holder = count > 0 ? String(decoding: buffer[..<count], as: UTF8.self).trimmingNewline : "another process"
                close(fd)
                throw MillraceError(
                    .dataDirectoryLocked,
                    "\(directory) is in use by a running broker (pid \(holder)); stop it first, or use the network commands")
            }
            let pid = Array("\(getpid())\n".utf8)
            _ = ftruncate(fd, 0)
            _ = pwrite(fd, pid, pid.count, 0)
            return Lock(descriptor: fd)
        }

        func release() {
            flock(descriptor, LOCK_UN)
            close(descriptor)
        }
    }

    static func fileBytes(_ directory: String) -> Int64 {
        var info = stat()
        guard stat(directory + "/" + dataFile, &info) == 0 else { return 0 }
        return Int64(info.st_size)
    }
}

extension String {
    var trimmingNewline: String {
        var result = self
        while result.last == "\n" { result.removeLast() }
        return result
    }
}
