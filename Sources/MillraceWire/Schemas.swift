import MillraceFormat
import NIOCore

/// The header a record names its schema version in (ASCII digits). Without it the record is
/// checked against the topic's latest version.
public let schemaVersionHeader = "millrace-schema-version"

// MARK: Requests

public struct RegisterSchemaRequest: Equatable, Sendable {
    public var topic: String
    /// The JSON Schema document (UTF-8 JSON).
    public var schema: [UInt8]
    /// Only check it (validity and compatibility); register nothing.
    public var dryRun: Bool

    public init(topic: String, schema: [UInt8], dryRun: Bool = false) {
        self.topic = topic
        self.schema = schema
        self.dryRun = dryRun
    }
}

public struct SchemaPolicyRequest: Equatable, Sendable {
    public var topic: String
    /// A `SchemaCompatibility` raw value, or -1 to keep the current one.
    public var compatibility: Int8
    /// An `InvalidRecordPolicy` raw value, or -1 to keep the current one.
    public var onInvalid: Int8

    public init(topic: String, compatibility: Int8 = -1, onInvalid: Int8 = -1) {
        self.topic = topic
        self.compatibility = compatibility
        self.onInvalid = onInvalid
    }
}

/// AlterTopic: each field's -2 (`unchanged`) leaves it as it is.
public struct AlterTopicRequest: Equatable, Sendable {
    public static let unchanged: Int64 = -2
    public var topic: String
    /// ms; -1 keeps batches forever.
    public var retentionMs: Int64
    /// Per partition; -1 no size limit.
    public var retentionBytes: Int64
    /// A `CompressionCodec` raw value, or -1 unchanged.
    public var compression: Int16
    /// v1: the topic's owner from now on ("": none); nil leaves it.
    public var owner: String?

    public init(topic: String, retentionMs: Int64 = unchanged, retentionBytes: Int64 = unchanged, compression: Int16 = -1, owner: String? = nil) {
        self.owner = owner
        self.topic = topic
        self.retentionMs = retentionMs
        self.retentionBytes = retentionBytes
        self.compression = compression
    }
}

// MARK: Responses

public struct RegisterSchemaResponse: Equatable, Sendable {
    /// The version registered, the identical version found, or (dry run, or refused) the
    /// version it would get; -1 when refused.
    public var version: Int32
    /// A new version was written.
    public var created: Bool
    /// Every reason the schema breaks the topic's compatibility mode; when any, nothing was
    /// registered.
    public var problems: [String]

    public init(version: Int32, created: Bool, problems: [String] = []) {
        self.version = version
        self.created = created
        self.problems = problems
    }
}

public struct SchemaResponse: Equatable, Sendable {
    public var version: Int32
    public var registeredAtMs: Int64
    public var schema: [UInt8]

    public init(version: Int32, registeredAtMs: Int64, schema: [UInt8]) {
        self.version = version
        self.registeredAtMs = registeredAtMs
        self.schema = schema
    }
}

public struct SchemaVersionSummary: WireCodable {
    public var version: Int32
    public var registeredAtMs: Int64
    public var bytes: Int32

    public init(version: Int32, registeredAtMs: Int64, bytes: Int32) {
        self.version = version
        self.registeredAtMs = registeredAtMs
        self.bytes = bytes
    }

    public static var minimumBytes: Int { 16 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(version)
        buffer.writeInteger(registeredAtMs)
        buffer.writeInteger(bytes)
    }
    public init(from buffer: inout ByteBuffer) throws {
        version = try buffer.readMillraceInteger("version")
        registeredAtMs = try buffer.readMillraceInteger("registered at")
        bytes = try buffer.readMillraceInteger("bytes")
    }
}

public struct ListSchemasResponse: Equatable, Sendable {
    public var compatibility: Int8
    public var onInvalid: Int8
    public var versions: [SchemaVersionSummary]

    public init(compatibility: Int8, onInvalid: Int8, versions: [SchemaVersionSummary]) {
        self.compatibility = compatibility
        self.onInvalid = onInvalid
        self.versions = versions
    }
}

/// What happened to one record of a produce that was not simply appended in order (Produce
/// version 1). Records not listed were appended: the n-th such record of a partition is at
/// the partition's base offset + n.
public struct RecordOutcome: WireCodable {
    public enum Kind: Int8, Sendable {
        /// Caught as a duplicate of the record at `offset` (issue 9); not stored again.
        case duplicate = 1
        /// Breaks the schema; not stored (policy reject).
        case invalid = 2
        /// Breaks the schema; stored in `<topic>.quarantine` at `offset` (policy quarantine),
        /// or found there already at `offset` (the topic's dedup key, parked before).
        case quarantined = 3
    }

    /// The record's position among the partition's records in the request, from 0.
    public var index: Int32
    public var kind: Kind
    /// Where it is: the quarantine offset, or the original's offset for a duplicate; else -1.
    public var offset: Int64
    /// A duplicate's original is in this partition (Produce version 2); else -1.
    public var partition: Int32 = -1
    /// The schema version it was checked against (0: none).
    public var schemaVersion: Int32
    /// JSON pointer into the record's value ("" for the whole value).
    public var path: String
    /// The schema keyword it broke (`minimum`, `required`, ...), or `json` for a value that
    /// is not JSON.
    public var rule: String
    /// A sentence with the value, e.g. `-3 is less than minimum 0`.
    public var message: String

    public init(
        index: Int32, kind: Kind, offset: Int64 = -1, partition: Int32 = -1, schemaVersion: Int32 = 0, path: String = "", rule: String = "",
        message: String = ""
    ) {
        self.partition = partition
        self.index = index
        self.kind = kind
        self.offset = offset
        self.schemaVersion = schemaVersion
        self.path = path
        self.rule = rule
        self.message = message
    }

    /// `record 17: /yield_qty: -3 is less than minimum 0`.
    public var description: String { "record \(index): \(path.isEmpty ? "/" : path): \(message)" }

    public static var minimumBytes: Int { 23 }
    public func write(to buffer: inout ByteBuffer) { write(to: &buffer, version: 1) }

    public func write(to buffer: inout ByteBuffer, version: Int16) {
        buffer.writeInteger(index)
        buffer.writeInteger(kind.rawValue)
        buffer.writeInteger(offset)
        if version >= 2 { buffer.writeInteger(partition) }
        buffer.writeInteger(schemaVersion)
        buffer.writeMillraceString(path, maxBytes: Limits.outcomePathBytesMax)
        buffer.writeMillraceString(rule, maxBytes: Limits.outcomeRuleBytesMax)
        buffer.writeMillraceString(message, maxBytes: Limits.outcomeMessageBytesMax)
    }
    public init(from buffer: inout ByteBuffer) throws { try self.init(from: &buffer, version: 1) }

    public init(from buffer: inout ByteBuffer, version: Int16) throws {
        index = try buffer.readMillraceInteger("record index")
        let raw: Int8 = try buffer.readMillraceInteger("outcome")
        guard let kind = Kind(rawValue: raw) else { throw MillraceError(.malformedRequest, "record outcome \(raw) is unknown") }
        self.kind = kind
        offset = try buffer.readMillraceInteger("outcome offset")
        if version >= 2 { partition = try buffer.readMillraceInteger("outcome partition") }
        schemaVersion = try buffer.readMillraceInteger("schema version")
        path = try buffer.readMillraceString("path")
        rule = try buffer.readMillraceString("rule")
        message = try buffer.readMillraceString("message")
    }
}
