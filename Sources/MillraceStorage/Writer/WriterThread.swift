#if canImport(Glibc)
import Glibc
#endif

/// Starts a dedicated thread running `body` (the writer and syncer loops are synchronous
/// LMDB work that must not occupy Swift's cooperative pool).
func startThread(named name: String, _ body: @escaping () -> Void) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(body))
    var handle = pthread_t()
    let result = pthread_create(&handle, nil, { raw in
        Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box.toOpaque())
    precondition(result == 0, "cannot start the \(name) thread: \(result)")
    return handle
}

/// Stops a thread that parks on `lock` (the writer's and the syncer's loop): `markStopping`
/// sets its flag under the lock, every waiter wakes to see it, and the caller waits for the
/// thread to finish what it holds and end.
func stopThread(_ thread: inout pthread_t?, parkedOn lock: ConditionLock, markStopping: () -> Void) {
    lock.withLock {
        markStopping()
        lock.broadcast()
    }
    if let thread { pthread_join(thread, nil) }
    thread = nil
}

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}
