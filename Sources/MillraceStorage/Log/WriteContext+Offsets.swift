import CLMDB
import MillraceFormat

extension WriteContext {

    mutating func commitOffsets(_ op: OffsetCommitOperation) throws -> Result<Void, MillraceError> {
        for commit in op.commits {
            let groupBytes = commit.group.utf8.count
            guard groupBytes > 0, groupBytes <= Limits.groupNameBytesMax else {
                return .failure(MillraceError(.invalidRequest, "group name must be 1...\(Limits.groupNameBytesMax) bytes"))
            }
            guard commit.metadata.utf8.count <= Limits.offsetMetadataBytesMax else {
                return .failure(MillraceError(.invalidRequest, "offset metadata is longer than \(Limits.offsetMetadataBytesMax) bytes"))
            }
            let id: PartitionID
            switch resolve(commit.topic, commit.partition) {
            case .failure(let error): return .failure(error)
            case .success(let resolved): id = resolved.1
            }
            let partition = try state(id)
            let end = partition.nextOffset
            guard commit.offset >= 0 else {
                return .failure(
                    MillraceError(
                        .offsetOutOfRange,
                        "cannot commit offset \(commit.offset) for \(commit.topic)/\(commit.partition): offsets are never negative (a committed offset is "
                            + "the next one to read); commit \(partition.logStartOffset) to read from the log start, \(end) to read only new records"))
            }
            guard commit.offset <= end else {
                return .failure(
                    MillraceError(
                        .offsetOutOfRange,
                        "cannot commit offset \(commit.offset) for \(commit.topic)/\(commit.partition): it is past the log end, \(end) (the offset the next "
                            + "record will get); commit at most \(end)"))
            }
        }
        for commit in op.commits {
            let key = Keys.committedOffset(group: commit.group, topic: commit.topic, partition: commit.partition)
            let value = CommittedOffsetValue.encode(offset: commit.offset, committedAtMs: nowMs, metadata: commit.metadata)
            try txn.put(databases.offsets, key, value)
        }
        return .success(())
    }
}
