extension RecordBatchHeader {
    /// Parses the fixed header. Checks only that the header is all there; `RecordBatch.verify`
    /// checks the rest.
    public init(parsing bytes: UnsafeRawBufferPointer) throws {
        var reader = ByteReader(bytes)
        baseOffset = try reader.readInteger("baseOffset")
        batchLength = try reader.readInteger("batchLength")
        partitionLeaderEpoch = try reader.readInteger("partitionLeaderEpoch")
        magic = try reader.readInteger("magic")
        crc = try reader.readInteger("crc")
        attributes = RecordBatchAttributes(rawValue: try reader.readInteger("attributes"))
        lastOffsetDelta = try reader.readInteger("lastOffsetDelta")
        baseTimestamp = try reader.readInteger("baseTimestamp")
        maxTimestamp = try reader.readInteger("maxTimestamp")
        producerId = try reader.readInteger("producerId")
        producerEpoch = try reader.readInteger("producerEpoch")
        baseSequence = try reader.readInteger("baseSequence")
        recordCount = try reader.readInteger("recordCount")
    }
}

/// One record inside a batch's (decompressed) records section, without copying.
public struct RecordView {
    public var attributes: Int8
    public var timestampDelta: Int64
    public var offsetDelta: Int32
    public var key: UnsafeRawBufferPointer?
    public var value: UnsafeRawBufferPointer?
    /// The raw header section: count then key/value pairs.
    public var headerCount: Int32
    /// When `forEachRecord` was asked for a header by name: whether the record has it, and
    /// its value (nil for a null value), without decoding the other headers.
    public var foundHeader = false
    public var foundHeaderValue: UnsafeRawBufferPointer?
    /// Where the record starts (its length varint), in bytes from the start of the batch;
    /// -1 in a compressed batch (the record is in the decompressed section).
    public var position = -1
}

