import MillraceFormat
import MillraceSchema
import MillraceWire

extension MillraceClient {
    /// What registering a schema did: the version (registered now, or the identical one
    /// found), whether it is new, and the compatibility problems when it was refused
    /// (`version` is then -1).
    public struct SchemaRegistration: Sendable, Equatable {
        /// The version number.
        public var version: Int32
        /// Whether this call registered it (false: the identical version was there, or it was refused).
        public var created: Bool
        /// Why it was refused under the topic's compatibility mode (empty when it was not).
        public var problems: [String]

        public init(version: Int32, created: Bool, problems: [String] = []) {
            self.version = version
            self.created = created
            self.problems = problems
        }
    }

    /// One schema version as registered.
    public struct SchemaDocument: Sendable, Equatable {
        /// The version number.
        public var version: Int32
        /// When it was registered, milliseconds since 1970.
        public var registeredAtMs: Int64
        /// The JSON Schema document, as sent.
        public var schema: [UInt8]
    }

    /// A topic's schema versions and its schema policies.
    public struct SchemaVersions: Sendable, Equatable {
        /// One registered version.
        public struct Version: Sendable, Equatable {
            /// The version number.
            public var version: Int32
            /// When it was registered, milliseconds since 1970.
            public var registeredAtMs: Int64
            /// The document's size.
            public var bytes: Int32
        }

        /// How new versions must relate to earlier ones.
        public var compatibility: SchemaCompatibility
        /// What happens to records that break the schema.
        public var onInvalid: InvalidRecordPolicy
        /// Every version, oldest first.
        public var versions: [Version]
    }

    /// Registers `schema` as the topic's next version (or finds the identical one). A schema
    /// that breaks the topic's compatibility mode comes back with `problems` and no version;
    /// with `dryRun` nothing is registered either way.
    public func registerSchema(topic: String, schema: [UInt8], dryRun: Bool = false) async throws -> SchemaRegistration {
        guard case .registerSchema(let response) = try await send(.registerSchema(RegisterSchemaRequest(topic: topic, schema: schema, dryRun: dryRun))) else {
            throw Self.unexpectedBody
        }
        return SchemaRegistration(version: response.version, created: response.created, problems: response.problems)
    }

    /// One version's document; nil version: the latest.
    public func schema(topic: String, version: Int32? = nil) async throws -> SchemaDocument {
        guard case .getSchema(let response) = try await send(.getSchema(topic: topic, version: version ?? -1)) else { throw Self.unexpectedBody }
        return SchemaDocument(version: response.version, registeredAtMs: response.registeredAtMs, schema: response.schema)
    }

    /// A version compiled for validating, fetched once and cached (versions are immutable).
    public func compiledSchema(topic: String, version: Int32? = nil) async throws -> (version: Int32, schema: Schema) {
        if let version, let cached = schemaCache.withLock({ $0[topic]?[version] }) { return (version, cached) }
        let fetched = try await schema(topic: topic, version: version)
        let compiled: Schema
        do {
            compiled = try Schema(json: fetched.schema)
        } catch {
            throw MillraceError(.invalidSchema, "schema version \(fetched.version) of \(topic) does not compile here: \(error.message)")
        }
        schemaCache.withLock { $0[topic, default: [:]][fetched.version] = compiled }
        return (fetched.version, compiled)
    }

    public func listSchemas(topic: String) async throws -> SchemaVersions {
        guard case .listSchemas(let response) = try await send(.listSchemas(topic: topic)) else { throw Self.unexpectedBody }
        guard let compatibility = SchemaCompatibility(rawValue: UInt8(clamping: response.compatibility)),
            let onInvalid = InvalidRecordPolicy(rawValue: UInt8(clamping: response.onInvalid))
        else {
            throw MillraceError(.unexpected, "the broker named schema policies this client does not know (\(response.compatibility), \(response.onInvalid)); upgrade the client")
        }
        return SchemaVersions(
            compatibility: compatibility, onInvalid: onInvalid,
            versions: response.versions.map { SchemaVersions.Version(version: $0.version, registeredAtMs: $0.registeredAtMs, bytes: $0.bytes) })
    }

    /// Changes the topic's compatibility mode and/or what happens to invalid records (nil:
    /// unchanged). Choosing quarantine creates `<topic>.quarantine`.
    public func setSchemaPolicy(topic: String, compatibility: SchemaCompatibility? = nil, onInvalid: InvalidRecordPolicy? = nil) async throws {
        _ = try await send(
            .setSchemaPolicy(
                SchemaPolicyRequest(topic: topic, compatibility: compatibility.map { Int8($0.rawValue) } ?? -1, onInvalid: onInvalid.map { Int8($0.rawValue) } ?? -1)))
    }
}
