/// Compression codecs named by the low three bits of a batch's attributes (Kafka's numbering).
public enum CompressionCodec: Int16, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    case gzip = 1
    case snappy = 2
    case lz4 = 3
    case zstd = 4

    /// Codecs Millrace reads and writes.
    public var isSupported: Bool { self == .none || self == .zstd }

    public var description: String {
        switch self {
        case .none: return "none"
        case .gzip: return "gzip"
        case .snappy: return "snappy"
        case .lz4: return "lz4"
        case .zstd: return "zstd"
        }
    }
}

/// Whose clock a batch's timestamps come from.
public enum TimestampType: Int16, Sendable {
    /// The producer's clock (Kafka's CreateTime).
    case create = 0
    /// The broker's clock at append (Kafka's LogAppendTime).
    case logAppend = 1
}

/// The 16-bit attributes field of a record batch.
public struct RecordBatchAttributes: Equatable, Sendable {
    public var rawValue: Int16

    public init(rawValue: Int16) { self.rawValue = rawValue }

    public init(
        codec: CompressionCodec = .none, timestampType: TimestampType = .create,
        isTransactional: Bool = false, isControl: Bool = false
    ) {
        rawValue = codec.rawValue | (timestampType.rawValue << 3)
        if isTransactional { rawValue |= 1 << 4 }
        if isControl { rawValue |= 1 << 5 }
    }

    /// nil for codec numbers 5...7, which no codec uses.
    public var codec: CompressionCodec? { CompressionCodec(rawValue: rawValue & 0x7) }
    public var timestampType: TimestampType { rawValue & (1 << 3) != 0 ? .logAppend : .create }
    public var isTransactional: Bool { rawValue & (1 << 4) != 0 }
    public var isControl: Bool { rawValue & (1 << 5) != 0 }

    public func with(timestampType: TimestampType) -> RecordBatchAttributes {
        RecordBatchAttributes(rawValue: (rawValue & ~(1 << 3)) | (timestampType.rawValue << 3))
    }
}

/// Byte positions of RecordBatch v2's fixed header (Kafka's public layout).
public enum RecordBatchLayout {
    public static let baseOffsetAt = 0  // int64, outside the CRC: the broker patches it
    public static let batchLengthAt = 8  // int32: bytes after this field
    public static let partitionLeaderEpochAt = 12  // int32, outside the CRC
    public static let magicAt = 16  // int8, always 2
    public static let crcAt = 17  // uint32: CRC-32C of attributes...end
    public static let attributesAt = 21  // int16
    public static let lastOffsetDeltaAt = 23  // int32
    public static let baseTimestampAt = 27  // int64
    public static let maxTimestampAt = 35  // int64
    public static let producerIdAt = 43  // int64
    public static let producerEpochAt = 51  // int16
    public static let baseSequenceAt = 53  // int32
    public static let recordCountAt = 57  // int32
    public static let recordsAt = 61  // records (compressed as a whole when a codec is set)
    public static let headerBytes = 61
    /// baseOffset and batchLength are not counted in batchLength.
    public static let lengthPrefixBytes = 12
    public static let magic: Int8 = 2
}

/// The fixed header of a RecordBatch v2.
public struct RecordBatchHeader: Equatable, Sendable {
    public var baseOffset: Int64
    public var batchLength: Int32
    public var partitionLeaderEpoch: Int32
    public var magic: Int8
    public var crc: UInt32
    public var attributes: RecordBatchAttributes
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var recordCount: Int32

    /// The batch's size in bytes, header included.
    public var totalBytes: Int { Int(batchLength) + RecordBatchLayout.lengthPrefixBytes }
    public var lastOffset: Int64 { baseOffset + Int64(lastOffsetDelta) }
    public var nextOffset: Int64 { lastOffset + 1 }
}

public struct RecordHeader: Equatable, Sendable {
    public var key: String
    public var value: [UInt8]?

    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }
}

/// One record of a batch, decoded.
public struct Record: Equatable, Sendable {
    public var attributes: Int8
    public var timestampDelta: Int64
    public var offsetDelta: Int32
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [RecordHeader]

    public init(
        timestampDelta: Int64 = 0, offsetDelta: Int32, key: [UInt8]? = nil, value: [UInt8]?,
        headers: [RecordHeader] = [], attributes: Int8 = 0
    ) {
        self.attributes = attributes
        self.timestampDelta = timestampDelta
        self.offsetDelta = offsetDelta
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// A whole record batch: header fields plus decoded records. Storage and fetch move the
/// encoded bytes and never re-encode; this type is for producers, tests and tools.
public struct RecordBatch: Equatable, Sendable {
    public var baseOffset: Int64
    public var partitionLeaderEpoch: Int32
    public var attributes: RecordBatchAttributes
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var records: [Record]

    public init(
        baseOffset: Int64 = 0, partitionLeaderEpoch: Int32 = -1, attributes: RecordBatchAttributes = .init(),
        baseTimestamp: Int64, maxTimestamp: Int64? = nil, producerId: Int64 = -1, producerEpoch: Int16 = -1,
        baseSequence: Int32 = -1, records: [Record]
    ) {
        self.baseOffset = baseOffset
        self.partitionLeaderEpoch = partitionLeaderEpoch
        self.attributes = attributes
        self.baseTimestamp = baseTimestamp
        self.maxTimestamp = maxTimestamp ?? (baseTimestamp + (records.map(\.timestampDelta).max() ?? 0))
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
        self.records = records
    }

    /// A batch of values with offset deltas 0..<n, all stamped `timestamp`.
    public init(timestamp: Int64, values: [[UInt8]], keys: [[UInt8]?]? = nil, codec: CompressionCodec = .none) {
        precondition(keys == nil || keys!.count == values.count)
        let records = values.enumerated().map { index, value in
            Record(offsetDelta: Int32(index), key: keys?[index], value: value)
        }
        self.init(attributes: .init(codec: codec), baseTimestamp: timestamp, records: records)
    }
}
