import MillraceFormat
import MillraceKafka
import MillraceStorage
import MillraceWire
import NIOCore
import NIOPosix
import TestSupport
import Testing

@testable import MillraceServer

/// Kafka's group protocol, driven event by event with times given by hand: who waits, who is
/// answered what, and when members are dropped.
@Suite struct KafkaGroupStateMachineTests {
    typealias Machine = KafkaGroupStateMachine

    static let range: [(name: String, metadata: [UInt8])] = [("range", KafkaConsumerProtocol.subscription(["t"]))]

    static func join(_ machine: inout Machine, _ id: String = "", client: String = "c", nowMs: Int64 = 0, protocols: [(name: String, metadata: [UInt8])] = range)
        -> (memberID: String, answers: Machine.Answers)
    {
        machine.join(
            memberID: id, clientID: client, clientHost: "/127.0.0.1", protocolType: "consumer", protocols: protocols, sessionTimeoutMs: 10_000,
            rebalanceTimeoutMs: 30_000, nowMs: nowMs)
    }

    @Test func theFirstMemberLeadsAGenerationAtOnce() {
        var group = Machine(group: "g")
        let (id, answers) = Self.join(&group, client: "mes line 3")
        #expect(id.hasPrefix("mes_line_3-"))
        #expect(answers.joins.count == 1)
        let answer = answers.joins[0]
        #expect(answer.memberID == id && answer.error == .none && answer.generation == 1 && answer.leader == id && answer.protocolName == "range")
        #expect(answer.members.map(\.id) == [id])
        #expect(group.phase == .completingRebalance(deadlineMs: 30_000))
        // The leader's assignment is handed out and the group is stable.
        let assignment = KafkaConsumerProtocol.assignment([KafkaTopic(name: "t", [0, 1])])
        let synced = group.sync(memberID: id, generation: 1, assignments: [id: assignment], nowMs: 1)
        #expect(synced.syncs == [Machine.SyncAnswer(memberID: id, assignment: assignment)])
        #expect(group.phase == .stable)
        #expect(group.partitionsByMember[id] == [TopicPartition(topic: "t", partition: 0), TopicPartition(topic: "t", partition: 1)])
        #expect(group.subscribedTopics == ["t"])
    }

    @Test func aSecondMemberMakesEveryoneJoinAgainAndTheFollowerWaitsForTheLeader() {
        var group = Machine(group: "g")
        let (leader, _) = Self.join(&group)
        _ = group.sync(memberID: leader, generation: 1, assignments: [:], nowMs: 0)
        // The newcomer waits: the leader has not joined again yet.
        let (follower, waiting) = Self.join(&group, nowMs: 100)
        #expect(waiting.joins.isEmpty)
        #expect(group.heartbeat(memberID: leader, generation: 1, nowMs: 200) == .rebalanceInProgress)
        // The leader joins again: both are answered, the leader with both members.
        let (_, answers) = Self.join(&group, leader, nowMs: 300)
        #expect(Set(answers.joins.map(\.memberID)) == [leader, follower])
        #expect(answers.joins.allSatisfy { $0.generation == 2 && $0.leader == leader })
        #expect(answers.joins.first { $0.memberID == leader }?.members.map(\.id) == [leader, follower])
        #expect(answers.joins.first { $0.memberID == follower }?.members.isEmpty == true)
        // The follower's sync waits until the leader's arrives, then both get their share.
        #expect(group.sync(memberID: follower, generation: 2, assignments: [:], nowMs: 400).syncs.isEmpty)
        let mine = KafkaConsumerProtocol.assignment([KafkaTopic(name: "t", [0])])
        let yours = KafkaConsumerProtocol.assignment([KafkaTopic(name: "t", [1])])
        let synced = group.sync(memberID: leader, generation: 2, assignments: [leader: mine, follower: yours], nowMs: 500)
        #expect(Set(synced.syncs.map(\.memberID)) == [leader, follower])
        #expect(synced.syncs.first { $0.memberID == follower }?.assignment == yours)
        #expect(group.heartbeat(memberID: follower, generation: 2, nowMs: 600) == .none)
        // A stale generation is told so.
        #expect(group.heartbeat(memberID: follower, generation: 1, nowMs: 600) == .illegalGeneration)
        #expect(group.checkCommit(memberID: follower, generation: 1) == .illegalGeneration)
        #expect(group.checkCommit(memberID: follower, generation: 2) == .none)
        #expect(group.checkCommit(memberID: "", generation: -1) == .unknownMemberID)
    }

