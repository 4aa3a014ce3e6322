import MillraceFormat

/// A topic's configuration.
public struct TopicConfig: Sendable, Equatable {
    /// Batches whose newest timestamp is older than this go; nil keeps them forever.
    public var retentionMs: Int64?
    /// Per partition: the oldest batches go while the rest still hold at least this many bytes
    /// (Kafka's rule); nil for no limit.
    public var retentionBytes: Int64?
    /// The codec producers are asked to use. The broker stores batches as they arrive and
    /// never re-encodes them.
    public var compression: CompressionCodec
    /// `.logAppend` stamps each batch with the broker's clock at append.
    public var timestampType: TimestampType
    /// How a new schema version must relate to the earlier ones.
    public var compatibility: SchemaCompatibility
    /// What happens to records that break the topic's schema (when it has one).
    public var onInvalid: InvalidRecordPolicy
    /// Business-key duplicate detection; nil: none.
    public var dedup: DedupPolicy?
    /// The key index (trace and genealogy); nil: nothing indexed.
    public var index: IndexPolicy?
    /// The one principal (the system of record) allowed to produce to the topic; nil: any
    /// with the write right (docs/SECURITY.md, "Topic ownership").
    public var owner: String?

    public init(
        retentionMs: Int64? = nil, retentionBytes: Int64? = nil, compression: CompressionCodec = .none,
        timestampType: TimestampType = .create, compatibility: SchemaCompatibility = .backward, onInvalid: InvalidRecordPolicy = .reject,
        dedup: DedupPolicy? = nil, index: IndexPolicy? = nil
    ) {
        self.dedup = dedup
        self.index = index?.isEmpty == true ? nil : index
        self.retentionMs = retentionMs
        self.retentionBytes = retentionBytes
        self.compression = compression
        self.timestampType = timestampType
        self.compatibility = compatibility
        self.onInvalid = onInvalid
    }

    func validate() throws {
        if let retentionMs, retentionMs <= 0 {
            throw MillraceError(.invalidConfig, "retention time must be positive (got \(retentionMs) ms); omit it to keep data forever")
        }
        if let retentionBytes, retentionBytes <= 0 {
            throw MillraceError(.invalidConfig, "retention bytes must be positive (got \(retentionBytes)); omit it for no limit")
        }
        guard compression.isSupported else {
            throw MillraceError(.unsupportedCodec, "compression \(compression) is not supported; use none or zstd")
        }
        try dedup?.validate()
        try index?.validate()
    }
}

extension CatalogSnapshot {
    /// Refuses one more topic with duplicate detection past `Limits.dedupTopicsMax` (each
    /// holds a fixed filter in memory); `except` is a topic that already has it.
    func checkDedupRoom(except name: String) -> MillraceError? {
        let count = topics.values.filter { $0.config.dedup != nil && $0.name != name }.count
        guard count >= Limits.dedupTopicsMax else { return nil }
        return MillraceError(
            .limitReached, "\(count) topics already catch duplicates, the most one broker holds (\(Limits.dedupTopicsMax)); turn it off on one first")
    }
}

extension CatalogSnapshot {
    /// The policy an append to `info` is deduplicated by when it comes with keys: the topic's
    /// own, or for `<topic>.quarantine` (which has none of its own) its topic's — parked
    /// records are deduplicated by the key their topic uses, in the quarantine's own entries.
    func dedupPolicy(of info: TopicInfo) -> DedupPolicy? {
        if let own = info.config.dedup { return own }
        let suffix = InvalidRecordPolicy.quarantineSuffix
        guard info.name.hasSuffix(suffix) else { return nil }
        return topics[String(info.name.dropLast(suffix.count))]?.config.dedup
    }
}

/// A topic as the catalog holds it.
public struct TopicInfo: Sendable, Equatable {
    public var name: String
    /// Internal id; partition databases are named by it so a re-created topic never meets old data.
    public var id: UInt32
    public var partitionCount: Int32
    public var config: TopicConfig
    public var createdAtMs: Int64

