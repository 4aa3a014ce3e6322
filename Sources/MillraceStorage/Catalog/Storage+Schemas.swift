import CLMDB
import MillraceFormat

/// One registered schema version of a topic, as stored: the document exactly as registered.
public struct StoredSchema: Sendable, Equatable {
    public var version: Int32
    public var document: [UInt8]
    public var registeredAtMs: Int64

    public init(version: Int32, document: [UInt8], registeredAtMs: Int64) {
        self.version = version
        self.document = document
        self.registeredAtMs = registeredAtMs
    }

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 9 + document.count)
        writer.writeInteger(Self.encodingVersion)
        writer.writeInteger(registeredAtMs)
        return writer.bytes + document
    }

    static let encodingVersion: UInt8 = 1

    init(version: Int32, decoding bytes: UnsafeRawBufferPointer) throws {
        var reader = ByteReader(bytes)
        let encoding: UInt8 = try reader.readInteger("schema record version")
        guard encoding == Self.encodingVersion else {
            throw MillraceError(.newerFormatVersion, "schema version \(version) was written with record version \(encoding)")
        }
        self.version = version
        registeredAtMs = try reader.readInteger("schema registration time")
        document = Array(bytes[9...])
    }
}

/// What a registration did.
public struct SchemaRegistration: Sendable, Equatable {
    public var version: Int32
    /// False when the document was identical to an existing version, which is returned.
    public var created: Bool
}

extension Keys {
    /// In the meta database: "schema" 0x00, topic id, version (big-endian, so versions sort).
    static func schemaPrefix(_ topicID: UInt32) -> [UInt8] {
        var writer = ByteWriter(capacity: 11)
        writer.writeBytes(Array("schema".utf8))
        writer.writeInteger(UInt8(0))
        writer.writeInteger(topicID)
        return writer.bytes
    }

    static func schema(_ topicID: UInt32, _ version: Int32) -> [UInt8] {
        var writer = ByteWriter(capacity: 15)
        writer.writeBytes(schemaPrefix(topicID))
        writer.writeInteger(version)
        return writer.bytes
    }
}

extension Storage {
    /// Every registered version of `topic`'s schema, oldest first.
    public func schemas(topic: String) throws -> [StoredSchema] {
        try withReadTransaction { txn, snapshot in
            guard let info = snapshot.topics[topic] else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
            return try Self.readSchemas(txn, databases.meta, topicID: info.id)
        }
    }

    /// One version (nil: the latest); nil when the topic has no such version. Reads that
    /// version alone, whatever the number of versions.
    public func schema(topic: String, version: Int32?) throws -> StoredSchema? {
        try withReadTransaction { txn, snapshot in
            guard let info = snapshot.topics[topic] else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
            guard let version = try version ?? Self.latestSchemaVersion(txn, databases.meta, topicID: info.id) else { return nil }
            guard let value = try txn.get(databases.meta, Keys.schema(info.id, version)) else { return nil }
            return try StoredSchema(version: version, decoding: value)
        }
    }

    /// Each version's number, registration time and size, without copying the documents.
    public func schemaVersions(topic: String) throws -> [(version: Int32, registeredAtMs: Int64, bytes: Int)] {
        try withReadTransaction { txn, snapshot in
            guard let info = snapshot.topics[topic] else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
            let prefix = Keys.schemaPrefix(info.id)
            let cursor = try LMDBCursor(txn, databases.meta)
            defer { cursor.close() }
            var result: [(version: Int32, registeredAtMs: Int64, bytes: Int)] = []
            var entry = try cursor.get(MDB_SET_RANGE, key: prefix)
            while let current = entry, Keys.hasPrefix(current.key, prefix), current.key.count == prefix.count + 4 {
                var key = ByteReader(UnsafeRawBufferPointer(rebasing: current.key[prefix.count...]))
                let version: Int32 = try key.readInteger("schema version")
                var value = ByteReader(current.value)
                let _: UInt8 = try value.readInteger("schema record version")
                let registeredAtMs: Int64 = try value.readInteger("schema registration time")
                result.append((version, registeredAtMs, max(0, current.value.count - 9)))
                entry = try cursor.get(MDB_NEXT)
            }
            return result
        }
    }