    @Test func aLeaverHandsTheGroupToTheOthers() {
        var group = Machine(group: "g")
        let (a, _) = Self.join(&group)
        _ = group.sync(memberID: a, generation: 1, assignments: [:], nowMs: 0)
        let (b, _) = Self.join(&group)
        _ = Self.join(&group, a)
        _ = group.sync(memberID: a, generation: 2, assignments: [:], nowMs: 0)
        // The leader leaves: b must join again, and becomes the leader of generation 3.
        let left = group.leave(memberID: a, nowMs: 10)
        #expect(left.found)
        #expect(group.heartbeat(memberID: b, generation: 2, nowMs: 20) == .rebalanceInProgress)
        let (_, answers) = Self.join(&group, b, nowMs: 30)
        #expect(answers.joins.map(\.memberID) == [b])
        #expect(answers.joins[0].leader == b && answers.joins[0].generation == 3)
        #expect(group.leave(memberID: "nobody", nowMs: 40).found == false)
        #expect(group.leave(memberID: b, nowMs: 50).found)
        #expect(group.isEmpty && group.phase == .empty)
        #expect(group.checkCommit(memberID: "", generation: -1) == .none)
    }

    @Test func aMemberThatDoesNotJoinTheRebalanceIsDroppedAtItsDeadline() {
        var group = Machine(group: "g")
        let (a, _) = Self.join(&group, nowMs: 0)
        _ = group.sync(memberID: a, generation: 1, assignments: [:], nowMs: 0)
        let (b, waiting) = Self.join(&group, nowMs: 1_000)
        #expect(waiting.joins.isEmpty)
        // a keeps heartbeating but never joins again; the deadline is the rebalance timeout (30 s).
        #expect(group.heartbeat(memberID: a, generation: 1, nowMs: 25_000) == .rebalanceInProgress)
        #expect(group.expire(nowMs: 30_999).expired.isEmpty)
        let (gone, answers) = group.expire(nowMs: 31_000)
        #expect(gone == [a])
        #expect(answers.joins.map(\.memberID) == [b])
        #expect(answers.joins[0].generation == 2 && answers.joins[0].leader == b)
    }

    @Test func aSilentMemberExpiresAndAWaitingSyncIsToldToJoinAgain() {
        var group = Machine(group: "g")
        let (a, _) = Self.join(&group, nowMs: 0)
        _ = group.sync(memberID: a, generation: 1, assignments: [:], nowMs: 0)
        let (b, _) = Self.join(&group, nowMs: 0)
        _ = Self.join(&group, a, nowMs: 0)
        // b asks for its assignment; the leader a goes silent before sending it.
        #expect(group.sync(memberID: b, generation: 2, assignments: [:], nowMs: 5_000).syncs.isEmpty)
        #expect(group.expire(nowMs: 10_000).expired.isEmpty)
        let (gone, answers) = group.expire(nowMs: 10_001)
        #expect(gone == [a])
        // b's waiting sync is answered: a rebalance is under way; it joins again and leads.
        #expect(answers.syncs == [Machine.SyncAnswer(memberID: b, error: .rebalanceInProgress)])
        let (_, joined) = Self.join(&group, b, nowMs: 10_002)
        #expect(joined.joins.first?.leader == b)
    }

