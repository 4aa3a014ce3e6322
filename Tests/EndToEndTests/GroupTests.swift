import Foundation
import MillraceFormat
import MillraceWire
import TestSupport
import Testing

@Suite(.serialized, .stopsLiveServers) struct GroupTests {
    func assignment(_ response: Response) -> GroupAssignmentResponse? {
        switch response.body {
        case .joinGroup(let assigned)?, .heartbeat(let assigned)?: return assigned
        default: return nil
        }
    }

    func owned(_ assigned: GroupAssignmentResponse) -> Set<Int32> {
        Set(assigned.assignment.flatMap { $0.entries.map(\.partition) })
    }

    /// Issue 23, item 2: generations start again at 1 after a restart, and need not persist:
    /// a member id is the broker's own (GROUP-N-RANDOM) and lives only as long as the broker
    /// that gave it out, so a member from before the restart is unknown after it, whatever
    /// generation it names — including one that equals the new generation.
    @Test func aMemberFromBeforeARestartIsFencedByItsId() async throws {
        let directory = NSTemporaryDirectory() + "millrace-generations-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func commit(_ member: String, _ generation: Int32, _ offset: Int64) -> Request {
            .offsetCommit(OffsetCommitRequest(group: "erp", memberID: member, generation: generation, topics: [TopicEntries(topic: "orders", [OffsetEntry(partition: 0, offset: offset)])]))
        }
        let before = try await LiveServer(directory: directory)
        let old = try TestClient(port: before.port)
        _ = try old.call(.createTopic(CreateTopicRequest(name: "orders", partitions: 1)))
        _ = try old.call(produce("orders", 0, ["a", "b", "c"]))
        let stale = try #require(assignment(try old.call(.joinGroup(JoinGroupRequest(group: "erp", sessionTimeoutMs: 10_000, topics: ["orders"])))))
        #expect(try old.call(commit(stale.memberID, stale.generation, 1)).errorCode == .none)
        await before.stop()

