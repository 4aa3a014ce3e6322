/// The retention rule, apart from any storage: given the oldest batch of a partition, does
/// it go? Time is injected, never read here.
public enum RetentionPolicy {
    /// - Parameters:
    ///   - batchMaxTimestamp: the newest timestamp in the batch.
    ///   - batchBytes: the batch's stored size.
    ///   - partitionBytes: the partition's stored size, this batch included.
    ///   - nowMs: the current time.
    /// Time: the batch goes once its newest record is older than `retentionMs`. Bytes (Kafka's
    /// rule): the batch goes if the partition still holds at least `retentionBytes` without it.
    public static func shouldDelete(
        batchMaxTimestamp: Int64, batchBytes: Int64, partitionBytes: Int64, config: TopicConfig, nowMs: Int64
    ) -> Bool {
        if let retentionMs = config.retentionMs, batchMaxTimestamp < nowMs - retentionMs {
            return true
        }
        if let retentionBytes = config.retentionBytes, partitionBytes - batchBytes >= retentionBytes {
            return true
        }
        return false
    }
}