    /// The topic's newest schema version, nil when it has none (one cursor step).
    static func latestSchemaVersion(_ txn: LMDBTransaction, _ meta: MDB_dbi, topicID: UInt32) throws -> Int32? {
        let prefix = Keys.schemaPrefix(topicID)
        let cursor = try LMDBCursor(txn, meta)
        defer { cursor.close() }
        // The first key past every version of this topic, then one back.
        let past = try cursor.get(MDB_SET_RANGE, key: Keys.schema(topicID, Int32.max))
        var entry = try past.map { current in
            Keys.hasPrefix(current.key, prefix) && current.key.count == prefix.count + 4 ? current : try cursor.get(MDB_PREV)
        } ?? cursor.get(MDB_LAST)
        while let current = entry, Keys.hasPrefix(current.key, prefix) {
            if current.key.count == prefix.count + 4 {
                var reader = ByteReader(UnsafeRawBufferPointer(rebasing: current.key[prefix.count...]))
                return try reader.readInteger("schema version")
            }
            entry = try cursor.get(MDB_PREV)
        }
        return nil
    }

    static func readSchemas(_ txn: LMDBTransaction, _ meta: MDB_dbi, topicID: UInt32) throws -> [StoredSchema] {
        let prefix = Keys.schemaPrefix(topicID)
        let cursor = try LMDBCursor(txn, meta)
        defer { cursor.close() }
        var result: [StoredSchema] = []
        var entry = try cursor.get(MDB_SET_RANGE, key: prefix)
        while let current = entry, Keys.hasPrefix(current.key, prefix), current.key.count == prefix.count + 4 {
            var reader = ByteReader(UnsafeRawBufferPointer(rebasing: current.key[prefix.count...]))
            let version: Int32 = try reader.readInteger("schema version")
            result.append(try StoredSchema(version: version, decoding: current.value))
            entry = try cursor.get(MDB_NEXT)
        }
        return result
    }

    /// Registers `document` as the next version of `topic`'s schema, in one write
    /// transaction with the decision: `decide` sees the topic's id and its newest existing version (0: none) and
    /// returns the version the document is identical to (nothing is written), or nil to add
    /// it, or throws to refuse it. Runs on the writer thread, so it must be quick: the caller
    /// compares schemas beforehand, against the history as it read it, and `decide` only
    /// confirms that history is still the newest.
    public func registerSchema(
        topic: String, document: [UInt8], decide: @escaping @Sendable (_ topicID: UInt32, _ latest: Int32) throws -> Int32?
    ) async throws -> SchemaRegistration {
        try await withCheckedThrowingContinuation { continuation in
            registerSchema(topic: topic, document: document, decide: decide) { continuation.resume(with: $0) }
        }
    }

