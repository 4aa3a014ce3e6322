import MillraceFormat
import NIOCore

/// A partition number inside `TopicEntries`.
public struct PartitionNumber: WireCodable {
    public var partition: Int32
    public init(_ partition: Int32) { self.partition = partition }
    public static var minimumBytes: Int { 4 }
    public func write(to buffer: inout ByteBuffer) { buffer.writeInteger(partition) }
    public init(from buffer: inout ByteBuffer) throws { partition = try buffer.readMillraceInteger("partition") }
}

public struct JoinGroupRequest: Equatable, Sendable {
    public var group: String
    /// Empty for a new member.
    public var memberID: String
    public var sessionTimeoutMs: Int32
    public var topics: [String]

    public init(group: String, memberID: String = "", sessionTimeoutMs: Int32, topics: [String]) {
        self.group = group
        self.memberID = memberID
        self.sessionTimeoutMs = sessionTimeoutMs
        self.topics = topics
    }
}

public struct GroupAssignmentResponse: Equatable, Sendable {
    public var memberID: String
    public var generation: Int32
    /// True when the assignment changed (a new generation) since the member last heard.
    public var rebalanced: Bool
    public var assignment: [TopicEntries<PartitionNumber>]

    public init(memberID: String, generation: Int32, rebalanced: Bool, assignment: [TopicEntries<PartitionNumber>]) {
        self.memberID = memberID
        self.generation = generation
        self.rebalanced = rebalanced
        self.assignment = assignment
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(memberID)
        buffer.writeInteger(generation)
        buffer.writeInteger(Int8(rebalanced ? 1 : 0))
        assignment.write(to: &buffer)
    }

    init(from buffer: inout ByteBuffer) throws {
        memberID = try buffer.readMillraceString("member id")
        generation = try buffer.readMillraceInteger("generation")
        rebalanced = try buffer.readMillraceInteger("rebalanced", as: Int8.self) != 0
        assignment = try .init(from: &buffer, "assignment")
    }
}

public struct GroupMemberRequest: Equatable, Sendable {
    public var group: String
    public var memberID: String
    public var generation: Int32

    public init(group: String, memberID: String, generation: Int32) {
        self.group = group
        self.memberID = memberID
        self.generation = generation
    }
}

/// A partition's offset with its metadata: what OffsetCommit sends and OffsetFetch returns
/// (offset -1 when nothing is committed).
public struct OffsetEntry: WireCodable {
    public var partition: Int32
    public var offset: Int64
    public var metadata: String

    public init(partition: Int32, offset: Int64, metadata: String = "") {
        self.partition = partition
        self.offset = offset
        self.metadata = metadata
    }

    public static var minimumBytes: Int { 14 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeInteger(offset)
        buffer.writeMillraceString(metadata)
    }
    public init(from buffer: inout ByteBuffer) throws {
        partition = try buffer.readMillraceInteger("partition")
        offset = try buffer.readMillraceInteger("offset")
        metadata = try buffer.readMillraceString("metadata", maxBytes: Limits.offsetMetadataBytesMax)
    }
}

public struct OffsetCommitRequest: Equatable, Sendable {
    public var group: String
    /// Empty (with generation -1) for a commit outside group membership.
    public var memberID: String
    public var generation: Int32
    public var topics: [TopicEntries<OffsetEntry>]

    public init(group: String, memberID: String = "", generation: Int32 = -1, topics: [TopicEntries<OffsetEntry>]) {
        self.group = group
        self.memberID = memberID
        self.generation = generation
        self.topics = topics
    }
}

public struct OffsetFetchRequest: Equatable, Sendable {
    public var group: String
    /// Empty: every committed offset of the group.
    public var topics: [TopicEntries<PartitionNumber>]

    public init(group: String, topics: [TopicEntries<PartitionNumber>] = []) {
        self.group = group
        self.topics = topics
    }
}

