import MillraceFormat
import MillraceStorage
import MillraceWire

/// Parking invalid records in `<topic>.quarantine`: each record with headers naming its
/// error, packed into as many batches as the batch limits need. The batches go to storage in
/// one append, so they are written in one transaction: all parked, or none.
extension RequestDispatcher {
    /// A partition's invalid records made ready for the quarantine.
    struct Parking: Sendable {
        /// In order, each within `batchBytesMax` and `recordsPerBatchMax`.
        var batches: [[UInt8]] = []
        /// The records' business-key hashes, split as the batches are (if the topic has
        /// duplicate detection: the quarantine stores a key once, as the topic does).
        var hashes: [[DedupHash?]]?
        /// Records per batch.
        var counts: [Int] = []
    }

    /// The invalid records, each with its original key, value, headers and timestamp plus
    /// headers naming the error, the schema version and the source (their text bounded, so
    /// they add at most `quarantineHeadersBytesMax`). A record whose batch of its own would
    /// pass `batchBytesMax` is compressed with zstd; one that still does not fit cannot be
    /// parked, and the partition is refused with a reason naming it.
    static func quarantineBatches(
        _ invalid: [(batch: Int, record: Int, outcome: RecordOutcome)], hashes: [DedupHash?]?, from batches: [RecordBatch], topic: String,
        partition: Int32
    ) throws -> Parking {
        var parking = Parking()
        if hashes != nil { parking.hashes = [] }
        var pending: [(record: Record, timestamp: Int64, index: Int32)] = []
        var pendingHashes: [DedupHash?] = []
        var pendingBytes = 0
        var span: (min: Int64, max: Int64) = (0, 0)
        func flush() throws {
            guard !pending.isEmpty else { return }
            parking.batches.append(try parkedBatch(pending))
            parking.counts.append(pending.count)
            parking.hashes?.append(pendingHashes)
            (pending, pendingHashes, pendingBytes) = ([], [], 0)
        }
        for (position, item) in invalid.enumerated() {
            let batch = batches[item.batch]
            let original = batch.records[item.record]
            // A peer's timestamps can be anything: kept as sent when they add up, else the batch's.
            let (sum, overflow) = batch.baseTimestamp.addingReportingOverflow(original.timestampDelta)
            let timestamp = overflow ? batch.baseTimestamp : sum
            let record = parkedRecord(original, item.outcome, topic: topic, partition: partition)
            let bytes = RecordBatch.encodedBytesMax(record)
            let widened = pending.isEmpty ? (timestamp, timestamp) : (min(span.min, timestamp), max(span.max, timestamp))
            if pendingBytes + bytes > Limits.batchBytesMax - RecordBatchLayout.headerBytes || pending.count == Limits.recordsPerBatchMax
                || widened.1.subtractingReportingOverflow(widened.0).overflow
            {
                try flush()
            }
            span = pending.isEmpty ? (timestamp, timestamp) : (min(span.min, timestamp), max(span.max, timestamp))
            pending.append((record, timestamp, item.outcome.index))
            pendingBytes += bytes
            if let hashes { pendingHashes.append(hashes.indices.contains(position) ? hashes[position] : nil) }
        }
        try flush()
        return parking
    }

    /// The record with the error headers added, each bounded: the reason's path, rule and
    /// message are cut at a character boundary to the limits an answer uses.
    static func parkedRecord(_ original: Record, _ outcome: RecordOutcome, topic: String, partition: Int32) -> Record {
        var shown = outcome
        shown.path = String(decoding: Array(outcome.path.clippedUTF8(maxBytes: Limits.outcomePathBytesMax)), as: UTF8.self)
        shown.rule = String(decoding: Array(outcome.rule.clippedUTF8(maxBytes: Limits.outcomeRuleBytesMax)), as: UTF8.self)
        shown.message = String(decoding: Array(outcome.message.clippedUTF8(maxBytes: Limits.outcomeMessageBytesMax)), as: UTF8.self)
        var record = original
        record.headers += [
            RecordHeader(key: "millrace-error", value: Array(shown.description.utf8)),
            RecordHeader(key: "millrace-error-path", value: Array(shown.path.utf8)),
            RecordHeader(key: "millrace-error-rule", value: Array(shown.rule.utf8)),
            RecordHeader(key: "millrace-source-topic", value: Array(topic.utf8)),
            RecordHeader(key: "millrace-source-partition", value: Array(String(partition).utf8)),
        ]
        if outcome.schemaVersion > 0, !original.headers.contains(where: { $0.key == schemaVersionHeader }) {
            record.headers.append(RecordHeader(key: schemaVersionHeader, value: Array(String(outcome.schemaVersion).utf8)))
        }
        return record
    }

    /// One quarantine batch of records whose timestamps differ by no more than an Int64 holds.
    private static func parkedBatch(_ pending: [(record: Record, timestamp: Int64, index: Int32)]) throws -> [UInt8] {
        let base = pending.map(\.timestamp).min() ?? 0
        let records = pending.enumerated().map { position, item in
            var record = item.record
            record.offsetDelta = Int32(position)
            record.timestampDelta = item.timestamp &- base
            return record
        }
        let plain = try RecordBatch(baseTimestamp: base, records: records).encoded()
        guard plain.count > Limits.batchBytesMax else { return plain }
        // Only a record too large for a batch of its own gets here (the packing keeps
        // several within the limit): as it came, compressed, it may well have been.
        let compressed = try RecordBatch(attributes: .init(codec: .zstd), baseTimestamp: base, records: records).encoded()
        guard compressed.count > Limits.batchBytesMax else { return compressed }
        let index = pending.first?.index ?? -1
        throw MillraceError(
            .batchTooLarge,
            "record \(index) breaks the schema and cannot be parked: with its error headers it takes \(plain.count) bytes (\(compressed.count) compressed), and a batch holds at most \(Limits.batchBytesMax) (batchBytesMax); nothing of the partition was appended")
    }

    /// Where each parked record is: the quarantine's new records take the offsets in order;
    /// one whose key the quarantine held is answered with the place of the record parked
    /// first. Also how many were parked just now (the others were parked before).
    static func parkedOutcomes(_ outcomes: [RecordOutcome], _ quarantined: AppendResult, counts: [Int]) -> (outcomes: [RecordOutcome], parked: Int) {
        var starts: [Int] = []
        var start = 0
        for count in counts {
            starts.append(start)
            start += count
        }
        let originals = Dictionary(
            quarantined.duplicates.map { ((starts.indices.contains($0.batch) ? starts[$0.batch] : 0) + $0.record, $0.offset) }, uniquingKeysWith: { first, _ in first })
        var next = quarantined.baseOffset
        var parked = 0
        let placed = outcomes.enumerated().map { position, outcome in
            var outcome = outcome
            outcome.kind = .quarantined
            if let original = originals[position] {
                outcome.offset = original
            } else {
                outcome.offset = next
                next += 1
                parked += 1
            }
            return outcome
        }
        return (placed, parked)
    }
}
