import MillraceFormat
import MillraceStorage

/// One consumer group's membership, in the shape of postgres-nio's state machines: a struct,
/// one mutating function per event, each returning what the caller must do. No clock of its
/// own (times come with the events), no I/O.
///
/// Every membership change (a join, a leave, a session expiry) starts a new generation with a
/// fresh assignment (`GroupAssignment`). Members learn of it on their next heartbeat. Commits
/// carry the member's generation and are refused from any other (fencing), so within one
/// generation no partition is owned by two members, and a member that was replaced can no
/// longer move the group's offsets.
public struct GroupStateMachine: Sendable {
    public struct Member: Equatable, Sendable {
        public var id: String
        public var topics: [String]
        public var sessionTimeoutMs: Int64
        public var lastHeardMs: Int64
    }

    public enum State: Equatable, Sendable {
        /// No members.
        case empty
        /// Members with an assignment at this generation.
        case stable(generation: Int32)
    }

    public enum HeartbeatAction: Equatable, Sendable {
        /// Carry on with the current assignment.
        case carryOn
        /// A new generation: stop what is not in `assignment`, then consume it.
        case rebalance(generation: Int32, assignment: [TopicPartition])
        /// Not a member (expired, or left): join again.
        case unknownMember
    }

    public struct Joined: Equatable, Sendable {
        public var memberID: String
        public var generation: Int32
        public var assignment: [TopicPartition]
    }

    public let group: String
    public private(set) var state: State = .empty
    public private(set) var members: [String: Member] = [:]
    public private(set) var assignment: [String: [TopicPartition]] = [:]
    /// The generation before the current one: its members may still commit what they owned
    /// in it (see `checkCommit`).
    private var previousAssignment: [String: [TopicPartition]] = [:]
    /// Partitions moved in this generation from a member that is still in the group, with that
    /// member: the new owner gets them only once the old one has heartbeated at this
    /// generation (it has committed what it processed and stopped reading them), or left.
    /// Without this the new owner starts from the last commit while the old owner is still
    /// reading, and both process the same records.
    public private(set) var awaitingRelease: [TopicPartition: Set<String>] = [:]
    /// What each member was last told it may read.
    private var told: [String: [TopicPartition]] = [:]
    private var generation: Int32 = 0
    private var nextMemberNumber = 1

    public init(group: String) { self.group = group }

    public var currentGeneration: Int32 { generation }

    /// A consumer joins (or rejoins with its id). `partitionCounts` gives the topics' sizes.
    public mutating func join(
        memberID: String?, topics: [String], partitionCounts: [String: Int32], sessionTimeoutMs: Int64, nowMs: Int64
    ) -> Joined {
        let id = memberID.flatMap { members[$0] != nil ? $0 : nil } ?? newMemberID()
        let isNew = members[id] == nil || members[id]!.topics != topics
        members[id] = Member(id: id, topics: topics, sessionTimeoutMs: sessionTimeoutMs, lastHeardMs: nowMs)
        if isNew { rebalance(partitionCounts: partitionCounts) }
        let readable = readableAssignment(id)
        told[id] = readable
        return Joined(memberID: id, generation: generation, assignment: readable)
    }

    /// What a member may read now: its assignment less what still awaits release.
    public func readableAssignment(_ memberID: String) -> [TopicPartition] {
        (assignment[memberID] ?? []).filter { awaitingRelease[$0] == nil }
    }

    public mutating func heartbeat(memberID: String, generation memberGeneration: Int32, nowMs: Int64) -> HeartbeatAction {
        guard members[memberID] != nil else { return .unknownMember }
        members[memberID]!.lastHeardMs = nowMs
        if memberGeneration == generation {
            // At the current generation: it has given up what moved away from it.
            for (partition, holders) in awaitingRelease where holders.contains(memberID) {
                let rest = holders.subtracting([memberID])
                awaitingRelease[partition] = rest.isEmpty ? nil : rest
            }
        }
        let readable = readableAssignment(memberID)
        guard memberGeneration == generation, told[memberID] == readable else {
            told[memberID] = readable
            return .rebalance(generation: generation, assignment: readable)
        }
        return .carryOn
    }

