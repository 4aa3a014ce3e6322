import MillraceFormat
import MillraceStorage
import NIOConcurrencyHelpers

/// Long-poll fetches waiting for new records, by partition. The storage's commit observer
/// wakes them; nothing polls.
final class FetchWaiters: Sendable {
    private struct State {
        var nextToken = 0
        var waiters: [TopicPartition: [Int: @Sendable () -> Void]] = [:]
    }

    private let state = NIOLockedValueBox(State())

    /// Registers `wake` for every partition in `partitions`; returns a token for `remove`.
    func add(_ partitions: [TopicPartition], wake: @escaping @Sendable () -> Void) -> Int {
        state.withLockedValue { state in
            state.nextToken += 1
            for partition in partitions { state.waiters[partition, default: [:]][state.nextToken] = wake }
            return state.nextToken
        }
    }

    func remove(_ token: Int, _ partitions: [TopicPartition]) {
        state.withLockedValue { state in
            for partition in partitions {
                state.waiters[partition]?[token] = nil
                if state.waiters[partition]?.isEmpty == true { state.waiters[partition] = nil }
            }
        }
    }

    /// Called on the writer thread after a commit.
    func wake(_ partitions: Set<TopicPartition>) {
        let wakes = state.withLockedValue { state in partitions.flatMap { state.waiters[$0].map { Array($0.values) } ?? [] } }
        for wake in wakes { wake() }
    }
}
