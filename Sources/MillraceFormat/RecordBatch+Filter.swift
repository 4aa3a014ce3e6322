extension RecordBatch {
    /// The batch again with only the records `keep` marks, renumbered from offset delta 0,
    /// without decoding them: each kept record's bytes are copied with only its offset delta
    /// (and length) rewritten, then the header's counts and CRC are set again. The maximum
    /// timestamp stays as sent (an upper bound, as after Kafka's compaction). A compressed
    /// batch is decoded and encoded again. Nil when no record is kept. `verified` is the
    /// header of a batch already checked with `verify` (its CRC is not computed again);
    /// without it the batch is verified here.
    public static func keeping(_ keep: [Bool], of bytes: [UInt8], verified: RecordBatchHeader? = nil) throws -> [UInt8]? {
        guard keep.contains(true) else { return nil }
        let header = try verified ?? bytes.withUnsafeBytes { try RecordBatch.verify($0) }
        guard header.totalBytes == bytes.count else {
            throw MillraceError(.corruptBatch, "batch is \(bytes.count) bytes; its header says \(header.totalBytes)")
        }
        guard keep.count == Int(header.recordCount) else {
            throw MillraceError(.invalidRecordCount, "\(keep.count) records marked for a batch of \(header.recordCount)")
        }
        guard header.attributes.codec == CompressionCodec.none else {
            var batch = try decode(bytes)
            batch.records = batch.records.enumerated().filter { keep[$0.offset] }.map(\.element)
            for position in batch.records.indices { batch.records[position].offsetDelta = Int32(position) }
            return try batch.encoded()
        }
        var writer = ByteWriter(capacity: bytes.count)
        writer.writeBytes(bytes[..<RecordBatchLayout.recordsAt])
        var kept: Int32 = 0
        try bytes.withUnsafeBytes { raw in
            var reader = ByteReader(UnsafeRawBufferPointer(rebasing: raw[RecordBatchLayout.recordsAt...]))
            for index in 0..<Int(header.recordCount) {
                let length = Int(try reader.readVarint32("record length"))
                let start = reader.index
                let attributes: Int8 = try reader.readInteger("record attributes")
                let timestampStart = reader.index
                _ = try reader.readVarint("timestampDelta")
                let timestampEnd = reader.index
                _ = try reader.readVarint32("offsetDelta")
                let restStart = reader.index
                let end = start + length
                guard end >= restStart, end <= reader.index + reader.remaining else {
                    throw MillraceError(.corruptBatch, "record \(index) claims \(length) bytes")
                }
                _ = try reader.readBytes(end - restStart, "record")
                guard keep[index] else { continue }
                let section = RecordBatchLayout.recordsAt
                let newLength = length - (restStart - timestampEnd) + ByteWriter.varintSize(Int64(kept))
                writer.writeVarint(Int64(newLength))
                writer.writeInteger(attributes)
                writer.writeBytes(raw[(section + timestampStart)..<(section + timestampEnd)])
                writer.writeVarint(Int64(kept))
                writer.writeBytes(raw[(section + restStart)..<(section + end)])
                kept += 1
            }
        }
        writer.setInteger(kept - 1, at: RecordBatchLayout.lastOffsetDeltaAt)
        writer.setInteger(kept, at: RecordBatchLayout.recordCountAt)
        writer.setInteger(Int32(writer.bytes.count - RecordBatchLayout.lengthPrefixBytes), at: RecordBatchLayout.batchLengthAt)
        let crc = writer.bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.attributesAt...])) }
        writer.setInteger(crc, at: RecordBatchLayout.crcAt)
        return writer.bytes
    }
}
