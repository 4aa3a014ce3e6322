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

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}
