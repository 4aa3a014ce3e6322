extension RecordBatch {
    /// `batch` as a client without the topic's dictionaries can read it: when its records
    /// section is zstd compressed with a dictionary, decompressed with it and compressed again
    /// without one, the batch's length and CRC computed again (every other field stays); nil
    /// when the batch needs no change. docs/PROTOCOL.md, "How a dictionary travels".
    public static func withoutDictionary(_ batch: UnsafeRawBufferPointer) throws -> [UInt8]? {
        guard batch.count > RecordBatchLayout.headerBytes else { return nil }
        let attributes = RecordBatchAttributes(rawValue: Int16(batch[RecordBatchLayout.attributesAt]) << 8 | Int16(batch[RecordBatchLayout.attributesAt + 1]))
        guard attributes.codec == .zstd else { return nil }
        let section = UnsafeRawBufferPointer(rebasing: batch[RecordBatchLayout.recordsAt...])
        guard let ids = Zstd.frameDictionaryIDs(section), ids.contains(where: { $0 != 0 }) else { return nil }
        let plain = try Zstd.decompress(section, maxBytes: Limits.decompressedBatchBytesMax)
        let recompressed = try Zstd.compress(plain)
        var rebuilt = [UInt8](batch[..<RecordBatchLayout.recordsAt])
        rebuilt.append(contentsOf: recompressed)
        let length = UInt32(rebuilt.count - RecordBatchLayout.lengthPrefixBytes)
        for index in 0..<4 { rebuilt[RecordBatchLayout.batchLengthAt + index] = UInt8(truncatingIfNeeded: length >> (24 - 8 * UInt32(index))) }
        let crc = rebuilt.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.attributesAt...])) }
        for index in 0..<4 { rebuilt[RecordBatchLayout.crcAt + index] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * UInt32(index))) }
        return rebuilt
    }
}
