import Synchronization

/// A value behind a `Synchronization.Mutex`, in a class so that several owners (and escaping
/// closures) share it: the one lock every module uses (docs/DECISIONS.md, "One lock family:
/// Synchronization.Mutex"). Inlinable, so a caller in another module gets the lock inlined
/// and specialized as `Mutex` itself would be, not a generic call per use.
public final class Locked<Value: Sendable>: Sendable {
    @usableFromInline let mutex: Mutex<Value>

    @inlinable
    public init(_ value: consuming sending Value) { mutex = Mutex(value) }

    /// Runs `body` with the value, holding the lock.
    @inlinable
    public func withLock<T, E: Error>(_ body: (inout Value) throws(E) -> T) throws(E) -> T {
        try mutex.withLock { (value: inout sending Value) throws(E) -> sending T in try body(&value) }
    }
}
