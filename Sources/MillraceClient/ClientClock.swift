import NIOCore

/// The clock a producer or consumer keeps its time on (linger, back-off, delivery timeout,
/// reconnects): the `any Clock<Duration>` its configuration names, `ContinuousClock` unless a
/// test passes one it moves by hand, as `GroupConsumer.Configuration.clock` does.
///
/// On the real clock a timer is the event loop's own (`scheduleTask`) and a reading is the
/// monotonic clock read directly: a producer starts a linger timer for every batch and reads
/// the time for every record, and a `Task` sleeping per batch costs a task, a trip through the
/// concurrency pool and one back to the loop where `scheduleTask` costs none. Any other clock
/// (a test's) is read and slept on as given.
struct ClientClock: Sendable {
    let clock: any Clock<Duration>
    private let source: Source

    private enum Source: Sendable {
        case system
        case given(sinceStart: @Sendable () -> Duration)
    }

    init(_ clock: any Clock<Duration>) {
        self.clock = clock
        source = clock is ContinuousClock ? .system : .given(sinceStart: Self.stopwatch(clock))
    }

    private static func stopwatch<C: Clock>(_ clock: C) -> @Sendable () -> Duration where C.Duration == Duration {
        let start = clock.now
        return { start.duration(to: clock.now) }
    }

    /// Time on the clock since some fixed moment: only differences of two readings mean anything.
    var now: Duration {
        switch source {
        case .system: .nanoseconds(Int64(clamping: NIODeadline.now().uptimeNanoseconds))
        case .given(let sinceStart): sinceStart()
        }
    }

    func sleep(for delay: Duration) async throws {
        try await clock.sleep(for: delay)
    }

    /// Runs `body` on `eventLoop` once `delay` has passed on the clock, unless the timer is
    /// cancelled first.
    func schedule(after delay: Duration, on eventLoop: any EventLoop, _ body: @escaping @Sendable () -> Void) -> ClockTimer {
        switch source {
        case .system:
            return ClockTimer(.scheduled(eventLoop.scheduleTask(in: TimeAmount(delay)) { body() }))
        case .given:
            let clock = clock
            return ClockTimer(
                .task(
                    Task {
                        do { try await clock.sleep(for: delay) } catch { return }
                        eventLoop.execute(body)
                    }))
        }
    }
}

/// A timer started by `ClientClock.schedule`.
struct ClockTimer: Sendable {
    fileprivate enum Kind: Sendable {
        case scheduled(Scheduled<Void>)
        case task(Task<Void, Never>)
    }

    private let kind: Kind

    fileprivate init(_ kind: Kind) { self.kind = kind }

    /// A timer that has fired may still run its body: callers treat a late run as harmless,
    /// as they did with NIO's `Scheduled`.
    func cancel() {
        switch kind {
        case .scheduled(let scheduled): scheduled.cancel()
        case .task(let task): task.cancel()
        }
    }
}

extension Duration {
    init(_ amount: TimeAmount) { self = .nanoseconds(amount.nanoseconds) }
}

extension TimeAmount {
    /// `duration` in nanoseconds, saturating at the ends of `Int64` (a timer asked for a
    /// century waits for ever rather than firing at once).
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (total, carried) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
        self = .nanoseconds(overflow || carried ? (seconds < 0 ? .min : .max) : total)
    }
}
