import Synchronization
import CLMDB
import MillraceFormat

#if canImport(Glibc)
import Glibc
#endif

/// An error code from LMDB (or errno passed through it), with the operation that failed.
struct LMDBError: Error, CustomStringConvertible {
    let code: Int32
    let operation: String

    var description: String { "\(operation): \(String(cString: mdb_strerror(code))) (\(code))" }
    var isMapFull: Bool { code == MDB_MAP_FULL }
    var isDiskFull: Bool { code == ENOSPC || code == EDQUOT }

    /// The operating error a caller sees.
    var millraceError: MillraceError {
        if isDiskFull {
            return MillraceError(.storageFull, "the disk holding the data directory is full (\(operation)); free space, and writes resume")
        }
        if isMapFull {
            return MillraceError(.storageFull, "the storage map could not grow (\(operation)); check free disk and address space")
        }
        if code == MDB_READERS_FULL {
            return MillraceError(.storageError, "too many concurrent reads; retry shortly")
        }
        return MillraceError(.storageError, "storage engine error: \(description)")
    }
}

@inline(__always)
func lmdbCheck(_ code: Int32, _ operation: @autoclosure () -> String) throws {
    if code != 0 { throw LMDBError(code: code, operation: operation()) }
}

/// One LMDB environment: the whole data directory.
final class LMDBEnvironment: @unchecked Sendable {
    let handle: OpaquePointer
    let readOnly: Bool

    init(directory: String, mapSizeBytes: Int, maxDatabases: Int, maxReaders: Int, readOnly: Bool) throws {
        var env: OpaquePointer?
        try lmdbCheck(mdb_env_create(&env), "mdb_env_create")
        guard let env else { throw LMDBError(code: ENOMEM, operation: "mdb_env_create") }
        do {
            try lmdbCheck(mdb_env_set_maxdbs(env, MDB_dbi(maxDatabases)), "mdb_env_set_maxdbs")
            try lmdbCheck(mdb_env_set_maxreaders(env, UInt32(maxReaders)), "mdb_env_set_maxreaders")
            try lmdbCheck(mdb_env_set_mapsize(env, mapSizeBytes), "mdb_env_set_mapsize")
            // NOTLS: read transactions are not tied to a thread (Swift tasks hop threads).
            var flags = UInt32(MDB_NOTLS)
            // NOMETASYNC: the writer makes each meta page durable itself before telling callers
            // (the next commit's fdatasync or an explicit sync); see Writer.deliver.
            flags |= readOnly ? UInt32(MDB_RDONLY) : UInt32(MDB_NOMETASYNC)
            // 0600: the file holds every record and the users' stored SCRAM keys; no other account reads it.
            try lmdbCheck(mdb_env_open(env, directory, flags, 0o600), "mdb_env_open \(directory)")
        } catch {
            mdb_env_close(env)
            throw error
        }
        handle = env
        self.readOnly = readOnly
    }

    func close() { mdb_env_close(handle) }

    var mapSizeBytes: Int {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        return info.me_mapsize
    }

    /// The last page number used and the page size.
    var pages: (used: Int, pageBytes: Int) {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        var stat = MDB_stat()
        mdb_env_stat(handle, &stat)
        return (info.me_last_pgno + 1, Int(stat.ms_psize))
    }

    /// Bytes of the map in use: (last page used + 1) × page size.
    var usedBytes: Int {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        var stat = MDB_stat()
        mdb_env_stat(handle, &stat)
        return (info.me_last_pgno + 1) * Int(stat.ms_psize)
    }

    /// Only with no transaction open in this process (the caller holds the gate alone).
    func setMapSize(_ bytes: Int) throws {
        try lmdbCheck(mdb_env_set_mapsize(handle, bytes), "mdb_env_set_mapsize \(bytes)")
    }

    func sync(force: Bool) throws {
        try lmdbCheck(mdb_env_sync(handle, force ? 1 : 0), "mdb_env_sync")
    }
}

/// A transaction. Never spans an `await`; closed by `commit` or `abort`.
struct LMDBTransaction {
    let handle: OpaquePointer

