import CLMDB
import MillraceFormat

/// What a run database holds of runs, as read on opening.
struct LoadedRuns {
    /// Every run with its owner, in id order.
    var runs: [(owner: UInt32, run: RunMeta)] = []
    /// The first id no run has taken (1 when there is none).
    var nextRunID: UInt64 = 1
}

extension RunSet {
    /// Reads every run header and the stored next run id (`RunKeys`) in `dbi.runs`, for dedup
    /// and the key index alike. Every other key is what the owner keeps beside its runs:
    /// `other` gets its owner, its tag, a reader of the rest of the key, and its value.
    static func load(
        txn: LMDBTransaction, dbi: RunDatabases,
        other: (_ owner: UInt32, _ tag: UInt8, _ key: inout ByteReader, _ value: UnsafeRawBufferPointer) throws -> Void
    ) throws -> LoadedRuns {
        var loaded = LoadedRuns()
        try txn.forEach(dbi.runs) { entry in
            var key = ByteReader(entry.key)
            let owner: UInt32 = try key.readInteger("run owner")
            let tag: UInt8 = try key.readInteger("run key tag")
            switch tag {
            case RunKeys.nextRunTag where owner == 0:
                var value = ByteReader(entry.value)
                loaded.nextRunID = max(loaded.nextRunID, try value.readInteger("next run id"))
            case RunKeys.runTag:
                let runID: UInt64 = try key.readInteger("run id")
                let header = try RunHeader(parsing: entry.value, as: Layout.self)
                loaded.runs.append((owner, RunMeta(id: runID, header: header)))
                loaded.nextRunID = max(loaded.nextRunID, runID + 1)
            default:
                try other(owner, tag, &key, entry.value)
            }
        }
        loaded.runs.sort { $0.run.id < $1.run.id }
        return loaded
    }
}
