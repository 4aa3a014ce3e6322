import Foundation
import MillraceClient
import MillraceWire
import Testing

@Suite(.serialized) struct GroupCLITests {
    let cli = CLITests()

    @Test func resetShowsBeforeAndAfterAppliesOnlyWithExecuteAndNeverOnALiveGroup() async throws {
        try await BrokerCLITests().withBroker { broker in
            _ = try cli.millrace(["topic", "create", "orders", "--broker", broker])
            let lines = (0..<10).map { "{\"n\":\($0)}" }.joined(separator: "\n") + "\n"
            #expect(try cli.millrace(["produce", "orders", "--broker", broker], input: lines).status == 0)

            let dry = try cli.millrace(["group", "reset", "erp", "--topic", "orders", "--to", "offset:4", "--broker", broker])
            #expect(dry.status == 0)
            #expect(dry.stdout == "TOPIC   PARTITION  BEFORE  AFTER\norders          0       -      4\ndry run: nothing changed; add --execute to apply\n")
            #expect(try cli.millrace(["group", "list", "--broker", broker]).stdout == "no groups\n")

            let applied = try cli.millrace(["group", "reset", "erp", "--topic", "orders", "--to", "offset:4", "--execute", "--broker", broker])
            #expect(applied.stdout.hasSuffix("reset applied to group erp\n"))
            let shifted = try cli.millrace(["group", "reset", "erp", "--topic", "orders", "--to", "shift:-3", "--execute", "--broker", broker])
            #expect(shifted.stdout.hasPrefix("TOPIC   PARTITION  BEFORE  AFTER\norders          0       4      1\n"))
            let described = try cli.millrace(["group", "describe", "erp", "--broker", broker])
            #expect(
                described.stdout
                    == "group erp: empty, generation 0, 0 members, total lag 9\nTOPIC   PARTITION  COMMITTED  END  LAG  MEMBER\norders          0          1   10    9  -\n")
            #expect(try cli.millrace(["group", "list", "--broker", broker]).stdout == "GROUP  STATE  MEMBERS\nerp    empty        0\n")

            // With a live member the reset is refused, and says why.
            let parts = broker.split(separator: ":")
            let client = MillraceClient(host: String(parts[0]), port: Int(parts[1])!)
            guard case .joinGroup(let joined) = try await client.send(.joinGroup(JoinGroupRequest(group: "erp", sessionTimeoutMs: 30_000, topics: ["orders"]))) else {
                Issue.record("join failed")
                return
            }
            let refused = try cli.millrace(["group", "reset", "erp", "--topic", "orders", "--to", "earliest", "--execute", "--broker", broker])
            #expect(refused.status == 1)
            #expect(refused.stderr == "error: group erp has 1 live member; commit as a member, or stop it first\n")
            let busy = try cli.millrace(["group", "delete", "erp", "--broker", broker])
            #expect(busy.status == 1 && busy.stderr == "error: group erp has 1 live member; stop it before deleting the group\n")
            _ = try await client.send(.leaveGroup(GroupMemberRequest(group: "erp", memberID: joined.memberID, generation: joined.generation)))
            #expect(try cli.millrace(["group", "delete", "erp", "--broker", broker]).stdout == "deleted group erp\n")
            #expect(try cli.millrace(["group", "list", "--broker", broker]).stdout == "no groups\n")
            await client.close()
        }
    }
}

@Suite(.serialized) struct GroupConsumeCLITests {
    let cli = CLITests()

    @Test func consumeWithAGroupContinuesWithNoGapAndNoOverlap() async throws {
        try await BrokerCLITests().withBroker { broker in
            _ = try cli.millrace(["topic", "create", "lots", "--partitions", "2", "--broker", broker])
            let lines = (0..<10).map { "{\"lot\":\"L\($0)\"}" }
            #expect(try cli.millrace(["produce", "lots", "--key-field", "/lot", "--broker", broker], input: lines.joined(separator: "\n") + "\n").status == 0)

            let first = try cli.millrace(["consume", "lots", "--group", "quality", "--limit", "4", "--broker", broker])
            #expect(first.status == 0)
            let firstLines = first.stdout.split(separator: "\n").map(String.init)
            #expect(firstLines.count == 4)
            let second = try cli.millrace(["consume", "lots", "--group", "quality", "--broker", broker])
            let secondLines = second.stdout.split(separator: "\n").map(String.init)
            #expect(secondLines.count == 6)
            #expect(Set(firstLines).isDisjoint(with: Set(secondLines)))
            #expect(Set(firstLines + secondLines) == Set(lines))
            let third = try cli.millrace(["consume", "lots", "--group", "quality", "--broker", broker])
            #expect(third.status == 0 && third.stdout.isEmpty)

            let described = try cli.millrace(["group", "describe", "quality", "--broker", broker])
            #expect(described.stdout.hasPrefix("group quality: empty, generation "))
            #expect(described.stdout.contains("total lag 0"))
            let bad = try cli.millrace(["consume", "lots", "--group", "quality", "--partition", "1", "--broker", broker])
            #expect(bad.status == 2)
        }
    }
}
