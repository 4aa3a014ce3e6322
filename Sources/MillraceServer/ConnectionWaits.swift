import NIOConcurrencyHelpers

/// The requests of one connection that wait for something other than the storage (long-poll
/// fetches), each with what cancels it. When the connection goes, `cancelAll` cancels them
/// at once: their waiters leave `FetchWaiters` and their timers stop, instead of waiting out
/// their deadlines for a peer that is gone.
final class ConnectionWaits: Sendable {
    private struct State {
        var nextToken = 0
        var cancels: [Int: @Sendable () -> Void] = [:]
        var cancelled = false
    }

    private let state = NIOLockedValueBox(State())

    /// Registers `cancel`; returns a token for `remove`, or nil when the connection is gone
    /// already (then `cancel` has not been called: the caller finishes at once).
    func add(_ cancel: @escaping @Sendable () -> Void) -> Int? {
        state.withLockedValue { state in
            guard !state.cancelled else { return nil }
            state.nextToken += 1
            state.cancels[state.nextToken] = cancel
            return state.nextToken
        }
    }

    /// The request finished by itself.
    func remove(_ token: Int) {
        _ = state.withLockedValue { $0.cancels.removeValue(forKey: token) }
    }

    /// Requests waiting now.
    var count: Int { state.withLockedValue { $0.cancels.count } }

    /// Cancels every waiting request, and any added later.
    func cancelAll() {
        let cancels = state.withLockedValue { state in
            state.cancelled = true
            defer { state.cancels = [:] }
            return Array(state.cancels.values)
        }
        for cancel in cancels { cancel() }
    }
}
