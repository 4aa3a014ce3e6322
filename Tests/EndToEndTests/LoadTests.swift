import Foundation
import MillraceFormat
import MillraceWire
import NIOCore
import Testing

/// Floods and stalls: bounded in count and time, loopback only.
@Suite(.serialized) struct LoadTests {
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
        try await Task.sleep(nanoseconds: 1_500_000_000)
        // The broker stopped reading the stalled connection: its sender is stuck well short.
        #expect(progress.sent < bytes.count, "all \(bytes.count) bytes went through: no back-pressure")
        // Meanwhile everyone else is served.
        let started = Date()
        #expect(try healthy.call(.listTopics).errorCode == .none)
        #expect(Date().timeIntervalSince(started) < 2)
        let appended = try live.storage.offsets(topic: "flood", partition: 0).nextOffset
        print("stalled client: the broker took \(progress.sent) of \(bytes.count) bytes and appended \(appended) of 10,000 produces")
        #expect(appended < 1_000, "\(appended) produces were taken from a client that reads nothing")
        shutdown(descriptor, Int32(SHUT_RDWR))
        while !progress.done { try await Task.sleep(nanoseconds: 10_000_000) }
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
