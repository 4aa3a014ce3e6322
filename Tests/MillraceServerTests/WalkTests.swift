import Foundation
import MillraceFormat
import MillraceStorage
import MillraceWire
import Testing

@testable import MillraceServer

@Suite struct WalkTests {
    /// A value whose many records all name one child: a walk reads the value's hits up to its
    /// read bound and stops there, saying so (before, it read every hit for that one edge,
    /// whatever `nodes max`); given room, the same walk is whole.
    @Test func aWalkStopsAtItsReadBoundAndSaysSo() async throws {
        try await withTemporaryStorage("walk") { storage in
            let policy = IndexPolicy(links: [IndexLink(parent: "/parent", child: "/child")])
            _ = try await storage.createTopic("genealogy", partitions: 1, config: TopicConfig(index: policy))
            func append(_ values: [String]) async throws {
                let bytes = try RecordBatch(timestamp: 1_700_000_000_000, values: values.map { Array($0.utf8) }).encoded()
                let _: AppendResult = try await withCheckedThrowingContinuation { continuation in
                    storage.append(topic: "genealogy", partition: 0, batches: [bytes]) { continuation.resume(with: $0) }
                }
            }
            // Q went into ONLY (3,000 times over), ONLY into DEEP: where-used from Q.
            for _ in 0..<3 { try await append(Array(repeating: #"{"parent":"ONLY","child":"Q"}"#, count: 1_000)) }
            try await append([#"{"parent":"DEEP","child":"ONLY"}"#])
            let request = WalkRequest(key: Array("Q".utf8), direction: .down, depth: 2, nodesMax: 10)

            let bounded = try RequestDispatcher.walk(request, storage: storage, entriesMax: 1_500)
            #expect(bounded.truncation == .readBound && bounded.truncated)
            #expect(bounded.nodes.map(\.value) == ["Q", "ONLY"])

            let whole = try RequestDispatcher.walk(request, storage: storage, entriesMax: 10_000)
            #expect(whole.truncation == WalkResponse.Truncation.whole)
            #expect(whole.nodes.map(\.value) == ["Q", "ONLY", "DEEP"])
            #expect(try RequestDispatcher.walk(request, storage: storage) == whole)

            // The node limit still says it was the node limit.
            let capped = try RequestDispatcher.walk(WalkRequest(key: Array("Q".utf8), direction: .down, depth: 2, nodesMax: 2), storage: storage)
            #expect(capped.truncation == .nodesMax && capped.nodes.count == 2)
        }
    }
}
