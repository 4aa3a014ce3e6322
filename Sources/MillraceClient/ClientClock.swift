import NIOCore

/// The clock a producer or consumer keeps its time on (linger, back-off, delivery timeout,
/// reconnects): the `any Clock<Duration>` its configuration names, `ContinuousClock` unless a
/// test passes one it moves by hand, as `GroupConsumer.Configuration.clock` does.
struct ClientClock: Sendable {
    let clock: any Clock<Duration>
    private let sinceStart: @Sendable () -> Duration

    init(_ clock: any Clock<Duration>) {
        self.clock = clock
        sinceStart = Self.stopwatch(clock)
    }

    private static func stopwatch<C: Clock>(_ clock: C) -> @Sendable () -> Duration where C.Duration == Duration {
        let start = clock.now
        return { start.duration(to: clock.now) }
    }

    /// Time on the clock since this was made: only differences of two readings mean anything.
    var now: Duration { sinceStart() }

    func sleep(for delay: Duration) async throws {
        try await clock.sleep(for: delay)
    }

    /// Runs `body` on `eventLoop` once `delay` has passed on the clock, unless the timer is
    /// cancelled first.
    func schedule(after delay: Duration, on eventLoop: any EventLoop, _ body: @escaping @Sendable () -> Void) -> ClockTimer {
        let clock = clock
        return ClockTimer(
            task: Task {
                do { try await clock.sleep(for: delay) } catch { return }
                eventLoop.execute(body)
            })
    }
}

/// A timer started by `ClientClock.schedule`.
struct ClockTimer: Sendable {
    fileprivate let task: Task<Void, Never>

    /// A timer that has fired may still run its body: callers treat a late run as harmless,
    /// as they did with NIO's `Scheduled`.
    func cancel() { task.cancel() }
}

extension Duration {
    init(_ amount: TimeAmount) { self = .nanoseconds(amount.nanoseconds) }
}
