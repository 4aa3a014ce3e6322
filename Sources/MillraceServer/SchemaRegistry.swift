import MillraceFormat
import MillraceSchema
import MillraceStorage
import MillraceWire
import NIOCore
import NIOPosix

/// Each topic's schema versions as the produce path and registrations need them: the latest
/// compiled and held per topic; earlier versions (named by a record's header, or compared by a
/// transitive compatibility mode) compiled when first needed and kept in one broker-wide cache
/// within `Limits.schemaCompiledCacheBytesMax`. The storage holds the documents.
///
/// Registrations are decided on the registry's own thread — never the storage writer's, never
/// an event loop — against the history as read then; the writer only confirms that history is
/// still the newest (else the decision is taken again), so a costly comparison stalls nothing
/// but other registrations, and is bounded by `Limits.schemaCompatibilityStepsMax` besides.
final class SchemaRegistry: Sendable {
    struct Entry: Sendable {
        let topic: String
        let topicID: UInt32
        /// 0 when the topic has no schema; versions are 1...latest.
        let latest: Int32
        let latestSchema: Schema?
        fileprivate let registry: SchemaRegistry?

        /// A topic read with no schema (index rebuilds).
        static func none(topic: String, topicID: UInt32) -> Entry {
            Entry(topic: topic, topicID: topicID, latest: 0, latestSchema: nil, registry: nil)
        }

        /// Version `version` compiled (nil when the topic has no such version); the bytes of
        /// a document compiled for it, when it was not cached, are added to `compiledBytes`.
        func schema(_ version: Int32, compiledBytes: inout Int) throws -> Schema? {
            guard version >= 1, version <= latest else { return nil }
            if version == latest { return latestSchema }
            return try registry?.compiled(topic: topic, topicID: topicID, version: version, compiledBytes: &compiledBytes)
        }
    }

    /// Validation steps charged per byte of a schema document compiled for a record (compiling
    /// took ~7 ms for 62 KB, about 3 steps' time per byte).
    static let compileStepsPerByte = 4

    private let storage: Storage
    private let entries = Locked(Entries())

    /// The compiled entries, and per topic a count of `forget`s: an entry read from storage
    /// before a registration committed is not kept after it.
    private struct Entries {
        var byTopic: [String: Entry] = [:]
        var generation: [String: UInt64] = [:]
    }
    private let cache = Locked(CompiledCache())
    /// Per topic: the canonical digest of every version's document, for finding an identical one.
    private let digests = Locked<[String: Digests]>([:])
    /// The one thread registrations are decided on.
    private let thread: NIOThreadPool

    init(storage: Storage) {
        self.storage = storage
        thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
    }

    func shutdown() async { try? await thread.shutdownGracefully() }
    func syncShutdown() { try? thread.syncShutdownGracefully() }

    /// The topic's latest schema compiled (`latest` 0 when it has none).
    func entry(_ topic: String) throws -> Entry {
        guard let info = storage.topicInfo(topic) else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
        let (cached, generation) = entries.withLock { ($0.byTopic[topic], $0.generation[topic, default: 0]) }
        if let cached, cached.topicID == info.id { return cached }
        var latest: Int32 = 0
        var schema: Schema?
        if let stored = try storage.schema(topic: topic, version: nil) {
            latest = stored.version
            schema = try Self.compile(stored, topic: topic)
        }
        let entry = Entry(topic: topic, topicID: info.id, latest: latest, latestSchema: schema, registry: self)
        entries.withLock { entries in
            if entries.generation[topic, default: 0] == generation { entries.byTopic[topic] = entry }
        }
        return entry
    }

    func forget(_ topic: String) {
        entries.withLock { entries in
            entries.byTopic[topic] = nil
            entries.generation[topic, default: 0] &+= 1
        }
    }

    private static func compile(_ stored: StoredSchema, topic: String) throws -> Schema {
        do {
            return try Schema(json: stored.document)
        } catch {
            throw MillraceError(.storageError, "schema version \(stored.version) of topic \(topic) no longer compiles: \(error)")
        }
    }