    /// As above; `completion` runs on a storage thread once the version is durable.
    public func registerSchema(
        topic: String, document: [UInt8], decide: @escaping @Sendable (_ topicID: UInt32, _ latest: Int32) throws -> Int32?,
        completion: @escaping @Sendable (Result<SchemaRegistration, MillraceError>) -> Void
    ) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(.registerSchema(RegisterSchemaOperation(topic: topic, document: document, decide: decide, completion: completion)))
    }

    /// Changes a topic's schema policies (compatibility, what to do with invalid records).
    public func setSchemaPolicy(topic: String, compatibility: SchemaCompatibility?, onInvalid: InvalidRecordPolicy?) async throws -> TopicInfo {
        try await withCheckedThrowingContinuation { continuation in
            setSchemaPolicy(topic: topic, compatibility: compatibility, onInvalid: onInvalid) { continuation.resume(with: $0) }
        }
    }

    /// Turns duplicate detection on (or changes its key or window), or off with nil (the keys
    /// held are forgotten).
    public func setDedupPolicy(topic: String, policy: DedupPolicy?, completion: @escaping @Sendable (Result<TopicInfo, MillraceError>) -> Void) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(.setSchemaPolicy(SchemaPolicyOperation(topic: topic, compatibility: nil, onInvalid: nil, dedup: .some(policy), completion: completion)))
    }

    public func setDedupPolicy(topic: String, policy: DedupPolicy?) async throws -> TopicInfo {
        try await withCheckedThrowingContinuation { continuation in
            setDedupPolicy(topic: topic, policy: policy) { continuation.resume(with: $0) }
        }
    }

    /// Sets what the topic indexes (nil or an empty policy: nothing). Records appended from
    /// then on are indexed by it; entries already written stay (a trace reads them too).
    public func setIndexPolicy(topic: String, policy: IndexPolicy?, completion: @escaping @Sendable (Result<TopicInfo, MillraceError>) -> Void) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        let normalized = policy?.isEmpty == true ? nil : policy
        writer.submitNow(
            .setSchemaPolicy(SchemaPolicyOperation(topic: topic, compatibility: nil, onInvalid: nil, index: .some(normalized), completion: completion)))
    }

    public func setIndexPolicy(topic: String, policy: IndexPolicy?) async throws -> TopicInfo {
        try await withCheckedThrowingContinuation { continuation in
            setIndexPolicy(topic: topic, policy: policy) { continuation.resume(with: $0) }
        }
    }

    /// Changes a topic's retention (`.some(nil)`: keep forever / no size limit) or the
    /// compression producers are asked to use; nil leaves a setting as it is. Retention
    /// applies at the next retention pass; batches already stored keep their codec.
    public func alterTopic(
        topic: String, retentionMs: Int64??, retentionBytes: Int64??, compression: CompressionCodec?, owner: String?? = nil,
        completion: @escaping @Sendable (Result<TopicInfo, MillraceError>) -> Void
    ) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(
            .setSchemaPolicy(
                SchemaPolicyOperation(
                    topic: topic, compatibility: nil, onInvalid: nil, retentionMs: retentionMs, retentionBytes: retentionBytes, compression: compression,
                    owner: owner, completion: completion)))
    }

    public func setSchemaPolicy(
        topic: String, compatibility: SchemaCompatibility?, onInvalid: InvalidRecordPolicy?,
        completion: @escaping @Sendable (Result<TopicInfo, MillraceError>) -> Void
    ) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        writer.submitNow(.setSchemaPolicy(SchemaPolicyOperation(topic: topic, compatibility: compatibility, onInvalid: onInvalid, completion: completion)))
    }
}

struct RegisterSchemaOperation {
    var topic: String
    var document: [UInt8]
    var decide: @Sendable (_ topicID: UInt32, _ latest: Int32) throws -> Int32?
    var completion: @Sendable (Result<SchemaRegistration, MillraceError>) -> Void
}

/// A change to a topic's policies (schema checks, duplicate detection); nil fields stay.
struct SchemaPolicyOperation {
    var topic: String
    var compatibility: SchemaCompatibility?
    var onInvalid: InvalidRecordPolicy?
    /// `.some(nil)` turns duplicate detection off (and forgets the keys held).
    var dedup: DedupPolicy?? = nil
    /// `.some(nil)` stops indexing the topic's new records.
    var index: IndexPolicy?? = nil
    /// `.some(nil)` keeps everything (no time or size limit).
    var retentionMs: Int64?? = nil
    var retentionBytes: Int64?? = nil
    var compression: CompressionCodec? = nil
    /// `.some(nil)`: no owner.
    var owner: String?? = nil
    var completion: @Sendable (Result<TopicInfo, MillraceError>) -> Void
}

extension Writer {
    func registerSchema(_ op: RegisterSchemaOperation) -> Result<SchemaRegistration, MillraceError> {
        guard let info = catalog.withLock({ $0.topics[op.topic] }) else {
            return .failure(MillraceError(.unknownTopic, "topic \"\(op.topic)\" does not exist"))
        }
        return withTransaction { context -> SchemaRegistration in
            let latest = try Storage.latestSchemaVersion(context.txn, databases.meta, topicID: info.id) ?? 0
            let identical: Int32?
            do {
                identical = try op.decide(info.id, latest)
            } catch let error as MillraceError {
                throw error
            } catch {
                throw MillraceError(.invalidRequest, "\(error)")
            }
            if let identical { return SchemaRegistration(version: identical, created: false) }
            guard latest < Limits.schemaVersionsPerTopicMax else {
                throw MillraceError(
                    .limitReached,
                    "topic \(op.topic) has \(latest) schema versions, the most a topic may have (schemaVersionsPerTopicMax); make the change in a new topic, or re-register an earlier version")
            }
            let version = latest + 1
            let stored = StoredSchema(version: version, document: op.document, registeredAtMs: context.nowMs)
            try context.txn.put(databases.meta, Keys.schema(info.id, version), stored.encoded())
            return SchemaRegistration(version: version, created: true)
        }
    }

