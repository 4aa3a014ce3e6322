import MillraceFormat
import MillraceKafka
import MillraceStorage

/// One Kafka consumer group's membership (Kafka's group protocol: the members choose the
/// assignment, one of them — the leader — computes it and the broker hands it out), in the
/// shape of `GroupStateMachine`: a struct, one mutating function per event, each returning
/// what the caller must answer. No clock of its own (times come with the events), no I/O.
///
/// A join starts a rebalance: the group waits until every member has joined again (or the
/// rebalance timeout passes and the ones that did not are dropped), then starts a new
/// generation and answers every join at once, the leader's with the members and their
/// subscriptions. The leader's SyncGroup carries the assignment; every member's SyncGroup is
/// answered with its share once it is there. Heartbeats tell members of a rebalance
/// (REBALANCE_IN_PROGRESS), and a member silent past its session timeout is dropped.
struct KafkaGroupStateMachine: Sendable {
    struct Member: Equatable, Sendable {
        var id: String
        var clientID: String
        var clientHost: String
        var sessionTimeoutMs: Int64
        var rebalanceTimeoutMs: Int64
        var protocols: [(name: String, metadata: [UInt8])]
        var lastHeardMs: Int64
        /// Joined in the rebalance under way (its join waits for the answer).
        var awaitingJoin = false
        /// Sent SyncGroup and waits for the assignment.
        var awaitingSync = false
        var assignment: [UInt8] = []

        static func == (lhs: Member, rhs: Member) -> Bool {
            lhs.id == rhs.id && lhs.clientID == rhs.clientID && lhs.clientHost == rhs.clientHost && lhs.sessionTimeoutMs == rhs.sessionTimeoutMs
                && lhs.rebalanceTimeoutMs == rhs.rebalanceTimeoutMs && lhs.protocols.map(\.name) == rhs.protocols.map(\.name)
                && lhs.protocols.map(\.metadata) == rhs.protocols.map(\.metadata) && lhs.lastHeardMs == rhs.lastHeardMs
                && lhs.awaitingJoin == rhs.awaitingJoin && lhs.awaitingSync == rhs.awaitingSync && lhs.assignment == rhs.assignment
        }
    }

    enum Phase: Equatable, Sendable {
        case empty
        /// Waiting for every member to join again, until `deadlineMs`.
        case preparingRebalance(deadlineMs: Int64)
        /// A generation has started; waiting for the leader's assignment until `deadlineMs`
        /// (then the members that have not asked for theirs are dropped, the leader among
        /// them if it has not sent it, and the group rebalances).
        case completingRebalance(deadlineMs: Int64)
        case stable
    }

    /// The answer to a member's JoinGroup.
    struct JoinAnswer: Equatable, Sendable {
        var memberID: String
        var error: KafkaErrorCode = .none
        var generation: Int32 = -1
        var protocolName: String = ""
        var leader: String = ""
        /// The leader's answer lists every member with its metadata for the chosen protocol.
        var members: [(id: String, metadata: [UInt8])] = []

        static func == (lhs: JoinAnswer, rhs: JoinAnswer) -> Bool {
            lhs.memberID == rhs.memberID && lhs.error == rhs.error && lhs.generation == rhs.generation && lhs.protocolName == rhs.protocolName
                && lhs.leader == rhs.leader && lhs.members.map(\.id) == rhs.members.map(\.id) && lhs.members.map(\.metadata) == rhs.members.map(\.metadata)
        }
    }

    /// The answer to a member's SyncGroup.
    struct SyncAnswer: Equatable, Sendable {
        var memberID: String
        var error: KafkaErrorCode = .none
        var assignment: [UInt8] = []
    }

    /// What a request leads to: answers to send now (the asker's among them, unless it waits).
    struct Answers: Equatable, Sendable {
        var joins: [JoinAnswer] = []
        var syncs: [SyncAnswer] = []
    }

    let group: String
    private(set) var phase: Phase = .empty
    private(set) var generation: Int32 = 0
    private(set) var protocolType = ""
    private(set) var protocolName = ""
    private(set) var leader = ""
    /// Members in the order they first joined (the first is the leader unless it left).
    private(set) var order: [String] = []
    private(set) var members: [String: Member] = [:]
    private var nextMemberNumber = 1

    init(group: String) { self.group = group }

    var isEmpty: Bool { members.isEmpty }

    private mutating func newMemberID(_ clientID: String) -> String {
        defer { nextMemberNumber += 1 }
        let safe = clientID.prefix(64).map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") ? $0 : "_" }
        let prefix = safe.isEmpty ? "kafka" : String(safe)
        // A random part: after a restart, an old member id is not given to someone else.
        return "\(prefix)-\(nextMemberNumber)-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
    }

