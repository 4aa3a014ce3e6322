// The crash test's child: appends forever to a data directory and prints each
// acknowledgement, until the test kills it with SIGKILL.
//
//   millrace-crashwriter DIR ROUND
//
// Lines (each written with one write(2), so they never interleave):
//   A <partition> <baseOffset> <count> <appender> <firstSeq>   a batch is durable
//   C <appender> <partition> <offset>                           a commit of group g<appender> is durable
//   X <appender> <firstSeq> <duplicates> <count>                a resent batch was not caught whole (a failure)
// The topic catches duplicates by record key: every fourth batch is sent twice, and the
// second must come back as all duplicates. It also indexes the record key for traces.
// Record seq s of appender a in round r has key "a<a>-s<s>-r<r>" and value
// (key + ";") repeated 1 + s % 8 times.
import Glibc
import MillraceFormat
import MillraceStorage

func emit(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let round = Int(arguments[2]) else {
    emit("usage: millrace-crashwriter DIR ROUND")
    exit(2)
}
let partitions: Int32 = 3
let appenders = 6

var options = Storage.Options()
options.retentionCheckIntervalMs = nil
let storage = try Storage.open(directory: arguments[1], options: options)
do {
    _ = try await storage.createTopic("crash", partitions: partitions, config: TopicConfig(dedup: DedupPolicy(key: .recordKey), index: IndexPolicy(recordKey: true)))
} catch let error as MillraceError where error.code == .topicAlreadyExists {}
emit("READY")

@Sendable func append(_ partition: Int32, _ bytes: [UInt8], _ hashes: [[DedupHash?]]) async throws -> AppendResult {
    let indexKeys = [hashes[0].enumerated().compactMap { record, hash in hash.map { IndexKey(record: Int32(record), slot: IndexPolicy.recordKeySlot, hash: $0) } }]
    return try await withCheckedThrowingContinuation { continuation in
        storage.append(topic: "crash", partition: partition, batches: [bytes], dedupHashes: hashes, indexKeys: indexKeys) { continuation.resume(with: $0) }
    }
}

await withTaskGroup(of: Void.self) { group in
    for appender in 0..<appenders {
        group.addTask {
            let partition = Int32(appender) % partitions
            var seq = 0
            while true {
                let count = 1 + (seq * 7 + appender) % 5
                let keys = (seq..<(seq + count)).map { "a\(appender)-s\($0)-r\(round)" }
                let values = keys.enumerated().map { index, key in
                    Array(String(repeating: key + ";", count: 1 + (seq + index) % 8).utf8)
                }
                let bytes = try! RecordBatch(timestamp: 0, values: values, keys: keys.map { Array($0.utf8) }).encoded()
                let hashes: [[DedupHash?]] = [keys.map { DedupHash(Array($0.utf8)) }]
                let placed = try! await append(partition, bytes, hashes)
                emit("A \(partition) \(placed.baseOffset) \(count) \(appender) \(seq)")
                if seq % 4 == 0 {
                    let again = try! await append(partition, bytes, hashes)
                    if again.duplicates.count != count || again.baseOffset != -1 { emit("X \(appender) \(seq) \(again.duplicates.count) \(count)") }
                }
                seq += count
                if seq % 3 == 0 {
                    let offset = placed.lastOffset + 1
                    try! await storage.commitOffsets([OffsetCommit(group: "g\(appender)", topic: "crash", partition: partition, offset: offset)])
                    emit("C \(appender) \(partition) \(offset)")
                }
            }
        }
    }
}
