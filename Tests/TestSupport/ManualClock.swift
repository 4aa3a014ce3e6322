import Foundation
import MillraceFormat

/// A clock tests move by hand, for both kinds of time the code takes: wall-clock
/// milliseconds (`MillraceClock`, the broker's session expiry and idle timeout) and Swift's
/// `Clock` (the client's heartbeat, commit and reconnect sleeps). Sleepers wake only when the
/// test advances past their deadline, so tests assert what happens, never how long it took.
public final class ManualClock: Clock, MillraceClock, @unchecked Sendable {
    public struct Instant: InstantProtocol, Comparable, Hashable, Sendable {
        public var offset: Duration
        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (left: Instant, right: Instant) -> Bool { left.offset < right.offset }
    }

    private struct Sleeper {
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private let lock = NSLock()
    private var current = Instant(offset: .zero)
    private var sleepers: [Int: Sleeper] = [:]
    private var nextID = 0
    private let epochMs: Int64

    public init(epochMs: Int64 = 1_700_000_000_000) { self.epochMs = epochMs }

    public var now: Instant { lock.withLock { current } }
    public var minimumResolution: Duration { .zero }

    public func nowMilliseconds() -> Int64 {
        let (seconds, attoseconds) = now.offset.components
        return epochMs + seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// How many tasks are asleep on this clock.
    public var sleeperCount: Int { lock.withLock { sleepers.count } }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        let id = lock.withLock { () -> Int in
            nextID += 1
            return nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow = lock.withLock { () -> Bool in
                    if deadline <= current { return true }
                    if Task.isCancelled { return true }
                    sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let sleeper = lock.withLock { sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
        try Task.checkCancellation()
    }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    public func advance(by duration: Duration) {
        let due = lock.withLock { () -> [Sleeper] in
            current = current.advanced(by: duration)
            let due = sleepers.filter { $0.value.deadline <= current }
            for id in due.keys { sleepers[id] = nil }
            return due.values.sorted { $0.deadline < $1.deadline }
        }
        for sleeper in due { sleeper.continuation.resume() }
    }
}

/// Waits until `condition` holds: for tests that drive time by hand and then wait for the
/// consequences to be carried out. The limit only catches a hang, so it is counted in looks (one
/// every 5 ms), not read off the wall clock, and the answer always comes from a look: a poller
/// kept off the cooperative pool (the suites beside it block its threads on subprocesses and
/// sockets) uses none of it up, and is never told "no" because time passed while it was not
/// looking: in a full run a test looked once before its listener held a request, next after
/// its 60 s had gone, and failed (HTTPListenerTests, 121 s for a test of 0.1 s).
public func eventually(
    _ what: @autoclosure () -> String = "the condition", limitSeconds: Double = 60, _ condition: () async throws -> Bool
) async throws -> Bool {
    let pauseNanoseconds: UInt64 = 5_000_000
    let looksMax = max(1, Int(limitSeconds * 1e9 / Double(pauseNanoseconds)))
    for _ in 1..<looksMax {
        if try await condition() { return true }
        try await Task.sleep(nanoseconds: pauseNanoseconds)
    }
    return try await condition()
}
