import MillraceFormat
import MillraceWire
import NIOCore

/// FindCoordinator (key 10), versions 0...3 (v3 flexible): which broker coordinates a group
/// (key type 0) or a transaction (1; Millrace has none). Version 4 (several keys at once) is
/// not offered.
public enum KafkaFindCoordinator {
    public static let versions: ClosedRange<Int16> = 0...3

    public struct Request: Equatable, Sendable {
        public var key: String
        public var keyType: Int8

        public init(key: String, keyType: Int8 = 0) {
            self.key = key
            self.keyType = keyType
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            let flexible = version >= 3
            key = try buffer.readKafkaString("coordinator key", flexible: flexible, maxBytes: Limits.groupNameBytesMax)
            keyType = version >= 1 ? try buffer.readMillraceInteger("key type") : 0
            if flexible { try buffer.skipKafkaTaggedFields("find coordinator request") }
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            let flexible = version >= 3
            buffer.writeKafkaString(key, flexible: flexible)
            if version >= 1 { buffer.writeInteger(keyType) }
            if flexible { buffer.writeKafkaEmptyTaggedFields() }
        }
    }

    public struct Response: Equatable, Sendable {
        public var throttleTimeMs: Int32
        public var errorCode: Int16
        public var errorMessage: String?
        public var nodeID: Int32
        public var host: String
        public var port: Int32

        public init(throttleTimeMs: Int32 = 0, errorCode: Int16 = 0, errorMessage: String? = nil, nodeID: Int32, host: String, port: Int32) {
            self.throttleTimeMs = throttleTimeMs
            self.errorCode = errorCode
            self.errorMessage = errorMessage
            self.nodeID = nodeID
            self.host = host
            self.port = port
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            let flexible = version >= 3
            if version >= 1 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeInteger(errorCode)
            if version >= 1 { buffer.writeKafkaString(errorMessage, flexible: flexible) }
            buffer.writeInteger(nodeID)
            buffer.writeKafkaString(host, flexible: flexible)
            buffer.writeInteger(port)
            if flexible { buffer.writeKafkaEmptyTaggedFields() }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            let flexible = version >= 3
            throttleTimeMs = version >= 1 ? try buffer.readMillraceInteger("throttle time") : 0
            errorCode = try buffer.readMillraceInteger("error code")
            errorMessage = version >= 1 ? try buffer.readKafkaNullableString("error message", flexible: flexible) : nil
            nodeID = try buffer.readMillraceInteger("node id")
            host = try buffer.readKafkaString("host", flexible: flexible)
            port = try buffer.readMillraceInteger("port")
            if flexible { try buffer.skipKafkaTaggedFields("find coordinator response") }
        }
    }
}