extension RecordBatch {
    /// Decodes a whole batch, decompressing when needed. Runs `verify` first.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> RecordBatch {
        let header = try verify(bytes)
        var records: [Record] = []
        records.reserveCapacity(Int(header.recordCount))
        try forEachRecord(in: bytes, header: header, decodeHeaders: true) { view, headers in
            records.append(
                Record(
                    timestampDelta: view.timestampDelta, offsetDelta: view.offsetDelta, key: view.key.map { Array($0) },
                    value: view.value.map { Array($0) }, headers: headers, attributes: view.attributes))
        }
        return RecordBatch(
            baseOffset: header.baseOffset, partitionLeaderEpoch: header.partitionLeaderEpoch, attributes: header.attributes,
            baseTimestamp: header.baseTimestamp, maxTimestamp: header.maxTimestamp, producerId: header.producerId,
            producerEpoch: header.producerEpoch, baseSequence: header.baseSequence, records: records)
    }

    public static func decode(_ bytes: [UInt8]) throws -> RecordBatch {
        try bytes.withUnsafeBytes { try decode($0) }
    }

    /// Walks the records of a batch whose header has been verified, decompressing the records
    /// section when a codec is set. Checks each record's framing, that offset deltas run
    /// 0, 1, 2, ... and that the count matches the header.
    /// `findHeader` names one header to look for in each record (see `RecordView.foundHeader`)
    /// when the others need not be decoded. `deltas` limits the records given to `body`: those
    /// before it are skipped by their lengths alone (not checked), those after it not read.
    public static func forEachRecord(
        in bytes: UnsafeRawBufferPointer, header: RecordBatchHeader, decodeHeaders: Bool = false, findHeader: [UInt8]? = nil,
        deltas: ClosedRange<Int32>? = nil, _ body: (RecordView, [RecordHeader]) throws -> Void
    ) throws {
        let section = UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.recordsAt...])
        switch header.attributes.codec {
        case .none?:
            try walkRecords(section, header: header, decodeHeaders: decodeHeaders, findHeader: findHeader, deltas: deltas, body)
        case .zstd?:
            let plain = try Zstd.decompress(section, maxBytes: Limits.decompressedBatchBytesMax)
            try plain.withUnsafeBytes { try walkRecords($0, header: header, decodeHeaders: decodeHeaders, findHeader: findHeader, deltas: deltas, body) }
        case .gzip?, .snappy?, .lz4?, nil:
            throw MillraceError(.unsupportedCodec, "codec bits \(header.attributes.rawValue & 7) are not supported; use none or zstd")
        }
    }

    /// Where each record of an uncompressed batch starts, in bytes from the start of the
    /// batch (nil for a compressed batch or one whose records do not frame).
    public static func recordPositions(_ bytes: UnsafeRawBufferPointer, header: RecordBatchHeader) -> [Int]? {
        guard header.attributes.codec == CompressionCodec.none, bytes.count > RecordBatchLayout.recordsAt else { return nil }
        let section = UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.recordsAt...])
        var positions: [Int] = []
        positions.reserveCapacity(Int(header.recordCount))
        var at = 0
        for _ in 0..<max(0, header.recordCount) {
            positions.append(RecordBatchLayout.recordsAt + at)
            guard let next = try? skipRecords(UnsafeRawBufferPointer(rebasing: section[at...]), count: 1) else { return nil }
            at += next
        }
        return positions
    }

    /// The record starting at `position` (from `RecordView.position`) if it is a whole record
    /// with offset delta `delta` there; nil otherwise (then read it by walking the batch).
    public static func record(at position: Int, delta: Int32, in bytes: UnsafeRawBufferPointer, header: RecordBatchHeader) -> RecordView? {
        guard header.attributes.codec == CompressionCodec.none, position >= RecordBatchLayout.recordsAt, position < bytes.count,
            delta >= 0, delta < header.recordCount
        else { return nil }
        let section = UnsafeRawBufferPointer(rebasing: bytes[position...])
        var reader = ByteReader(section)
        do {
            let length = try reader.readVarint32("record length")
            guard length >= 0, Int(length) <= reader.remaining else { return nil }
            var record = ByteReader(UnsafeRawBufferPointer(rebasing: section[..<(reader.index + Int(length))]), index: reader.index)
            let attributes: Int8 = try record.readInteger("record attributes")
            let timestampDelta = try record.readVarint("timestampDelta")
            let offsetDelta = try record.readVarint32("offsetDelta")
            guard offsetDelta == delta else { return nil }
            // A null key or value is nil here, not a failure.
            let key = try readOptionalBytes(&record, "key")
            let value = try readOptionalBytes(&record, "value")
            return RecordView(attributes: attributes, timestampDelta: timestampDelta, offsetDelta: offsetDelta, key: key, value: value, headerCount: 0, position: position)
        } catch {
            return nil
        }
    }

    /// Where record `count` starts: the records before it are stepped over by their length
    /// varints alone (zigzag, at most five bytes each), nothing else read.
    private static func skipRecords(_ section: UnsafeRawBufferPointer, count: Int) throws -> Int {
        guard count > 0, let base = section.baseAddress else { return 0 }
        var position = 0
        for record in 0..<count {
            var raw: UInt32 = 0
            var shift: UInt32 = 0
            while true {
                guard position < section.count, shift < 35 else {
                    throw MillraceError(.corruptBatch, "record \(record)'s length is cut off or longer than five bytes")
                }
                let byte = base.load(fromByteOffset: position, as: UInt8.self)
                position += 1
                raw |= UInt32(byte & 0x7F) << shift
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            let length = Int32(bitPattern: raw >> 1) ^ -Int32(bitPattern: raw & 1)
            guard length >= 0, Int(length) <= section.count - position else {
                throw MillraceError(.corruptBatch, "record \(record) claims \(length) bytes, \(section.count - position) remain")
            }
            position += Int(length)
        }
        return position
    }

    private static func walkRecords(
        _ section: UnsafeRawBufferPointer, header: RecordBatchHeader, decodeHeaders: Bool, findHeader: [UInt8]?, deltas: ClosedRange<Int32>?,
        _ body: (RecordView, [RecordHeader]) throws -> Void
    ) throws {
        let first = max(0, min(deltas?.lowerBound ?? 0, header.recordCount))
        var reader = ByteReader(section, index: try skipRecords(section, count: Int(first)))
        let compressed = header.attributes.codec != CompressionCodec.none
        for expectedDelta in first..<header.recordCount {
            if let deltas, expectedDelta > deltas.upperBound { return }
            let start = reader.index
            let length = try reader.readVarint32("record length")
            guard length >= 0, Int(length) <= reader.remaining else {
                throw MillraceError(.corruptBatch, "record \(expectedDelta) claims \(length) bytes, \(reader.remaining) remain")
            }
            let end = reader.index + Int(length)
            var record = ByteReader(UnsafeRawBufferPointer(rebasing: section[..<end]), index: reader.index)
            let attributes: Int8 = try record.readInteger("record attributes")
            let timestampDelta = try record.readVarint("timestampDelta")
            let offsetDelta = try record.readVarint32("offsetDelta")
            guard offsetDelta == expectedDelta else {
                throw MillraceError(.corruptBatch, "record \(expectedDelta) has offset delta \(offsetDelta)")
            }
            let key = try readOptionalBytes(&record, "key")
            if let key, key.count > Limits.keyBytesMax {
                throw MillraceError(.keyTooLarge, "record \(expectedDelta) key is \(key.count) bytes; the limit is \(Limits.keyBytesMax)")
            }
            let value = try readOptionalBytes(&record, "value")
            let headerCount = try record.readVarint32("header count")
            guard headerCount >= 0, headerCount <= Limits.headersPerRecordMax else {
                throw MillraceError(.corruptBatch, "record \(expectedDelta) has \(headerCount) headers; the limit is \(Limits.headersPerRecordMax)")
            }
            var headers: [RecordHeader] = []
            var foundHeader = false
            var foundHeaderValue: UnsafeRawBufferPointer?
            for _ in 0..<headerCount {
                guard let headerKey = try readOptionalBytes(&record, "header key") else {
                    throw MillraceError(.corruptBatch, "record \(expectedDelta) has a header with a null key")
                }
                let headerValue = try readOptionalBytes(&record, "header value")
                if decodeHeaders {
                    headers.append(RecordHeader(key: String(decoding: headerKey, as: UTF8.self), value: headerValue.map { Array($0) }))
                }
                if !foundHeader, let findHeader, headerKey.elementsEqual(findHeader) {
                    foundHeader = true
                    foundHeaderValue = headerValue
                }
            }
            guard record.index == end else {
                throw MillraceError(.corruptBatch, "record \(expectedDelta) has \(end - record.index) bytes past its fields")
            }
            try _ = reader.readBytes(Int(length), "record")
            let view = RecordView(
                attributes: attributes, timestampDelta: timestampDelta, offsetDelta: offsetDelta, key: key, value: value,
                headerCount: headerCount, foundHeader: foundHeader, foundHeaderValue: foundHeaderValue,
                position: compressed ? -1 : RecordBatchLayout.recordsAt + start)
            try body(view, headers)
        }
        guard reader.remaining == 0 else {
            throw MillraceError(.corruptBatch, "\(reader.remaining) bytes follow the last of \(header.recordCount) records")
        }
    }

    private static func readOptionalBytes(_ reader: inout ByteReader, _ what: StaticString) throws -> UnsafeRawBufferPointer? {
        let length = try reader.readVarint32(what)
        if length == -1 { return nil }
        guard length >= 0 else { throw MillraceError(.corruptBatch, "\(what) length \(length) at byte \(reader.index)") }
        return try reader.readBytes(Int(length), what)
    }
}