    /// A member leaves cleanly: its partitions go to the others at once.
    public mutating func leave(memberID: String, partitionCounts: [String: Int32]) -> Bool {
        guard members.removeValue(forKey: memberID) != nil else { return false }
        told[memberID] = nil
        rebalance(partitionCounts: partitionCounts)
        return true
    }

    /// Removes members not heard from within their session timeout; returns their ids.
    public mutating func expire(nowMs: Int64, partitionCounts: [String: Int32]) -> [String] {
        let expired = members.values.filter { nowMs - $0.lastHeardMs > $0.sessionTimeoutMs }.map(\.id).sorted()
        guard !expired.isEmpty else { return [] }
        for id in expired {
            members[id] = nil
            told[id] = nil
        }
        rebalance(partitionCounts: partitionCounts)
        return expired
    }

    /// Whether a commit from this member at this generation may change the group's offsets.
    /// Members may commit only partitions assigned to them in the current generation, or in
    /// the one just before it: a member learns of a rebalance at its next heartbeat, and what
    /// it processed until then is committed rather than read again. (If the new owner has
    /// already moved further, such a commit moves the offset back: records are read again,
    /// never skipped.)
    public func checkCommit(memberID: String, generation memberGeneration: Int32, partitions: [TopicPartition]) -> MillraceError? {
        guard members[memberID] != nil else {
            return MillraceError(.unknownMember, "member \(memberID) is not in group \(group); rejoin before committing")
        }
        let ownedThen: [TopicPartition]
        switch memberGeneration {
        case generation: ownedThen = readableAssignment(memberID)
        case generation - 1: ownedThen = previousAssignment[memberID] ?? []
        default:
            return MillraceError(
                .staleGeneration,
                "commit from generation \(memberGeneration) refused: group \(group) is at generation \(generation); rejoin and re-read from the committed offsets")
        }
        let owned = Set(ownedThen)
        if let foreign = partitions.first(where: { !owned.contains($0) }) {
            return MillraceError(.invalidRequest, "member \(memberID) does not own \(foreign) in generation \(generation)")
        }
        return nil
    }

    /// `GROUP-N-RANDOM`: the random part keeps ids unique across broker restarts and across a
    /// group that emptied and started over, so a member the broker forgot cannot heartbeat or
    /// commit as a newer member that was given the same number.
    private mutating func newMemberID() -> String {
        defer { nextMemberNumber += 1 }
        let random = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        return "\(group)-\(nextMemberNumber)-\(String(repeating: "0", count: 16 - random.count))\(random)"
    }

    private mutating func rebalance(partitionCounts: [String: Int32]) {
        generation += 1
        previousAssignment = assignment
        guard !members.isEmpty else {
            state = .empty
            assignment = [:]
            awaitingRelease = [:]
            return
        }
        let topics = Set(members.values.flatMap(\.topics))
        let partitions = topics.sorted().flatMap { topic in
            (0..<(partitionCounts[topic] ?? 0)).map { TopicPartition(topic: topic, partition: $0) }
        }
        // Members may subscribe to different topics: assign each topic among its subscribers.
        var next: [String: [TopicPartition]] = Dictionary(uniqueKeysWithValues: members.keys.map { ($0, []) })
        for topic in topics.sorted() {
            let subscribers = members.values.filter { $0.topics.contains(topic) }.map(\.id)
            let previous = assignment.mapValues { $0.filter { $0.topic == topic } }
            let forTopic = GroupAssignment.assign(
                partitions: partitions.filter { $0.topic == topic }, members: subscribers, previous: previous)
            for (member, owned) in forTopic { next[member, default: []].append(contentsOf: owned) }
        }
        // A partition moving away from a member that stays waits for that member's release.
        // Waits not yet over carry on (the member that read it last may not have heard yet).
        var ownerBefore: [TopicPartition: String] = [:]
        for (member, owned) in assignment { for partition in owned { ownerBefore[partition] = member } }
        var waiting: [TopicPartition: Set<String>] = [:]
        for (member, owned) in next {
            for partition in owned {
                var holders = (awaitingRelease[partition] ?? []).filter { members[$0] != nil && $0 != member }
                if let before = ownerBefore[partition], before != member, members[before] != nil { holders.insert(before) }
                if !holders.isEmpty { waiting[partition] = holders }
            }
        }
        awaitingRelease = waiting
        assignment = next
        state = .stable(generation: generation)
    }
}
