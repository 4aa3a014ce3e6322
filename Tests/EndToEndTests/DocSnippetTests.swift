import Logging
import MillraceClient
import MillraceFormat
import ServiceLifecycle
import Testing

// The code of the snippets in Sources/MillraceClient/MillraceClient.docc, word for word, so
// that it compiles with the library as it is; the tests below run those that can run against
// a broker in the test process. An article's snippet changes here first.

/// The event the snippets send and post.
struct Confirmation: Codable, Sendable, Equatable {
    var eventID: String
    var order: String
    var qty: Int
}

enum DocSnippets {
    // MillraceClient.md, "Overview"
    static func runPosting(brokers: [String], logger: Logger, post: @escaping @Sendable (Confirmation) async throws -> Void) async throws {
        var configuration = MillraceClient.Configuration()
        configuration.brokers = brokers
        configuration.logger = logger
        let client = MillraceClient(configuration: configuration)
        do {
            try await client.createTopic("confirmations", .init(partitions: 3, dedupKey: "json:/eventID"), ifNotExists: true)
            let consumer = GroupConsumer(client: client, group: "erp-posting", topic: "confirmations")
            let posting = GroupConsumerService(consumer: consumer) { record in
                try await post(try record.decode(Confirmation.self))
            }
            let services = ServiceGroup(services: [posting], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            try await services.run()
        } catch {
            await client.close()
            throw error
        }
        await client.close()
    }

    // Producing.md, "Send, then await the answer"
    static func sendOne(_ producer: Producer, _ confirmation: Confirmation) async throws -> Delivery {
        let handle = try await producer.send(topic: "confirmations", key: confirmation.order, json: confirmation)
        let delivery = try await handle.delivery()
        switch delivery.outcome {
        case .appended: print("stored at \(delivery.partition)/\(delivery.offset)")
        case .duplicate: print("already stored, at \(delivery.partition)/\(delivery.offset)")
        case .quarantined: print("parked in \(delivery.topic) at \(delivery.offset): \(delivery.detail)")
        case .invalid: print("refused by the schema: \(delivery.detail)")
        }
        return delivery
    }

    // Producing.md, "Many records"
    static func sendMany(_ producer: Producer, _ confirmations: [Confirmation]) async throws -> [Delivery] {
        var handles: [DeliveryHandle] = []
        for confirmation in confirmations {
            handles.append(try await producer.send(topic: "confirmations", key: confirmation.order, json: confirmation))
        }
        var deliveries: [Delivery] = []
        for handle in handles { deliveries.append(try await handle.delivery()) }
        return deliveries
    }

    // Producing.md, "Delivery reports"
    static func sendWithReports(client: MillraceClient, _ confirmations: [Confirmation], logger: Logger) async throws {
        let (producer, reports) = Producer.makeWithDeliveryReports(client: client)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await report in reports {
                    switch report.result {
                    case .success(let delivery) where delivery.outcome == .appended || delivery.outcome == .duplicate: break
                    case .success(let delivery): logger.warning("record \(report.id): \(delivery.outcome): \(delivery.detail)")
                    case .failure(let error): logger.error("record \(report.id) not delivered: \(error)")
                    }
                }
            }
            for confirmation in confirmations {
                _ = try await producer.send(topic: "confirmations", key: confirmation.order, json: confirmation)
            }
            try await producer.close()  // waits for every answer, then ends the reports
            try await group.waitForAll()
        }
    }

    // Producing.md, "Send and wait"
    static func deliverOne(_ producer: Producer, _ confirmation: Confirmation) async throws -> Delivery {
        try await producer.deliver(try ProducerRecord(topic: "confirmations", key: confirmation.order, json: confirmation))
    }

    // ConsumingInAService.md, "A loop"
    static func postAll(_ consumer: GroupConsumer, post: (Confirmation) async throws -> Void) async throws {
        do {
            for try await record in consumer {
                try await post(try record.decode(Confirmation.self))
            }
        } catch {
            await consumer.close()  // commits what was processed, leaves the group
            throw error
        }
        await consumer.close()
    }

    // ConsumingInAService.md, "Stopping after a record"
    static func postUntil(_ consumer: GroupConsumer, order: String, post: (Confirmation) async throws -> Void) async throws {
        for try await record in consumer {
            let confirmation = try record.decode(Confirmation.self)
            try await post(confirmation)
            if confirmation.order == order {
                consumer.commit(record)  // processed: mark it now, no next record will be asked for
                break
            }
        }
        await consumer.close()
    }

    // ConsumingInAService.md, "As a service"
    static func runServices(client: MillraceClient, logger: Logger, post: @escaping @Sendable (Confirmation) async throws -> Void) async throws {
        let producer = Producer(client: client)
        let consumer = GroupConsumer(client: client, group: "erp-posting", topic: "confirmations")
        let posting = GroupConsumerService(consumer: consumer) { record in
            let confirmation = try record.decode(Confirmation.self)
            try await post(confirmation)
            _ = try await producer.send(topic: "postings", key: confirmation.order, json: confirmation)
        }
        // Shut down in reverse order: the consumer stops first, then the producer flushes.
        let services = ServiceGroup(services: [producer, posting], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await services.run()
    }

    // ErrorsAndRetries.md, "Telling errors apart"
    static func createWithRetries(client: MillraceClient, logger: Logger) async throws {
        var backoff = Backoff(min: .milliseconds(100), max: .seconds(5))
        while true {
            do {
                try await client.createTopic("confirmations", .init(partitions: 3), ifNotExists: true)
                return
            } catch let error as MillraceError where error.code.isRetriable && backoff.attempts < 10 {
                logger.warning("creating the topic failed, trying again: \(error)")
                try await Task.sleep(for: backoff.next())
            }
        }
    }

    // Rebalances.md, "Hearing of a rebalance"
    static func rebalanceAware(client: MillraceClient, logger: Logger) -> GroupConsumer {
        var configuration = GroupConsumer.Configuration()
        configuration.onRebalance = { change in
            switch change {
            case .assigned(let partitions): logger.info("reading partitions \(partitions) now")
            case .revoked(let partitions): logger.info("gave partitions \(partitions) up")
            }
        }
        return GroupConsumer(client: client, group: "erp-posting", topic: "confirmations", configuration: configuration)
    }
}