    static func begin(_ env: LMDBEnvironment, readOnly: Bool) throws -> LMDBTransaction {
        var txn: OpaquePointer?
        try lmdbCheck(mdb_txn_begin(env.handle, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn), "mdb_txn_begin")
        return LMDBTransaction(handle: txn!)
    }

    /// Brings a reset read-only transaction back onto the newest snapshot.
    func renew() throws { try lmdbCheck(mdb_txn_renew(handle), "mdb_txn_renew") }
    /// Ends a read-only transaction but keeps its handle (and reader slot) for `renew`.
    func reset() { mdb_txn_reset(handle) }

    /// Commits; the transaction is gone whether or not this throws.
    func commit() throws { try lmdbCheck(mdb_txn_commit(handle), "mdb_txn_commit") }
    func abort() { mdb_txn_abort(handle) }

    func openDatabase(_ name: String?, create: Bool) throws -> MDB_dbi? {
        var dbi: MDB_dbi = 0
        let code = mdb_dbi_open(handle, name, create ? UInt32(MDB_CREATE) : 0, &dbi)
        if code == MDB_NOTFOUND { return nil }
        try lmdbCheck(code, "mdb_dbi_open \(name ?? "main")")
        return dbi
    }

    /// Deletes a named database and closes its handle.
    func dropDatabase(_ dbi: MDB_dbi) throws { try lmdbCheck(mdb_drop(handle, dbi, 1), "mdb_drop") }

    func get(_ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let code = mdb_get(handle, dbi, &k, &v)
        if code == MDB_NOTFOUND { return nil }
        try lmdbCheck(code, "mdb_get")
        return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
    }

    func get(_ dbi: MDB_dbi, _ key: [UInt8]) throws -> UnsafeRawBufferPointer? {
        try key.withUnsafeBytes { try get(dbi, $0) }
    }

    func put(_ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, flags: Int32 = 0) throws {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        try lmdbCheck(mdb_put(handle, dbi, &k, &v, UInt32(flags)), "mdb_put")
    }

    func put(_ dbi: MDB_dbi, _ key: [UInt8], _ value: [UInt8], flags: Int32 = 0) throws {
        try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try put(dbi, k, v, flags: flags) } }
    }

    /// Reserves `count` bytes for the value and returns them to be filled before the next write.
    func reserve(_ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer, count: Int, flags: Int32 = 0) throws -> UnsafeMutableRawBufferPointer {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: count, mv_data: nil)
        try lmdbCheck(mdb_put(handle, dbi, &k, &v, UInt32(flags | MDB_RESERVE)), "mdb_put reserve")
        return UnsafeMutableRawBufferPointer(start: v.mv_data, count: count)
    }

    @discardableResult
    func delete(_ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer) throws -> Bool {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        let code = mdb_del(handle, dbi, &k, nil)
        if code == MDB_NOTFOUND { return false }
        try lmdbCheck(code, "mdb_del")
        return true
    }

    @discardableResult
    func delete(_ dbi: MDB_dbi, _ key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { try delete(dbi, $0) }
    }

    /// Bytes of pages a database uses (branch, leaf and overflow pages).
    func pageBytes(_ dbi: MDB_dbi) throws -> Int {
        var stat = MDB_stat()
        try lmdbCheck(mdb_stat(handle, dbi, &stat), "mdb_stat")
        return Int(stat.ms_psize) * (stat.ms_branch_pages + stat.ms_leaf_pages + stat.ms_overflow_pages)
    }

    /// Pages on LMDB's free list (database 0: each value is a count, then that many page numbers).
    func freePages() throws -> Int {
        let cursor = try LMDBCursor(self, 0)
        defer { cursor.close() }
        var total = 0
        var entry = try cursor.get(MDB_FIRST)
        while let current = entry {
            if current.value.count >= MemoryLayout<Int>.size { total += current.value.loadUnaligned(as: Int.self) }
            entry = try cursor.get(MDB_NEXT)
        }
        return total
    }

    func entryCount(_ dbi: MDB_dbi) throws -> Int {
        var stat = MDB_stat()
        try lmdbCheck(mdb_stat(handle, dbi, &stat), "mdb_stat")
        return stat.ms_entries
    }
}

