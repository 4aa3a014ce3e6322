import MillraceFormat
import MillraceSchema
import MillraceStorage
import MillraceWire
import NIOConcurrencyHelpers

/// Each topic's schema versions, compiled once and kept in memory for the produce path.
/// The storage holds the documents; an entry is dropped when a version is registered or the
/// topic is deleted, and is not trusted for a re-created topic (its id differs).
final class SchemaRegistry: Sendable {
    struct Entry: Sendable {
        let topicID: UInt32
        let versions: [Int32: Schema]
        /// 0 when the topic has no schema.
        let latest: Int32
    }

    private let storage: Storage
    private let entries = NIOLockedValueBox<[String: Entry]>([:])

    init(storage: Storage) { self.storage = storage }

    /// The topic's compiled schemas (`latest` 0 when it has none).
    func entry(_ topic: String) throws -> Entry {
        guard let info = storage.topicInfo(topic) else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
        if let cached = entries.withLockedValue({ $0[topic] }), cached.topicID == info.id { return cached }
        var versions: [Int32: Schema] = [:]
        for stored in try storage.schemas(topic: topic) {
            do {
                versions[stored.version] = try Schema(json: stored.document)
            } catch {
                throw MillraceError(.storageError, "schema version \(stored.version) of topic \(topic) no longer compiles: \(error)")
            }
        }
        let entry = Entry(topicID: info.id, versions: versions, latest: versions.keys.max() ?? 0)
        entries.withLockedValue { $0[topic] = entry }
        return entry
    }

    func forget(_ topic: String) {
        entries.withLockedValue { $0[topic] = nil }
    }

    /// Checks `document` against the topic's versions and compatibility mode and, unless
    /// `dryRun`, registers it (deciding again on the writer thread, against the history as it
    /// is then). `completion` runs on a storage thread, or at once.
    func register(_ request: RegisterSchemaRequest, completion: @escaping @Sendable (Result<RegisterSchemaResponse, MillraceError>) -> Void) {
        let schema: Schema
        do {
            schema = try Schema(json: request.schema)
        } catch {
            return completion(.failure(MillraceError(.invalidSchema, error.message)))
        }
        guard let info = storage.topicInfo(request.topic) else {
            return completion(.failure(MillraceError(.unknownTopic, "topic \"\(request.topic)\" does not exist")))
        }
        let mode = info.config.compatibility
        let problems = NIOLockedValueBox<[String]>([])
        // Versions never change: those compiled already are reused, so the decision on the
        // writer thread compiles at most what was registered since.
        let known = (try? entry(request.topic).versions) ?? [:]
        let decide: @Sendable ([StoredSchema]) throws -> Int32? = { existing in
            var earlier: [(version: Int32, schema: Schema)] = []
            for stored in existing {
                let compiled = try known[stored.version] ?? Schema(json: stored.document)
                if compiled.document == schema.document { return stored.version }
                earlier.append((stored.version, compiled))
            }
            let found = Schema.compatibilityProblems(new: schema, earlier: earlier, mode: mode)
            guard found.isEmpty else {
                problems.withLockedValue { $0 = found }
                throw MillraceError(.incompatibleSchema, "\(found.count) compatibility problem\(found.count == 1 ? "" : "s")")
            }
            return nil
        }
        let refused: @Sendable () -> RegisterSchemaResponse = { RegisterSchemaResponse(version: -1, created: false, problems: problems.withLockedValue { $0 }) }
        if request.dryRun {
            do {
                let existing = try storage.schemas(topic: request.topic)
                if let identical = try decide(existing) { return completion(.success(RegisterSchemaResponse(version: identical, created: false))) }
                completion(.success(RegisterSchemaResponse(version: (existing.last?.version ?? 0) + 1, created: false)))
            } catch let error as MillraceError where error.code == .incompatibleSchema {
                completion(.success(refused()))
            } catch {
                completion(.failure(error as? MillraceError ?? MillraceError(.unexpected, "\(error)")))
            }
            return
        }
        storage.registerSchema(topic: request.topic, document: request.schema, decide: decide) { [self] result in
            switch result {
            case .success(let registered):
                forget(request.topic)
                completion(.success(RegisterSchemaResponse(version: registered.version, created: registered.created)))
            case .failure(let error) where error.code == .incompatibleSchema:
                completion(.success(refused()))
            case .failure(let error):
                completion(.failure(error))
            }
        }
    }
}