    /// 1: up to the timestamp type and creation time; 2: then compatibility and on-invalid;
    /// 3: then the dedup policy; 4: then the index policy; 5: then the owner (u16 length + name,
    /// 0 for none).
    static let encodingVersion: UInt8 = 5

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 48)
        writer.writeInteger(Self.encodingVersion)
        writer.writeInteger(id)
        writer.writeInteger(partitionCount)
        writer.writeInteger(config.retentionMs ?? -1)
        writer.writeInteger(config.retentionBytes ?? -1)
        writer.writeInteger(config.compression.rawValue)
        writer.writeInteger(config.timestampType.rawValue)
        writer.writeInteger(createdAtMs)
        writer.writeInteger(config.compatibility.rawValue)
        writer.writeInteger(config.onInvalid.rawValue)
        switch config.dedup?.key {
        case nil: writer.writeInteger(UInt8(0))
        case .recordKey?: writer.writeInteger(UInt8(1))
        case .header(let name)?:
            writer.writeInteger(UInt8(2))
            writer.writeInteger(UInt16(name.utf8.count))
            writer.writeBytes(name.utf8)
        case .json(let pointer)?:
            writer.writeInteger(UInt8(3))
            writer.writeInteger(UInt16(pointer.utf8.count))
            writer.writeBytes(pointer.utf8)
        }
        if let dedup = config.dedup { writer.writeInteger(dedup.windowMs) }
        // u8 present; then u8 record key, u8 fields, each u16 length + pointer, u8 links, each
        // parent then child as u16 length + pointer.
        if let index = config.index {
            writer.writeInteger(UInt8(1))
            writer.writeInteger(UInt8(index.recordKey ? 1 : 0))
            writer.writeInteger(UInt8(index.fields.count))
            for field in index.fields { Self.write(field, &writer) }
            writer.writeInteger(UInt8(index.links.count))
            for link in index.links {
                Self.write(link.parent, &writer)
                Self.write(link.child, &writer)
            }
        } else {
            writer.writeInteger(UInt8(0))
        }
        Self.write(config.owner ?? "", &writer)
        return writer.bytes
    }

    init(name: String, id: UInt32, partitionCount: Int32, config: TopicConfig, createdAtMs: Int64) {
        self.name = name
        self.id = id
        self.partitionCount = partitionCount
        self.config = config
        self.createdAtMs = createdAtMs
    }

    init(name: String, decoding bytes: UnsafeRawBufferPointer) throws {
        var reader = ByteReader(bytes)
        let version: UInt8 = try reader.readInteger("topic record version")
        guard version >= 1 && version <= Self.encodingVersion else {
            throw MillraceError(.newerFormatVersion, "topic \(name) was written with record version \(version)")
        }
        self.name = name
        id = try reader.readInteger("topic id")
        partitionCount = try reader.readInteger("partition count")
        let retentionMs: Int64 = try reader.readInteger("retention ms")
        let retentionBytes: Int64 = try reader.readInteger("retention bytes")
        let codec = CompressionCodec(rawValue: try reader.readInteger("codec")) ?? .none
        let timestampType = TimestampType(rawValue: try reader.readInteger("timestamp type")) ?? .create
        config = TopicConfig(
            retentionMs: retentionMs < 0 ? nil : retentionMs, retentionBytes: retentionBytes < 0 ? nil : retentionBytes,
            compression: codec, timestampType: timestampType)
        createdAtMs = try reader.readInteger("created at")
        if version >= 2 {
            config.compatibility = SchemaCompatibility(rawValue: try reader.readInteger("compatibility")) ?? .backward
            config.onInvalid = InvalidRecordPolicy(rawValue: try reader.readInteger("on invalid")) ?? .reject
        }
        if version >= 3 {
            let kind: UInt8 = try reader.readInteger("dedup key kind")
            var key: DedupKeySpec?
            switch kind {
            case 0: key = nil
            case 1: key = .recordKey
            case 2, 3:
                let length: UInt16 = try reader.readInteger("dedup key length")
                let text = String(decoding: try reader.readBytes(Int(length), "dedup key"), as: UTF8.self)
                key = kind == 2 ? .header(text) : .json(text)
            default:
                throw MillraceError(.storageError, "topic \(name) has dedup key kind \(kind), unknown to this build")
            }
            if let key { config.dedup = DedupPolicy(key: key, windowMs: try reader.readInteger("dedup window")) }
        }
        if version >= 4, try reader.readInteger("index present") as UInt8 == 1 {
            var index = IndexPolicy(recordKey: try reader.readInteger("index record key") as UInt8 == 1)
            let fields: UInt8 = try reader.readInteger("index fields")
            for _ in 0..<fields { index.fields.append(try Self.readText(&reader, "index field")) }
            let links: UInt8 = try reader.readInteger("index links")
            for _ in 0..<links {
                index.links.append(IndexLink(parent: try Self.readText(&reader, "link parent"), child: try Self.readText(&reader, "link child")))
            }
            config.index = index
        }
        if version >= 5 {
            let owner = try Self.readText(&reader, "owner")
            config.owner = owner.isEmpty ? nil : owner
        }
    }

    private static func write(_ text: String, _ writer: inout ByteWriter) {
        writer.writeInteger(UInt16(text.utf8.count))
        writer.writeBytes(text.utf8)
    }

    private static func readText(_ reader: inout ByteReader, _ what: StaticString) throws -> String {
        let length: UInt16 = try reader.readInteger(what)
        return String(decoding: try reader.readBytes(Int(length), what), as: UTF8.self)
    }

    /// Topic names follow Kafka's rule: 1...249 of `[A-Za-z0-9._-]`, not "." or "..".
    static func validate(name: String) throws {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= Limits.topicNameBytesMax, name != ".", name != ".." else {
            throw MillraceError(.invalidTopicName, "topic name must be 1...\(Limits.topicNameBytesMax) characters and not \".\" or \"..\"")
        }
        for byte in bytes {
            let ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
            guard ok else {
                throw MillraceError(.invalidTopicName, "topic name \"\(name)\" may only use letters, digits, '.', '_' and '-'")
            }
        }
    }
}

