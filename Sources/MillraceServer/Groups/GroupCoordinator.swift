import Logging
import MillraceFormat
import MillraceStorage
import MillraceWire

/// Consumer groups in the broker: one `GroupStateMachine` per group, driven by requests and
/// by a periodic expiry tick. Membership lives in memory (members rejoin after a broker
/// restart); committed offsets live in the storage. Every group, live or offsets alone, is
/// counted against `groupsMax` (`GroupCensus`).
final class GroupCoordinator: Sendable {
    struct State {
        var groups: [String: GroupStateMachine] = [:]
        /// Kafka's groups (client-side assignment): the same namespace, checked both ways.
        var kafkaGroups: [String: KafkaGroupStateMachine] = [:]
        /// Kafka members' JoinGroup and SyncGroup requests waiting for the rebalance.
        var kafkaWaiting: [String: KafkaWaiters] = [:]
        /// Bytes Kafka groups hold for their members (`KafkaGroupStateMachine.bytesHeld`, summed).
        var kafkaBytesHeld = 0
        var census: GroupCensus
    }

    let storage: Storage
    let clock: any MillraceClock
    let state: Locked<State>
    let logger: Logger
    /// Joins, leaves and refused commits come from peers, who can repeat them as fast as
    /// they like: their lines go through this (per group, at most one a second of each kind).
    let limiter: LogLimiter

    static let sessionTimeoutRangeMs: ClosedRange<Int64> = 1_000...300_000

