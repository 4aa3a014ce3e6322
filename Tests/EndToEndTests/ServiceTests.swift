import Logging
import MillraceClient
import MillraceFormat
import ServiceLifecycle
import TestSupport
import Testing

/// `Producer` and `GroupConsumerService` run in a `ServiceGroup`: on graceful shutdown the
/// producer delivers what was sent and closes, and the consumer service finishes the record
/// in hand, commits exactly what was processed and leaves the group.
@Suite(.serialized, .stopsLiveServers) struct ServiceTests {
    static func group(_ services: [any Service]) -> ServiceGroup {
        ServiceGroup(services: services, gracefulShutdownSignals: [], cancellationSignals: [], logger: Logger(label: "test"))
    }

    /// A producer whose records go only when something ships them: its linger is not waited out.
    static func lingeringProducer(_ client: MillraceClient) async throws -> (Producer, DeliveryReports) {
        try await client.createTopic("confirmations", .init(partitions: 1))
        var configuration = Producer.Configuration()
        configuration.lingerMs = 600_000
        return Producer.makeWithDeliveryReports(client: client, configuration: configuration)
    }

    @Test func aProducerServiceFlushesAndClosesOnGracefulShutdown() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        let (producer, reports) = try await Self.lingeringProducer(client)
        let services = Self.group([producer])
        let running = Task { try await services.run() }
        var handles: [DeliveryHandle] = []
        for index in 0..<5 { handles.append(try await producer.send(topic: "confirmations", value: "c\(index)")) }
        #expect(try await client.describeTopic("confirmations").partitions[0].logEndOffset == 0)

        await services.triggerGracefulShutdown()
        try await running.value
        // run() returned after the records were durable.
        #expect(try await client.describeTopic("confirmations").partitions[0].logEndOffset == 5)
        for (index, handle) in handles.enumerated() {
            let delivery = try await handle.delivery()
            #expect(delivery.outcome == .appended && delivery.offset == Int64(index))
        }
        // Closed: later sends are refused and the reports have ended.
        await #expect(throws: MillraceError.self) { _ = try await producer.send(topic: "confirmations", value: "late") }
        var reported = 0
        for await _ in reports { reported += 1 }
        #expect(reported == 5)
        await client.close()
        await live.stop()
    }

    /// Cancelled rather than shut down gracefully: it stops at once, refusing sends and
    /// ending the reports, but what was batched is still sent and its handles complete.
    @Test func aCancelledProducerServiceStopsAtOnceAndStillSendsWhatWasBatched() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        let (producer, reports) = try await Self.lingeringProducer(client)
        let handle = try await producer.send(topic: "confirmations", value: "c0")
        // Run directly, not in a group: a cancelled task still runs its body, so the service
        // sees the cancellation however soon it comes.
        let running = Task { try await producer.run() }
        running.cancel()
        _ = await running.result
        await #expect(throws: MillraceError.self) { _ = try await producer.send(topic: "confirmations", value: "late") }
        for await _ in reports {}  // ended
        // Sent when the service was cancelled, long before its linger would have.
        try #require(try await eventually { try await client.describeTopic("confirmations").partitions[0].logEndOffset == 1 })
        #expect(try await handle.delivery().outcome == .appended)
        await client.close()
        await live.stop()
    }

    static func fill(_ client: MillraceClient, _ topic: String, records: Int) async throws {
        try await client.createTopic(topic, .init(partitions: 1))
        let producer = Producer(client: client)
        for index in 0..<records { _ = try await producer.send(topic: topic, value: "v\(index)") }
        try await producer.close()
    }

    static func committed(_ client: MillraceClient, _ group: String, _ topic: String) async throws -> Int64? {
        try await client.committedOffsets(group: group, topic: topic)[0]
    }

    /// Graceful shutdown arrives while the handler is in the middle of a record: the handler is
    /// not cancelled, the record is marked, no record after it is handed out, the consumer closes.
    @Test func aConsumerServiceCommitsWhatItProcessedOnGracefulShutdown() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await Self.fill(client, "lots", records: 30)
        var configuration = GroupConsumer.Configuration()
        configuration.autoCommit = false
        configuration.commitInterval = .seconds(3_600)  // only the commit at close counts
        let consumer = GroupConsumer(client: client, group: "posting", topic: "lots", configuration: configuration)
        let processed = Locked<[Int64]>([])
        let cancelledInHandler = Locked(false)
        let services = Locked<ServiceGroup?>(nil)
        let service = GroupConsumerService(consumer: consumer) { record in
            if record.offset == 9 {
                await services.withLock { $0 }?.triggerGracefulShutdown()
                // The handler runs in the service's task: it sees the shutdown, and is not
                // cancelled by it.
                while !Task.isShuttingDownGracefully { await Task.yield() }
                cancelledInHandler.withLock { $0 = Task.isCancelled }
            }
            processed.withLock { $0.append(record.offset) }
        }
        let group = Self.group([service])
        services.withLock { $0 = group }
        try await group.run()

        let done = processed.withLock { $0 }
        #expect(!cancelledInHandler.withLock { $0 })
        #expect(done == Array(0..<10), "\(done)")
        // Exactly what was processed is committed, and the member has left the group.
        #expect(try await Self.committed(client, "posting", "lots") == Int64(done.count))
        #expect(try await client.group("posting").members.isEmpty)

        // The next member goes on from there: every record once in all.
        var rest: [Int64] = []
        configuration.stopAtEnd = true
        let next = GroupConsumer(client: client, group: "posting", topic: "lots", configuration: configuration)
        for try await record in next {
            rest.append(record.offset)
            next.commit(record)
        }
        await next.close()
        #expect(done + rest == Array(0..<30))
        await client.close()
        await live.stop()
    }

    /// A handler that throws stops the service with its error; the record it failed on is not
    /// committed (it is read again), the ones before it are.
    @Test func aFailingHandlerStopsTheServiceWithoutCommittingItsRecord() async throws {
        struct PostingFailed: Error {}
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await Self.fill(client, "lots", records: 10)
        var configuration = GroupConsumer.Configuration()
        configuration.autoCommit = false
        let consumer = GroupConsumer(client: client, group: "posting", topic: "lots", configuration: configuration)
        let service = GroupConsumerService(consumer: consumer) { record in
            if record.offset == 4 { throw PostingFailed() }
        }
        await #expect(throws: PostingFailed.self) { try await Self.group([service]).run() }
        #expect(try await Self.committed(client, "posting", "lots") == 4)
        #expect(try await client.group("posting").members.isEmpty)
        await client.close()
        await live.stop()
    }
}