    /// A leader that keeps heartbeating but never sends the assignment: at the rebalance
    /// deadline it is dropped, the follower's waiting SyncGroup is told to join again, and
    /// the follower (not expired meanwhile, though it did not heartbeat) leads the next one.
    @Test func aLeaderThatNeverSyncsIsDroppedAtTheDeadline() {
        var group = Machine(group: "g")
        let (a, _) = Self.join(&group, nowMs: 0)
        _ = group.sync(memberID: a, generation: 1, assignments: [:], nowMs: 0)
        let (b, _) = Self.join(&group, nowMs: 0)
        _ = Self.join(&group, a, nowMs: 1_000)
        #expect(group.phase == .completingRebalance(deadlineMs: 31_000))
        #expect(group.sync(memberID: b, generation: 2, assignments: [:], nowMs: 1_000).syncs.isEmpty)
        for now in stride(from: Int64(2_000), to: 31_000, by: 2_000) {
            #expect(group.heartbeat(memberID: a, generation: 2, nowMs: now) == .none)
            #expect(group.expire(nowMs: now).expired.isEmpty, "at \(now)")
        }
        let (gone, answers) = group.expire(nowMs: 31_000)
        #expect(gone == [a])
        #expect(answers.syncs == [Machine.SyncAnswer(memberID: b, error: .rebalanceInProgress)])
        #expect(Self.join(&group, b, nowMs: 31_001).answers.joins.first?.leader == b)
    }

    @Test func bytesHeldCountMetadataAndAssignments() {
        var group = Machine(group: "g")
        let (a, _) = Self.join(&group, protocols: [("range", [UInt8](repeating: 1, count: 100))])
        #expect(group.bytesHeld == 105)
        _ = group.sync(memberID: a, generation: 1, assignments: [a: [UInt8](repeating: 2, count: 50)], nowMs: 0)
        #expect(group.bytesHeld == 155)
        _ = group.leave(memberID: a, nowMs: 1)
        #expect(group.bytesHeld == 0)
    }

    @Test func membersWithoutACommonProtocolAreRefused() {
        var group = Machine(group: "g")
        _ = Self.join(&group)
        let (_, answers) = Self.join(&group, protocols: [("sticky", [])])
        #expect(answers.joins.map(\.error) == [.inconsistentGroupProtocol])
        let (_, unknown) = Self.join(&group, "someone-else")
        #expect(unknown.joins.map(\.error) == [.unknownMemberID])
        #expect(group.members.count == 1)
    }
}

/// The coordinator's Kafka side: one namespace with native groups, and no join left waiting
/// when the broker stops.
@Suite struct KafkaGroupCoordinatorTests {
    static func join(_ member: String = "", group: String = "g") -> KafkaGroups.JoinRequest {
        KafkaGroups.JoinRequest(
            groupID: group, sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 30_000, memberID: member, protocolType: "consumer",
            protocols: [.init(name: "range", metadata: KafkaConsumerProtocol.subscription(["t"]))])
    }