    init(
        storage: Storage, clock: any MillraceClock, groupsMax: Int = Limits.groupsMax,
        logger: Logger = Logger(label: "millrace", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        // One scan at start: groups that only have stored offsets count as they did before the restart.
        state = Locked(State(census: GroupCensus(stored: (try? storage.groupsWithCommittedOffsets()) ?? [], groupsMax: groupsMax)))
        self.storage = storage
        self.clock = clock
        self.logger = logger
        limiter = LogLimiter(clock: clock)
    }

    /// Logs a group event a peer caused, unless that group has had one of `kind` this second.
    func note(_ kind: String, _ group: String, _ message: @autoclosure () -> String) {
        guard let held = limiter.allow(kind + ":" + group) else { return }
        logger.info("\(message())\(held)")
    }

    func partitionCounts() throws -> [String: Int32] {
        Dictionary(uniqueKeysWithValues: try storage.listTopics().map { ($0.name, $0.partitionCount) })
    }

    func join(_ request: JoinGroupRequest) throws -> GroupAssignmentResponse {
        guard !request.group.isEmpty, request.group.utf8.count <= Limits.groupNameBytesMax else {
            throw MillraceError(.invalidRequest, "group name must be 1...\(Limits.groupNameBytesMax) bytes")
        }
        guard Self.sessionTimeoutRangeMs.contains(Int64(request.sessionTimeoutMs)) else {
            throw MillraceError(.invalidRequest, "session timeout must be \(Self.sessionTimeoutRangeMs) ms (got \(request.sessionTimeoutMs))")
        }
        let counts = try partitionCounts()
        if let missing = request.topics.first(where: { counts[$0] == nil }) {
            throw MillraceError(.unknownTopic, "topic \"\(missing)\" does not exist; create it before joining")
        }
        let now = clock.nowMilliseconds()
        let (response, members) = try state.withLock { state in
            if let kafka = state.kafkaGroups[request.group] {
                let count = kafka.members.count
                throw MillraceError(
                    .invalidRequest,
                    "group \(request.group) is a Kafka consumer group with \(count) live member\(count == 1 ? "" : "s") (assignment by its Kafka clients); a native consumer cannot join it until they leave, or use another group name")
            }
            if let live = state.groups[request.group], live.members[request.memberID] == nil, live.members.count >= Limits.groupMembersMax {
                throw MillraceError(.limitReached, "group \(request.group) has \(Limits.groupMembersMax) members (groupMembersMax)")
            }
            if state.census.join(request.group) == .refused { throw Self.tooManyGroups(state.census) }
            var group = state.groups[request.group] ?? GroupStateMachine(group: request.group)
            let joined = group.join(
                memberID: request.memberID.isEmpty ? nil : request.memberID, topics: request.topics.sorted(), partitionCounts: counts,
                sessionTimeoutMs: Int64(request.sessionTimeoutMs), nowMs: now)
            state.groups[request.group] = group
            return (
                GroupAssignmentResponse(memberID: joined.memberID, generation: joined.generation, rebalanced: true, assignment: Self.wire(joined.assignment)),
                group.members.count
            )
        }
        note(
            "join", request.group,
            "group \(request.group): member \(response.memberID) joined (\(request.topics.sorted().joined(separator: ", "))); rebalanced to generation \(response.generation) with \(members) member\(members == 1 ? "" : "s")"
        )
        return response
    }

    func heartbeat(_ request: GroupMemberRequest) throws -> GroupAssignmentResponse {
        let now = clock.nowMilliseconds()
        return try state.withLock { state in
            guard var group = state.groups[request.group] else {
                throw MillraceError(.unknownMember, "group \(request.group) has no members; join it")
            }
            let action = group.heartbeat(memberID: request.memberID, generation: request.generation, nowMs: now)
            state.groups[request.group] = group
            switch action {
            case .carryOn:
                return GroupAssignmentResponse(
                    memberID: request.memberID, generation: request.generation, rebalanced: false,
                    assignment: Self.wire(group.readableAssignment(request.memberID)))
            case .rebalance(let generation, let assignment):
                return GroupAssignmentResponse(memberID: request.memberID, generation: generation, rebalanced: true, assignment: Self.wire(assignment))
            case .unknownMember:
                throw MillraceError(.unknownMember, "member \(request.memberID) is not in group \(request.group) (its session expired, or it left); join again")
            }
        }
    }

    func leave(_ request: GroupMemberRequest) throws {
        let counts = try partitionCounts()
        let (generation, members) = try state.withLock { state in
            guard var group = state.groups[request.group], group.leave(memberID: request.memberID, partitionCounts: counts) else {
                throw MillraceError(.unknownMember, "member \(request.memberID) is not in group \(request.group)")
            }
            state.keep(group)
            return (group.currentGeneration, group.members.count)
        }
        note(
            "leave", request.group,
            members == 0
                ? "group \(request.group): member \(request.memberID) left; the group has no members now"
                : "group \(request.group): member \(request.memberID) left; rebalanced to generation \(generation) with \(members) member\(members == 1 ? "" : "s")")
    }

    /// Fencing for commits: a member commits only its own partitions at the current
    /// generation; a commit without membership only to a group with no live members, and
    /// only to a group already known or while the broker knows fewer than `groupsMax`.
    /// If the commit then fails, call `commitFailed`.
    func checkCommit(_ request: OffsetCommitRequest) throws {
        do {
            try checkCommitFencing(request)
        } catch let error as MillraceError {
            note("refused-commit", request.group, "group \(request.group): refused a commit from \(request.memberID.isEmpty ? "a non-member" : "member " + request.memberID): \(error.message)")
            throw error
        }
    }

    private func checkCommitFencing(_ request: OffsetCommitRequest) throws {
        try state.withLock { state in try Self.checkCommitFencing(request, state: &state) }
    }

    static func checkCommitFencing(_ request: OffsetCommitRequest, state: inout State) throws {
        let partitions = request.topics.flatMap { topic in topic.entries.map { TopicPartition(topic: topic.topic, partition: $0.partition) } }
        if let kafka = state.kafkaGroups[request.group] {
            let count = kafka.members.count
            throw MillraceError(
                .groupNotEmpty,
                "group \(request.group) is a Kafka consumer group with \(count) live member\(count == 1 ? "" : "s"); stop \(count == 1 ? "it" : "them") before moving its offsets")
        }
        guard let group = state.groups[request.group] else {
            guard request.memberID.isEmpty else {
                throw MillraceError(.unknownMember, "group \(request.group) has no members; join it before committing as a member")
            }
            if state.census.commit(request.group) == .refused { throw Self.tooManyGroups(state.census) }
            return
        }
        if request.memberID.isEmpty {
            let count = group.members.count
            throw MillraceError(
                .groupNotEmpty,
                "group \(request.group) has \(count) live member\(count == 1 ? "" : "s"); commit as a member, or stop \(count == 1 ? "it" : "them") first")
        }
        if let error = group.checkCommit(memberID: request.memberID, generation: request.generation, partitions: partitions) { throw error }
        _ = state.census.commit(request.group)
    }

    static func tooManyGroups(_ census: GroupCensus) -> MillraceError {
        MillraceError(
            .limitReached,
            "the broker knows \(census.count) consumer groups (groupsMax \(census.groupsMax), counting groups that only have committed offsets); delete unused ones with `millrace group delete`")
    }

    /// A commit `checkCommit` let through failed: the group stops counting unless storage
    /// holds offsets for it (from before, or from another commit) or it has members.
    func commitFailed(_ group: String) {
        guard let held = try? storage.hasCommittedOffsets(group: group), !held else { return }
        state.withLock { $0.census.offsetsGone(group) }
    }

    /// A group's offsets were deleted.
    func offsetsDeleted(_ group: String) {
        state.withLock { $0.census.offsetsGone(group) }
    }

    /// A topic was deleted, and groups' offsets on it: count the groups storage still holds.
    func topicDeleted() {
        guard let stored = try? storage.groupsWithCommittedOffsets() else { return }
        state.withLock { $0.census.restock(stored: stored) }
    }

    /// Groups the broker knows (live or with committed offsets), as counted against `groupsMax`.
    var knownGroupCount: Int { state.withLock { $0.census.count } }

    /// Removes members whose session ran out; the others get the partitions at their next heartbeat.
    func expire() {
        guard let counts = try? partitionCounts() else { return }
        let now = clock.nowMilliseconds()
        let expired = state.withLock { state -> [(group: String, members: [String], generation: Int32, left: Int)] in
            var expired: [(group: String, members: [String], generation: Int32, left: Int)] = []
            for name in Array(state.groups.keys) {
                guard var group = state.groups[name] else { continue }
                let gone = group.expire(nowMs: now, partitionCounts: counts)
                state.keep(group)
                if !gone.isEmpty { expired.append((name, gone, group.currentGeneration, group.members.count)) }
            }
            return expired
        }
        for event in expireKafka(nowMs: now) {
            logger.info("group \(event.group): Kafka member\(event.members.count == 1 ? "" : "s") \(event.members.joined(separator: ", ")) dropped (session expired, or did not join the rebalance); \(event.left) left")
        }
        // Once per expiry (a session runs out once): not limited.
        for event in expired {
            let who = event.members.count == 1 ? "member \(event.members[0])'s session" : "\(event.members.count) members' sessions (\(event.members.joined(separator: ", ")))"
            logger.info(
                event.left == 0
                    ? "group \(event.group): \(who) expired; the group has no members now"
                    : "group \(event.group): \(who) expired; rebalanced to generation \(event.generation) with \(event.left) member\(event.left == 1 ? "" : "s")")
        }
    }

    /// A live group's generation, assignment and the topics its members read; nil when it has no members.
    func snapshot(_ name: String) -> (generation: Int32, assignment: [String: [TopicPartition]], topics: Set<String>)? {
        state.withLock { state in
            state.groups[name].map { ($0.currentGeneration, $0.assignment, Set($0.members.values.flatMap(\.topics))) }
                ?? state.kafkaGroups[name].map { ($0.generation, $0.partitionsByMember, $0.subscribedTopics) }
        }
    }

    /// Live groups and their member counts.
    func liveGroups() -> [String: Int] {
        state.withLock { state in
            state.groups.mapValues(\.members.count).merging(state.kafkaGroups.mapValues(\.members.count)) { native, _ in native }
        }
    }

    /// Every live group's generation, assignment and topics, in one pass (for a scrape).
    func snapshots() -> [String: (generation: Int32, assignment: [String: [TopicPartition]], topics: Set<String>)] {
        state.withLock { state in
            state.groups.mapValues { ($0.currentGeneration, $0.assignment, Set($0.members.values.flatMap(\.topics))) }.merging(
                state.kafkaGroups.mapValues { ($0.generation, $0.partitionsByMember, $0.subscribedTopics) }
            ) { native, _ in native }
        }
    }

    static func wire(_ partitions: [TopicPartition]) -> [TopicEntries<PartitionNumber>] {
        Dictionary(grouping: partitions, by: \.topic).sorted { $0.key < $1.key }.map { topic, owned in
            TopicEntries(topic: topic, owned.map { PartitionNumber($0.partition) }.sorted { $0.partition < $1.partition })
        }
    }
}

extension GroupCoordinator.State {
    /// Stores `group`, or drops it when its last member has gone.
    fileprivate mutating func keep(_ group: GroupStateMachine) {
        if group.members.isEmpty {
            groups[group.group] = nil
            census.membersGone(group.group)
        } else {
            groups[group.group] = group
        }
    }
}
