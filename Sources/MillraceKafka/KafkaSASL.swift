import MillraceFormat
import MillraceWire
import NIOCore

/// SaslHandshake (key 17) v0–1 and SaslAuthenticate (key 36) v0–2 (v2 flexible): how a Kafka
/// client logs in (issue 26; KIP-152). The client names a mechanism (SCRAM-SHA-256, …), then
/// sends the mechanism's messages as opaque bytes, one SaslAuthenticate each. Not served yet.
public enum KafkaSASL {
    public static let handshakeVersions: ClosedRange<Int16> = 0...1
    public static let authenticateVersions: ClosedRange<Int16> = 0...2
    /// Bytes one SASL message may hold (a SCRAM message is under 300).
    public static let messageBytesMax = 4_096

    public struct HandshakeRequest: Equatable, Sendable {
        public var mechanism: String
        public init(mechanism: String) { self.mechanism = mechanism }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            mechanism = try buffer.readKafkaString("mechanism", flexible: false, maxBytes: 64)
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) { buffer.writeKafkaString(mechanism, flexible: false) }
    }

    public struct HandshakeResponse: Equatable, Sendable {
        public var errorCode: Int16
        public var mechanisms: [String]

        public init(errorCode: Int16 = 0, mechanisms: [String]) {
            self.errorCode = errorCode
            self.mechanisms = mechanisms
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeInteger(errorCode)
            buffer.writeKafkaArray(mechanisms, flexible: false) { $0.writeKafkaString($1, flexible: false) }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            errorCode = try buffer.readMillraceInteger("error code")
            mechanisms = try buffer.readKafkaArray("mechanisms", flexible: false, minimumElementBytes: 2, countMax: 64) {
                try $0.readKafkaString("mechanism", flexible: false, maxBytes: 64)
            }
        }
    }

    public struct AuthenticateRequest: Equatable, Sendable {
        public var authBytes: [UInt8]
        public init(authBytes: [UInt8]) { self.authBytes = authBytes }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            let flexible = version >= 2
            let bytes: [UInt8]
            if flexible {
                bytes = try buffer.readKafkaCompactBytes("auth bytes").map { Array($0.readableBytesView) } ?? []
            } else {
                bytes = try buffer.readMillraceBytes("auth bytes") ?? []
            }
            guard bytes.count <= KafkaSASL.messageBytesMax else {
                throw MillraceError(.invalidRequest, "a SASL message of \(bytes.count) bytes; the limit is \(KafkaSASL.messageBytesMax)")
            }
            authBytes = bytes
            if flexible { try buffer.skipKafkaTaggedFields("sasl authenticate request") }
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            if version >= 2 {
                buffer.writeKafkaCompactBytes(ByteBuffer(bytes: authBytes))
                buffer.writeKafkaEmptyTaggedFields()
            } else {
                buffer.writeMillraceBytes(authBytes)
            }
        }
    }

    public struct AuthenticateResponse: Equatable, Sendable {
        public var errorCode: Int16
        public var errorMessage: String?
        public var authBytes: [UInt8]
        /// v1+: how long the login holds (0: until the connection closes).
        public var sessionLifetimeMs: Int64

        public init(errorCode: Int16 = 0, errorMessage: String? = nil, authBytes: [UInt8], sessionLifetimeMs: Int64 = 0) {
            self.errorCode = errorCode
            self.errorMessage = errorMessage
            self.authBytes = authBytes
            self.sessionLifetimeMs = sessionLifetimeMs
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            let flexible = version >= 2
            buffer.writeInteger(errorCode)
            buffer.writeKafkaString(errorMessage, flexible: flexible)
            if flexible { buffer.writeKafkaCompactBytes(ByteBuffer(bytes: authBytes)) } else { buffer.writeMillraceBytes(authBytes) }
            if version >= 1 { buffer.writeInteger(sessionLifetimeMs) }
            if flexible { buffer.writeKafkaEmptyTaggedFields() }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            let flexible = version >= 2
            errorCode = try buffer.readMillraceInteger("error code")
            errorMessage = try buffer.readKafkaNullableString("error message", flexible: flexible)
            if flexible {
                authBytes = try buffer.readKafkaCompactBytes("auth bytes").map { Array($0.readableBytesView) } ?? []
            } else {
                authBytes = try buffer.readMillraceBytes("auth bytes") ?? []
            }
            sessionLifetimeMs = version >= 1 ? try buffer.readMillraceInteger("session lifetime") : 0
            if flexible { try buffer.skipKafkaTaggedFields("sasl authenticate response") }
        }
    }
}