    @Test func aStoppingBrokerAnswersWaitingJoinsAndNativeAndKafkaGroupsExcludeEachOther() async throws {
        try await withTemporaryStorage("kafka-groups") { storage in
            _ = try await storage.createTopic("t", partitions: 2)
            let coordinator = GroupCoordinator(storage: storage, clock: ManualClock())
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let first = try await coordinator.kafkaJoin(Self.join(), clientID: "a", clientHost: "/h", on: loop).get()
            #expect(first.error == .none && first.generation == 1)
            // A second member waits for the first to join again; the stop answers it.
            let waiting = coordinator.kafkaJoin(Self.join(), clientID: "b", clientHost: "/h", on: loop)
            coordinator.releaseKafkaWaiters()
            #expect(try await waiting.get().error == .notCoordinator)
            // A native consumer cannot join the live Kafka group, and a Kafka one not a live native group.
            #expect(throws: MillraceError.self) {
                try coordinator.join(JoinGroupRequest(group: "g", sessionTimeoutMs: 10_000, topics: ["t"]))
            }
            _ = try coordinator.join(JoinGroupRequest(group: "n", sessionTimeoutMs: 10_000, topics: ["t"]))
            #expect(try await coordinator.kafkaJoin(Self.join(group: "n"), clientID: "c", clientHost: "/h", on: loop).get().error == .inconsistentGroupProtocol)
            #expect(coordinator.protocolTypes() == ["g": "consumer", "n": ""])
        }
    }

    /// A member's second JoinGroup (or SyncGroup) while its first waits answers the first
    /// (REBALANCE_IN_PROGRESS): nothing is left unanswered.
    @Test func aRepeatedWaitAnswersTheOneItReplaces() async throws {
        try await withTemporaryStorage("kafka-repeat") { (storage: Storage) async throws in
            _ = try await storage.createTopic("t", partitions: 2)
            let coordinator = GroupCoordinator(storage: storage, clock: ManualClock())
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            func join(_ id: String = "") -> EventLoopFuture<KafkaGroupStateMachine.JoinAnswer> {
                coordinator.kafkaJoin(Self.join(id), clientID: "c", clientHost: "/h", on: loop)
            }
            func sync(_ id: String, _ generation: Int32, _ assignments: [(memberID: String, assignment: [UInt8])] = []) -> EventLoopFuture<KafkaGroupStateMachine.SyncAnswer> {
                coordinator.kafkaSync(KafkaGroups.SyncRequest(groupID: "g", generationID: generation, memberID: id, assignments: assignments), on: loop)
            }
            let a = try await join().get().memberID
            _ = try await sync(a, 1).get()
            let b = join()
            _ = try await join(a).get()
            let bID = try await b.get().memberID
            _ = try await sync(a, 2).get()
            _ = try await sync(bID, 2).get()
            // c joins: a and b must join again. a sends its join twice before b's: the first
            // is answered at once, the second when b comes.
            let c = join()
            let first = join(a)
            let second = join(a)
            #expect(try await first.get().error == .rebalanceInProgress)
            _ = join(bID)
            #expect(try await second.get().generation == 3)
            #expect(try await c.get().generation == 3)
            // b's SyncGroup, sent twice before the leader's: the first is answered at once.
            let syncs = [sync(bID, 3), sync(bID, 3)]
            #expect(try await syncs[0].get().error == .rebalanceInProgress)
            _ = try await sync(a, 3, [(bID, [7])]).get()
            #expect(try await syncs[1].get().assignment == [7])
            coordinator.releaseKafkaWaiters()
        }
    }

    /// Invented members cannot grow the broker: a group's members' metadata is bounded.
    @Test func aGroupsMetadataIsBounded() async throws {
        try await withTemporaryStorage("kafka-bytes") { (storage: Storage) async throws in
            let coordinator = GroupCoordinator(storage: storage, clock: ManualClock())
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let big = KafkaGroups.JoinRequest(
                groupID: "g", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 10_000, memberID: "", protocolType: "consumer",
                protocols: [.init(name: "range", metadata: [UInt8](repeating: 0, count: 1 << 20))])
            // 1 MiB and 5 bytes a member: the first is answered at once, the next two wait for
            // the rebalance, the fourth would pass 4 MiB and is refused at once.
            #expect(try await coordinator.kafkaJoin(big, clientID: "x", clientHost: "/h", on: loop).get().error == .none)
            let waiting = (0..<2).map { _ in coordinator.kafkaJoin(big, clientID: "x", clientHost: "/h", on: loop) }
            #expect(try await coordinator.kafkaJoin(big, clientID: "x", clientHost: "/h", on: loop).get().error == .groupMaxSizeReached)
            coordinator.releaseKafkaWaiters()
            for join in waiting { #expect(try await join.get().error == .notCoordinator) }
            #expect(coordinator.state.withLock { $0.kafkaBytesHeld } <= GroupCoordinator.kafkaGroupBytesMax)
        }
    }
}
