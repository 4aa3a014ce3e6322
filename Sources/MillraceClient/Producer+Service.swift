import ServiceLifecycle

/// A producer runs as a swift-service-lifecycle `Service`: it sends while the service group
/// runs and, on graceful shutdown, flushes and closes.
///
/// ```swift
/// let producer = Producer(client: client)
/// let group = ServiceGroup(services: [producer, consumerService], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await group.run()
/// ```
///
/// A group shuts its services down in reverse order, so list the producer before the services
/// that send through it: they stop first, and the producer then delivers what they sent.
extension Producer: Service {
    /// Waits for graceful shutdown, then `close()`s: every record sent so far is answered
    /// (delivered, or failed after `deliveryTimeout`) before this returns, and later sends
    /// throw. Cancelled instead (the group is stopping at once), it refuses further sends,
    /// sends what is batched without waiting for its linger, and ends the delivery reports
    /// without waiting for the answers; records in flight still complete their handles.
    public func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            closed.withLock { $0 = true }
            shipBatched()
            reportSink.withLock { $0?.finish() }
            throw error
        }
        try await close()
    }
}
