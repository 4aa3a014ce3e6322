import Dispatch
import MillraceFormat
import NIOCore
import NIOPosix
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
            // The top of the partition range spreads the same way (no overflow, no wrap).
            var load = [Int](repeating: 0, count: 4)
            for partition in (Int32.max - 11)...Int32.max { load[RequestDispatcher.lane(topic, partition) % 4] += 1 }
            #expect(load == [3, 3, 3, 3], "\(topic) at the top of the partition range")
        }
    }

    /// "Run after run": the lane is FNV-1a of the name, not Swift's per-process seeded
    /// `Hasher`, so a partition keeps its lane across restarts (values computed apart from
    /// the code, with Python).
    @Test func aPartitionsLaneIsTheSameInEveryProcess() {
        #expect(RequestDispatcher.lane("", 0) == 3_673_995_259_836_664_009)
        #expect(RequestDispatcher.lane("confirmations", 0) == 663_776_942_455_816_657)
        #expect(RequestDispatcher.lane("confirmations", .max) == 663_776_944_603_300_304)
    }

    @Test func theLatestVersionIsRecognisedInPlace() {
        func named(_ text: String, _ version: Int32) -> Bool {
            Array(text.utf8).withUnsafeBytes { RequestDispatcher.isDecimal($0, version) }
        }
        #expect(named("1", 1) && named("12", 12) && named("2147483647", .max))
        #expect(!named("", 1) && !named("2", 1) && !named("01", 1) && !named("+1", 1) && !named("11", 1) && !named("1", 11) && !named("1 ", 1))
        #expect(!named("0", -1) && named("0", 0))
    }

    /// Traces and walks run on threads of their own: with every trace thread held and more
    /// traces waiting, each lane still runs the work (a validated produce) given to it.
    @Test func tracesNeverHoldTheLanesProduceRunsOn() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let lanes = ValidationLanes(count: 2, traceThreads: 1)
        defer { lanes.syncShutdown() }
        let release = DispatchSemaphore(value: 0)
        let traces = (0..<6).map { _ in lanes.runTrace(on: loop) { release.wait() } }
        let ran = DispatchSemaphore(value: 0)
        for lane in 0..<4 { _ = lanes.run(lane: lane, on: loop) { ran.signal() } }
        // A generous deadline: this only fails if lane work is held behind the traces.
        let deadline = DispatchTime.now() + 60
        let done = (0..<4).map { _ in ran.wait(timeout: deadline) }
        #expect(done.allSatisfy { $0 == .success })
        for _ in traces { release.signal() }
        for trace in traces { try trace.wait() }
    }

    /// Work given to a lane after the lanes shut down is still run, told so, so the produce
    /// it carries is answered rather than left waiting.
    @Test func workAfterShutdownIsToldAndStillAnswers() {
        let lanes = ValidationLanes(count: 2, traceThreads: 1)
        let before = Locked<[Bool]>([])
        let ran = DispatchSemaphore(value: 0)
        lanes.execute(lane: 1) { active in
            before.withLock { $0.append(active) }
            ran.signal()
        }
        #expect(ran.wait(timeout: .now() + 60) == .success)
        lanes.syncShutdown()
        let after = Locked<[Bool]>([])
        lanes.execute(lane: 1) { active in after.withLock { $0.append(active) } }
        #expect(before.withLock { $0 } == [true])
        #expect(after.withLock { $0 } == [false])
    }
}
