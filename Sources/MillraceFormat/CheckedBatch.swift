/// A RecordBatch v2 checked whole — length, magic, CRC, codec, counts, size and every record's
/// framing (decompressed if it is compressed) — with its parsed header. It is made only by
/// checking, so what takes one (storage's append) need not check again: a produce's batches
/// are checked once, wherever that happens (docs/DECISIONS.md, "Batch checks off the event
/// loop").
public struct CheckedBatch: Sendable {
    public let bytes: [UInt8]
    public let header: RecordBatchHeader

    /// Checks `bytes`. Throws `batchTooLarge`, `corruptBatch`, `unsupportedCodec`,
    /// `invalidRecordCount` or `keyTooLarge`, with a message that says what is wrong.
    public init(checking bytes: [UInt8]) throws {
        try self.init(checking: bytes) { _, _ in }
    }

    /// Checks `bytes` as `init(checking:)` does, handing each record to `body` on the way: the
    /// one walk over the records (and the one decompression) both checks and reads them. An
    /// error `body` throws ends the check with it.
    public init(
        checking bytes: [UInt8], decodeHeaders: Bool = false, findHeader: [UInt8]? = nil, eachRecord body: (RecordView, [RecordHeader]) throws -> Void
    ) throws {
        guard bytes.count <= Limits.batchBytesMax else {
            throw MillraceError(.batchTooLarge, "batch is \(bytes.count) bytes; the limit is \(Limits.batchBytesMax)")
        }
        header = try bytes.withUnsafeBytes { raw in
            let header = try RecordBatch.verify(raw, depth: .header)
            try RecordBatch.forEachRecord(in: raw, header: header, decodeHeaders: decodeHeaders, findHeader: findHeader, body)
            return header
        }
        self.bytes = bytes
    }

    /// Checks each of `batches` (at least one) for an append of them all: the first that fails
    /// fails the whole, named by its place when there are several ("batch 2 of 3: …; none of
    /// the 3 was appended").
    public static func checkAll(_ batches: [[UInt8]]) -> Result<[CheckedBatch], MillraceError> {
        guard !batches.isEmpty else { return .failure(MillraceError(.invalidRecordCount, "no record batches to append")) }
        var checked: [CheckedBatch] = []
        checked.reserveCapacity(batches.count)
        for (index, batch) in batches.enumerated() {
            do {
                checked.append(try CheckedBatch(checking: batch))
            } catch {
                return .failure(placed(error, batch: index, of: batches.count))
            }
        }
        return .success(checked)
    }

    /// `error` (any error of a check) as a `MillraceError`, naming the batch when it is one of
    /// several.
    public static func placed(_ error: any Error, batch index: Int, of count: Int) -> MillraceError {
        let error = error as? MillraceError ?? MillraceError(.corruptBatch, "\(error)")
        guard count > 1 else { return error }
        return MillraceError(error.code, "batch \(index + 1) of \(count): \(error.message); none of the \(count) was appended")
    }
}
