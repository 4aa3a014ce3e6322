import MillraceFormat
import MillraceWire
import NIOCore

/// The consumer group APIs a broker serves for client-side assignment, at the versions before
/// flexible ones: JoinGroup (11) v0–5, SyncGroup (14) v0–3, OffsetCommit (8) v2–7, OffsetFetch
/// (9) v1–5, DescribeGroups (15) v0–4, ListGroups (16) v0–2. Requests are read (every count
/// and length checked against the named limits before anything is allocated), answers
/// written; Heartbeat and LeaveGroup are in `KafkaMembership`.
public enum KafkaGroups {
    public static let joinVersions: ClosedRange<Int16> = 0...5
    public static let syncVersions: ClosedRange<Int16> = 0...3
    public static let offsetCommitVersions: ClosedRange<Int16> = 2...7
    public static let offsetFetchVersions: ClosedRange<Int16> = 1...5
    public static let describeVersions: ClosedRange<Int16> = 0...4
    public static let listVersions: ClosedRange<Int16> = 0...2

    /// Bytes a member's protocol metadata or assignment may hold.
    public static let memberBytesMax = 1 << 20

    static func readBytes(_ buffer: inout ByteBuffer, _ what: String) throws -> [UInt8] {
        let bytes = try buffer.readMillraceBytes(what) ?? []
        guard bytes.count <= memberBytesMax else { throw MillraceError(.invalidRequest, "\(what) is \(bytes.count) bytes; the limit is \(memberBytesMax)") }
        return bytes
    }

    // MARK: JoinGroup

    public struct JoinRequest: Equatable, Sendable {
        public var groupID: String
        public var sessionTimeoutMs: Int32
        public var rebalanceTimeoutMs: Int32
        public var memberID: String
        public var groupInstanceID: String?
        public var protocolType: String
        public var protocols: [Protocol]

        public struct `Protocol`: Equatable, Sendable {
            public var name: String
            public var metadata: [UInt8]
            public init(name: String, metadata: [UInt8]) {
                self.name = name
                self.metadata = metadata
            }
        }

        public init(
            groupID: String, sessionTimeoutMs: Int32, rebalanceTimeoutMs: Int32, memberID: String, groupInstanceID: String? = nil, protocolType: String,
            protocols: [Protocol]
        ) {
            self.groupID = groupID
            self.sessionTimeoutMs = sessionTimeoutMs
            self.rebalanceTimeoutMs = rebalanceTimeoutMs
            self.memberID = memberID
            self.groupInstanceID = groupInstanceID
            self.protocolType = protocolType
            self.protocols = protocols
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            groupID = try buffer.readKafkaString("group id", flexible: false, maxBytes: Limits.groupNameBytesMax)
            sessionTimeoutMs = try buffer.readMillraceInteger("session timeout")
            rebalanceTimeoutMs = version >= 1 ? try buffer.readMillraceInteger("rebalance timeout") : sessionTimeoutMs
            memberID = try buffer.readKafkaString("member id", flexible: false, maxBytes: Limits.memberIDBytesMax)
            groupInstanceID = version >= 5 ? try buffer.readKafkaNullableString("group instance id", maxBytes: Limits.memberIDBytesMax) : nil
            protocolType = try buffer.readKafkaString("protocol type", flexible: false, maxBytes: Limits.groupNameBytesMax)
            protocols = try buffer.readKafkaArray("protocols", flexible: false, minimumElementBytes: 6, countMax: 64) { buffer in
                Protocol(
                    name: try buffer.readKafkaString("protocol name", flexible: false, maxBytes: Limits.groupNameBytesMax),
                    metadata: try KafkaGroups.readBytes(&buffer, "protocol metadata"))
            }
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaString(groupID, flexible: false)
            buffer.writeInteger(sessionTimeoutMs)
            if version >= 1 { buffer.writeInteger(rebalanceTimeoutMs) }
            buffer.writeKafkaString(memberID, flexible: false)
            if version >= 5 { buffer.writeKafkaNullableString(groupInstanceID) }
            buffer.writeKafkaString(protocolType, flexible: false)
            buffer.writeKafkaArray(protocols, flexible: false) { buffer, item in
                buffer.writeKafkaString(item.name, flexible: false)
                buffer.writeMillraceBytes(item.metadata)
            }
        }
    }

