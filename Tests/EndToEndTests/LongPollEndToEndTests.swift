import MillraceFormat
import MillraceWire
import TestSupport
import Testing

@testable import MillraceServer

/// A long poll belongs to its connection: when the client goes, its fetches leave the
/// broker at once, with their bytes, instead of waiting out their deadlines.
@Suite(.stopsLiveServers) struct LongPollEndToEndTests {
    @Test func aClientThatGoesTakesItsParkedFetchesWithIt() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        _ = try TestClient(port: live.port).call(.createTopic(CreateTopicRequest(name: "lots", partitions: 2)))
        var consumer: TestClient? = try TestClient(port: live.port)
        for partition in Int32(0)..<2 {
            _ = try consumer?.send(fetch("lots", partition, from: 0, maxWaitMs: 600_000, minBytes: 1))
        }
        let dispatcher = try #require(live.server.dispatcher)
        #expect(try await eventually { dispatcher.waiters.count == 2 && live.server.inFlightRequests == 2 })
        #expect(live.server.memory.requestBytes > 0)
        consumer = nil  // closes the socket
        #expect(try await eventually { dispatcher.waiters.count == 0 && live.server.inFlightRequests == 0 && live.server.memory.requestBytes == 0 })
        await live.stop()
    }

    /// A graceful stop answers a parked long poll (with what there is) instead of waiting for
    /// its deadline past the stop's grace and closing it unanswered.
    @Test func aGracefulStopAnswersParkedFetches() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let consumer = try TestClient(port: live.port)
        _ = try consumer.call(.createTopic(CreateTopicRequest(name: "lots", partitions: 1)))
        let sent = try consumer.send(fetch("lots", 0, from: 0, maxWaitMs: 600_000, minBytes: 1))
        #expect(try await eventually { live.server.inFlightRequests == 1 })
        await live.stop()
        let response = try #require(try consumer.receive())
        #expect(response.correlationID == sent && response.errorCode == .none)
    }
}
