import Foundation
import MillraceFormat
import MillraceWire
import NIOCore
import TestSupport
import Testing

/// Floods and stalls: bounded in count and time, loopback only.
@Suite(.serialized, .stopsLiveServers) struct LoadTests {
    @Test func hundredThousandTinyPipelinedRequestsAreAllAnsweredInOrder() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = try TestClient(port: live.port)
        let count = 100_000
        var stream = ByteBuffer()
        for index in 0..<count { RequestCodec.encode(.apiVersions, correlationID: Int32(index), into: &stream) }
        let bytes = Array(stream.readableBytesView)
        _ = sendInBackground(bytes, on: client.descriptor, chunkBytes: 65_536)
        var expected: Int32 = 0
        while expected < count {
            guard let sizeBytes = try client.receiveRaw(4) else { break }
            let size = sizeBytes.reduce(0) { $0 << 8 | Int($1) }
            guard let body = try client.receiveRaw(size) else { break }
            let correlation = Int32(bitPattern: UInt32(body[0..<4].reduce(0) { $0 << 8 | UInt32($1) }))
            guard correlation == expected else {
                Issue.record("response \(correlation) arrived where \(expected) was due")
                break
            }
            expected += 1
        }
        #expect(expected == Int32(count))
        await live.stop()
    }

    @Test func aClientThatNeverReadsIsHeldBackAndOthersAreServed() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let healthy = try TestClient(port: live.port)
        _ = try healthy.call(.createTopic(CreateTopicRequest(name: "flood", partitions: 1)))
        let stalled = try TestClient(port: live.port)
        var stream = ByteBuffer()
        // 20,000 requests (~40 MB; more than loopback's socket buffers hold), half of them
        // fetches with large responses, none ever read.
        for index in 0..<20_000 {
            if index % 2 == 0 {
                RequestCodec.encode(produce("flood", 0, [String(repeating: "x", count: 3_800)]), correlationID: Int32(index), into: &stream)
            } else {
                RequestCodec.encode(fetch("flood", 0, from: 0), correlationID: Int32(index), into: &stream)
            }
        }
        let bytes = Array(stream.readableBytesView)
        let descriptor = stalled.descriptor
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let progress = sendInBackground(bytes, on: descriptor, chunkBytes: 16_384)
        // The sender gives up once blocked for 3 s: the broker stopped reading the stalled
        // connection, so it is stuck well short of the end.
        #expect(try await eventually { progress.done })
        #expect(progress.sent < bytes.count, "all \(bytes.count) bytes went through: no back-pressure")
        // Meanwhile everyone else is served.
        #expect(try healthy.call(.listTopics).errorCode == .none)
        let appended = try live.storage.offsets(topic: "flood", partition: 0).nextOffset
        print("stalled client: the broker took \(progress.sent) of \(bytes.count) bytes and appended \(appended) of 10,000 produces")
        #expect(appended < 1_000, "\(appended) produces were taken from a client that reads nothing")
        shutdown(descriptor, Int32(SHUT_RDWR))
        #expect(try await eventually { progress.done })
        await live.stop()
    }
}