    /// An earlier version, compiled once and cached (least recently used goes first).
    func compiled(topic: String, topicID: UInt32, version: Int32, compiledBytes: inout Int) throws -> Schema? {
        let key = CompiledCache.Key(topicID: topicID, version: version)
        if let hit = cache.withLock({ $0.get(key) }) { return hit }
        guard let stored = try storage.schema(topic: topic, version: version) else { return nil }
        let schema = try Self.compile(stored, topic: topic)
        compiledBytes += stored.document.count
        cache.withLock { $0.put(key, schema, bytes: stored.document.count * CompiledCache.bytesPerDocumentByte) }
        return schema
    }

    /// Decides `request` on the registry's thread and, unless `dryRun`, registers it.
    /// `completion` runs on the registry's or a storage thread.
    func register(_ request: RegisterSchemaRequest, completion: @escaping @Sendable (Result<RegisterSchemaResponse, MillraceError>) -> Void) {
        thread.submit { [self] state in
            guard case .active = state else {
                return completion(.failure(MillraceError(.storageClosed, "the broker is stopping; register the schema again once it is back")))
            }
            decide(request, attempt: 1, completion: completion)
        }
    }

    /// Times a registration is decided again when another one changed the history meanwhile.
    private static let attemptsMax = 3

    private func decide(
        _ request: RegisterSchemaRequest, attempt: Int, completion: @escaping @Sendable (Result<RegisterSchemaResponse, MillraceError>) -> Void
    ) {
        let schema: Schema
        do {
            schema = try Schema(json: request.schema)
        } catch {
            return completion(.failure(MillraceError(.invalidSchema, error.message)))
        }
        let entry: Entry
        let mode: SchemaCompatibility
        do {
            guard let info = storage.topicInfo(request.topic) else { throw MillraceError(.unknownTopic, "topic \"\(request.topic)\" does not exist") }
            mode = info.config.compatibility
            entry = try self.entry(request.topic)
            if let identical = try identicalVersion(of: schema.document, in: entry) {
                return completion(.success(RegisterSchemaResponse(version: identical, created: false)))
            }
            guard entry.latest < Limits.schemaVersionsPerTopicMax else {
                throw MillraceError(
                    .limitReached,
                    "topic \(request.topic) has \(entry.latest) schema versions, the most a topic may have (schemaVersionsPerTopicMax); make the change in a new topic, or re-register an earlier version")
            }
            let problems = try compatibilityProblems(of: schema, against: entry, mode: mode)
            guard problems.isEmpty else { return completion(.success(RegisterSchemaResponse(version: -1, created: false, problems: problems))) }
        } catch {
            return completion(.failure(error as? MillraceError ?? MillraceError(.unexpected, "\(error)")))
        }
        if request.dryRun { return completion(.success(RegisterSchemaResponse(version: entry.latest + 1, created: false))) }
        let checked = entry.latest
        let moved = Locked(false)
        storage.registerSchema(topic: request.topic, document: request.schema, decide: { topicID, latest in
            // The same topic (not one deleted and made again meanwhile) at the same version.
            guard topicID == entry.topicID, latest == checked else {
                moved.withLock { $0 = true }
                throw MillraceError(.writerBusy, "another registration changed topic \(request.topic)'s schemas while this one was checked; register again")
            }
            return nil
        }) { [self] result in
            switch result {
            case .success(let registered):
                forget(request.topic)
                // Compiled here, on the registry's thread: not by the next produce on an event
                // loop, nor on the storage thread this completion runs on.
                thread.submit { [self] state in
                    // Stopping: the closure runs at once on this (storage) thread; skip the work.
                    if case .active = state { _ = try? self.entry(request.topic) }
                    completion(.success(RegisterSchemaResponse(version: registered.version, created: registered.created)))
                }
            case .failure where moved.withLock({ $0 }) && attempt < Self.attemptsMax:
                forget(request.topic)
                thread.submit { [self] state in
                    guard case .active = state else {
                        return completion(.failure(MillraceError(.storageClosed, "the broker is stopping; register the schema again once it is back")))
                    }
                    decide(request, attempt: attempt + 1, completion: completion)
                }
            case .failure(let error):
                completion(.failure(error))
            }
        }
    }

