import MillraceFormat

/// Per partition, produce work handed to the partition's validation lane and not yet queued
/// for the writer. A produce that could be queued straight from the event loop goes through
/// the lane too while the partition has work there, so a partition's produces reach the
/// writer in the order they arrived (an idempotent producer's sequence depends on it).
final class LaneBacklog: Sendable {
    private let counts = Locked<[TopicPartition: Int]>([:])

    /// Whether this produce goes through the lane: when it `wantsLane`, or when earlier work
    /// of the partition is still there. If so it is counted until `leave`.
    func enter(_ partition: TopicPartition, wantsLane: Bool) -> Bool {
        counts.withLock { counts in
            guard wantsLane || counts[partition] != nil else { return false }
            counts[partition, default: 0] += 1
            return true
        }
    }

    /// On the lane, once the produce is queued for the writer (or failed).
    func leave(_ partition: TopicPartition) {
        counts.withLock { counts in
            guard let count = counts[partition] else { return }
            counts[partition] = count > 1 ? count - 1 : nil
        }
    }

    /// Partitions with work on their lanes now.
    var partitions: Int { counts.withLock { $0.count } }
}
