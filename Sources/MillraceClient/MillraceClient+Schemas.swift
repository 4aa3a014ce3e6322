import MillraceFormat
import MillraceSchema
import MillraceWire

extension MillraceClient {
    /// Registers `schema` as the topic's next version (or finds the identical one). A schema
    /// that breaks the topic's compatibility mode comes back with `problems` and no version;
    /// with `dryRun` nothing is registered either way.
    public func registerSchema(topic: String, schema: [UInt8], dryRun: Bool = false) async throws -> RegisterSchemaResponse {
        guard case .registerSchema(let response) = try await send(.registerSchema(RegisterSchemaRequest(topic: topic, schema: schema, dryRun: dryRun))) else {
            throw Self.unexpectedBody
        }
        return response
    }

    /// One version's document; nil version: the latest.
    public func schema(topic: String, version: Int32? = nil) async throws -> SchemaResponse {
        guard case .getSchema(let response) = try await send(.getSchema(topic: topic, version: version ?? -1)) else { throw Self.unexpectedBody }
        return response
    }

    /// A version compiled for validating, fetched once and cached (versions are immutable).
    public func compiledSchema(topic: String, version: Int32? = nil) async throws -> (version: Int32, schema: Schema) {
        if let version, let cached = schemaCache.withLockedValue({ $0[topic]?[version] }) { return (version, cached) }
        let fetched = try await schema(topic: topic, version: version)
        let compiled: Schema
        do {
            compiled = try Schema(json: fetched.schema)
        } catch {
            throw MillraceError(.invalidSchema, "schema version \(fetched.version) of \(topic) does not compile here: \(error.message)")
        }
        schemaCache.withLockedValue { $0[topic, default: [:]][fetched.version] = compiled }
        return (fetched.version, compiled)
    }

    public func listSchemas(topic: String) async throws -> ListSchemasResponse {
        guard case .listSchemas(let response) = try await send(.listSchemas(topic: topic)) else { throw Self.unexpectedBody }
        return response
    }

    /// Changes the topic's compatibility mode and/or what happens to invalid records (nil:
    /// unchanged). Choosing quarantine creates `<topic>.quarantine`.
    public func setSchemaPolicy(topic: String, compatibility: SchemaCompatibility? = nil, onInvalid: InvalidRecordPolicy? = nil) async throws {
        _ = try await send(
            .setSchemaPolicy(
                SchemaPolicyRequest(topic: topic, compatibility: compatibility.map { Int8($0.rawValue) } ?? -1, onInvalid: onInvalid.map { Int8($0.rawValue) } ?? -1)))
    }
}