        let after = try await LiveServer(directory: directory)
        let fresh = try TestClient(port: after.port)
        let current = try #require(assignment(try fresh.call(.joinGroup(JoinGroupRequest(group: "erp", sessionTimeoutMs: 10_000, topics: ["orders"])))))
        #expect(current.generation == stale.generation && current.memberID != stale.memberID)
        // The member from before, naming the very same generation: refused, nothing moves.
        #expect(try fresh.call(commit(stale.memberID, stale.generation, 3)).errorCode == .unknownMember)
        #expect(try fresh.call(commit(current.memberID, current.generation, 2)).errorCode == .none)
        let fetched = try fresh.call(.offsetFetch(OffsetFetchRequest(group: "erp"))).body
        await after.stop()
        guard case .offsetFetch(let offsets)? = fetched else {
            Issue.record("no offset fetch body")
            return
        }
        #expect(offsets.first?.entries == [OffsetEntry(partition: 0, offset: 2)])
    }

    @Test func membersRebalanceCommitsAreFencedAndSilenceExpires() async throws {
        let clock = ManualClock()
        let live = try await LiveServer(clock: clock)
        defer { live.remove() }
        let a = try TestClient(port: live.port)
        let b = try TestClient(port: live.port)
        _ = try a.call(.createTopic(CreateTopicRequest(name: "orders", partitions: 6)))

        let first = try #require(assignment(try a.call(.joinGroup(JoinGroupRequest(group: "erp", sessionTimeoutMs: 1_000, topics: ["orders"])))))
        #expect(first.generation == 1 && owned(first).count == 6)
        // The second member's partitions wait until the first has let them go.
        let joined = try #require(assignment(try b.call(.joinGroup(JoinGroupRequest(group: "erp", sessionTimeoutMs: 10_000, topics: ["orders"])))))
        #expect(joined.generation == 2 && owned(joined).isEmpty)
        let beat = try #require(assignment(try a.call(.heartbeat(GroupMemberRequest(group: "erp", memberID: first.memberID, generation: 1)))))
        #expect(beat.rebalanced && beat.generation == 2 && owned(beat).count == 3)
        let released = try #require(assignment(try a.call(.heartbeat(GroupMemberRequest(group: "erp", memberID: first.memberID, generation: 2)))))
        #expect(!released.rebalanced)
        let second = try #require(assignment(try b.call(.heartbeat(GroupMemberRequest(group: "erp", memberID: joined.memberID, generation: 2)))))
        #expect(second.rebalanced && second.generation == 2 && owned(second).count == 3 && owned(beat).isDisjoint(with: owned(second)))

        // The owner's commit at generation 2 lands; from generation 1, only what the member
        // owned then (just before the current generation); from further back, nothing.
        let mine = owned(beat).sorted()
        func commit(_ member: String, _ generation: Int32, _ partition: Int32, _ offset: Int64) -> Request {
            .offsetCommit(
                OffsetCommitRequest(group: "erp", memberID: member, generation: generation, topics: [TopicEntries(topic: "orders", [OffsetEntry(partition: partition, offset: offset)])]))
        }
        _ = try a.call(produce("orders", mine[0], ["x", "y"]))
        #expect(try a.call(commit(first.memberID, 1, mine[0], 1)).errorCode == .none)
        #expect(try b.call(commit(second.memberID, 1, mine[0], 1)).errorCode == .invalidRequest)
        #expect(try a.call(commit(first.memberID, 0, mine[0], 1)).errorCode == .staleGeneration)
        #expect(try a.call(commit(first.memberID, 2, mine[0], 2)).errorCode == .none)
        #expect(try a.call(commit(first.memberID, 2, owned(second).sorted()[0], 0)).errorCode == .invalidRequest)
        guard case .offsetFetch(let fetched)? = try b.call(.offsetFetch(OffsetFetchRequest(group: "erp"))).body else {
            Issue.record("no offset fetch body")
            return
        }
        #expect(fetched.first?.entries == [OffsetEntry(partition: mine[0], offset: 2)])

        // Lag per partition, cheap to poll.
        guard case .describeGroup(let described)? = try b.call(.describeGroup(group: "erp")).body else {
            Issue.record("no describe body")
            return
        }
        #expect(described.state == "stable" && described.generation == 2 && described.members.count == 2)
        let row = described.offsets.first?.entries.first { $0.partition == mine[0] }
        #expect(row?.committedOffset == 2 && row?.logEndOffset == 2 && row?.lag == 0 && row?.memberID == first.memberID)
        #expect(described.offsets.first?.entries.count == 6)
        #expect(try b.call(.describeGroup(group: "nobody")).errorCode == .unknownGroup)

        // a goes silent: at its 1 s session it is still in; past it, its partitions go to b.
        clock.advance(by: .milliseconds(1_000))
        live.server.tick()
        #expect(try b.call(.describeGroup(group: "erp")).body.map { if case .describeGroup(let d) = $0 { return d.members.count } else { return 0 } } == 2)
        clock.advance(by: .milliseconds(1))
        live.server.tick()
        let after = try #require(assignment(try b.call(.heartbeat(GroupMemberRequest(group: "erp", memberID: second.memberID, generation: 2)))))
        #expect(after.rebalanced && owned(after).count == 6 && after.generation == 3)
        #expect(try a.call(.heartbeat(GroupMemberRequest(group: "erp", memberID: first.memberID, generation: 2))).errorCode == .unknownMember)
        // A clean leave empties the group; commits without membership are then allowed.
        #expect(try b.call(.leaveGroup(GroupMemberRequest(group: "erp", memberID: second.memberID, generation: 3))).errorCode == .none)
        #expect(try b.call(commit("", -1, 0, 0)).errorCode == .none)
        guard case .listGroups(let listed)? = try b.call(.listGroups).body else {
            Issue.record("no list body")
            return
        }
        #expect(listed == [GroupSummary(group: "erp", state: "empty", memberCount: 0)])
        await live.stop()
    }
}