    /// A member joins, or joins again (`memberID` its id; empty for a new member). Answers
    /// come when the rebalance completes: at once, if this was the last member it waited for.
    mutating func join(
        memberID: String, clientID: String, clientHost: String, protocolType: String, protocols: [(name: String, metadata: [UInt8])],
        sessionTimeoutMs: Int64, rebalanceTimeoutMs: Int64, nowMs: Int64
    ) -> (memberID: String, answers: Answers) {
        if !members.isEmpty, protocolType != self.protocolType || !supportsCommonProtocol(protocols) {
            let id = memberID.isEmpty ? "" : memberID
            return (id, Answers(joins: [JoinAnswer(memberID: id, error: .inconsistentGroupProtocol)]))
        }
        if !memberID.isEmpty, members[memberID] == nil {
            return (memberID, Answers(joins: [JoinAnswer(memberID: memberID, error: .unknownMemberID)]))
        }
        let id = memberID.isEmpty ? newMemberID(clientID) : memberID
        if members.isEmpty { self.protocolType = protocolType }
        if members[id] == nil { order.append(id) }
        var answers = Answers()
        // A member that had asked for its assignment and joins again will not get one.
        if members[id]?.awaitingSync == true { answers.syncs.append(SyncAnswer(memberID: id, error: .rebalanceInProgress)) }
        members[id] = Member(
            id: id, clientID: clientID, clientHost: clientHost, sessionTimeoutMs: sessionTimeoutMs, rebalanceTimeoutMs: rebalanceTimeoutMs,
            protocols: protocols, lastHeardMs: nowMs, awaitingJoin: true)
        startRebalance(nowMs: nowMs, answers: &answers)
        completeRebalanceIfReady(nowMs: nowMs, answers: &answers)
        return (id, answers)
    }

    private func supportsCommonProtocol(_ protocols: [(name: String, metadata: [UInt8])]) -> Bool {
        let offered = Set(protocols.map(\.name))
        return members.values.allSatisfy { member in member.protocols.contains { offered.contains($0.name) } }
    }

    /// Every member must join again; those waiting for an assignment are told to.
    private mutating func startRebalance(nowMs: Int64, answers: inout Answers) {
        if case .preparingRebalance = phase { return }
        let timeout = members.values.map(\.rebalanceTimeoutMs).max() ?? 0
        phase = .preparingRebalance(deadlineMs: nowMs + timeout)
        for id in order where members[id]?.awaitingSync == true {
            members[id]?.awaitingSync = false
            answers.syncs.append(SyncAnswer(memberID: id, error: .rebalanceInProgress))
        }
    }

    /// Once every member has joined again: a new generation, every join answered.
    private mutating func completeRebalanceIfReady(nowMs: Int64, answers: inout Answers) {
        guard case .preparingRebalance = phase, !members.isEmpty, members.values.allSatisfy(\.awaitingJoin) else { return }
        generation += 1
        if members[leader] == nil { leader = order.first ?? "" }
        // The leader's first protocol that every member offers.
        let leaderProtocols = members[leader]?.protocols.map(\.name) ?? []
        protocolName = leaderProtocols.first { name in members.values.allSatisfy { $0.protocols.contains { $0.name == name } } } ?? ""
        phase = .completingRebalance(deadlineMs: nowMs + (members.values.map(\.rebalanceTimeoutMs).max() ?? 0))
        let listed = order.compactMap { id in
            members[id].map { member in (id: id, metadata: member.protocols.first { $0.name == protocolName }?.metadata ?? []) }
        }
        for id in order {
            members[id]?.awaitingJoin = false
            members[id]?.assignment = []
            members[id]?.lastHeardMs = nowMs
            answers.joins.append(
                JoinAnswer(memberID: id, generation: generation, protocolName: protocolName, leader: leader, members: id == leader ? listed : []))
        }
    }

    /// A member asks for its assignment; the leader's request carries everyone's.
    mutating func sync(memberID: String, generation: Int32, assignments: [String: [UInt8]], nowMs: Int64) -> Answers {
        guard members[memberID] != nil else { return Answers(syncs: [SyncAnswer(memberID: memberID, error: .unknownMemberID)]) }
        guard generation == self.generation else { return Answers(syncs: [SyncAnswer(memberID: memberID, error: .illegalGeneration)]) }
        members[memberID]?.lastHeardMs = nowMs
        switch phase {
        case .empty, .preparingRebalance:
            return Answers(syncs: [SyncAnswer(memberID: memberID, error: .rebalanceInProgress)])
        case .stable:
            return Answers(syncs: [SyncAnswer(memberID: memberID, assignment: members[memberID]?.assignment ?? [])])
        case .completingRebalance:
            members[memberID]?.awaitingSync = true
            guard memberID == leader else { return Answers() }
            var answers = Answers()
            for id in order {
                members[id]?.assignment = assignments[id] ?? []
                if members[id]?.awaitingSync == true {
                    members[id]?.awaitingSync = false
                    answers.syncs.append(SyncAnswer(memberID: id, assignment: members[id]?.assignment ?? []))
                }
            }
            phase = .stable
            return answers
        }
    }

