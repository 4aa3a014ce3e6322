import MillraceFormat
import MillraceWire
import Testing

/// Every string and array field of every API, sent at its limit, one past it and at the
/// protocol's maximum, to a live broker: each request is answered (refused with the field
/// named when over), and the broker goes on serving. Before the field limits, a JoinGroup
/// naming a 32,767-byte topic made the broker trap while writing its error message.
@Suite(.stopsLiveServers) struct FieldLimitTests {
    struct Sizes {
        var topic: Int
        var group: Int
        var member: Int
        var metadata: Int
        var topics: Int
        var partitions: Int
    }

    static let atLimit = Sizes(
        topic: Limits.topicNameBytesMax, group: Limits.groupNameBytesMax, member: Limits.memberIDBytesMax,
        metadata: Limits.offsetMetadataBytesMax, topics: Limits.topicsPerRequestMax, partitions: Limits.partitionsPerRequestMax)
    static let overLimit = Sizes(
        topic: Limits.topicNameBytesMax + 1, group: Limits.groupNameBytesMax + 1, member: Limits.memberIDBytesMax + 1,
        metadata: Limits.offsetMetadataBytesMax + 1, topics: Limits.topicsPerRequestMax + 1, partitions: Limits.partitionsPerRequestMax + 1)
    static let protocolMax = Sizes(
        topic: Limits.stringBytesMax, group: Limits.stringBytesMax, member: Limits.stringBytesMax, metadata: Limits.stringBytesMax,
        topics: Limits.topicsPerRequestMax + 1, partitions: Limits.partitionsPerRequestMax + 1)

    static func text(_ count: Int, _ fill: Character = "a") -> String { String(repeating: fill, count: count) }