    /// Every reason `schema` breaks `mode` against the topic's versions; a check too costly
    /// to finish is one reason that says so.
    private func compatibilityProblems(of schema: Schema, against entry: Entry, mode: SchemaCompatibility) throws -> [String] {
        guard mode != .noChecks, entry.latest > 0, let latest = entry.latestSchema else { return [] }
        var steps = Limits.schemaCompatibilityStepsMax
        var earlier: [(version: Int32, schema: Schema)] = []
        if mode.isTransitive {
            // Every earlier version's bytes are charged, cached or not: the same answer every
            // time, after a restart too.
            let earlierBytes = try storage.schemaVersions(topic: entry.topic).filter { $0.version < entry.latest }.reduce(0) { $0 + $1.bytes }
            steps -= earlierBytes
            if steps < 0 { return [Schema.compatibilityTooCostly(Limits.schemaCompatibilityStepsMax, mode).message] }
            for version in 1..<entry.latest {
                var compiledBytes = 0
                guard let older = try compiled(topic: entry.topic, topicID: entry.topicID, version: version, compiledBytes: &compiledBytes) else { continue }
                earlier.append((version, older))
            }
        }
        earlier.append((entry.latest, latest))
        do {
            return try Schema.compatibilityProblems(new: schema, earlier: earlier, mode: mode, steps: &steps)
        } catch {
            return [error.message]
        }
    }

    /// The version whose document is the same JSON as `document` (member order aside).
    private func identicalVersion(of document: JSONValue, in entry: Entry) throws -> Int32? {
        let digest = document.canonicalDigest
        var known = digests.withLock { $0[entry.topic] }
        if known?.topicID != entry.topicID { known = Digests(topicID: entry.topicID) }
        guard var known else { return nil }
        // Versions registered since the last look are read once each.
        if known.through < entry.latest {
            for version in (known.through + 1)...entry.latest {
                guard let stored = try storage.schema(topic: entry.topic, version: version),
                    let parsed = try? JSONTape.parse(stored.document, depthMax: Limits.schemaDepthMax * 3)
                else { continue }
                known.versions[parsed.value(at: 0).canonicalDigest, default: []].append(version)
            }
            known.through = entry.latest
            let updated = known
            digests.withLock { $0[entry.topic] = updated }
        }
        for version in known.versions[digest] ?? [] {
            // Same digest: confirm on the documents themselves.
            guard let stored = try storage.schema(topic: entry.topic, version: version),
                let parsed = try? JSONTape.parse(stored.document, depthMax: Limits.schemaDepthMax * 3)
            else { continue }
            if parsed.value(at: 0) == document { return version }
        }
        return nil
    }

    private struct Digests {
        let topicID: UInt32
        var through: Int32 = 0
        var versions: [UInt64: [Int32]] = [:]
    }
}

/// Compiled earlier schema versions, least recently used evicted past the byte limit.
struct CompiledCache {
    struct Key: Hashable {
        let topicID: UInt32
        let version: Int32
    }

    /// What a compiled schema takes per byte of its document (measured: 1.57 MB for 40 KB).
    static let bytesPerDocumentByte = 40

    private var entries: [Key: (schema: Schema, bytes: Int, used: UInt64)] = [:]
    private(set) var bytes = 0
    private var uses: UInt64 = 0
    let bytesMax: Int

    init(bytesMax: Int = Limits.schemaCompiledCacheBytesMax) { self.bytesMax = bytesMax }

    var count: Int { entries.count }

    mutating func get(_ key: Key) -> Schema? {
        guard let found = entries[key] else { return nil }
        uses += 1
        entries[key]?.used = uses
        return found.schema
    }

    /// Keeps `schema` unless it alone is over the limit; evicts the least recently used.
    mutating func put(_ key: Key, _ schema: Schema, bytes size: Int) {
        guard size <= bytesMax, entries[key] == nil else { return }
        while bytes + size > bytesMax, let oldest = entries.min(by: { $0.value.used < $1.value.used }) {
            bytes -= oldest.value.bytes
            entries[oldest.key] = nil
        }
        uses += 1
        entries[key] = (schema, size, uses)
        bytes += size
    }
}
