import MillraceFormat
import MillraceWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A client of one broker: admin calls, offsets and fetches over one pipelined connection,
/// reconnecting when it drops. Producers and consumers are built on it.
public final class MillraceClient: Sendable {
    public let host: String
    public let port: Int
    let group: MultiThreadedEventLoopGroup
    private let connection = NIOLockedValueBox<Connection?>(nil)

    public init(host: String = "127.0.0.1", port: Int = 7450) {
        self.host = host
        self.port = port
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    /// The current connection, opening a new one if there is none or it dropped.
    func connected() async throws -> Connection {
        if let current = connection.withLockedValue({ $0 }), current.isActive { return current }
        let fresh = try await Connection.connect(host: host, port: port, group: group)
        connection.withLockedValue { $0 = fresh }
        return fresh
    }

    /// Sends a request; one reconnect-and-retry if the connection had dropped.
    public func send(_ request: Request) async throws -> ResponseBody {
        let current = try await connected()
        do {
            return try await current.send(request)
        } catch let error as MillraceError where error.code == .unexpected && !current.isActive {
            return try await connected().send(request)
        }
    }

    public func close() async {
        await connection.withLockedValue { $0 }?.close()
        try? await group.shutdownGracefully()
    }

    // MARK: Admin

    public func createTopic(_ request: CreateTopicRequest) async throws {
        _ = try await send(.createTopic(request))
    }

    public func deleteTopic(_ name: String) async throws {
        _ = try await send(.deleteTopic(name: name))
    }

    public func listTopics() async throws -> [TopicSummary] {
        guard case .listTopics(let topics) = try await send(.listTopics) else { throw Self.unexpectedBody }
        return topics
    }

    public func describeTopic(_ name: String) async throws -> DescribeTopicResponse {
        guard case .describeTopic(let topic) = try await send(.describeTopic(name: name)) else { throw Self.unexpectedBody }
        return topic
    }

    /// Partition count of a topic; `unknownTopic` when it does not exist.
    public func partitionCount(_ topic: String) async throws -> Int32 {
        guard case .metadata(let metadata) = try await send(.metadata(topics: [topic])), let entry = metadata.topics.first else {
            throw Self.unexpectedBody
        }
        guard entry.errorCode == .none else {
            throw MillraceError(entry.errorCode, "topic \"\(topic)\" does not exist; create it with `millrace topic create \(topic)`")
        }
        return entry.partitionCount
    }

    /// Offsets for `timestamp` (`ListOffsetsPartition.earliest`, `.latest`, or ms) per partition.
    public func listOffsets(_ topic: String, partitions: [Int32], timestamp: Int64) async throws -> [ListOffsetsPartitionResult] {
        let request = ListOffsetsRequest(topics: [TopicEntries(topic: topic, partitions.map { ListOffsetsPartition(partition: $0, timestamp: timestamp) })])
        guard case .listOffsets(let topics) = try await send(.listOffsets(request)), let entries = topics.first?.entries else {
            throw Self.unexpectedBody
        }
        if let failed = entries.first(where: { $0.errorCode != .none }) {
            throw MillraceError(failed.errorCode, "cannot list offsets of \(topic)/\(failed.partition)")
        }
        return entries
    }

    // MARK: Groups

    public func listGroups() async throws -> [GroupSummary] {
        guard case .listGroups(let groups) = try await send(.listGroups) else { throw Self.unexpectedBody }
        return groups
    }

    public func describeGroup(_ group: String) async throws -> DescribeGroupResponse {
        guard case .describeGroup(let described) = try await send(.describeGroup(group: group)) else { throw Self.unexpectedBody }
        return described
    }

    /// Deletes an idle group's committed offsets (refused while it has live members).
    public func deleteGroup(_ group: String) async throws {
        _ = try await send(.deleteGroup(group: group))
    }

    /// The group's committed offsets for these partitions (-1 where none).
    public func committedOffsets(group: String, topic: String, partitions: [Int32]) async throws -> [OffsetEntry] {
        let request = OffsetFetchRequest(group: group, topics: [TopicEntries(topic: topic, partitions.map { PartitionNumber($0) })])
        guard case .offsetFetch(let topics) = try await send(.offsetFetch(request)) else { throw Self.unexpectedBody }
        return topics.first?.entries ?? []
    }

    /// Commits offsets as a member (with its generation) or, with no member, for a group
    /// without live members (the broker refuses it otherwise).
    public func commitOffsets(group: String, memberID: String = "", generation: Int32 = -1, topic: String, offsets: [OffsetEntry]) async throws {
        _ = try await send(
            .offsetCommit(OffsetCommitRequest(group: group, memberID: memberID, generation: generation, topics: [TopicEntries(topic: topic, offsets)])))
    }

    static let unexpectedBody = MillraceError(.unexpected, "the broker answered with a different kind of response")
}

/// The documented key → partition rule: FNV-1a (32-bit) of the key bytes, modulo the
/// partition count. The same key always lands on the same partition while the count holds.
public enum KeyPartitioner {
    public static func partition(for key: [UInt8], partitionCount: Int32) -> Int32 {
        precondition(partitionCount > 0)
        var hash: UInt32 = 0x811C_9DC5
        for byte in key {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        return Int32(hash % UInt32(partitionCount))
    }
}
