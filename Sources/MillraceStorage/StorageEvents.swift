import MillraceFormat

/// What storage tells the broker as it happens, for metrics and logs. Called on storage's
/// own threads (the writer's and the syncer's): implementations must be quick and must not
/// call back into storage's writes.
public protocol StorageEvents: Sendable {
    /// A group-commit transaction committed: how many appends and offset commits it held and
    /// how long its commit took (page writes and the data sync).
    func committed(writes: Int, commitSeconds: Double)
    /// The syncer's fdatasync that makes commits' meta pages durable, and how long it took.
    func synced(seconds: Double)
    /// A retention pass ran.
    func retentionRan(_ report: RetentionReport, seconds: Double)
    /// The disk filled (writes now fail with `error`), or (nil) has room again.
    func diskFull(_ error: MillraceError?)
}

extension StorageEvents {
    public func committed(writes: Int, commitSeconds: Double) {}
    public func synced(seconds: Double) {}
    public func retentionRan(_ report: RetentionReport, seconds: Double) {}
    public func diskFull(_ error: MillraceError?) {}
}

/// Whether the writer is getting through its work, for a readiness check.
public struct WriterHealth: Sendable, Equatable {
    /// Operations waiting for the writer.
    public var queued: Int
    /// Milliseconds (storage clock) since the writer last finished a transaction, or since it
    /// started when it has finished none.
    public var millisecondsSinceProgress: Int64
    /// Set while the disk is full: the error writes get.
    public var diskFull: MillraceError?
}
