import Foundation
import Glibc
import Logging
import MillraceFormat
@testable import MillraceServer
import MillraceWire
import TestSupport
import Testing

/// The operations HTTP listener against hostile peers (issue 22, item 5): pipelined requests
/// never read, connections held and renewed, a scrape that takes long.
@Suite(.serialized, .stopsLiveServers) struct HTTPListenerTests {
    static let ready: @Sendable () -> Readiness = { Readiness(reasons: []) }

    /// A listener on a free port over `pages`, its idle connections measured on `clock`.
    func listener(_ pages: OperationsPages, clock: ManualClock, connectionsMax: Int = Limits.httpConnectionsMax) async throws -> (OperationsHTTPServer, Int) {
        var configuration = OperationsHTTPServer.Configuration()
        configuration.connectionsMax = connectionsMax
        configuration.clock = clock
        configuration.ticksAutomatically = false
        let http = OperationsHTTPServer(host: "127.0.0.1", port: 0, pages: pages, configuration: configuration, logger: Logger(label: "test"))
        return (http, try await http.start().port!)
    }

    /// 60,000 pipelined `GET /metrics` never read took the broker to 3.2 GB: every answer was
    /// queued. Now the next request waits while a watermark's worth is unwritten, and the peer
    /// is closed once it has been quiet for the idle timeout.
    @Test func pipelinedRequestsNeverReadAreHeldNotQueued() async throws {
        let clock = ManualClock()
        let scrapes = Locked(0)
        let page = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
        let (http, port) = try await listener(
            OperationsPages(metrics: { scrapes.withLock { $0 += 1 }; return page }, readiness: Self.ready), clock: clock)
        // Sent from a thread of its own: 68 KB may wait for the listener to read, and the
        // cooperative pool is shared with the suites running beside this one. The client is
        // used by one thread at a time.
        nonisolated(unsafe) let client = try TestClient(port: port)
        try await onThread { try client.sendRaw(Array(String(repeating: "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", count: 2_000).utf8)) }
        #expect(try await eventually("a request held") { http.heldRequests == 1 })
        // Held, nothing more is read or scraped: what was made fits the sockets' buffers and
        // one watermark (a few MiB), not 2,000 pages.
        #expect(scrapes.withLock { $0 } < 32)
        clock.advance(by: .seconds(29))
        http.tick()
        #expect(http.connectionCount == 1)
        // A response may still finish writing into the socket's buffers after the clock moved
        // (that is activity): each look moves the clock a whole idle period on, so the peer
        // is closed once it has been quiet that long, whenever its last write landed.
        clock.advance(by: .seconds(1))
        http.tick()
        #expect(
            try await eventually("the peer that never reads closed") {
                if http.connectionCount == 0 && http.heldRequests == 0 { return true }
                clock.advance(by: .seconds(30))
                http.tick()
                return false
            })
        await http.stop()
        withExtendedLifetime(client) {}
    }

    /// 64 idle connections, renewed as they were dropped, kept `/healthz` out (0 of 60 probes
    /// answered). A new connection replaces the one quiet longest.
    @Test func healthIsAnsweredWhileIdleConnectionsFillTheCap() async throws {
        let clock = ManualClock()
        let (http, port) = try await listener(OperationsPages(metrics: { [] }, readiness: Self.ready), clock: clock, connectionsMax: 4)
        var holders: [TestClient] = []
        for _ in 0..<4 {
            let holder = try TestClient(port: port)
            try holder.sendRaw(Array("GET /metrics HTTP/1.1\r\n".utf8))
            holders.append(holder)
        }
        #expect(try await eventually("four held") { http.connectionCount == 4 })
        // The holders come back as fast as they are replaced.
        for _ in 0..<4 { holders.append(try TestClient(port: port)) }
        for _ in 0..<3 {
            let health = try await onThread { try httpGet(port: port, "/healthz") }
            #expect(health.status == 200)
            #expect(health.body == "ok\n")
        }
        #expect(http.connectionCount <= 4)
        // A holder that never finishes its request is closed after the idle timeout.
        clock.advance(by: .seconds(30))
        http.tick()
        #expect(try await eventually("idle holders closed") { http.connectionCount == 0 })
        await http.stop()
    }

    /// `/metrics` with 16,000 groups took 154 s and `/healthz` waited all that time. The
    /// scrape runs on a thread of its own: health is answered while a scrape is stuck.
    @Test func healthIsAnsweredWhileAScrapeRuns() async throws {
        let clock = ManualClock()
        let started = Locked(0)
        let gate = DispatchSemaphore(value: 0)
        let (http, port) = try await listener(
            OperationsPages(
                metrics: {
                    started.withLock { $0 += 1 }
                    gate.wait()
                    return Array("m 1\n".utf8)
                }, readiness: Self.ready), clock: clock)
        defer { gate.signal() }
        // Blocking reads on threads of their own: the cooperative pool (two threads here) is
        // shared with the suites running beside this one. The scrapes' answers are read only
        // once the gate is open: a read gives up after 10 s without a byte, and the test may
        // wait longer than that for a thread to open it on.
        nonisolated(unsafe) let first = try httpRequest(port: port, "/metrics")
        #expect(try await eventually("the scrape started") { started.withLock { $0 } == 1 })
        let health = try await onThread { try httpGet(port: port, "/healthz") }
        #expect(health.status == 200)
        let ready = try await onThread { try httpGet(port: port, "/readyz") }
        #expect(ready.status == 200)
        // A second scrape asked for meanwhile shares the running one (or, if it comes after, runs).
        nonisolated(unsafe) let second = try httpRequest(port: port, "/metrics")
        gate.signal()
        gate.signal()
        #expect(try await onThread { try httpResponse(to: first) }.body == "m 1\n")
        #expect(try await onThread { try httpResponse(to: second) }.body == "m 1\n")
        #expect(started.withLock { $0 } <= 2)
        await http.stop()
    }
}

