import Logging
import MillraceFormat
import MillraceSecurity
import MillraceStorage
import MillraceWire
import NIOCore
import NIOPosix
import NIOSSL

/// The network broker: accepts connections and serves the native protocol from a storage.
public final class MillraceServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// A connection with no traffic and nothing in flight for this long is closed.
        public var idleTimeoutSeconds: Int64 = 600
        /// With `--auth required`, a connection that has not logged in this long after it
        /// opened is closed (strangers do not hold connection slots).
        public var loginTimeoutSeconds: Int64 = 10
        public var inFlightRequestsMax: Int = Limits.inFlightRequestsMax
        /// The time group sessions and idle connections are measured in. Tests pass a clock
        /// they move by hand and call `tick()`; a real broker ticks every 250 ms.
        public var clock: any MillraceClock = SystemClock()
        /// Tick on a timer (off in tests that call `tick()` themselves).
        public var ticksAutomatically = true
        /// Bytes held for clients (docs/OPERATIONS.md, "Memory"): per connection and broker-wide.
        public var connectionRequestBytesMax = Limits.connectionRequestBytesMax
        public var connectionResponseBytesMax = Limits.connectionResponseBytesMax
        public var requestBytesMax = Limits.brokerRequestBytesMax
        public var responseBytesMax = Limits.brokerResponseBytesMax
        public var connectionsMax = Limits.connectionsMax
        /// Consumer groups known at once, live or with committed offsets (tests lower it).
        public var groupsMax = Limits.groupsMax
        /// A connection whose responses wait this long with no write progress is closed; while
        /// the broker-wide memory limit is reached, after `stalledWriteUnderPressureSeconds`.
        public var stalledWriteSeconds: Int64 = 60
        public var stalledWriteUnderPressureSeconds: Int64 = 5
        /// Where the broker counts; pass the one given to `Storage.Options.events` so storage's
        /// commits and syncs are in it too.
        public var metrics: BrokerMetrics?
        /// The writer is not ready when operations have waited this long with none finished.
        public var writerStallSeconds: Int64 = 10

        /// The Kafka listener (docs/KAFKA.md); off when nil.
        public var kafka: KafkaListener?
        /// Whether connections log in (docs/SECURITY.md).
        public var auth: AuthMode = .off
        /// TLS on every listener (native, Kafka, HTTP); plain TCP when nil.
        public var tls: TLSFiles?

        public init(host: String = "127.0.0.1", port: Int = 7450) {
            self.host = host
            self.port = port
        }
    }

    /// Where the Kafka listener listens, and what its Metadata answers name (by default, where
    /// it listens; set it when clients reach the broker by another name or through NAT).
    public struct KafkaListener: Sendable {
        public var host: String
        public var port: Int
        public var advertisedHost: String?
        public var advertisedPort: Int?

        public init(host: String, port: Int, advertisedHost: String? = nil, advertisedPort: Int? = nil) {
            self.host = host
            self.port = port
            self.advertisedHost = advertisedHost
            self.advertisedPort = advertisedPort
        }
    }

    /// A listener that could not be bound.
    public struct ListenFailure: Error, CustomStringConvertible {
        public var listener: Listener
        public var host: String
        public var port: Int
        public var underlying: any Error

        public var description: String { "\(underlying)" }
    }

    /// The protocols the broker listens for.
    public enum Listener: String, Sendable, CaseIterable {
        case native
        case kafka
    }

    let storage: Storage
    let configuration: Configuration
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger
    private struct State {
        var servers: [Listener: any Channel] = [:]
        var children: [ObjectIdentifier: (channel: any Channel, listener: Listener)] = [:]
        var expiry: RepeatedTask?
    }

    private let state = Locked(State())
    /// Requests accepted and not yet answered, across connections (graceful shutdown waits on it).
    private let inFlight = Locked(0)
    /// Made when the broker starts.
    private let dispatcherBox = Locked<RequestDispatcher?>(nil)
    /// The listeners' TLS, made when the broker starts (nil: plain TCP).
    private let tlsBox = Locked<ServerTLS?>(nil)
    public var tls: ServerTLS? { tlsBox.withLock { $0 } }
    /// Bytes held for clients, against the configured limits.
    public let memory: MemoryUsage
    public let metrics: BrokerMetrics
    /// When the broker started (configured clock, ms).
    let startedAtMs: Int64

    public init(storage: Storage, configuration: Configuration, logger: Logger) {
        self.storage = storage
        self.configuration = configuration
        self.logger = logger
        metrics = configuration.metrics ?? BrokerMetrics()
        startedAtMs = configuration.clock.nowMilliseconds()
        memory = MemoryUsage(
            budget: MemoryBudget(
                limits: .init(
                    connectionRequestBytesMax: max(configuration.connectionRequestBytesMax, Limits.frameBytesMax),
                    connectionResponseBytesMax: configuration.connectionResponseBytesMax,
                    requestBytesMax: configuration.requestBytesMax, responseBytesMax: configuration.responseBytesMax)))
        group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
    }

    /// Binds the native listener (and the Kafka listener when configured) and starts
    /// accepting; returns the native listener's bound address (port 0 picks a free one).
    public func start() async throws -> SocketAddress {
        if let files = configuration.tls {
            let made = try ServerTLS(files: files)
            tlsBox.withLock { $0 = made }
        }
        let logLimiter = LogLimiter(clock: configuration.clock)
        let security = try BrokerSecurity(storage: storage, mode: configuration.auth, clock: configuration.clock, logger: logger, logLimiter: logLimiter)
        let dispatcher = RequestDispatcher(
            storage: storage, advertisedHost: configuration.host, advertisedPort: Int32(configuration.port), clock: configuration.clock, logger: logger,
            metrics: metrics, groupsMax: configuration.groupsMax, security: security, logLimiter: logLimiter)
        dispatcher.brokerStatus.withLock { $0 = { [weak self] in self?.brokerStatus() ?? BrokerStatusResponse.unavailable } }
        try await security.audit.prepare()
        dispatcherBox.withLock { $0 = dispatcher }
        let address: SocketAddress
        do {
            address = try await listen(.native, host: configuration.host, port: configuration.port, service: NativeService(dispatcher: dispatcher))
        } catch {
            throw ListenFailure(listener: .native, host: configuration.host, port: configuration.port, underlying: error)
        }
        dispatcher.advertised.withLock { $0.port = Int32(address.port ?? configuration.port) }
        if let kafka = configuration.kafka {
            let service = KafkaService(dispatcher: dispatcher)
            do {
                let bound = try await listen(.kafka, host: kafka.host, port: kafka.port, service: service)
                service.advertised.withLock {
                    $0 = (kafka.advertisedHost ?? kafka.host, Int32(kafka.advertisedPort ?? bound.port ?? kafka.port))
                }
            } catch {
                try? await state.withLock { $0.servers.removeValue(forKey: .native) }?.close().get()
                throw ListenFailure(listener: .kafka, host: kafka.host, port: kafka.port, underlying: error)
            }
        }
        if configuration.ticksAutomatically {
            let expiry = group.next().scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { [self] _ in tick() }
            state.withLock { $0.expiry = expiry }
        }
        return address
    }

    /// Where a listener is bound, nil when it is not.
    public func boundAddress(_ listener: Listener) -> SocketAddress? { state.withLock { $0.servers[listener] }?.localAddress }

    /// Binds one listener: every connection gets the same state machine, limits and budget,
    /// whichever protocol `service` speaks.
    private func listen(_ listener: Listener, host: String, port: Int, service: any ConnectionService) async throws -> SocketAddress {
        let configuration = self.configuration
        let state = self.state
        let inFlight = self.inFlight
        let memory = self.memory.budget
        let logger = self.logger
        let metrics = self.metrics
        let dispatcher = service.dispatcher
        let tls = self.tls
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
            .childChannelInitializer { channel in
                // Each listener has its own `connectionsMax`, so peers on the Kafka port (often
                // exposed more widely) cannot lock operators out of the native one.
                let admitted = state.withLock { state -> Bool in
                    guard state.children.values.count(where: { $0.listener == listener }) < configuration.connectionsMax else { return false }
                    state.children[ObjectIdentifier(channel)] = (channel, listener)
                    return true
                }
                guard admitted else {
                    metrics.connectionsRefused.increment()
                    logger.warning(
                        "refused a \(listener) connection from \(channel.remoteAddress.map(ConnectionHandler.describe) ?? "?"): \(configuration.connectionsMax) are open on that listener (connectionsMax)")
                    return channel.close()
                }
                metrics.connectionsAccepted.increment()
                channel.closeFuture.whenComplete { _ in state.withLock { _ = $0.children.removeValue(forKey: ObjectIdentifier(channel)) } }
                let session = dispatcher.security?.newSession(encrypted: tls != nil) ?? ConnectionSession(principal: .unrestricted, encrypted: tls != nil)
                return channel.eventLoop.makeCompletedFuture {
                    // TLS first: every byte after it is the protocol's. New connections take
                    // the context as it is now (a reload leaves open ones as they are).
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context)) }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RequestFrameDecoder(minimumBytes: service.frameBytesMin, session: session)))
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionHandler(
                            dispatcher: dispatcher, service: service,
                            configuration: .init(
                                inFlightRequestsMax: configuration.inFlightRequestsMax, stalledWriteMs: configuration.stalledWriteSeconds * 1000,
                                stalledWriteUnderPressureMs: configuration.stalledWriteUnderPressureSeconds * 1000),
                            memory: memory, serverInFlight: inFlight, clock: configuration.clock,
                            session: session))
                }
            }
            .bind(host: host, port: port).get()
        guard let address = channel.localAddress else {
            try? await channel.close().get()
            throw MillraceError(.unexpected, "the \(listener) listening socket has no address")
        }
        state.withLock { $0.servers[listener] = channel }
        return address
    }

    /// Connections open now.
    public var connectionCount: Int { state.withLock { $0.children.count } }

    /// Connections open now on one listener.
    public func connectionCount(_ listener: Listener) -> Int { state.withLock { $0.children.values.count { $0.listener == listener } } }

    var dispatcher: RequestDispatcher? { dispatcherBox.withLock { $0 } }

    /// Returns once every audit record so far is in `_audit` (tests; a stop does it too).
    public func flushAudit() async { await dispatcher?.security?.audit.flush() }

    /// Requests read and not yet answered, across connections.
    public var inFlightRequests: Int { inFlight.withLock { $0 } }

    /// Expires group members whose session ran out and closes connections idle past the idle
    /// timeout, by the configured clock. Nothing waits on it.
    public func tick() {
        dispatcherBox.withLock { $0 }?.groups.expire()
        let check = ConnectionHandler.IdleCheck(
            idleMs: configuration.idleTimeoutSeconds * 1000, underPressure: memory.budget.isOverBudget, loginDeadlineMs: configuration.loginTimeoutSeconds * 1000)
        for child in state.withLock({ $0.children.values.map(\.channel) }) {
            child.pipeline.fireUserInboundEventTriggered(check)
        }
    }

    /// Stops accepting, lets each connection finish what it has in flight (up to
    /// `graceSeconds`), closes them and the event loops. The caller closes the storage after.
    public func stop(graceSeconds: Int64 = 10) async {
        let (servers, expiry) = state.withLock { (Array($0.servers.values), $0.expiry) }
        expiry?.cancel()
        for server in servers { try? await server.close().get() }
        // Each connection stops reading requests, answers what it has, then half-closes so
        // its client reads every response and then end-of-stream.
        for child in state.withLock({ $0.children.values.map(\.channel) }) {
            child.pipeline.fireUserInboundEventTriggered(ConnectionHandler.Drain())
        }
        dispatcherBox.withLock { $0 }?.groups.releaseKafkaWaiters()
        let deadline = NIODeadline.now() + .seconds(graceSeconds)
        while inFlight.withLock({ $0 }) > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        // A moment for the last responses and end-of-stream to reach the clients.
        try? await Task.sleep(nanoseconds: 50_000_000)
        for child in state.withLock({ $0.children.values.map(\.channel) }) {
            try? await child.close().get()
        }
        try? await group.shutdownGracefully()
        await dispatcherBox.withLock { $0 }?.security?.audit.flush()
        await dispatcherBox.withLock { $0 }?.validationLanes.shutdown()
        await dispatcherBox.withLock { $0 }?.schemas.shutdown()
    }
}

/// What the broker holds for clients right now, against its limits.
public struct MemoryUsage: Sendable {
    let budget: MemoryBudget

    /// Request bytes read and not yet answered, across connections.
    public var requestBytes: Int { budget.usage.requestBytes }
    /// Response bytes made and not yet written to sockets, across connections.
    public var responseBytes: Int { budget.usage.responseBytes }
}
