import NIOCore
import NIOPosix

/// Single-thread pools for CPU work that must not hold up an event loop. Work given to one
/// lane runs in the order it was given and its results come back to the caller's event loop
/// in that order (one thread, FIFO), so work keyed by partition keeps the partition's order.
///
/// Traces and walks run on threads of their own (`runTrace`), never on a lane: a walk may
/// read a million index entries and their records, and on a lane it held up every validated
/// produce of the partitions behind it (20 s in issue 22). Traces get half as many threads
/// as there are lanes, at least two (so one long walk does not hold up every trace): however
/// many traces are running or waiting, each lane still runs its next piece of work, sharing
/// the cores with at most that many traces.
final class ValidationLanes: Sendable {
    private let pools: [NIOThreadPool]
    private let traces: NIOThreadPool
    let traceThreads: Int

    /// `count` lanes; `traceThreads` threads for traces (default: half of `count`, at least two).
    init(count: Int, traceThreads: Int? = nil) {
        pools = (0..<max(1, count)).map { _ in NIOThreadPool(numberOfThreads: 1) }
        self.traceThreads = max(1, traceThreads ?? max(2, count / 2))
        traces = NIOThreadPool(numberOfThreads: self.traceThreads)
        for pool in pools { pool.start() }
        traces.start()
    }

    func run<T: Sendable>(lane: Int, on eventLoop: any EventLoop, _ body: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        pools[lane % pools.count].runIfActive(eventLoop: eventLoop, body)
    }

    /// Runs `body` on the lane with no future to hop back through: the caller completes its
    /// own promise from `body` (`active` is false when the lanes are shut down: `body` must
    /// still answer).
    func execute(lane: Int, _ body: @escaping @Sendable (_ active: Bool) -> Void) {
        pools[lane % pools.count].submit { state in body(state == .active) }
    }

    /// Trace work: on the trace threads, in no order among itself.
    func runTrace<T: Sendable>(on eventLoop: any EventLoop, _ body: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        traces.runIfActive(eventLoop: eventLoop, body)
    }

    func shutdown() async {
        for pool in pools + [traces] { try? await pool.shutdownGracefully() }
    }

    /// For callers outside async code (the fuzzer's exit).
    func syncShutdown() {
        for pool in pools + [traces] { try? pool.syncShutdownGracefully() }
    }
}
