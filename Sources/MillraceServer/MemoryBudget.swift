import MillraceFormat
import NIOCore

/// The broker's memory budget for bytes it holds on behalf of clients: request frames read and
/// not yet answered, and responses made and not yet written to their sockets. Each connection
/// counts its own against per-connection limits; this counts them all against broker-wide
/// ones. Past a limit a connection stops reading (TCP back-pressure) and a fetch is sized to
/// what is left, so anonymous memory stays bounded whatever clients do. Connections paused for
/// the broker-wide limit are woken when bytes are released.
final class MemoryBudget: Sendable {
    struct Limits: Sendable {
        var connectionRequestBytesMax: Int
        var connectionResponseBytesMax: Int
        var requestBytesMax: Int
        var responseBytesMax: Int
    }

    struct Usage: Sendable, Equatable {
        var requestBytes = 0
        var responseBytes = 0
    }

    let limits: Limits
    private let state = Locked<(usage: Usage, waiters: [@Sendable () -> Void])>((Usage(), []))

    init(limits: Limits) { self.limits = limits }

    var usage: Usage { state.withLock { $0.usage } }

    var isOverBudget: Bool {
        state.withLock { $0.usage.requestBytes >= limits.requestBytesMax || $0.usage.responseBytes >= limits.responseBytesMax }
    }

    /// Whether a connection holding these bytes should stop: past the broker-wide request
    /// limit if it holds request bytes, past the response limit if it holds response bytes.
    func shouldHold(requestBytes: Int, responseBytes: Int) -> Bool {
        state.withLock {
            (requestBytes > 0 && $0.usage.requestBytes >= limits.requestBytesMax)
                || (responseBytes > 0 && $0.usage.responseBytes >= limits.responseBytesMax)
        }
    }

    /// Response bytes still free broker-wide.
    var responseBytesAvailable: Int { state.withLock { max(0, limits.responseBytesMax - $0.usage.responseBytes) } }

    /// For a connection that holds nothing: room for one whole batch even past the broker-wide
    /// limit, from a pool of `floorPoolBytes` above it, so clients that read their answers are
    /// served while others that do not hold the budget (until they are closed as stalled).
    var responseFloorAvailable: Int {
        state.withLock { max(0, min(Self.floorBytes, limits.responseBytesMax + Self.floorPoolBytes - $0.usage.responseBytes)) }
    }

    /// One whole batch with the response around it.
    static let floorBytes = MillraceFormat.Limits.batchBytesMax + (64 << 10)
    /// How far past the broker-wide response limit floor grants may go in all.
    static let floorPoolBytes = 16 << 20

    func add(requestBytes: Int = 0, responseBytes: Int = 0) {
        state.withLock {
            $0.usage.requestBytes += requestBytes
            $0.usage.responseBytes += responseBytes
        }
    }

    func release(requestBytes: Int = 0, responseBytes: Int = 0) {
        let wake = state.withLock { state -> [@Sendable () -> Void] in
            state.usage.requestBytes -= requestBytes
            state.usage.responseBytes -= responseBytes
            guard !state.waiters.isEmpty, state.usage.requestBytes < limits.requestBytesMax, state.usage.responseBytes < limits.responseBytesMax else {
                return []
            }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in wake { waiter() }
    }

    /// Calls `wake` once usage is back under the broker-wide limits (at once if it is).
    func whenUnderBudget(_ wake: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.usage.requestBytes < limits.requestBytesMax && state.usage.responseBytes < limits.responseBytesMax { return true }
            state.waiters.append(wake)
            return false
        }
        if now { wake() }
    }
}
