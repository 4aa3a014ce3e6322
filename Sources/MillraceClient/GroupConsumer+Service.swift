import ServiceLifecycle

/// A group member as a swift-service-lifecycle `Service`: hands each record to `handler`,
/// marks it once the handler has returned, and on graceful shutdown finishes the record in
/// hand, stops, and `close()`s the consumer (committing what was marked, leaving the group).
///
/// At least once: a record is marked only after its handler returned, and what is marked is
/// committed in the background (`commitInterval`), before a rebalance gives its partition up,
/// and at `close()`. A crash loses nothing processed-but-uncommitted — those records are
/// read again, by this member or by the one that takes the partition — so make the handler
/// idempotent (a duplicate-detecting topic downstream, or an upsert).
///
/// ```swift
/// let consumer = GroupConsumer(client: client, group: "erp-posting", topic: "confirmations")
/// let posting = GroupConsumerService(consumer: consumer) { record in
///     try await erp.post(try record.decode(Confirmation.self))
/// }
/// try await ServiceGroup(services: [posting], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
///
/// When the handler throws, the record is not marked, the consumer is closed (committing the
/// records before it) and `run()` throws the error — the service group then stops, and the
/// record is read again when a member next owns its partition. Retry in the handler what
/// should not stop the service. The service works with `autoCommit` on or off: it marks each
/// record itself, after its handler.
public struct GroupConsumerService: Service {
    /// The member it runs.
    public let consumer: GroupConsumer
    private let handler: @Sendable (ConsumedRecord) async throws -> Void

    /// A service for `consumer` (not iterated elsewhere) that hands each record to `handler`.
    public init(consumer: GroupConsumer, handler: @escaping @Sendable (ConsumedRecord) async throws -> Void) {
        self.consumer = consumer
        self.handler = handler
    }

    /// Runs until graceful shutdown, cancellation, the handler's first error, or the end of
    /// the records (`stopAtEnd`); closes the consumer in every case.
    public func run() async throws {
        let records = IteratorBox(consumer.makeAsyncIterator())
        do {
            // Only the wait for a record is cut short by graceful shutdown, never a handler:
            // a record fetched as the shutdown came is still returned, and handled.
            while !Task.isShuttingDownGracefully, let record = try await cancelWhenGracefulShutdown({ try await records.next() }) {
                try await handler(record)
                consumer.commit(record)
            }
        } catch is CancellationError where Task.isShuttingDownGracefully {
            // The wait for the next record was cut short: nothing was handed out.
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
    }
}

/// The consumer's iterator, moved into `cancelWhenGracefulShutdown`'s child task for each
/// `next()`. Unchecked: only one `next()` runs at a time, the loop awaiting each before the
/// next (the task group's join orders the accesses).
private final class IteratorBox: @unchecked Sendable {
    private var iterator: GroupConsumer.AsyncIterator

    init(_ iterator: GroupConsumer.AsyncIterator) { self.iterator = iterator }

    func next() async throws -> ConsumedRecord? { try await iterator.next() }
}
