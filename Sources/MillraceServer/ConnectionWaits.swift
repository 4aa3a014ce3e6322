import MillraceFormat

/// The requests of one connection that wait for something other than the storage (long-poll
/// fetches), each with what cancels it and what makes it answer now. When the connection
/// goes, `cancelAll` cancels them at once: their waiters leave `FetchWaiters` and their timers
/// stop, instead of waiting out their deadlines for a peer that is gone. When the broker
/// drains, `answerAll` has them answer with what there is, so a stop does not wait for them.
final class ConnectionWaits: Sendable {
    /// What a request registering finds.
    enum Registration: Equatable {
        /// Registered; wait.
        case waiting(token: Int)
        /// Registered, but the connection is draining: answer now.
        case answerNow(token: Int)
        /// The connection is gone: not registered; finish at once.
        case gone
    }

    private struct Waiter {
        var cancel: @Sendable () -> Void
        var answerNow: @Sendable () -> Void
    }

    private struct State {
        var nextToken = 0
        var waiters: [Int: Waiter] = [:]
        var draining = false
        var cancelled = false
    }

    private let state = Locked(State())

    func add(cancel: @escaping @Sendable () -> Void, answerNow: @escaping @Sendable () -> Void) -> Registration {
        state.withLock { state in
            guard !state.cancelled else { return .gone }
            state.nextToken += 1
            state.waiters[state.nextToken] = Waiter(cancel: cancel, answerNow: answerNow)
            return state.draining ? .answerNow(token: state.nextToken) : .waiting(token: state.nextToken)
        }
    }

    /// The request finished by itself.
    func remove(_ token: Int) {
        _ = state.withLock { $0.waiters.removeValue(forKey: token) }
    }

    /// Requests waiting now.
    var count: Int { state.withLock { $0.waiters.count } }

    /// Has every waiting request answer now, and any added later.
    func answerAll() {
        let waiters = state.withLock { state in
            state.draining = true
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.answerNow() }
    }

    /// Cancels every waiting request, and any added later.
    func cancelAll() {
        let waiters = state.withLock { state in
            state.cancelled = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.cancel() }
    }
}