    public struct JoinResponse: Equatable, Sendable {
        public struct Member: Equatable, Sendable {
            public var memberID: String
            public var groupInstanceID: String?
            public var metadata: [UInt8]
            public init(memberID: String, groupInstanceID: String? = nil, metadata: [UInt8]) {
                self.memberID = memberID
                self.groupInstanceID = groupInstanceID
                self.metadata = metadata
            }
        }

        public var throttleTimeMs: Int32 = 0
        public var errorCode: Int16
        public var generationID: Int32
        public var protocolName: String
        public var leader: String
        public var memberID: String
        public var members: [Member]

        public init(errorCode: Int16 = 0, generationID: Int32, protocolName: String, leader: String, memberID: String, members: [Member]) {
            self.errorCode = errorCode
            self.generationID = generationID
            self.protocolName = protocolName
            self.leader = leader
            self.memberID = memberID
            self.members = members
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            if version >= 2 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeInteger(errorCode)
            buffer.writeInteger(generationID)
            buffer.writeKafkaString(protocolName, flexible: false)
            buffer.writeKafkaString(leader, flexible: false)
            buffer.writeKafkaString(memberID, flexible: false)
            buffer.writeKafkaArray(members, flexible: false) { buffer, member in
                buffer.writeKafkaString(member.memberID, flexible: false)
                if version >= 5 { buffer.writeKafkaNullableString(member.groupInstanceID) }
                buffer.writeMillraceBytes(member.metadata)
            }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            throttleTimeMs = version >= 2 ? try buffer.readMillraceInteger("throttle time") : 0
            errorCode = try buffer.readMillraceInteger("error code")
            generationID = try buffer.readMillraceInteger("generation id")
            protocolName = try buffer.readKafkaString("protocol name", flexible: false)
            leader = try buffer.readKafkaString("leader", flexible: false)
            memberID = try buffer.readKafkaString("member id", flexible: false)
            members = try buffer.readKafkaArray("members", flexible: false, minimumElementBytes: 6) { buffer in
                Member(
                    memberID: try buffer.readKafkaString("member id", flexible: false),
                    groupInstanceID: version >= 5 ? try buffer.readKafkaNullableString("group instance id") : nil,
                    metadata: try buffer.readMillraceBytes("metadata") ?? [])
            }
        }
    }

    // MARK: SyncGroup

    public struct SyncRequest: Equatable, Sendable {
        public var groupID: String
        public var generationID: Int32
        public var memberID: String
        public var groupInstanceID: String?
        public var assignments: [(memberID: String, assignment: [UInt8])]

        public init(groupID: String, generationID: Int32, memberID: String, groupInstanceID: String? = nil, assignments: [(memberID: String, assignment: [UInt8])]) {
            self.groupID = groupID
            self.generationID = generationID
            self.memberID = memberID
            self.groupInstanceID = groupInstanceID
            self.assignments = assignments
        }

        public static func == (lhs: SyncRequest, rhs: SyncRequest) -> Bool {
            lhs.groupID == rhs.groupID && lhs.generationID == rhs.generationID && lhs.memberID == rhs.memberID && lhs.groupInstanceID == rhs.groupInstanceID
                && lhs.assignments.map(\.memberID) == rhs.assignments.map(\.memberID) && lhs.assignments.map(\.assignment) == rhs.assignments.map(\.assignment)
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            groupID = try buffer.readKafkaString("group id", flexible: false, maxBytes: Limits.groupNameBytesMax)
            generationID = try buffer.readMillraceInteger("generation id")
            memberID = try buffer.readKafkaString("member id", flexible: false, maxBytes: Limits.memberIDBytesMax)
            groupInstanceID = version >= 3 ? try buffer.readKafkaNullableString("group instance id", maxBytes: Limits.memberIDBytesMax) : nil
            assignments = try buffer.readKafkaArray("assignments", flexible: false, minimumElementBytes: 6, countMax: Limits.groupMembersMax) { buffer in
                (try buffer.readKafkaString("member id", flexible: false, maxBytes: Limits.memberIDBytesMax), try KafkaGroups.readBytes(&buffer, "assignment"))
            }
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaString(groupID, flexible: false)
            buffer.writeInteger(generationID)
            buffer.writeKafkaString(memberID, flexible: false)
            if version >= 3 { buffer.writeKafkaNullableString(groupInstanceID) }
            buffer.writeKafkaArray(assignments, flexible: false) { buffer, item in
                buffer.writeKafkaString(item.memberID, flexible: false)
                buffer.writeMillraceBytes(item.assignment)
            }
        }
    }

