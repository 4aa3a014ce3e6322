import MillraceClient
import MillraceFormat
import MillraceWire
import TestSupport
import Testing

/// The producer's and the consumer's timers run on the clock their configuration names: a
/// test moves a `ManualClock` and asserts what happens at each step, never how long it took.
/// Each test first sees the timer asleep on the manual clock (with the system clock there is
/// no sleeper, and the test fails), then moves the clock and sees the consequence.
@Suite(.serialized, .stopsLiveServers) struct ClientClockTests {
    /// A batch goes out when its linger has passed on the producer's clock, not before.
    @Test func aBatchLingersOnTheProducersClock() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "lots", partitions: 1))
        let clock = ManualClock()
        var configuration = Producer.Configuration()
        configuration.lingerMs = 5_000
        configuration.clock = clock
        let producer = Producer(client: client, configuration: configuration)

        let handle = try await producer.send(topic: "lots", value: "LOT-1")
        try #require(try await eventually { clock.sleeperCount == 1 })
        clock.advance(by: .milliseconds(4_999))
        #expect(clock.sleeperCount == 1, "the linger fired early")
        #expect(try live.storage.offsets(topic: "lots", partition: 0).nextOffset == 0)
        clock.advance(by: .milliseconds(1))
        let delivery = try await handle.delivery()
        #expect(delivery.outcome == .appended && delivery.offset == 0)
        try await producer.close()
        await client.close()
    }

    /// With the broker gone, a record is retried on the clock's back-off until its delivery
    /// timeout has passed on that clock, then fails saying so.
    @Test func aDeliveryTimesOutOnTheProducersClock() async throws {
        let (live, admin, proxy, client) = try await Self.brokerBehindAProxy()
        defer { live.remove() }
        let clock = ManualClock()
        var configuration = Producer.Configuration()
        configuration.lingerMs = 0
        configuration.deliveryTimeout = .seconds(30)
        configuration.idempotent = false
        configuration.clock = clock
        let producer = Producer(client: client, configuration: configuration)
        // Learn the topic while the broker is there, then lose it.
        #expect(try await producer.send(topic: "lots", value: "LOT-1").delivery().offset == 0)
        proxy.setUpstream(port: 0)
        proxy.cutAll()

        let handle = try await producer.send(topic: "lots", value: "LOT-2")
        // Failed once, now backing off on the clock; 29 s later it is still being retried.
        try #require(try await eventually { clock.sleeperCount == 1 })
        var waited = Duration.zero
        while waited < .seconds(29) {
            clock.advance(by: .seconds(1))
            waited += .seconds(1)
            try #require(try await eventually { clock.sleeperCount == 1 }, "retrying at \(waited)")
        }
        // Past 30 s the next failure is final.
        clock.advance(by: .seconds(6))
        let error = await #expect(throws: MillraceError.self) { _ = try await handle.delivery() }
        #expect(error?.message.contains("delivery timeout") == true, "\(String(describing: error))")
        #expect(try live.storage.offsets(topic: "lots", partition: 0).nextOffset == 1)
        await Self.close(proxy, client, admin)
    }

    /// A broker with topic `lots`, a client of its own (`admin`) and one (`client`) through a
    /// proxy the test can cut and point elsewhere.
    static func brokerBehindAProxy() async throws -> (LiveServer, admin: MillraceClient, FaultProxy, client: MillraceClient) {
        let live = try await LiveServer()
        let admin = MillraceClient(host: "127.0.0.1", port: live.port)
        try await admin.createTopic(CreateTopicRequest(name: "lots", partitions: 1))
        let proxy = FaultProxy(upstreamPort: live.port)
        let port = try await proxy.start()
        return (live, admin, proxy, MillraceClient(host: "127.0.0.1", port: port))
    }

    static func close(_ proxy: FaultProxy, _ clients: MillraceClient...) async {
        await proxy.stop()
        for client in clients { await client.close() }
    }

    /// A follower that lost the broker backs off on its clock: while it sleeps it reads
    /// nothing, and once the clock moves it reconnects and goes on where it was.
    @Test func aFollowerReconnectsOnItsClock() async throws {
        let (live, admin, proxy, client) = try await Self.brokerBehindAProxy()
        defer { live.remove() }
        let clock = ManualClock()
        let received = Locked<[String]>([])
        let consumer = Consumer(client: client, topic: "lots", from: .earliest, stopAtEnd: false, maxWaitMs: 100, clock: clock)
        let reading = Task {
            for try await record in consumer {
                received.withLock { $0.append(String(decoding: record.value ?? [], as: UTF8.self)) }
            }
        }
        let producer = Producer(client: admin)
        _ = try await producer.send(topic: "lots", value: "LOT-1").delivery()
        try #require(try await eventually { received.withLock { $0 } == ["LOT-1"] })

        proxy.setUpstream(port: 0)
        proxy.cutAll()
        try #require(try await eventually { clock.sleeperCount == 1 })
        _ = try await producer.send(topic: "lots", value: "LOT-2").delivery()
        #expect(received.withLock { $0 } == ["LOT-1"])
        #expect(clock.sleeperCount == 1)

        proxy.setUpstream(port: live.port)
        // Each step moves the clock past the longest back-off, waking the follower.
        #expect(
            try await eventually {
                if received.withLock({ $0 }).count == 2 { return true }
                clock.advance(by: .seconds(5))
                return false
            })
        #expect(received.withLock { $0 } == ["LOT-1", "LOT-2"])
        reading.cancel()
        _ = await reading.result
        try await producer.close()
        await Self.close(proxy, client, admin)
    }
}
