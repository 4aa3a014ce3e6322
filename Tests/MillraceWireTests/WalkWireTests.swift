import MillraceFormat
import MillraceWire
import Testing

@Suite struct WalkWireTests {
    /// Why a walk stopped goes both ways, and a reason added later still reads as a walk cut
    /// short (as clients from before the read bound read its 2).
    @Test func aWalkSaysWhyItStopped() throws {
        let nodes = [WalkNode(value: "L-1", depth: 0, parent: -1, kind: .start)]
        for truncation in [WalkResponse.Truncation.whole, .nodesMax, .readBound] {
            let response = Response(correlationID: 7, body: .walk(WalkResponse(nodes: nodes, truncation: truncation)))
            #expect(try decodeResponse(encoded(response), .walk) == response)
        }
        var bytes = encoded(Response(correlationID: 7, body: .walk(WalkResponse(nodes: nodes, truncation: .readBound))))
        #expect(bytes.last == 2)
        bytes[bytes.count - 1] = 3
        let later = try #require(try decodeResponse(bytes, .walk))
        guard case .walk(let walk)? = later.body else { throw MillraceError(.unexpected, "not a walk: \(later)") }
        #expect(walk.truncated && walk.nodes == nodes)
    }

    /// A walk of the most nodes may read twenty index entries for each (issue 22).
    @Test func aWalkMayReadTwentyEntriesPerNode() {
        #expect(Limits.walkIndexEntriesMax >= 20 * Int(WalkRequest.nodesLimit))
    }
}
