/// Exponential backoff with jitter for reconnects: each delay doubles from `min` up to `max`,
/// and is drawn uniformly from its upper half so that many clients that lost the same broker
/// do not come back in step. Pure: the random source is injected.
public struct Backoff: Sendable {
    /// The first wait.
    public let min: Duration
    /// The longest wait.
    public let max: Duration
    public private(set) var attempts = 0

    public init(min: Duration, max: Duration) {
        self.min = min
        self.max = Swift.max(min, max)
    }

    /// The wait before the next attempt.
    public mutating func next<R: RandomNumberGenerator>(using random: inout R) -> Duration {
        let ceiling = Swift.min(max, min * (1 << Swift.min(attempts, 30)))
        attempts += 1
        let nanoseconds = Self.nanoseconds(ceiling)
        let half = nanoseconds / 2
        return .nanoseconds(half + (nanoseconds - half > 0 ? Int64.random(in: 0...(nanoseconds - half), using: &random) : 0))
    }

    public mutating func next() -> Duration {
        var random = SystemRandomNumberGenerator()
        return next(using: &random)
    }

    public mutating func reset() { attempts = 0 }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

import MillraceFormat

extension ErrorCode {
    /// Failures of the connection rather than of the request: a follower reconnects and tries
    /// again. `storage_closed` is a broker shutting down.
    public var isReconnectable: Bool {
        self == .networkError || self == .requestTimedOut || self == .storageClosed
    }
}
