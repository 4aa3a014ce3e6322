import MillraceFormat
import MillraceWire
import NIOCore

/// A Kafka request header: v1 (api key, version, correlation id, nullable client id) and,
/// for a flexible version, v2 (then tagged fields). The frame's `i32` size is the framer's.
public struct KafkaRequestHeader: Equatable, Sendable {
    /// The raw api key: one not served is answered, not dropped (UNSUPPORTED_VERSION).
    public var apiKey: Int16
    public var apiVersion: Int16
    public var correlationID: Int32
    public var clientID: String?

    public init(apiKey: Int16, apiVersion: Int16, correlationID: Int32, clientID: String?) {
        self.apiKey = apiKey
        self.apiVersion = apiVersion
        self.correlationID = correlationID
        self.clientID = clientID
    }

    /// The api as one the listener knows, nil for another.
    public var api: KafkaApiKey? { KafkaApiKey(rawValue: apiKey) }

    /// Reads a header from the start of a frame's body. The header's own version follows from
    /// the api and its version; for an api not known, v1 (the client id is still read, so an
    /// answer can name the client).
    public init(from buffer: inout ByteBuffer) throws {
        apiKey = try buffer.readMillraceInteger("api key")
        apiVersion = try buffer.readMillraceInteger("api version")
        correlationID = try buffer.readMillraceInteger("correlation id")
        // The client id stays an i16 string in header v2 too (KIP-482 kept it for parsing
        // ApiVersions before the version is known).
        clientID = try buffer.readKafkaNullableString("client id")
        if let api, api.isFlexible(apiVersion) { try buffer.skipKafkaTaggedFields("request header") }
    }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(apiKey)
        buffer.writeInteger(apiVersion)
        buffer.writeInteger(correlationID)
        buffer.writeKafkaNullableString(clientID)
        if let api, api.isFlexible(apiVersion) { buffer.writeKafkaEmptyTaggedFields() }
    }
}

/// Writes a response header for `header`'s request: the correlation id, then (response
/// header v1) tagged fields where the api and version call for them.
public func writeKafkaResponseHeader(for header: KafkaRequestHeader, into buffer: inout ByteBuffer) {
    buffer.writeInteger(header.correlationID)
    if let api = header.api, api.responseHeaderHasTags(header.apiVersion) { buffer.writeKafkaEmptyTaggedFields() }
}

/// A topic and its per-partition entries, as most Kafka requests and answers group them (the
/// entries' encoding depends on the message and its version).
public struct KafkaTopic<Entry: Equatable & Sendable>: Equatable, Sendable {
    public var name: String
    public var entries: [Entry]

    public init(name: String, _ entries: [Entry]) {
        self.name = name
        self.entries = entries
    }
}