public struct GroupLagEntry: WireCodable {
    public var partition: Int32
    /// -1 when the group has committed nothing for this partition.
    public var committedOffset: Int64
    public var logEndOffset: Int64
    /// Records the group has yet to consume: log end minus committed (or minus log start
    /// when nothing is committed).
    public var lag: Int64
    /// The member that owns the partition now; empty when none does.
    public var memberID: String

    public init(partition: Int32, committedOffset: Int64, logEndOffset: Int64, lag: Int64, memberID: String) {
        self.partition = partition
        self.committedOffset = committedOffset
        self.logEndOffset = logEndOffset
        self.lag = lag
        self.memberID = memberID
    }

    public static var minimumBytes: Int { 30 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeInteger(committedOffset)
        buffer.writeInteger(logEndOffset)
        buffer.writeInteger(lag)
        buffer.writeMillraceString(memberID)
    }
    public init(from buffer: inout ByteBuffer) throws {
        partition = try buffer.readMillraceInteger("partition")
        committedOffset = try buffer.readMillraceInteger("committed offset")
        logEndOffset = try buffer.readMillraceInteger("log end offset")
        lag = try buffer.readMillraceInteger("lag")
        memberID = try buffer.readMillraceString("member id")
    }
}

public struct GroupMemberEntry: WireCodable {
    public var memberID: String
    public var assignment: [TopicEntries<PartitionNumber>]

    public init(memberID: String, assignment: [TopicEntries<PartitionNumber>]) {
        self.memberID = memberID
        self.assignment = assignment
    }

    public static var minimumBytes: Int { 6 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(memberID)
        assignment.write(to: &buffer)
    }
    public init(from buffer: inout ByteBuffer) throws {
        memberID = try buffer.readMillraceString("member id")
        assignment = try .init(from: &buffer, "assignment")
    }
}

public struct DescribeGroupResponse: Equatable, Sendable {
    /// "empty" (no live members) or "stable".
    public var state: String
    public var generation: Int32
    public var members: [GroupMemberEntry]
    public var offsets: [TopicEntries<GroupLagEntry>]
    /// Whose protocol the live group speaks: "native", "kafka", or "" with no members (v1).
    public var groupProtocol: String
    /// A Kafka group's members: the client id and host each said it was (v1).
    public var clients: [GroupClientEntry]

    public init(
        state: String, generation: Int32, members: [GroupMemberEntry], offsets: [TopicEntries<GroupLagEntry>], groupProtocol: String = "",
        clients: [GroupClientEntry] = []
    ) {
        self.state = state
        self.generation = generation
        self.members = members
        self.offsets = offsets
        self.groupProtocol = groupProtocol
        self.clients = clients
    }
}

/// A Kafka group member's client id and host, as DescribeGroup v1 gives them.
public struct GroupClientEntry: WireCodable {
    public var memberID: String
    public var clientID: String
    public var host: String

    public init(memberID: String, clientID: String, host: String) {
        self.memberID = memberID
        self.clientID = clientID
        self.host = host
    }

    public static var minimumBytes: Int { 6 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(memberID)
        buffer.writeMillraceString(clientID)
        buffer.writeMillraceString(host)
    }
    public init(from buffer: inout ByteBuffer) throws {
        memberID = try buffer.readMillraceString("member id")
        clientID = try buffer.readMillraceString("client id")
        host = try buffer.readMillraceString("client host")
    }
}

public struct GroupSummary: WireCodable {
    public var group: String
    public var state: String
    public var memberCount: Int32

    public init(group: String, state: String, memberCount: Int32) {
        self.group = group
        self.state = state
        self.memberCount = memberCount
    }

    public static var minimumBytes: Int { 8 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(group)
        buffer.writeMillraceString(state)
        buffer.writeInteger(memberCount)
    }
    public init(from buffer: inout ByteBuffer) throws {
        group = try buffer.readMillraceString("group")
        state = try buffer.readMillraceString("state")
        memberCount = try buffer.readMillraceInteger("member count")
    }
}
