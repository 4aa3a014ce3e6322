import MillraceFormat
import MillraceStorage

/// Long-poll fetches waiting for new records, by partition. The storage's commit observer
/// wakes them with the partitions whose ends moved; nothing polls. A waiter named by several
/// of a commit's partitions is woken once, with those partitions.
final class FetchWaiters: Sendable {
    typealias Wake = @Sendable (Set<TopicPartition>) -> Void

    private struct State {
        var nextToken = 0
        var waiters: [TopicPartition: [Int: Wake]] = [:]
        var partitionsByToken: [Int: [TopicPartition]] = [:]
    }

    private let state = Locked(State())

    /// Registers `wake` for every partition in `partitions`; returns a token for `remove`.
    func add(_ partitions: [TopicPartition], wake: @escaping Wake) -> Int {
        state.withLock { state in
            state.nextToken += 1
            for partition in partitions { state.waiters[partition, default: [:]][state.nextToken] = wake }
            state.partitionsByToken[state.nextToken] = partitions
            return state.nextToken
        }
    }

    func remove(_ token: Int) {
        state.withLock { state in
            for partition in state.partitionsByToken.removeValue(forKey: token) ?? [] {
                state.waiters[partition]?[token] = nil
                if state.waiters[partition]?.isEmpty == true { state.waiters[partition] = nil }
            }
        }
    }

    /// Fetches waiting now.
    var count: Int { state.withLock { $0.partitionsByToken.count } }

    /// Called on the writer thread after a commit, with the partitions it appended to.
    func wake(_ partitions: Set<TopicPartition>) {
        let wakes = state.withLock { state -> [Int: (Wake, Set<TopicPartition>)] in
            var wakes: [Int: (Wake, Set<TopicPartition>)] = [:]
            for partition in partitions {
                for (token, wake) in state.waiters[partition] ?? [:] { wakes[token, default: (wake, [])].1.insert(partition) }
            }
            return wakes
        }
        for (wake, moved) in wakes.values { wake(moved) }
    }
}
