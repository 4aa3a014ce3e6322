extension RecordBatch {
    /// Encodes the batch in RecordBatch v2 layout, compressing the records section with the
    /// attributes' codec and computing the CRC. Throws for codecs Millrace does not write.
    /// With zstd, `dictionary` names a trained dictionary (`ZstdDictionaries`) to compress
    /// with: the batch stays standard RecordBatch v2 and the zstd frame carries the id.
    public func encoded(compressionLevel: Int32 = 3, dictionary: UInt32? = nil) throws -> [UInt8] {
        guard let codec = attributes.codec, codec.isSupported else {
            throw MillraceError(.unsupportedCodec, "codec bits \(attributes.rawValue & 7) are not supported; use none or zstd")
        }
        var recordsSection = ByteWriter(capacity: records.reduce(0) { $0 + 16 + ($1.key?.count ?? 0) + ($1.value?.count ?? 0) })
        for record in records { Self.encode(record, into: &recordsSection) }

        var writer = ByteWriter(capacity: RecordBatchLayout.headerBytes + recordsSection.bytes.count)
        writer.writeInteger(baseOffset)
        writer.writeInteger(Int32(0))  // batchLength, set below
        writer.writeInteger(partitionLeaderEpoch)
        writer.writeInteger(RecordBatchLayout.magic)
        writer.writeInteger(UInt32(0))  // crc, set below
        writer.writeInteger(attributes.rawValue)
        writer.writeInteger(Int32(records.last.map { Int($0.offsetDelta) } ?? -1))
        writer.writeInteger(baseTimestamp)
        writer.writeInteger(maxTimestamp)
        writer.writeInteger(producerId)
        writer.writeInteger(producerEpoch)
        writer.writeInteger(baseSequence)
        writer.writeInteger(Int32(records.count))
        switch codec {
        case .zstd: writer.writeBytes(try Zstd.compress(recordsSection.bytes, level: compressionLevel, dictionary: dictionary))
        case .none, .gzip, .snappy, .lz4: writer.writeBytes(recordsSection.bytes)
        }
        writer.setInteger(Int32(writer.bytes.count - RecordBatchLayout.lengthPrefixBytes), at: RecordBatchLayout.batchLengthAt)
        let crc = writer.bytes.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.attributesAt...]))
        }
        writer.setInteger(crc, at: RecordBatchLayout.crcAt)
        return writer.bytes
    }

    /// The most bytes `record` can take in an uncompressed batch's records section, whatever
    /// its timestamp and offset deltas turn out to be: what a packer adds up to keep each
    /// batch it builds within `Limits.batchBytesMax`.
    public static func encodedBytesMax(_ record: Record) -> Int {
        let deltasMax = ByteWriter.varintSize(Int64.min) + ByteWriter.varintSize(Int64(Int32.min))
        let body = 1 + deltasMax + fieldsSize(record)
        return ByteWriter.varintSize(Int64(body)) + body
    }

    private static func fieldsSize(_ record: Record) -> Int {
        var body = lengthPrefixedSize(record.key.map { $0.count })
        body += lengthPrefixedSize(record.value.map { $0.count })
        body += ByteWriter.varintSize(Int64(record.headers.count))
        for header in record.headers {
            body += lengthPrefixedSize(header.key.utf8.count) + lengthPrefixedSize(header.value.map { $0.count })
        }
        return body
    }

    static func encode(_ record: Record, into writer: inout ByteWriter) {
        let body = 1 + ByteWriter.varintSize(record.timestampDelta) + ByteWriter.varintSize(Int64(record.offsetDelta)) + fieldsSize(record)
        writer.writeVarint(Int64(body))
        writer.writeInteger(record.attributes)
        writer.writeVarint(record.timestampDelta)
        writer.writeVarint(Int64(record.offsetDelta))
        writeLengthPrefixed(record.key, into: &writer)
        writeLengthPrefixed(record.value, into: &writer)
        writer.writeVarint(Int64(record.headers.count))
        for header in record.headers {
            writeLengthPrefixed(Array(header.key.utf8), into: &writer)
            writeLengthPrefixed(header.value, into: &writer)
        }
    }

    private static func lengthPrefixedSize(_ count: Int?) -> Int {
        guard let count else { return ByteWriter.varintSize(-1) }
        return ByteWriter.varintSize(Int64(count)) + count
    }

    private static func writeLengthPrefixed(_ bytes: [UInt8]?, into writer: inout ByteWriter) {
        guard let bytes else { return writer.writeVarint(-1) }
        writer.writeVarint(Int64(bytes.count))
        writer.writeBytes(bytes)
    }
}