/// The snippets that run against a broker here do what their articles say.
@Suite(.serialized, .stopsLiveServers) struct DocSnippetTests {
    @Test func producingAndConsumingSnippets() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        let logger = Logger(label: "test")
        try await DocSnippets.createWithRetries(client: client, logger: logger)
        try await client.setDedupPolicy(topic: "confirmations", key: "json:/eventID")
        let producer = Producer(client: client)
        let first = Confirmation(eventID: "E1", order: "ORD-1", qty: 5)
        #expect(try await DocSnippets.sendOne(producer, first).outcome == .appended)
        let many = (2...4).map { Confirmation(eventID: "E\($0)", order: "ORD-\($0)", qty: $0) }
        #expect(try await DocSnippets.sendMany(producer, many + [first]).map(\.outcome) == [.appended, .appended, .appended, .duplicate])
        #expect(try await DocSnippets.deliverOne(producer, first).outcome == .duplicate)
        try await producer.close()
        try await DocSnippets.sendWithReports(client: client, [Confirmation(eventID: "E5", order: "ORD-5", qty: 1)], logger: logger)

        // Up to ORD-3, stopping there with it committed; then the rest, to the end.
        var configuration = GroupConsumer.Configuration()
        configuration.stopAtEnd = true
        let posted = Locked<[String]>([])
        let upTo = GroupConsumer(client: client, group: "erp-posting", topic: "confirmations", configuration: configuration)
        try await DocSnippets.postUntil(upTo, order: "ORD-3") { confirmation in posted.withLock { $0.append(confirmation.eventID) } }
        let rest = GroupConsumer(client: client, group: "erp-posting", topic: "confirmations", configuration: configuration)
        try await DocSnippets.postAll(rest) { confirmation in posted.withLock { $0.append(confirmation.eventID) } }
        // Every record once, over three partitions (each in order; across them in any order).
        #expect(posted.withLock { $0 }.sorted() == ["E1", "E2", "E3", "E4", "E5"])
        await client.close()
        await live.stop()
    }
}
