import Testing

@testable import MillraceServer

@Suite struct ValidationLaneTests {
    /// A topic's partitions share the lanes evenly, whatever its name, run after run.
    @Test func aTopicSpreadsOverAllLanes() {
        for topic in ["confirmations", "genealogy", "a", "", "plant-7.quality.nonconformance"] {
            for lanes in [2, 4] {
                var load = [Int](repeating: 0, count: lanes)
                for partition in Int32(0)..<Int32(lanes * 3) { load[RequestDispatcher.lane(topic, partition) % lanes] += 1 }
                #expect(load == [Int](repeating: 3, count: lanes), "\(topic) over \(lanes) lanes")
            }
            #expect(RequestDispatcher.lane(topic, .max) >= 0)
        }
    }

    @Test func theLatestVersionIsRecognisedInPlace() {
        func named(_ text: String, _ version: Int32) -> Bool {
            Array(text.utf8).withUnsafeBytes { RequestDispatcher.isDecimal($0, version) }
        }
        #expect(named("1", 1) && named("12", 12) && named("2147483647", .max))
        #expect(!named("", 1) && !named("2", 1) && !named("01", 1) && !named("+1", 1) && !named("11", 1) && !named("1", 11) && !named("1 ", 1))
        #expect(!named("0", -1) && named("0", 0))
    }
}