/// What the log of one partition holds, kept in the same transaction as every change to it.
struct PartitionState: Equatable {
    var logStartOffset: Int64 = 0
    /// The offset the next batch gets: the log end.
    var nextOffset: Int64 = 0
    var bytes: Int64 = 0
    var batchCount: Int64 = 0
    /// The highest batch max-timestamp appended so far (the time index's high-water mark).
    var maxTimestamp: Int64 = Int64.min

    static let encodedBytes = 41
    static let encodingVersion: UInt8 = 1

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.encodedBytes)
        writer.writeInteger(Self.encodingVersion)
        writer.writeInteger(logStartOffset)
        writer.writeInteger(nextOffset)
        writer.writeInteger(bytes)
        writer.writeInteger(batchCount)
        writer.writeInteger(maxTimestamp)
        return writer.bytes
    }

    init() {}

    init(decoding bytes: UnsafeRawBufferPointer) throws {
        var reader = ByteReader(bytes)
        let version: UInt8 = try reader.readInteger("partition state version")
        guard version == Self.encodingVersion else {
            throw MillraceError(.newerFormatVersion, "partition state version \(version) is not known to this build")
        }
        logStartOffset = try reader.readInteger("log start")
        nextOffset = try reader.readInteger("next offset")
        self.bytes = try reader.readInteger("bytes")
        batchCount = try reader.readInteger("batch count")
        maxTimestamp = try reader.readInteger("max timestamp")
    }
}

/// The in-memory catalog: topics and the database handle of each partition. The writer
/// changes it only after the transaction that changed the stored catalog has committed.
struct CatalogSnapshot {
    var topics: [String: TopicInfo] = [:]
    var logDatabases: [PartitionID: UInt32] = [:]
    var nextTopicID: UInt32 = 1

    var partitionTotal: Int { logDatabases.count }
}

struct PartitionID: Hashable {
    var topicID: UInt32
    var partition: Int32
}
