extension RecordBatch {
    /// How deep `verify` looks.
    public enum VerifyDepth: Sendable {
        /// Length, magic, CRC, codec and counts: enough to store or serve the bytes.
        case header
        /// Also every record's framing (decompressing if needed): what append checks.
        case records
    }

    /// Checks that `bytes` are exactly one well-formed RecordBatch v2 and returns its header.
    /// Throws `corruptBatch`, `unsupportedCodec`, `invalidRecordCount`, `keyTooLarge` or
    /// `batchTooLarge` with a message that says what is wrong.
    @discardableResult
    public static func verify(_ bytes: UnsafeRawBufferPointer, depth: VerifyDepth = .header) throws -> RecordBatchHeader {
        guard bytes.count >= RecordBatchLayout.headerBytes else {
            throw MillraceError(.corruptBatch, "batch is \(bytes.count) bytes; a RecordBatch v2 header alone is \(RecordBatchLayout.headerBytes)")
        }
        let header = try RecordBatchHeader(parsing: bytes)
        guard header.magic == RecordBatchLayout.magic else {
            throw MillraceError(.corruptBatch, "magic byte is \(header.magic); only RecordBatch v2 (magic 2) is accepted")
        }
        guard header.batchLength >= 0, header.totalBytes == bytes.count else {
            throw MillraceError(.corruptBatch, "batchLength \(header.batchLength) does not match the \(bytes.count) bytes received")
        }
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.attributesAt...]))
        guard crc == header.crc else {
            throw MillraceError(.corruptBatch, "CRC-32C mismatch: header says \(hex(header.crc)), bytes give \(hex(crc))")
        }
        guard let codec = header.attributes.codec, codec.isSupported else {
            throw MillraceError(.unsupportedCodec, "codec bits \(header.attributes.rawValue & 7) are not supported; use none or zstd")
        }
        guard header.recordCount > 0, header.recordCount <= Limits.recordsPerBatchMax else {
            throw MillraceError(.invalidRecordCount, "batch holds \(header.recordCount) records; 1...\(Limits.recordsPerBatchMax) are allowed")
        }
        guard header.lastOffsetDelta == header.recordCount - 1 else {
            throw MillraceError(.corruptBatch, "lastOffsetDelta \(header.lastOffsetDelta) does not match \(header.recordCount) records")
        }
        if depth == .records {
            try forEachRecord(in: bytes, header: header) { _, _ in }
        }
        return header
    }

    @discardableResult
    public static func verify(_ bytes: [UInt8], depth: VerifyDepth = .header) throws -> RecordBatchHeader {
        try bytes.withUnsafeBytes { try verify($0, depth: depth) }
    }

    /// The record count a batch's header states (0 when the header does not parse).
    public static func recordCount(of bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { raw in (try? RecordBatchHeader(parsing: raw)).map { Int($0.recordCount) } ?? 0 }
    }

    /// Stores `offset` as the batch's base offset. The field is outside the CRC.
    public static func patchBaseOffset(_ offset: Int64, in bytes: UnsafeMutableRawBufferPointer) {
        precondition(bytes.count >= RecordBatchLayout.headerBytes)
        bytes.storeBytes(of: offset.bigEndian, toByteOffset: RecordBatchLayout.baseOffsetAt, as: Int64.self)
    }

    /// Marks the batch as stamped with the broker's clock (LogAppendTime) at `timestamp` and
    /// recomputes the CRC, as Kafka's broker does.
    public static func stampLogAppendTime(_ timestamp: Int64, in bytes: UnsafeMutableRawBufferPointer) {
        precondition(bytes.count >= RecordBatchLayout.headerBytes)
        let raw = Int16(bigEndian: bytes.loadUnaligned(fromByteOffset: RecordBatchLayout.attributesAt, as: Int16.self))
        let attributes = RecordBatchAttributes(rawValue: raw).with(timestampType: .logAppend)
        bytes.storeBytes(of: attributes.rawValue.bigEndian, toByteOffset: RecordBatchLayout.attributesAt, as: Int16.self)
        bytes.storeBytes(of: timestamp.bigEndian, toByteOffset: RecordBatchLayout.maxTimestampAt, as: Int64.self)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.attributesAt...]))
        bytes.storeBytes(of: crc.bigEndian, toByteOffset: RecordBatchLayout.crcAt, as: UInt32.self)
    }

    /// The timestamp of each record: the batch's max timestamp under LogAppendTime, otherwise
    /// base timestamp plus the record's delta.
    public static func recordTimestamp(header: RecordBatchHeader, timestampDelta: Int64) -> Int64 {
        header.attributes.timestampType == .logAppend ? header.maxTimestamp : header.baseTimestamp &+ timestampDelta
    }
}

func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