    public struct SyncResponse: Equatable, Sendable {
        public var throttleTimeMs: Int32 = 0
        public var errorCode: Int16
        public var assignment: [UInt8]

        public init(errorCode: Int16 = 0, assignment: [UInt8]) {
            self.errorCode = errorCode
            self.assignment = assignment
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            if version >= 1 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeInteger(errorCode)
            buffer.writeMillraceBytes(assignment)
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            throttleTimeMs = version >= 1 ? try buffer.readMillraceInteger("throttle time") : 0
            errorCode = try buffer.readMillraceInteger("error code")
            assignment = try buffer.readMillraceBytes("assignment") ?? []
        }
    }

    // MARK: OffsetCommit

    public struct CommitPartition: Equatable, Sendable {
        public var index: Int32
        public var offset: Int64
        public var leaderEpoch: Int32
        public var metadata: String?
        public init(index: Int32, offset: Int64, leaderEpoch: Int32 = -1, metadata: String?) {
            self.index = index
            self.offset = offset
            self.leaderEpoch = leaderEpoch
            self.metadata = metadata
        }
    }

    public struct OffsetCommitRequest: Equatable, Sendable {
        public var groupID: String
        public var generationID: Int32
        public var memberID: String
        public var groupInstanceID: String?
        public var topics: [KafkaTopic<CommitPartition>]

