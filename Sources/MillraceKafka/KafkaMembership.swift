import MillraceFormat
import MillraceWire
import NIOCore

/// Heartbeat (key 12) and LeaveGroup (key 13), versions 0...4 (v4 flexible): a member of a
/// group says it is alive, or that it (or, from LeaveGroup v3, a batch of static members)
/// leaves.
public enum KafkaMembership {
    public static let versions: ClosedRange<Int16> = 0...4

    public struct Heartbeat: Equatable, Sendable {
        public var groupID: String
        public var generationID: Int32
        public var memberID: String
        /// A static member's id (v3+).
        public var groupInstanceID: String?

        public init(groupID: String, generationID: Int32, memberID: String, groupInstanceID: String? = nil) {
            self.groupID = groupID
            self.generationID = generationID
            self.memberID = memberID
            self.groupInstanceID = groupInstanceID
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            let flexible = version >= 4
            groupID = try buffer.readKafkaString("group id", flexible: flexible, maxBytes: Limits.groupNameBytesMax)
            generationID = try buffer.readMillraceInteger("generation id")
            memberID = try buffer.readKafkaString("member id", flexible: flexible, maxBytes: Limits.memberIDBytesMax)
            groupInstanceID =
                version >= 3 ? try buffer.readKafkaNullableString("group instance id", flexible: flexible, maxBytes: Limits.memberIDBytesMax) : nil
            if flexible { try buffer.skipKafkaTaggedFields("heartbeat request") }
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            let flexible = version >= 4
            buffer.writeKafkaString(groupID, flexible: flexible)
            buffer.writeInteger(generationID)
            buffer.writeKafkaString(memberID, flexible: flexible)
            if version >= 3 { buffer.writeKafkaString(groupInstanceID, flexible: flexible) }
            if flexible { buffer.writeKafkaEmptyTaggedFields() }
        }
    }

    /// A leaving member (LeaveGroup v3+ sends a list; before, one member id).
    public struct Leaver: Equatable, Sendable {
        public var memberID: String
        public var groupInstanceID: String?
        /// What the member answered with, in the response (v3+).
        public var errorCode: Int16

        public init(memberID: String, groupInstanceID: String? = nil, errorCode: Int16 = 0) {
            self.memberID = memberID
            self.groupInstanceID = groupInstanceID
            self.errorCode = errorCode
        }
    }

    public struct LeaveGroup: Equatable, Sendable {
        public var groupID: String
        public var members: [Leaver]

        public init(groupID: String, members: [Leaver]) {
            self.groupID = groupID
            self.members = members
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            let flexible = version >= 4
            groupID = try buffer.readKafkaString("group id", flexible: flexible, maxBytes: Limits.groupNameBytesMax)
            if version >= 3 {
                members = try buffer.readKafkaArray("members", flexible: flexible, minimumElementBytes: 3, countMax: Limits.groupMembersMax) { buffer in
                    let leaver = Leaver(
                        memberID: try buffer.readKafkaString("member id", flexible: flexible, maxBytes: Limits.memberIDBytesMax),
                        groupInstanceID: try buffer.readKafkaNullableString("group instance id", flexible: flexible, maxBytes: Limits.memberIDBytesMax))
                    if flexible { try buffer.skipKafkaTaggedFields("leaving member") }
                    return leaver
                }
            } else {
                members = [Leaver(memberID: try buffer.readKafkaString("member id", flexible: false, maxBytes: Limits.memberIDBytesMax))]
            }
            if flexible { try buffer.skipKafkaTaggedFields("leave group request") }
        }

        /// Before v3 only the first member is written (the version has room for one).
        public func write(to buffer: inout ByteBuffer, version: Int16) {
            let flexible = version >= 4
            buffer.writeKafkaString(groupID, flexible: flexible)
            if version >= 3 {
                buffer.writeKafkaArray(members, flexible: flexible) { buffer, leaver in
                    buffer.writeKafkaString(leaver.memberID, flexible: flexible)
                    buffer.writeKafkaString(leaver.groupInstanceID, flexible: flexible)
                    if flexible { buffer.writeKafkaEmptyTaggedFields() }
                }
            } else {
                buffer.writeKafkaString(members.first?.memberID ?? "", flexible: false)
            }
            if flexible { buffer.writeKafkaEmptyTaggedFields() }
        }
    }

    /// The answer to either: a throttle time (v1+) and an error; for LeaveGroup v3+ each
    /// member's own answer too (nil for Heartbeat, and before v3).
    public struct Response: Equatable, Sendable {
        public var throttleTimeMs: Int32
        public var errorCode: Int16
        public var members: [Leaver]?

        public init(throttleTimeMs: Int32 = 0, errorCode: Int16 = 0, members: [Leaver]? = nil) {
            self.throttleTimeMs = throttleTimeMs
            self.errorCode = errorCode
            self.members = members
        }

        public func write(to buffer: inout ByteBuffer, version: Int16, api: KafkaApiKey) {
            let flexible = version >= 4
            if version >= 1 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeInteger(errorCode)
            if api == .leaveGroup && version >= 3 {
                buffer.writeKafkaArray(members ?? [], flexible: flexible) { buffer, leaver in
                    buffer.writeKafkaString(leaver.memberID, flexible: flexible)
                    buffer.writeKafkaString(leaver.groupInstanceID, flexible: flexible)
                    buffer.writeInteger(leaver.errorCode)
                    if flexible { buffer.writeKafkaEmptyTaggedFields() }
                }
            }
            if flexible { buffer.writeKafkaEmptyTaggedFields() }
        }

        public init(from buffer: inout ByteBuffer, version: Int16, api: KafkaApiKey) throws {
            let flexible = version >= 4
            throttleTimeMs = version >= 1 ? try buffer.readMillraceInteger("throttle time") : 0
            errorCode = try buffer.readMillraceInteger("error code")
            if api == .leaveGroup && version >= 3 {
                members = try buffer.readKafkaArray("members", flexible: flexible, minimumElementBytes: 5) { buffer in
                    let leaver = Leaver(
                        memberID: try buffer.readKafkaString("member id", flexible: flexible),
                        groupInstanceID: try buffer.readKafkaNullableString("group instance id", flexible: flexible),
                        errorCode: try buffer.readMillraceInteger("member error code"))
                    if flexible { try buffer.skipKafkaTaggedFields("left member") }
                    return leaver
                }
            } else {
                members = nil
            }
            if flexible { try buffer.skipKafkaTaggedFields("membership response") }
        }
    }
}
