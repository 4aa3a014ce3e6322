import MillraceFormat
import MillraceWire

extension MillraceClient {
    /// A topic's settings as `createTopic(_:_:)` takes them: typed, with durations and
    /// enums rather than wire numbers.
    ///
    /// ```swift
    /// try await client.createTopic("confirmations", .init(partitions: 6, retention: .seconds(7 * 86_400), compression: .zstd,
    ///                                                       dedupKey: "json:/event_id", index: IndexPolicy(fields: ["/lot"])))
    /// ```
    public struct TopicConfig: Sendable, Equatable {
        /// The codec producers use for the topic's batches.
        public enum Compression: String, Sendable, CaseIterable {
            /// Batches as they are.
            case none, zstd
        }

        /// Whose clock stamps records: the producer's (`create`) or the broker's at append.
        public enum Timestamps: Sendable, Equatable {
            /// The producer's clock.
            case create, logAppend
        }

        /// Partitions: the unit of order and of parallel consumption.
        public var partitions: Int32
        /// Batches whose newest record is older than this go; nil keeps them forever.
        public var retention: Duration?
        /// Per partition, the oldest batches go past this many bytes; nil: no limit.
        public var retentionBytes: Int64?
        /// The codec producers use for its batches.
        public var compression: Compression
        /// Whose clock stamps records.
        public var timestamps: Timestamps
        /// A JSON Schema registered as version 1: the broker then checks every record.
        public var schema: [UInt8]?
        /// How new schema versions must relate to earlier ones.
        public var compatibility: SchemaCompatibility
        /// What happens to records that break the schema: refused, or parked in `TOPIC.quarantine`.
        public var onInvalid: InvalidRecordPolicy
        /// Catch duplicates by this business key: `key`, `header:NAME` or `json:/pointer`.
        public var dedupKey: String?
        /// How long a business key is remembered (at most 30 days).
        public var dedupWindow: Duration
        /// What the key index holds for `trace` and genealogy walks.
        public var index: IndexPolicy?

        public init(
            partitions: Int32 = 1, retention: Duration? = nil, retentionBytes: Int64? = nil, compression: Compression = .none,
            timestamps: Timestamps = .create, schema: [UInt8]? = nil, compatibility: SchemaCompatibility = .backward,
            onInvalid: InvalidRecordPolicy = .reject, dedupKey: String? = nil, dedupWindow: Duration = .seconds(86_400), index: IndexPolicy? = nil
        ) {
            self.partitions = partitions
            self.retention = retention
            self.retentionBytes = retentionBytes
            self.compression = compression
            self.timestamps = timestamps
            self.schema = schema
            self.compatibility = compatibility
            self.onInvalid = onInvalid
            self.dedupKey = dedupKey
            self.dedupWindow = dedupWindow
            self.index = index
        }
    }

    /// Creates a topic with `config` (schema, policies, dedup and index included). With
    /// `ifNotExists`, a topic of that name is left as it is and this returns false.
    @discardableResult
    public func createTopic(_ name: String, _ config: TopicConfig = TopicConfig(), ifNotExists: Bool = false) async throws -> Bool {
        let codec: CompressionCodec = config.compression == .zstd ? .zstd : .none
        do {
            try await createTopic(
                CreateTopicRequest(
                    name: name, partitions: config.partitions, retentionMs: config.retention.map(Self.milliseconds) ?? -1,
                    retentionBytes: config.retentionBytes ?? -1, compression: codec.rawValue, timestampType: config.timestamps == .create ? 0 : 1))
        } catch let error as MillraceError where error.code == .topicAlreadyExists && ifNotExists {
            return false
        }
        if config.compatibility != .backward || config.onInvalid != .reject {
            try await setSchemaPolicy(topic: name, compatibility: config.compatibility, onInvalid: config.onInvalid)
        }
        if let dedupKey = config.dedupKey { try await setDedupPolicy(topic: name, key: dedupKey, windowMs: Self.milliseconds(config.dedupWindow)) }
        if let index = config.index { try await setIndexPolicy(topic: name, policy: index) }
        if let schema = config.schema { _ = try await registerSchema(topic: name, schema: schema) }
        return true
    }

    /// A retention setting for `alterTopic`: keep everything, or drop what is older / past a size.
    public enum Retention: Sendable, Equatable {
        /// Keep every batch.
        case forever
        case after(Duration)
    }

    /// Changes a topic's retention, size limit, compression or schema policies; nil leaves a
    /// setting as it is. Retention applies at the broker's next retention pass.
    public func alterTopic(
        _ name: String, retention: Retention? = nil, retentionBytes: Int64?? = nil, compression: TopicConfig.Compression? = nil,
        compatibility: SchemaCompatibility? = nil, onInvalid: InvalidRecordPolicy? = nil
    ) async throws {
        if retention != nil || retentionBytes != nil || compression != nil {
            let retentionMs: Int64 =
                switch retention {
                case nil: AlterTopicRequest.unchanged
                case .forever?: -1
                case .after(let duration)?: Self.milliseconds(duration)
                }
            let bytes: Int64 =
                switch retentionBytes {
                case nil: AlterTopicRequest.unchanged
                case .some(nil): -1
                case .some(let value?): value
                }
            let codec: Int16 = compression.map { $0 == .zstd ? CompressionCodec.zstd.rawValue : CompressionCodec.none.rawValue } ?? -1
            guard case .alterTopic = try await send(.alterTopic(AlterTopicRequest(topic: name, retentionMs: retentionMs, retentionBytes: bytes, compression: codec)))
            else { throw Self.unexpectedBody }
        }
        if compatibility != nil || onInvalid != nil { try await setSchemaPolicy(topic: name, compatibility: compatibility, onInvalid: onInvalid) }
    }

    /// A duration in whole milliseconds.
    public static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}