/// A cursor over one database inside one transaction.
struct LMDBCursor {
    let handle: OpaquePointer

    init(_ txn: LMDBTransaction, _ dbi: MDB_dbi) throws {
        var cursor: OpaquePointer?
        try lmdbCheck(mdb_cursor_open(txn.handle, dbi, &cursor), "mdb_cursor_open")
        handle = cursor!
    }

    func close() { mdb_cursor_close(handle) }

    typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    /// Moves the cursor; nil at the end (or on an empty database).
    func get(_ op: MDB_cursor_op, key: UnsafeRawBufferPointer? = nil) throws -> Entry? {
        var k = MDB_val(mv_size: key?.count ?? 0, mv_data: UnsafeMutableRawPointer(mutating: key?.baseAddress))
        var v = MDB_val()
        let code = mdb_cursor_get(handle, &k, &v, op)
        if code == MDB_NOTFOUND { return nil }
        try lmdbCheck(code, "mdb_cursor_get")
        return (UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size), UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    func get(_ op: MDB_cursor_op, key: [UInt8]) throws -> Entry? {
        try key.withUnsafeBytes { try get(op, key: $0) }
    }

    /// Deletes the entry under the cursor.
    func delete() throws { try lmdbCheck(mdb_cursor_del(handle, 0), "mdb_cursor_del") }
}

/// Read-only transaction handles kept between reads. Beginning a transaction allocates and
/// zeroes room for every named database the environment may hold (8,208 here, about half a
/// megabyte), which under a fetch flood was most of the broker's CPU; a reset handle is
/// renewed instead (LMDB's advice for read-heavy use). Handles are reset, never active, while
/// pooled, so growing the map with no transaction active still holds.
final class ReadTransactionPool: @unchecked Sendable {
    private let env: LMDBEnvironment
    private let lock = Mutex(())
    private var idle: [LMDBTransaction] = []
    private let idleMax: Int

    init(env: LMDBEnvironment, idleMax: Int) {
        self.env = env
        self.idleMax = idleMax
    }

    func take() throws -> LMDBTransaction {
        if let pooled = lock.withLock({ idle.popLast() }) {
            do {
                try pooled.renew()
                return pooled
            } catch {
                pooled.abort()
                throw error
            }
        }
        return try LMDBTransaction.begin(env, readOnly: true)
    }

    func give(_ txn: LMDBTransaction) {
        txn.reset()
        let kept = lock.withLock { () -> Bool in
            guard idle.count < idleMax else { return false }
            idle.append(txn)
            return true
        }
        if !kept { txn.abort() }
    }

    /// Frees every pooled handle; before the environment closes.
    func drain() {
        let handles = lock.withLock { () -> [LMDBTransaction] in
            defer { idle = [] }
            return idle
        }
        for txn in handles { txn.abort() }
    }
}

extension LMDBTransaction {
    /// Calls `body` with every entry whose key starts with `prefix` (every entry when it is
    /// empty), in key order.
    func forEach(_ dbi: MDB_dbi, prefix: [UInt8] = [], _ body: (LMDBCursor.Entry) throws -> Void) throws {
        let cursor = try LMDBCursor(self, dbi)
        defer { cursor.close() }
        var entry = try prefix.isEmpty ? cursor.get(MDB_FIRST) : cursor.get(MDB_SET_RANGE, key: prefix)
        while let current = entry, prefix.isEmpty || Keys.hasPrefix(current.key, prefix) {
            try body(current)
            entry = try cursor.get(MDB_NEXT)
        }
    }

    /// Deletes every key starting with `prefix`.
    func deleteAll(_ dbi: MDB_dbi, prefix: [UInt8]) throws {
        let cursor = try LMDBCursor(self, dbi)
        defer { cursor.close() }
        while let entry = try cursor.get(MDB_SET_RANGE, key: prefix), Keys.hasPrefix(entry.key, prefix) {
            try cursor.delete()
        }
    }
}