    func setSchemaPolicy(_ op: SchemaPolicyOperation) -> Result<TopicInfo, MillraceError> {
        guard var info = catalog.withLock({ $0.topics[op.topic] }) else {
            return .failure(MillraceError(.unknownTopic, "topic \"\(op.topic)\" does not exist"))
        }
        if let compatibility = op.compatibility { info.config.compatibility = compatibility }
        if let onInvalid = op.onInvalid { info.config.onInvalid = onInvalid }
        if let retentionMs = op.retentionMs {
            if let value = retentionMs, value <= 0 { return .failure(MillraceError(.invalidConfig, "retention must be more than 0 ms (got \(value))")) }
            info.config.retentionMs = retentionMs
        }
        if let retentionBytes = op.retentionBytes {
            if let value = retentionBytes, value < 0 { return .failure(MillraceError(.invalidConfig, "retention bytes must be 0 or more (got \(value))")) }
            info.config.retentionBytes = retentionBytes
        }
        if let owner = op.owner {
            if let name = owner, name.isEmpty || name.utf8.count > 128 { return .failure(MillraceError(.invalidConfig, "an owner's name is 1...128 characters")) }
            info.config.owner = owner
        }
        if let compression = op.compression {
            guard compression.isSupported else { return .failure(MillraceError(.invalidConfig, "compression \(compression) is not supported; use none or zstd")) }
            info.config.compression = compression
        }
        if let dedup = op.dedup {
            do {
                try dedup?.validate()
            } catch let error as MillraceError {
                return .failure(error)
            } catch {
                return .failure(MillraceError(.invalidConfig, "\(error)"))
            }
            if dedup != nil, info.config.dedup == nil, let full = catalog.withLock({ $0.checkDedupRoom(except: op.topic) }) { return .failure(full) }
            info.config.dedup = dedup
        }
        if let index = op.index {
            do {
                try index?.validate()
            } catch let error as MillraceError {
                return .failure(error)
            } catch {
                return .failure(MillraceError(.invalidConfig, "\(error)"))
            }
            info.config.index = index
        }
        let updated = info
        let forget = op.dedup.map { $0 == nil } ?? false
        let quarantine = catalog.withLock({ $0.topics[op.topic + InvalidRecordPolicy.quarantineSuffix] }).flatMap { $0.config.dedup == nil ? $0.id : nil }
        let forgotten = [updated.id] + (quarantine.map { [$0] } ?? [])
        let result = withTransaction { context -> TopicInfo in
            try context.txn.put(databases.topics, Array(op.topic.utf8), updated.encoded())
            // Setting what a topic indexes leaves its records so far for a rebuild; the
            // entries in memory go into a run first (a restart indexes memory's records again
            // under the policy it finds, so none may be left from the old one).
            if let index = op.index {
                try context.flushIndex(forceMemory: true)
                if index != nil {
                    try context.markIndexPending(updated)
                } else if let dbi = databases.index {
                    for partition in 0..<updated.partitionCount { _ = try context.txn.delete(dbi.runs, IndexKeys.pending(updated.id, partition)) }
                }
            }
            // The quarantine's keys of parked records follow the topic's policy (they go with it).
            if forget, let dbi = databases.dedup {
                for id in forgotten {
                    for run in dedup.existingState(id)?.runs ?? [] { try SortedRuns.delete(runID: run.id, owner: id, txn: context.txn, dbi: dbi) }
                    try deleteAll(context.txn, dbi.runs, prefix: Keys.topicPrefix(id))
                }
            }
            return updated
        }
        if case .success(let stored) = result {
            catalog.withLock { $0.topics[op.topic] = stored }
            if forget { for id in forgotten { dedup.forget(id) } }
        }
        return result
    }
}
