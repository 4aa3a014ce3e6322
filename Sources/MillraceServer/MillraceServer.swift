import Logging
import MillraceFormat
import MillraceStorage
import MillraceWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The network broker: accepts connections and serves the native protocol from a storage.
public final class MillraceServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// A connection with no traffic and nothing in flight for this long is closed.
        public var idleTimeoutSeconds: Int64 = 600
        public var inFlightRequestsMax: Int = Limits.inFlightRequestsMax
        /// The time group sessions and idle connections are measured in. Tests pass a clock
        /// they move by hand and call `tick()`; a real broker ticks every 250 ms.
        public var clock: any MillraceClock = SystemClock()
        /// Tick on a timer (off in tests that call `tick()` themselves).
        public var ticksAutomatically = true

        public init(host: String = "127.0.0.1", port: Int = 7450) {
            self.host = host
            self.port = port
        }
    }

    private let storage: Storage
    private let configuration: Configuration
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger
    private let state = NIOLockedValueBox<(server: (any Channel)?, children: [ObjectIdentifier: any Channel], expiry: RepeatedTask?)>(
        (nil, [:], nil))
    /// Requests accepted and not yet answered, across connections (graceful shutdown waits on it).
    private let inFlight = NIOLockedValueBox(0)
    private let dispatcherBox = NIOLockedValueBox<RequestDispatcher?>(nil)

    public init(storage: Storage, configuration: Configuration, logger: Logger) {
        self.storage = storage
        self.configuration = configuration
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
    }

    /// Binds and starts accepting; returns the bound address (port 0 picks a free one).
    public func start() async throws -> SocketAddress {
        let configuration = self.configuration
        let storage = self.storage
        let state = self.state
        let inFlight = self.inFlight
        let advertisedPort = NIOLockedValueBox<Int32>(Int32(configuration.port))
        let dispatcherBox = self.dispatcherBox
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
            .childChannelInitializer { channel in
                let dispatcher = dispatcherBox.withLockedValue { box in
                    if let box { return box }
                    let made = RequestDispatcher(
                        storage: storage, advertisedHost: configuration.host, advertisedPort: advertisedPort.withLockedValue { $0 }, clock: configuration.clock)
                    box = made
                    return made
                }
                state.withLockedValue { $0.children[ObjectIdentifier(channel)] = channel }
                channel.closeFuture.whenComplete { _ in state.withLockedValue { _ = $0.children.removeValue(forKey: ObjectIdentifier(channel)) } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RequestFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionHandler(
                            dispatcher: dispatcher, inFlightRequestsMax: configuration.inFlightRequestsMax, serverInFlight: inFlight,
                            clock: configuration.clock))
                }
            }
            .bind(host: configuration.host, port: configuration.port).get()
        let address = channel.localAddress!
        advertisedPort.withLockedValue { $0 = Int32(address.port ?? configuration.port) }
        state.withLockedValue { $0.server = channel }
        if configuration.ticksAutomatically {
            let expiry = group.next().scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { [self] _ in tick() }
            state.withLockedValue { $0.expiry = expiry }
        }
        return address
    }

    /// Requests read and not yet answered, across connections.
    public var inFlightRequests: Int { inFlight.withLockedValue { $0 } }

    /// Expires group members whose session ran out and closes connections idle past the idle
    /// timeout, by the configured clock. Nothing waits on it.
    public func tick() {
        dispatcherBox.withLockedValue { $0 }?.groups.expire()
        let check = ConnectionHandler.IdleCheck(nowMs: configuration.clock.nowMilliseconds(), idleMs: configuration.idleTimeoutSeconds * 1000)
        for child in state.withLockedValue({ Array($0.children.values) }) {
            child.pipeline.fireUserInboundEventTriggered(check)
        }
    }

    /// Stops accepting, lets each connection finish what it has in flight (up to
    /// `graceSeconds`), closes them and the event loops. The caller closes the storage after.
    public func stop(graceSeconds: Int64 = 10) async {
        let (server, expiry) = state.withLockedValue { ($0.server, $0.expiry) }
        expiry?.cancel()
        try? await server?.close().get()
        // Each connection stops reading requests, answers what it has, then half-closes so
        // its client reads every response and then end-of-stream.
        for child in state.withLockedValue({ Array($0.children.values) }) {
            child.pipeline.fireUserInboundEventTriggered(ConnectionHandler.Drain())
        }
        let deadline = NIODeadline.now() + .seconds(graceSeconds)
        while inFlight.withLockedValue({ $0 }) > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        // A moment for the last responses and end-of-stream to reach the clients.
        try? await Task.sleep(nanoseconds: 50_000_000)
        for child in state.withLockedValue({ Array($0.children.values) }) {
            try? await child.close().get()
        }
        try? await group.shutdownGracefully()
    }
}
