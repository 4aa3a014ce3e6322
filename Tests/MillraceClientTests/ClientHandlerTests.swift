import MillraceFormat
import MillraceWire
import NIOCore
import NIOEmbedded
import Testing

@testable import MillraceClient

/// The client's connection handler on an embedded channel, with time driven by hand.
@Suite struct ClientHandlerTests {
    func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ResponseFrameDecoder()))
        try channel.pipeline.syncOperations.addHandler(ClientHandler(peer: "test:1"))
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    func send(_ channel: EmbeddedChannel, _ request: Request, timeout: TimeAmount) -> EventLoopFuture<ResponseBody> {
        let promise = channel.eventLoop.makePromise(of: ResponseBody.self)
        channel.writeAndFlush(OutgoingRequest(request: request, timeout: timeout, promise: promise), promise: nil)
        return promise.futureResult
    }

    func answer(_ channel: EmbeddedChannel, _ response: Response) throws {
        var buffer = channel.allocator.buffer(capacity: 64)
        ResponseCodec.encode(response, into: &buffer)
        try channel.writeInbound(buffer)
    }

    /// What the future failed with so far (the embedded loop runs callbacks at once).
    func error(_ future: EventLoopFuture<ResponseBody>) -> MillraceError? {
        let found = Box<MillraceError?>(nil)
        future.whenFailure { found.value = $0 as? MillraceError }
        return found.value
    }

    @Test func aLateAnswerFailsEveryRequestBehindItAndTheConnectionCloses() throws {
        let channel = try channel()
        let first = send(channel, .listTopics, timeout: .seconds(30))
        let second = send(channel, .listGroups, timeout: .seconds(5))
        _ = try channel.readOutbound(as: ByteBuffer.self)
        _ = try channel.readOutbound(as: ByteBuffer.self)
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(error(first) == nil && error(second) == nil)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        // The second's deadline passed; the first cannot be answered before it either.
        #expect(error(second)?.code == .requestTimedOut)
        #expect(error(first)?.code == .requestTimedOut)
        #expect(!channel.isActive)
    }

    @Test func answersInTimeCancelNothingAndLaterDeadlinesStillHold() throws {
        let channel = try channel()
        let first = send(channel, .listTopics, timeout: .seconds(5))
        try answer(channel, Response(correlationID: 1, body: .listTopics([])))
        let answered = Box(false)
        first.whenSuccess { _ in answered.value = true }
        #expect(answered.value)
        let second = send(channel, .listTopics, timeout: .seconds(10))
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(error(second) == nil && channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(error(second)?.code == .requestTimedOut)
    }

    @Test func aRequestOnAClosedConnectionFailsAtOnce() throws {
        let channel = try channel()
        let pending = send(channel, .listTopics, timeout: .seconds(30))
        channel.pipeline.fireChannelInactive()
        #expect(error(pending)?.code == .networkError)
        let after = send(channel, .listTopics, timeout: .seconds(30))
        #expect(error(after)?.code == .networkError)
    }

    @Test func bytesThatAreNotTheProtocolNameThePeer() throws {
        let channel = try channel()
        let pending = send(channel, .apiVersions, timeout: .seconds(30))
        _ = try? channel.writeInbound(channel.allocator.buffer(string: "HTTP/1.1 400 Bad Request\r\n\r\n"))
        #expect(error(pending)?.code == .notABroker)
        #expect(error(pending)?.message.contains("is it a Millrace broker?") == true)
    }
}

/// A value callbacks on the embedded (single-threaded) event loop can set.
final class Box<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// The group member's background timers: a commit that failed because the broker was away
/// waits for the backoff like the heartbeat (it once was retried at once, in a tight loop of
/// thousands of connection attempts while the broker restarted).
@Suite struct KeyPartitionerTests {
    /// The documented rule, and no trap for a count a broken broker might report.
    @Test func keysSpreadByFNV1aAndABadCountIsPartitionZero() {
        #expect(KeyPartitioner.partition(for: Array("ORD-1".utf8), partitionCount: 1) == 0)
        let spread = Set((0..<200).map { KeyPartitioner.partition(for: Array("ORD-\($0)".utf8), partitionCount: 6) })
        #expect(spread == Set(0..<6))
        #expect(KeyPartitioner.partition(for: Array("ORD-1".utf8), partitionCount: 0) == 0)
        #expect(KeyPartitioner.partition(for: Array("ORD-1".utf8), partitionCount: -3) == 0)
    }
}

@Suite struct SessionTimersTests {
    @Test func heartbeatsAndCommitsComeDueOnTheirIntervals() {
        var timers = SessionTimers(heartbeatInterval: .seconds(1), commitInterval: .milliseconds(2_500))
        var dues: [SessionTimers.Due] = []
        for _ in 0..<4 {
            let wait = timers.untilNext
            let due = timers.elapse(wait)
            dues.append(due)
            timers.done(due)
        }
        #expect(dues == [.init(heartbeat: true, commit: false), .init(heartbeat: true, commit: false), .init(heartbeat: false, commit: true), .init(heartbeat: true, commit: false)])
    }

    @Test func aFailedCommitWaitsForTheBackoff() {
        var timers = SessionTimers(heartbeatInterval: .seconds(1), commitInterval: .seconds(5))
        var elapsed = Duration.zero
        var due = SessionTimers.Due(heartbeat: false, commit: false)
        while !due.commit {
            let wait = timers.untilNext
            elapsed += wait
            due = timers.elapse(wait)
            if !due.commit { timers.done(due) }
        }
        #expect(elapsed == .seconds(5) && due.heartbeat)
        // The broker is away: every retry waits for the backoff delay, never zero.
        for delay in [Duration.milliseconds(100), .milliseconds(200), .milliseconds(400)] {
            timers.retry(due, after: delay)
            #expect(timers.untilNext == delay)
            due = timers.elapse(delay)
            #expect(due == .init(heartbeat: true, commit: true))
        }
        timers.done(due)
        #expect(timers.untilNext == .seconds(1) && timers.untilCommit == .seconds(5))
    }
}
