import NIOCore
import NIOPosix

/// Single-thread pools for CPU work that must not hold up an event loop. Work given to one
/// lane runs in the order it was given and its results come back to the caller's event loop
/// in that order (one thread, FIFO), so work keyed by partition keeps the partition's order.
final class ValidationLanes: Sendable {
    private let pools: [NIOThreadPool]

    init(count: Int) {
        pools = (0..<max(1, count)).map { _ in NIOThreadPool(numberOfThreads: 1) }
        for pool in pools { pool.start() }
    }

    func run<T: Sendable>(lane: Int, on eventLoop: any EventLoop, _ body: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        pools[lane % pools.count].runIfActive(eventLoop: eventLoop, body)
    }

    func shutdown() async {
        for pool in pools { try? await pool.shutdownGracefully() }
    }

    /// For callers outside async code (the fuzzer's exit).
    func syncShutdown() {
        for pool in pools { try? pool.syncShutdownGracefully() }
    }
}