/// Clients that pipeline maximum-size fetches and never read: the broker holds no more than
/// its limits for them, keeps serving a well-behaved client, and once their responses have
/// waited past the stalled-write limit closes them and gets every byte back.
@Suite(.serialized, .stopsLiveServers) struct MemoryBudgetTests {
    @Test func aFetchFloodStaysWithinTheBudgetAndOthersAreServed() async throws {
        let clock = ManualClock()
        let connectionResponse = 2 << 20
        // Less than the four flooders could hold: the broker-wide limit is what stops them.
        let brokerResponse = 6 << 20
        let live = try await LiveServer(clock: clock) { configuration in
            configuration.connectionResponseBytesMax = connectionResponse
            configuration.responseBytesMax = brokerResponse
            configuration.stalledWriteSeconds = 60
            configuration.stalledWriteUnderPressureSeconds = 5
        }
        defer { live.remove() }
        let healthy = try TestClient(port: live.port)
        _ = try healthy.call(.createTopic(CreateTopicRequest(name: "big", partitions: 4)))
        let value = String(repeating: "v", count: 1_000)
        for partition in 0..<4 {
            for _ in 0..<16 { _ = try healthy.call(produce("big", Int32(partition), Array(repeating: value, count: 120))) }
        }
        // Each flood fetch asks for everything: 32 MiB, every partition, from the start.
        var stream = ByteBuffer()
        let everything = FetchRequest(
            maxWaitMs: 0, minBytes: 0, maxBytes: Int32(Limits.fetchBytesMax),
            topics: [TopicEntries(topic: "big", (0..<4).map { FetchPartition(partition: $0, offset: 0, maxBytes: Int32(Limits.fetchBytesMax)) })])
        for index in 0..<100_000 { RequestCodec.encode(.fetch(everything), correlationID: Int32(index), into: &stream) }
        let flood = Array(stream.readableBytesView)
        var flooders: [(TestClient, SentCounter)] = []
        for _ in 0..<4 {
            let flooder = try TestClient(port: live.port)
            var receive = Int32(4096)
            setsockopt(flooder.descriptor, SOL_SOCKET, SO_RCVBUF, &receive, socklen_t(MemoryLayout<Int32>.size))
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(flooder.descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            flooders.append((flooder, sendInBackground(flood, on: flooder.descriptor, chunkBytes: 65_536)))
        }
        // Watch the broker's count until every flooder's sender is stuck.
        var peak = 0
        #expect(try await eventually {
            peak = max(peak, live.server.memory.responseBytes)
            return flooders.allSatisfy { $0.1.done }
        })
        peak = max(peak, live.server.memory.responseBytes)
        print("fetch flood: peak \(peak) response bytes held (limits: \(connectionResponse) per connection, \(brokerResponse) broker-wide)")
        #expect(flooders.allSatisfy { $0.1.sent < flood.count }, "a flooder got all its requests in")
        // Each connection may pass its limit by one response made while under it; past the
        // broker-wide limit only one-batch floor grants (from a bounded pool) are made.
        #expect(peak <= 4 * (connectionResponse + Limits.batchBytesMax + (64 << 10)))
        #expect(peak <= brokerResponse + (32 << 20) + 2 * (Limits.batchBytesMax + (64 << 10)))

        // A well-behaved client still gets records (the broker-wide limit is reached, but it
        // holds nothing of its own), and can produce.
        #expect(live.server.memory.responseBytes >= brokerResponse)
        guard case .fetch(let results)? = try healthy.call(fetch("big", 1, from: 0)).body else {
            Issue.record("no fetch body")
            return
        }
        #expect((results.first?.entries.first?.records.readableBytes ?? 0) > 0)
        #expect(try healthy.call(produce("big", 0, ["still writing"])).errorCode == .none)

        // Responses unread past the stalled-write limit (shorter while the broker-wide limit is
        // reached): the flooders are closed, the bytes freed.
        clock.advance(by: .seconds(4))
        live.server.tick()
        #expect(live.server.memory.responseBytes >= brokerResponse)
        clock.advance(by: .seconds(2))
        _ = try healthy.call(.listTopics)
        live.server.tick()
        // Those holding responses are closed now; one that held none (the limit was reached
        // before its first grant) is served once memory is freed, and closed when its
        // responses have waited past the ordinary limit. Nothing is read from them.
        #expect(try await eventually { flooders.contains { $0.0.hasBeenClosedByServer() } }, "no flooder was closed under pressure")
        #expect(
            try await eventually {
                clock.advance(by: .seconds(61))
                live.server.tick()
                return flooders.allSatisfy { $0.0.hasBeenClosedByServer() }
            }, "a flooder that never reads was left open")
        #expect(try await eventually { live.server.memory.responseBytes == 0 && live.server.memory.requestBytes == 0 })
        // (A new client: the clock moved past the idle limit of the first.)
        #expect(try TestClient(port: live.port).call(.listTopics).errorCode == .none)
        await live.stop()
    }
}

/// Writes `bytes` to a socket from a thread of its own (the test thread reads meanwhile, or
/// watches the writer get stuck); returns its progress.
func sendInBackground(_ bytes: [UInt8], on descriptor: Int32, chunkBytes: Int) -> SentCounter {
    let progress = SentCounter()
    let sender = Thread {
        var sent = 0
        while sent < bytes.count {
            let chunk = bytes[sent..<min(sent + chunkBytes, bytes.count)]
            let written = chunk.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { break }
            sent += written
            progress.set(sent)
        }
        progress.finish()
    }
    sender.start()
    return progress
}

final class SentCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    private var finished = false
    func set(_ sent: Int) { lock.withLock { value = sent } }
    func finish() { lock.withLock { finished = true } }
    var sent: Int { lock.withLock { value } }
    var done: Bool { lock.withLock { finished } }
}
