import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Millrace's locks are one family, `Synchronization.Mutex` (docs/DECISIONS.md, "One lock
// family: Synchronization.Mutex"); `Locked` (MillraceFormat) shares one between owners. Two
// things it does not offer sit beside it here, each with its
// pthread object allocated once on the heap (a pthread object must not move, and a Swift
// stored `var` has no stable address): a condition to park the writer and syncer threads on,
// and a reader-writer gate.

/// A mutex with a condition variable, for the two threads that park until work comes or a
/// deadline passes (the writer's queue, the syncer's deliveries); `Mutex` has no condition.
final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    func signal() { pthread_cond_signal(condition) }
    func broadcast() { pthread_cond_broadcast(condition) }
    func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits at most `nanoseconds`; spurious wake-ups return early, so callers re-check.
    func wait(nanoseconds: UInt64) {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let total = UInt64(deadline.tv_nsec) + nanoseconds
        deadline.tv_sec += Int(total / 1_000_000_000)
        deadline.tv_nsec = Int(total % 1_000_000_000)
        pthread_cond_timedwait(condition, mutex, &deadline)
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// Readers share it; the writer takes it alone for the rare moments no read transaction may
/// be open in this process (growing the map, dropping a deleted topic's databases).
final class ReadWriteGate: @unchecked Sendable {
    private let rwlock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        rwlock = .allocate(capacity: 1)
        rwlock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(rwlock, nil)
    }

    deinit {
        pthread_rwlock_destroy(rwlock)
        rwlock.deallocate()
    }

    func withShared<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(rwlock)
        defer { pthread_rwlock_unlock(rwlock) }
        return try body()
    }

    func withExclusive<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(rwlock)
        defer { pthread_rwlock_unlock(rwlock) }
        return try body()
    }
}

extension Mutex where Value == Void {
    /// Runs `body` holding the lock: a `Mutex<Void>` guards state its owner keeps beside it
    /// (the dedup and index stores, whose writer thread also reads that state without it).
    borrowing func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        try withLock { (_: inout sending Void) throws(E) -> sending T in try body() }
    }
}
