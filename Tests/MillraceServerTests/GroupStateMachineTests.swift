import MillraceFormat
import MillraceServer
import MillraceStorage
import TestSupport
import Testing

func partitions(_ topic: String, _ count: Int32) -> [TopicPartition] {
    (0..<count).map { TopicPartition(topic: topic, partition: $0) }
}

@Suite struct GroupAssignmentTests {
    @Test func everyPartitionOnceAndBalanced() {
        for partitionCount in Int32(0)...20 {
            for memberCount in 1...7 {
                let members = (0..<memberCount).map { "m\($0)" }
                let result = GroupAssignment.assign(partitions: partitions("t", partitionCount), members: members, previous: [:])
                let all = result.values.flatMap { $0 }
                #expect(all.count == Int(partitionCount) && Set(all).count == Int(partitionCount))
                let sizes = result.values.map(\.count)
                #expect(sizes.max()! - sizes.min()! <= 1, "\(partitionCount) partitions over \(memberCount) members: \(sizes)")
            }
        }
    }

    @Test func aNewMemberOnlyTakesWhatItNeeds() {
        let before = GroupAssignment.assign(partitions: partitions("t", 12), members: ["a", "b", "c"], previous: [:])
        let after = GroupAssignment.assign(partitions: partitions("t", 12), members: ["a", "b", "c", "d"], previous: before)
        for member in ["a", "b", "c"] { #expect(Set(after[member]!).isSubset(of: Set(before[member]!)), "\(member) got a partition it did not own") }
        #expect(after["d"]!.count == 3)
    }

    @Test func aLeavingMembersPartitionsAreTheOnlyOnesThatMove() {
        let before = GroupAssignment.assign(partitions: partitions("t", 6), members: ["a", "b", "c"], previous: [:])
        let after = GroupAssignment.assign(partitions: partitions("t", 6), members: ["a", "c"], previous: before)
        for member in ["a", "c"] { #expect(Set(before[member]!).isSubset(of: Set(after[member]!))) }
        #expect(after["a"]!.count == 3 && after["c"]!.count == 3)
    }
}

@Suite struct GroupStateMachineTests {
    let counts: [String: Int32] = ["orders": 6]

    @Test func joinHeartbeatRebalanceAndFencing() {
        var group = GroupStateMachine(group: "erp")
        let first = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 10_000, nowMs: 0)
        #expect(first.generation == 1 && first.assignment == partitions("orders", 6))
        #expect(group.state == .stable(generation: 1))

        // The second member is given three partitions, but may read them only once the first
        // has let them go.
        let second = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 10_000, nowMs: 100)
        #expect(second.generation == 2 && second.assignment.isEmpty)
        let itsShare = group.assignment[second.memberID] ?? []
        #expect(itsShare.count == 3 && Set(group.awaitingRelease.keys) == Set(itsShare))
        #expect(group.heartbeat(memberID: second.memberID, generation: 2, nowMs: 150) == .carryOn)
        // The first member learns of the new generation at its next heartbeat...
        guard case .rebalance(2, let mine) = group.heartbeat(memberID: first.memberID, generation: 1, nowMs: 200) else {
            Issue.record("no rebalance for the first member")
            return
        }
        #expect(Set(mine).isDisjoint(with: Set(itsShare)) && mine.count == 3)
        // ...and once it heartbeats at generation 2 it has given them up.
        #expect(group.heartbeat(memberID: first.memberID, generation: 2, nowMs: 300) == .carryOn)
        #expect(group.awaitingRelease.isEmpty)
        #expect(group.heartbeat(memberID: second.memberID, generation: 2, nowMs: 350) == .rebalance(generation: 2, assignment: itsShare))
        #expect(group.heartbeat(memberID: second.memberID, generation: 2, nowMs: 400) == .carryOn)

        // Fencing: a commit for a partition not owned is refused.
        #expect(group.checkCommit(memberID: first.memberID, generation: 2, partitions: [itsShare[0]]) != nil)
        #expect(group.checkCommit(memberID: first.memberID, generation: 2, partitions: mine) == nil)
        // The generation just before: what the first member owned then (all six) it may still
        // commit, so nothing it processed before hearing of the rebalance is read again.
        #expect(group.checkCommit(memberID: first.memberID, generation: 1, partitions: itsShare) == nil)
        #expect(group.checkCommit(memberID: second.memberID, generation: 1, partitions: [mine[0]]) != nil)

        // Two generations back is refused.
        let third = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 10_000, nowMs: 400)
        #expect(third.generation == 3)
        #expect(group.checkCommit(memberID: first.memberID, generation: 1, partitions: [mine[0]])?.message.contains("generation 1 refused") == true)
        #expect(group.checkCommit(memberID: first.memberID, generation: 2, partitions: [mine[0]]) == nil)
    }

    /// A partition whose owner expires (it cannot let go) is free at once; one whose owner
    /// leaves cleanly likewise.
    @Test func partitionsOfMembersThatAreGoneAreNotAwaited() {
        var group = GroupStateMachine(group: "quality")
        let a = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 1_000, nowMs: 0)
        let b = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 10_000, nowMs: 0)
        #expect(b.assignment.isEmpty && group.awaitingRelease.count == 3)
        _ = group.expire(nowMs: 1_001, partitionCounts: counts)
        #expect(group.members[a.memberID] == nil && group.awaitingRelease.isEmpty)
        #expect(group.readableAssignment(b.memberID) == partitions("orders", 6))
    }

    /// A member the broker forgot (its session expired, or the broker restarted) must not be
    /// taken for the member that joined after it: ids never repeat.
    @Test func aForgottenMembersIDIsNeverGivenToANewMember() {
        var group = GroupStateMachine(group: "mes")
        let old = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 1_000, nowMs: 0)
        #expect(group.expire(nowMs: 2_000, partitionCounts: counts) == [old.memberID])
        let newer = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 1_000, nowMs: 2_000)
        #expect(newer.memberID != old.memberID)
        #expect(group.heartbeat(memberID: old.memberID, generation: old.generation, nowMs: 2_100) == .unknownMember)
        // After a restart the broker starts with a new state machine.
        var restarted = GroupStateMachine(group: "mes")
        let afterRestart = restarted.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 1_000, nowMs: 0)
        #expect(afterRestart.memberID != old.memberID && afterRestart.generation == old.generation)
        #expect(restarted.heartbeat(memberID: old.memberID, generation: old.generation, nowMs: 100) == .unknownMember)
    }

    @Test func aSilentMemberExpiresAndAQuietOneStays() {
        var group = GroupStateMachine(group: "quality")
        let a = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 3_000, nowMs: 0)
        let b = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 3_000, nowMs: 0)
        _ = group.heartbeat(memberID: a.memberID, generation: 2, nowMs: 2_500)
        let atTimeout = group.expire(nowMs: 3_000, partitionCounts: counts)
        #expect(atTimeout.isEmpty)  // exactly the timeout: not yet
        let pastTimeout = group.expire(nowMs: 3_001, partitionCounts: counts)
        #expect(pastTimeout == [b.memberID])
        #expect(group.currentGeneration == 3 && group.assignment[a.memberID] == partitions("orders", 6))
        let late = group.heartbeat(memberID: b.memberID, generation: 2, nowMs: 3_100)
        #expect(late == .unknownMember)
    }

    @Test func aCleanLeaveHandsOverAtOnceAndTheLastLeaveEmptiesTheGroup() {
        var group = GroupStateMachine(group: "lake")
        let a = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 10_000, nowMs: 0)
        let b = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 10_000, nowMs: 0)
        let left = group.leave(memberID: b.memberID, partitionCounts: counts)
        #expect(left)
        #expect(group.assignment[a.memberID]?.count == 6 && group.currentGeneration == 3)
        let leftAgain = group.leave(memberID: b.memberID, partitionCounts: counts)
        #expect(!leftAgain)
        let lastLeft = group.leave(memberID: a.memberID, partitionCounts: counts)
        #expect(lastLeft)
        #expect(group.state == .empty)
    }

    @Test func rejoiningWithTheSameIdAndTopicsKeepsTheGeneration() {
        var group = GroupStateMachine(group: "g")
        let a = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 10_000, nowMs: 0)
        let again = group.join(memberID: a.memberID, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 10_000, nowMs: 50)
        #expect(again == a)
    }

    /// Random joins, leaves, heartbeats (each member at the generation it last heard of) and
    /// expiries: in every generation each partition has exactly one owner and counts stay
    /// balanced; and at every moment no partition is one that two live members were told they
    /// may read — a member keeps reading what it was last told until its next heartbeat.
    @Test func randomScriptsKeepOneOwnerPerPartition() {
        var random = SeededGenerator(seed: 4242)
        for _ in 0..<50 {
            var group = GroupStateMachine(group: "g")
            var now: Int64 = 0
            var live: [String] = []
            var told: [String: (generation: Int32, partitions: [TopicPartition])] = [:]
            for _ in 0..<60 {
                now += Int64(random.next(in: 0...2_000))
                switch random.next(in: 0...9) {
                case 0...3:
                    let joined = group.join(memberID: nil, topics: ["orders"], partitionCounts: counts, sessionTimeoutMs: 5_000, nowMs: now)
                    live.append(joined.memberID)
                    told[joined.memberID] = (joined.generation, joined.assignment)
                case 4...5 where !live.isEmpty:
                    let id = live.remove(at: random.next(in: 0...live.count - 1))
                    _ = group.leave(memberID: id, partitionCounts: counts)
                    told[id] = nil
                case 6...7:
                    for id in live where random.next(in: 0...3) > 0 {
                        switch group.heartbeat(memberID: id, generation: told[id]?.generation ?? -1, nowMs: now) {
                        case .rebalance(let generation, let assignment): told[id] = (generation, assignment)
                        case .carryOn: break
                        case .unknownMember: told[id] = nil
                        }
                    }
                default:
                    let gone = group.expire(nowMs: now, partitionCounts: counts)
                    live.removeAll { gone.contains($0) }
                    for id in gone { told[id] = nil }
                }
                let reading = told.values.flatMap(\.partitions)
                #expect(Set(reading).count == reading.count, "a partition two members may read: \(told)")
                let owned = group.assignment.values.flatMap { $0 }
                if group.members.isEmpty {
                    #expect(owned.isEmpty)
                } else {
                    #expect(owned.count == 6 && Set(owned).count == 6)
                    let sizes = group.assignment.values.map(\.count)
                    #expect(sizes.max()! - sizes.min()! <= 1)
                }
            }
        }
    }
}
