import MillraceFormat
@testable import MillraceServer
import Testing

/// Offset-only groups (commits with generation -1, no member ever joining) were not counted:
/// 100,000 were made in 2 s. The census counts every group once, live or stored.
@Suite struct GroupCensusTests {
    @Test func offsetOnlyGroupsCountAgainstTheLimit() {
        var census = GroupCensus(stored: [], groupsMax: 3)
        #expect(census.commit("a") == .admitted)
        #expect(census.commit("b") == .admitted)
        #expect(census.commit("c") == .admitted)
        #expect(census.commit("d") == .refused)
        #expect(census.join("e") == .refused)
        // Known groups carry on at the limit.
        #expect(census.commit("a") == .known)
        #expect(census.join("b") == .known)
        #expect(census.count == 3)
    }

    @Test func aGroupLiveAndStoredCountsOnce() {
        var census = GroupCensus(stored: [], groupsMax: 2)
        #expect(census.join("a") == .admitted)
        #expect(census.commit("a") == .known)
        #expect(census.count == 1)
        // Its members gone, its offsets keep it counted.
        census.membersGone("a")
        #expect(census.count == 1)
        #expect(census.knows("a"))
        census.offsetsGone("a")
        #expect(census.count == 0)
        #expect(!census.knows("a"))
    }

    @Test func aLiveGroupWithoutOffsetsGoesWithItsMembers() {
        var census = GroupCensus(stored: [], groupsMax: 1)
        #expect(census.join("a") == .admitted)
        #expect(census.commit("b") == .refused)
        census.membersGone("a")
        #expect(census.commit("b") == .admitted)
        // Forgetting twice, or what was never there, changes nothing.
        census.membersGone("a")
        census.offsetsGone("zzz")
        #expect(census.count == 1)
    }

    /// After a restart, groups with stored offsets count as before; more than the limit (a
    /// directory from before it) are all kept, and only new names are refused.
    @Test func storedGroupsCountAfterARestart() {
        var census = GroupCensus(stored: ["a", "b", "c"], groupsMax: 2)
        #expect(census.count == 3)
        #expect(census.commit("a") == .known)
        #expect(census.join("b") == .known)
        #expect(census.count == 3)
        #expect(census.commit("new") == .refused)
        census.offsetsGone("a")
        census.offsetsGone("c")
        #expect(census.commit("new") == .admitted)
    }

    @Test func restockCountsLiveGroupsWithoutOffsets() {
        var census = GroupCensus(stored: ["a", "b"], groupsMax: 10)
        #expect(census.join("b") == .known)
        #expect(census.join("c") == .admitted)
        #expect(census.count == 3)
        // A topic deletion took b's offsets with it: b still has members, a does not.
        census.restock(stored: ["a"])
        #expect(census.count == 3)
        census.restock(stored: [])
        #expect(census.count == 2)
    }
}
