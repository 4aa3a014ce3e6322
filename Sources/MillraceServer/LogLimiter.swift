import MillraceFormat

/// Keeps a log from flooding when a peer can cause its lines (garbage frames, resets): each
/// kind of line goes through at most once per interval, and the next one that does says
/// how many were held back.
public final class LogLimiter: Sendable {
    private let state = Locked<[String: (lastMs: Int64, held: Int)]>([:])
    private let intervalMs: Int64
    private let clock: any MillraceClock

    public init(intervalMs: Int64 = 1_000, clock: any MillraceClock) {
        self.intervalMs = intervalMs
        self.clock = clock
    }

    /// Whether a line of `kind` may go out now; if so, " (N more like it held back)" or "".
    public func allow(_ kind: String) -> String? {
        let now = clock.nowMilliseconds()
        return state.withLock { state -> String? in
            if let last = state[kind], now - last.lastMs < intervalMs {
                state[kind]?.held += 1
                return nil
            }
            let held = state[kind]?.held ?? 0
            state[kind] = (now, 0)
            if state.count > 1_024 { state = state.filter { now - $0.value.lastMs < intervalMs } }
            return held == 0 ? "" : " (\(held) more like it in the last \(max(1, intervalMs / 1_000)) s held back)"
        }
    }
}

/// Text a peer chose (a client id, a mechanism's name), made safe for one log line: unsafe
/// scalars (`Unicode.Scalar.isUnsafeInText`) become `?`, and at most `max` are kept.
enum LogText {
    static func printable(_ text: String, max: Int = 128) -> String { text.printable(max: max) }
}