/// Offset-only groups (a commit with generation -1, no member) were unlimited: 100,000 made
/// in 2 s. Every group, live or offsets alone, counts against `groupsMax`.
@Suite(.serialized, .stopsLiveServers) struct GroupLimitTests {
    static func commit(_ group: String, topic: String = "t") -> Request {
        .offsetCommit(OffsetCommitRequest(group: group, memberID: "", generation: -1, topics: [TopicEntries(topic: topic, [OffsetEntry(partition: 0, offset: 0)])]))
    }

    @Test func offsetOnlyGroupsAreLimitedAcrossARestart() async throws {
        var live = try await LiveServer(configure: { $0.groupsMax = 3 })
        defer { live.remove() }
        var client = try TestClient(port: live.port)
        #expect(try client.call(.createTopic(CreateTopicRequest(name: "t", partitions: 1))).errorCode == .none)
        // A commit that fails does not use a place up.
        #expect(try client.call(Self.commit("ghost", topic: "missing")).errorCode == .unknownTopic)
        for group in ["a", "b", "c"] { #expect(try client.call(Self.commit(group)).errorCode == .none) }
        let refused = try client.call(Self.commit("d"))
        #expect(refused.errorCode == .limitReached)
        #expect(refused.message.contains("groupsMax"))
        #expect(try client.call(.joinGroup(JoinGroupRequest(group: "e", sessionTimeoutMs: 10_000, topics: ["t"]))).errorCode == .limitReached)
        // Known groups carry on.
        #expect(try client.call(Self.commit("a")).errorCode == .none)
        await live.stop()

        // After a restart, the stored groups still count.
        live = try await LiveServer(directory: live.directory, configure: { $0.groupsMax = 3 })
        client = try TestClient(port: live.port)
        #expect(try client.call(Self.commit("d")).errorCode == .limitReached)
        #expect(try client.call(.deleteGroup(group: "a")).errorCode == .none)
        #expect(try client.call(Self.commit("d")).errorCode == .none)
        #expect(try client.call(Self.commit("e")).errorCode == .limitReached)
        await live.stop()
    }

    /// Scrape-time gauges are written beside the registry, not registered in it (adding a
    /// series there copies the family: a scrape was quadratic in groups).
    @Test func groupGaugesStayOutOfTheRegistry() async throws {
        let metrics = BrokerMetrics()
        let live = try await LiveServer(configure: { $0.metrics = metrics }, storageOptions: { $0.events = metrics })
        defer { live.remove() }
        let client = try TestClient(port: live.port)
        #expect(try client.call(.createTopic(CreateTopicRequest(name: "t", partitions: 2))).errorCode == .none)
        _ = try client.call(produce("t", 0, ["a", "b", "c"]))
        for group in 0..<50 { #expect(try client.call(Self.commit("g\(group)")).errorCode == .none) }
        let page = prometheusValues(String(decoding: live.server.scrapeMetrics(), as: UTF8.self))
        #expect(page["millrace_group_committed_offset{group=\"g7\",partition=\"0\",topic=\"t\"}"] == 0)
        #expect(page["millrace_group_lag_records{group=\"g7\",partition=\"0\",topic=\"t\"}"] == 3)
        #expect(page["millrace_group_lag_records{group=\"g7\",partition=\"1\",topic=\"t\"}"] == 0)
        #expect(page["millrace_group_members{group=\"g49\"}"] == 0)
        #expect(page["millrace_topic_records{topic=\"t\"}"] == 3)
        #expect(!metrics.registry.emitToString().contains("millrace_group_"))
        await live.stop()
    }
}

/// Runs blocking socket calls on a Dispatch thread, not one of Swift's cooperative threads.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}