    /// One request per (API, field) with that field at `size` and the rest ordinary.
    static func requests(_ size: Sizes) -> [(field: String, request: Request)] {
        let topic = text(size.topic)
        let group = text(size.group, "g")
        let member = text(size.member, "m")
        let manyTopics = (0..<size.topics).map { "t\($0)" }
        let offsets = [OffsetEntry(partition: 0, offset: 0, metadata: text(size.metadata))]
        let spread = size.partitions / 8 + 1  // partitions over 8 topics: each under the per-topic count
        func entries<Entry>(_ make: (Int32) -> Entry) -> [TopicEntries<Entry>] {
            var left = size.partitions
            return (0..<8).map { index in
                let count = min(spread, left)
                left -= count
                return TopicEntries(topic: "t\(index)", (0..<count).map { make(Int32($0)) })
            }
        }
        return [
            ("Metadata topic", .metadata(topics: [topic])),
            ("Metadata topics", .metadata(topics: manyTopics)),
            ("CreateTopic name", .createTopic(CreateTopicRequest(name: topic, partitions: 1))),
            ("DeleteTopic name", .deleteTopic(name: text(size.topic, "z"))),
            ("DescribeTopic name", .describeTopic(name: topic)),
            ("Produce topic", .produce(ProduceRequest(timeoutMs: 1000, topics: [TopicEntries(topic: topic, [ProducePartition(partition: 0, records: [])])]))),
            (
                "Produce topics",
                .produce(ProduceRequest(timeoutMs: 1000, topics: manyTopics.map { TopicEntries(topic: $0, [ProducePartition(partition: 0, records: [])]) }))
            ),
            ("Produce partitions", .produce(ProduceRequest(timeoutMs: 1000, topics: entries { ProducePartition(partition: $0, records: []) }))),
            ("Fetch topic", .fetch(FetchRequest(maxWaitMs: 0, minBytes: 0, maxBytes: 1024, topics: [TopicEntries(topic: topic, [FetchPartition(partition: 0, offset: 0, maxBytes: 1024)])]))),
            ("Fetch partitions", .fetch(FetchRequest(maxWaitMs: 0, minBytes: 0, maxBytes: 1024, topics: entries { FetchPartition(partition: $0, offset: 0, maxBytes: 1024) }))),
            ("ListOffsets topic", .listOffsets(ListOffsetsRequest(topics: [TopicEntries(topic: topic, [ListOffsetsPartition(partition: 0, timestamp: -1)])]))),
            ("ListOffsets partitions", .listOffsets(ListOffsetsRequest(topics: entries { ListOffsetsPartition(partition: $0, timestamp: -2) }))),
            ("JoinGroup group", .joinGroup(JoinGroupRequest(group: group, sessionTimeoutMs: 10_000, topics: ["limits"]))),
            ("JoinGroup member id", .joinGroup(JoinGroupRequest(group: "g", memberID: member, sessionTimeoutMs: 10_000, topics: ["limits"]))),
            ("JoinGroup topic", .joinGroup(JoinGroupRequest(group: "g", sessionTimeoutMs: 10_000, topics: [topic]))),
            ("JoinGroup topics", .joinGroup(JoinGroupRequest(group: "g", sessionTimeoutMs: 10_000, topics: manyTopics))),
            ("Heartbeat group", .heartbeat(GroupMemberRequest(group: group, memberID: "m", generation: 1))),
            ("Heartbeat member id", .heartbeat(GroupMemberRequest(group: "g", memberID: member, generation: 1))),
            ("LeaveGroup group", .leaveGroup(GroupMemberRequest(group: group, memberID: "m", generation: 1))),
            ("LeaveGroup member id", .leaveGroup(GroupMemberRequest(group: "g", memberID: member, generation: 1))),
            ("OffsetCommit group", .offsetCommit(OffsetCommitRequest(group: group, topics: [TopicEntries(topic: "limits", [OffsetEntry(partition: 0, offset: 0)])]))),
            ("OffsetCommit member id", .offsetCommit(OffsetCommitRequest(group: "g", memberID: member, generation: 1, topics: []))),
            ("OffsetCommit topic", .offsetCommit(OffsetCommitRequest(group: "idle", topics: [TopicEntries(topic: topic, [OffsetEntry(partition: 0, offset: 0)])]))),
            ("OffsetCommit metadata", .offsetCommit(OffsetCommitRequest(group: "idle", topics: [TopicEntries(topic: "limits", offsets)]))),
            ("OffsetCommit partitions", .offsetCommit(OffsetCommitRequest(group: "idle", topics: entries { OffsetEntry(partition: $0, offset: 0) }))),
            ("OffsetFetch group", .offsetFetch(OffsetFetchRequest(group: group, topics: []))),
            ("OffsetFetch partitions", .offsetFetch(OffsetFetchRequest(group: "g", topics: entries { PartitionNumber($0) }))),
            ("DescribeGroup group", .describeGroup(group: group)),
            ("DeleteGroup group", .deleteGroup(group: group)),
        ]
    }

    @Test func everyFieldAtOverAndAtTheProtocolMaximumIsAnsweredAndTheBrokerServesOn() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = try TestClient(port: live.port)
        #expect(try client.call(.createTopic(CreateTopicRequest(name: "limits", partitions: 2))).errorCode == .none)

        for (label, sizes, over) in [("at the limit", Self.atLimit, false), ("one over", Self.overLimit, true), ("protocol maximum", Self.protocolMax, true)] {
            for (field, request) in Self.requests(sizes) {
                let response = try client.call(request)
                let refusedForSize = response.message.contains("; the limit is")
                if over {
                    #expect(refusedForSize, "\(field) \(label): \(response.errorCode) \(response.message.prefix(120))")
                    #expect([.invalidRequest, .invalidTopicName].contains(response.errorCode), "\(field) \(label)")
                } else {
                    #expect(!refusedForSize, "\(field) \(label) was refused: \(response.message.prefix(120))")
                }
                #expect(response.message.utf8.count <= Limits.errorMessageBytesMax)
            }
        }
        // Still serving, on the same connection and a new one.
        #expect(try client.call(.apiVersions).errorCode == .none)
        #expect(try client.call(produce("limits", 0, ["after"])).errorCode == .none)
        #expect(try TestClient(port: live.port).call(.listTopics).errorCode == .none)
        await live.stop()
    }
}
