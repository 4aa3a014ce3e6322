import Logging
import MillraceStorage
import ServiceLifecycle

/// The running broker as a swift-service-lifecycle service: it runs until a graceful
/// shutdown (SIGTERM or SIGINT through the service group), then stops in order — stop
/// accepting connections and let each finish what it has read (`MillraceServer.stop`), stop
/// the operations HTTP port, then close the storage (the writer finishes its queue, writes
/// the key index's memory, and the environment closes).
public struct BrokerService: Service {
    let server: MillraceServer
    let http: OperationsHTTPServer?
    let storage: Storage
    let logger: Logger

    /// `server` and `http` already started (so a port in use is reported before anything runs).
    public init(server: MillraceServer, http: OperationsHTTPServer?, storage: Storage, logger: Logger) {
        self.server = server
        self.http = http
        self.storage = storage
        self.logger = logger
    }

    public func run() async throws {
        // Returns on graceful shutdown; throws only if the group is cancelled, which stops
        // the same way.
        try? await gracefulShutdown()
        logger.info("shutting down: no new connections; finishing requests in flight")
        await server.stop()
        await http?.stop()
        storage.close()
        logger.info("stopped; storage closed cleanly")
    }
}
