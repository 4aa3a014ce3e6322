import MillraceFormat
import MillraceSchema
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
        /// The one principal allowed to produce to the topic (its system of record).
        public var owner: String?

        public init(
            partitions: Int32 = 1, retention: Duration? = nil, retentionBytes: Int64? = nil, compression: Compression = .none,
            timestamps: Timestamps = .create, schema: [UInt8]? = nil, compatibility: SchemaCompatibility = .backward,
            onInvalid: InvalidRecordPolicy = .reject, dedupKey: String? = nil, dedupWindow: Duration = .seconds(86_400), index: IndexPolicy? = nil,
            owner: String? = nil
        ) {
            self.owner = owner
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

    /// Creates a topic with `config` (schema, policies, dedup and index included); true when
    /// this call created it.
    ///
    /// Everything that can be refused is checked here first, with the broker's own rules —
    /// the schema compiled, the dedup key and index pointers parsed, the quarantine topic's
    /// name — so bad settings throw before the topic exists: a bad schema never leaves a
    /// bare topic behind. Then the topic is created, its schema policies set and its schema
    /// registered (before dedup and index), so the window in which another client could see
    /// it without its schema is a round trip. The protocol has no single request for all of
    /// it: if the connection is lost between the steps, the topic stays as far as it got.
    ///
    /// With `ifNotExists`, an existing topic is left as it is and this returns false — but
    /// when `config` has a schema, the existing topic must have that document among its
    /// registered versions (as the broker compares them); a topic without a schema, or with
    /// other schemas only, throws `topic_already_exists` saying so, rather than letting the
    /// caller believe its records are checked. (Other settings are not compared: read them
    /// with `describeTopic`, `listSchemas` and `dedupStatus`.)
    @discardableResult
    public func createTopic(_ name: String, _ config: TopicConfig = TopicConfig(), ifNotExists: Bool = false) async throws -> Bool {
        try Self.check(topic: name, config)
        let codec: CompressionCodec = config.compression == .zstd ? .zstd : .none
        do {
            try await createTopic(
                CreateTopicRequest(
                    name: name, partitions: config.partitions, retentionMs: config.retention.map(Self.milliseconds) ?? -1,
                    retentionBytes: config.retentionBytes ?? -1, compression: codec.rawValue, timestampType: config.timestamps == .create ? 0 : 1))
        } catch let error as MillraceError where error.code == .topicAlreadyExists && ifNotExists {
            if let schema = config.schema { try await checkExisting(name, hasSchema: schema) }
            return false
        }
        if config.compatibility != .backward || config.onInvalid != .reject {
            try await setSchemaPolicy(topic: name, compatibility: config.compatibility, onInvalid: config.onInvalid)
        }
        if let schema = config.schema { _ = try await registerSchema(topic: name, schema: schema) }
        if let dedupKey = config.dedupKey { try await setDedupPolicy(topic: name, key: dedupKey, windowMs: Self.milliseconds(config.dedupWindow)) }
        if let index = config.index { try await setIndexPolicy(topic: name, policy: index) }
        if let owner = config.owner { try await alterTopic(name, owner: .some(owner)) }
        return true
    }

    /// What the broker would refuse after the topic exists, checked before: the schema
    /// compiles (the first version of a topic has nothing to be compatible with), the dedup
    /// key and window and the index policy are valid, and a quarantine topic's name fits.
    static func check(topic name: String, _ config: TopicConfig) throws {
        if let schema = config.schema {
            do {
                _ = try Schema(json: schema)
            } catch {
                throw MillraceError(.invalidSchema, "the schema for topic \(name) was refused, and the topic not created: \(error.message)")
            }
        }
        if let dedupKey = config.dedupKey {
            let policy = DedupPolicy(key: try DedupKeySpec(parsing: dedupKey), windowMs: milliseconds(config.dedupWindow))
            try policy.validate()
            if case .json(let pointer) = policy.key { _ = try JSONPointer(pointer) }
        }
        if let index = config.index {
            try index.validate()
            for (_, pointer) in index.pointers { _ = try JSONPointer(pointer) }
        }
        if config.onInvalid == .quarantine, name.utf8.count + quarantineSuffix.utf8.count > Limits.topicNameBytesMax {
            throw MillraceError(
                .invalidConfig,
                "topic \(name) is too long a name for a quarantine topic (\(name)\(quarantineSuffix) would pass \(Limits.topicNameBytesMax) bytes)")
        }
    }

    static let quarantineSuffix = ".quarantine"

    /// Throws unless the existing topic has `schema` among its versions (a dry-run
    /// registration finds an identical version the way the broker compares them).
    private func checkExisting(_ name: String, hasSchema schema: [UInt8]) async throws {
        let versions = try await listSchemas(topic: name).versions.map(\.version)
        guard let latest = versions.max() else {
            throw MillraceError(
                .topicAlreadyExists,
                "topic \(name) exists without a schema, so its records are not checked; register the schema (`millrace schema register \(name) FILE`), or delete the topic and create it again")
        }
        let found = try await registerSchema(topic: name, schema: schema, dryRun: true)
        guard !found.created, versions.contains(found.version) else {
            throw MillraceError(
                .topicAlreadyExists,
                "topic \(name) exists with other schemas (versions 1...\(latest)); the one asked for is not among them: register it as a new version, or use another topic")
        }
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
        compatibility: SchemaCompatibility? = nil, onInvalid: InvalidRecordPolicy? = nil, owner: String?? = nil
    ) async throws {
        if retention != nil || retentionBytes != nil || compression != nil || owner != nil {
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
            // Owner: nil keeps it, .some(nil) removes it ("" on the wire), a name sets it.
            let request = AlterTopicRequest(topic: name, retentionMs: retentionMs, retentionBytes: bytes, compression: codec, owner: owner.map { $0 ?? "" })
            guard case .alterTopic = try await send(.alterTopic(request)) else { throw Self.unexpectedBody }
        }
        if compatibility != nil || onInvalid != nil { try await setSchemaPolicy(topic: name, compatibility: compatibility, onInvalid: onInvalid) }
    }

    /// A duration in whole milliseconds.
    public static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}