    /// A member is alive: whether it carries on or must join again.
    mutating func heartbeat(memberID: String, generation: Int32, nowMs: Int64) -> KafkaErrorCode {
        guard members[memberID] != nil else { return .unknownMemberID }
        guard generation == self.generation else { return .illegalGeneration }
        members[memberID]?.lastHeardMs = nowMs
        if case .preparingRebalance = phase { return .rebalanceInProgress }
        return .none
    }

    /// A member leaves: the others rebalance (and a rebalance waiting only for it completes).
    mutating func leave(memberID: String, nowMs: Int64) -> (found: Bool, answers: Answers) {
        guard members[memberID] != nil else { return (false, Answers()) }
        var answers = Answers()
        remove([memberID], answers: &answers)
        if !members.isEmpty {
            startRebalance(nowMs: nowMs, answers: &answers)
            completeRebalanceIfReady(nowMs: nowMs, answers: &answers)
        }
        return (true, answers)
    }

    private mutating func remove(_ ids: [String], answers: inout Answers) {
        for id in ids {
            guard let member = members.removeValue(forKey: id) else { continue }
            order.removeAll { $0 == id }
            if member.awaitingJoin { answers.joins.append(JoinAnswer(memberID: id, error: .unknownMemberID)) }
            if member.awaitingSync { answers.syncs.append(SyncAnswer(memberID: id, error: .unknownMemberID)) }
        }
        if members.isEmpty {
            phase = .empty
            leader = ""
            protocolName = ""
        }
    }

    /// Drops members silent past their session timeout, and, when a rebalance's deadline has
    /// passed, the members that did not join again; then completes the rebalance if it can.
    mutating func expire(nowMs: Int64) -> (expired: [String], answers: Answers) {
        var gone: [String] = []
        switch phase {
        case .preparingRebalance(let deadline) where nowMs >= deadline:
            gone = order.filter { members[$0]?.awaitingJoin == false }
        case .completingRebalance(let deadline) where nowMs >= deadline:
            // The leader never sent the assignment (or these members never asked for theirs).
            gone = order.filter { $0 == leader || members[$0]?.awaitingSync == false }
        default:
            break
        }
        for id in order where !gone.contains(id) {
            // A member waiting for a rebalance to complete (to join or for its assignment) is
            // not expected to heartbeat: its wait is bounded by the phase's deadline.
            guard let member = members[id], !member.awaitingJoin, !member.awaitingSync else { continue }
            if nowMs - member.lastHeardMs > member.sessionTimeoutMs { gone.append(id) }
        }
        guard !gone.isEmpty else { return ([], Answers()) }
        var answers = Answers()
        remove(gone, answers: &answers)
        if !members.isEmpty {
            startRebalance(nowMs: nowMs, answers: &answers)
            completeRebalanceIfReady(nowMs: nowMs, answers: &answers)
        }
        return (gone, answers)
    }

    /// Bytes the group holds for its members: their protocols' metadata and assignments.
    var bytesHeld: Int {
        members.values.reduce(0) { total, member in total + member.assignment.count + member.protocols.reduce(0) { $0 + $1.metadata.count + $1.name.utf8.count } }
    }

    /// Whether a commit from `memberID` at `generation` may move the group's offsets: only a
    /// member, at the current generation; with no member id only while the group is empty.
    func checkCommit(memberID: String, generation: Int32) -> KafkaErrorCode {
        if memberID.isEmpty && generation < 0 { return members.isEmpty ? .none : .unknownMemberID }
        guard members[memberID] != nil else { return .unknownMemberID }
        guard generation == self.generation else { return .illegalGeneration }
        if case .preparingRebalance = phase { return .rebalanceInProgress }
        return .none
    }

    /// Who reads what, from the members' assignments (the "consumer" protocol's layout;
    /// another protocol's bytes show no partitions).
    var partitionsByMember: [String: [TopicPartition]] {
        members.mapValues { member in
            (KafkaConsumerProtocol.assignedPartitions(member.assignment) ?? []).flatMap { topic in
                topic.entries.map { TopicPartition(topic: topic.name, partition: $0) }
            }
        }
    }

    /// The topics the members subscribe to (the "consumer" protocol's layout).
    var subscribedTopics: Set<String> {
        Set(members.values.flatMap { member in member.protocols.first { $0.name == protocolName }.flatMap { KafkaConsumerProtocol.subscribedTopics($0.metadata) } ?? [] })
    }

    /// Kafka's names for the phases (DescribeGroups).
    var stateName: String {
        switch phase {
        case .empty: "Empty"
        case .preparingRebalance: "PreparingRebalance"
        case .completingRebalance: "CompletingRebalance"
        case .stable: "Stable"
        }
    }
}