extension RecordBatch {
    /// The first record whose timestamp is at or after `timestamp`, reading only each record's
    /// length, timestamp delta and offset delta (keys, values and headers are skipped).
    public static func firstRecord(
        atOrAfter timestamp: Int64, in bytes: UnsafeRawBufferPointer, header: RecordBatchHeader
    ) throws -> (offsetDelta: Int32, timestamp: Int64)? {
        if header.attributes.timestampType == .logAppend {
            return header.maxTimestamp >= timestamp ? (0, header.maxTimestamp) : nil
        }
        let section = UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.recordsAt...])
        switch header.attributes.codec {
        case .none?:
            return try scanTimestamps(section, header: header, atOrAfter: timestamp)
        case .zstd?:
            let plain = try Zstd.decompress(section, maxBytes: Limits.decompressedBatchBytesMax)
            return try plain.withUnsafeBytes { try scanTimestamps($0, header: header, atOrAfter: timestamp) }
        case .gzip?, .snappy?, .lz4?, nil:
            throw MillraceError(.unsupportedCodec, "codec bits \(header.attributes.rawValue & 7) are not supported; use none or zstd")
        }
    }

    private static func scanTimestamps(
        _ section: UnsafeRawBufferPointer, header: RecordBatchHeader, atOrAfter timestamp: Int64
    ) throws -> (offsetDelta: Int32, timestamp: Int64)? {
        var reader = ByteReader(section)
        for _ in 0..<header.recordCount {
            let length = try reader.readVarint32("record length")
            guard length > 0, Int(length) <= reader.remaining else {
                throw MillraceError(.corruptBatch, "record claims \(length) bytes, \(reader.remaining) remain")
            }
            let end = reader.index + Int(length)
            var record = ByteReader(UnsafeRawBufferPointer(rebasing: section[..<end]), index: reader.index)
            let _: Int8 = try record.readInteger("record attributes")
            let recordTimestamp = header.baseTimestamp &+ (try record.readVarint("timestampDelta"))
            if recordTimestamp >= timestamp {
                return (try record.readVarint32("offsetDelta"), recordTimestamp)
            }
            _ = try reader.readBytes(Int(length), "record")
        }
        return nil
    }
}