        public init(groupID: String, generationID: Int32 = -1, memberID: String = "", groupInstanceID: String? = nil, topics: [KafkaTopic<CommitPartition>]) {
            self.groupID = groupID
            self.generationID = generationID
            self.memberID = memberID
            self.groupInstanceID = groupInstanceID
            self.topics = topics
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            groupID = try buffer.readKafkaString("group id", flexible: false, maxBytes: Limits.groupNameBytesMax)
            generationID = try buffer.readMillraceInteger("generation id")
            memberID = try buffer.readKafkaString("member id", flexible: false, maxBytes: Limits.memberIDBytesMax)
            if (2...4).contains(version) { _ = try buffer.readMillraceInteger("retention time", as: Int64.self) }
            groupInstanceID = version >= 7 ? try buffer.readKafkaNullableString("group instance id", maxBytes: Limits.memberIDBytesMax) : nil
            topics = try buffer.readKafkaArray("topics", flexible: false, minimumElementBytes: 6, countMax: Limits.topicsPerRequestMax) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: false, maxBytes: Limits.topicNameBytesMax)
                let partitions = try buffer.readKafkaArray(
                    "partitions", flexible: false, minimumElementBytes: version >= 6 ? 18 : 14, countMax: Limits.partitionsPerRequestMax
                ) { buffer in
                    CommitPartition(
                        index: try buffer.readMillraceInteger("partition index"), offset: try buffer.readMillraceInteger("committed offset"),
                        leaderEpoch: version >= 6 ? try buffer.readMillraceInteger("committed leader epoch") : -1,
                        // Longer than offsetMetadataBytesMax is the listener's to refuse, per partition.
                        metadata: try buffer.readKafkaNullableString("committed metadata"))
                }
                return KafkaTopic(name: name, partitions)
            }
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaString(groupID, flexible: false)
            buffer.writeInteger(generationID)
            buffer.writeKafkaString(memberID, flexible: false)
            if (2...4).contains(version) { buffer.writeInteger(Int64(-1)) }
            if version >= 7 { buffer.writeKafkaNullableString(groupInstanceID) }
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeKafkaArray(topic.entries, flexible: false) { buffer, partition in
                    buffer.writeInteger(partition.index)
                    buffer.writeInteger(partition.offset)
                    if version >= 6 { buffer.writeInteger(partition.leaderEpoch) }
                    buffer.writeKafkaNullableString(partition.metadata)
                }
            }
        }
    }

    /// OffsetCommit's answer: an error code per partition.
    public struct OffsetCommitResponse: Equatable, Sendable {
        public var throttleTimeMs: Int32 = 0
        public var topics: [KafkaTopic<PartitionError>]

        public struct PartitionError: Equatable, Sendable {
            public var index: Int32
            public var errorCode: Int16
            public init(index: Int32, errorCode: Int16) {
                self.index = index
                self.errorCode = errorCode
            }
        }

        public init(topics: [KafkaTopic<PartitionError>]) { self.topics = topics }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            if version >= 3 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeKafkaArray(topic.entries, flexible: false) { buffer, partition in
                    buffer.writeInteger(partition.index)
                    buffer.writeInteger(partition.errorCode)
                }
            }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            throttleTimeMs = version >= 3 ? try buffer.readMillraceInteger("throttle time") : 0
            topics = try buffer.readKafkaArray("topics", flexible: false, minimumElementBytes: 6) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: false)
                return KafkaTopic(
                    name: name,
                    try buffer.readKafkaArray("partitions", flexible: false, minimumElementBytes: 6) { buffer in
                        PartitionError(index: try buffer.readMillraceInteger("partition index"), errorCode: try buffer.readMillraceInteger("error code"))
                    })
            }
        }
    }

    // MARK: OffsetFetch

    public struct OffsetFetchRequest: Equatable, Sendable {
        public var groupID: String
        /// nil: every partition the group has committed to (v2+).
        public var topics: [KafkaTopic<Int32>]?

        public init(groupID: String, topics: [KafkaTopic<Int32>]?) {
            self.groupID = groupID
            self.topics = topics
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            groupID = try buffer.readKafkaString("group id", flexible: false, maxBytes: Limits.groupNameBytesMax)
            topics = try buffer.readKafkaNullableArray("topics", flexible: false, minimumElementBytes: 6, countMax: Limits.topicsPerRequestMax) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: false, maxBytes: Limits.topicNameBytesMax)
                let partitions = try buffer.readKafkaArray("partitions", flexible: false, minimumElementBytes: 4, countMax: Limits.partitionsPerRequestMax) {
                    try $0.readMillraceInteger("partition index", as: Int32.self)
                }
                return KafkaTopic(name: name, partitions)
            }
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaString(groupID, flexible: false)
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeKafkaArray(topic.entries, flexible: false) { $0.writeInteger($1) }
            }
        }
    }

    public struct FetchedOffset: Equatable, Sendable {
        public var index: Int32
        public var offset: Int64
        public var metadata: String?
        public var errorCode: Int16
        public init(index: Int32, offset: Int64, metadata: String?, errorCode: Int16 = 0) {
            self.index = index
            self.offset = offset
            self.metadata = metadata
            self.errorCode = errorCode
        }
    }

    public struct OffsetFetchResponse: Equatable, Sendable {
        public var throttleTimeMs: Int32 = 0
        public var topics: [KafkaTopic<FetchedOffset>]
        public var errorCode: Int16

        public init(topics: [KafkaTopic<FetchedOffset>], errorCode: Int16 = 0) {
            self.topics = topics
            self.errorCode = errorCode
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            if version >= 3 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeKafkaArray(topic.entries, flexible: false) { buffer, partition in
                    buffer.writeInteger(partition.index)
                    buffer.writeInteger(partition.offset)
                    if version >= 5 { buffer.writeInteger(Int32(-1)) }
                    buffer.writeKafkaNullableString(partition.metadata)
                    buffer.writeInteger(partition.errorCode)
                }
            }
            if version >= 2 { buffer.writeInteger(errorCode) }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            throttleTimeMs = version >= 3 ? try buffer.readMillraceInteger("throttle time") : 0
            topics = try buffer.readKafkaArray("topics", flexible: false, minimumElementBytes: 6) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: false)
                return KafkaTopic(
                    name: name,
                    try buffer.readKafkaArray("partitions", flexible: false, minimumElementBytes: 16) { buffer in
                        let index: Int32 = try buffer.readMillraceInteger("partition index")
                        let offset: Int64 = try buffer.readMillraceInteger("committed offset")
                        if version >= 5 { _ = try buffer.readMillraceInteger("committed leader epoch", as: Int32.self) }
                        return FetchedOffset(
                            index: index, offset: offset, metadata: try buffer.readKafkaNullableString("metadata"),
                            errorCode: try buffer.readMillraceInteger("error code"))
                    })
            }
            errorCode = version >= 2 ? try buffer.readMillraceInteger("error code") : 0
        }
    }

    // MARK: DescribeGroups, ListGroups

    public struct DescribeRequest: Equatable, Sendable {
        public var groups: [String]
        public var includeAuthorizedOperations: Bool

        public init(groups: [String], includeAuthorizedOperations: Bool = false) {
            self.groups = groups
            self.includeAuthorizedOperations = includeAuthorizedOperations
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            groups = try buffer.readKafkaArray("groups", flexible: false, minimumElementBytes: 2, countMax: Limits.topicsPerRequestMax) {
                try $0.readKafkaString("group id", flexible: false, maxBytes: Limits.groupNameBytesMax)
            }
            includeAuthorizedOperations = version >= 3 ? try buffer.readKafkaBool("include authorized operations") : false
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaArray(groups, flexible: false) { $0.writeKafkaString($1, flexible: false) }
            if version >= 3 { buffer.writeKafkaBool(includeAuthorizedOperations) }
        }
    }

    public struct DescribedMember: Equatable, Sendable {
        public var memberID: String
        public var clientID: String
        public var clientHost: String
        public var metadata: [UInt8]
        public var assignment: [UInt8]
        public init(memberID: String, clientID: String, clientHost: String, metadata: [UInt8], assignment: [UInt8]) {
            self.memberID = memberID
            self.clientID = clientID
            self.clientHost = clientHost
            self.metadata = metadata
            self.assignment = assignment
        }
    }

    public struct DescribedGroup: Equatable, Sendable {
        public var errorCode: Int16
        public var groupID: String
        public var state: String
        public var protocolType: String
        public var protocolData: String
        public var members: [DescribedMember]
        public init(errorCode: Int16 = 0, groupID: String, state: String, protocolType: String, protocolData: String, members: [DescribedMember]) {
            self.errorCode = errorCode
            self.groupID = groupID
            self.state = state
            self.protocolType = protocolType
            self.protocolData = protocolData
            self.members = members
        }
    }

    public struct DescribeResponse: Equatable, Sendable {
        public var throttleTimeMs: Int32 = 0
        public var groups: [DescribedGroup]

        public init(groups: [DescribedGroup]) { self.groups = groups }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            if version >= 1 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeKafkaArray(groups, flexible: false) { buffer, group in
                buffer.writeInteger(group.errorCode)
                buffer.writeKafkaString(group.groupID, flexible: false)
                buffer.writeKafkaString(group.state, flexible: false)
                buffer.writeKafkaString(group.protocolType, flexible: false)
                buffer.writeKafkaString(group.protocolData, flexible: false)
                buffer.writeKafkaArray(group.members, flexible: false) { buffer, member in
                    buffer.writeKafkaString(member.memberID, flexible: false)
                    if version >= 4 { buffer.writeKafkaNullableString(nil) }
                    buffer.writeKafkaString(member.clientID, flexible: false)
                    buffer.writeKafkaString(member.clientHost, flexible: false)
                    buffer.writeMillraceBytes(member.metadata)
                    buffer.writeMillraceBytes(member.assignment)
                }
                if version >= 3 { buffer.writeInteger(Int32.min) }
            }
        }
    }

    public struct ListResponse: Equatable, Sendable {
        public var throttleTimeMs: Int32 = 0
        public var errorCode: Int16
        public var groups: [(groupID: String, protocolType: String)]

        public init(errorCode: Int16 = 0, groups: [(groupID: String, protocolType: String)]) {
            self.errorCode = errorCode
            self.groups = groups
        }

        public static func == (lhs: ListResponse, rhs: ListResponse) -> Bool {
            lhs.errorCode == rhs.errorCode && lhs.groups.map(\.groupID) == rhs.groups.map(\.groupID)
                && lhs.groups.map(\.protocolType) == rhs.groups.map(\.protocolType)
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            if version >= 1 { buffer.writeInteger(throttleTimeMs) }
            buffer.writeInteger(errorCode)
            buffer.writeKafkaArray(groups, flexible: false) { buffer, group in
                buffer.writeKafkaString(group.groupID, flexible: false)
                buffer.writeKafkaString(group.protocolType, flexible: false)
            }
        }
    }
}
