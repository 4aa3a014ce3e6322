import Logging
import MillraceFormat
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The operator's HTTP port (`serve --http-listen`, 127.0.0.1:7451 by default): `/metrics`
/// in Prometheus's text format, `/healthz` (the process answers) and `/readyz` (503 with the
/// reasons while the broker should not get traffic). GET and HEAD only; one thread of its
/// own, so it never waits behind the broker's event loops nor they behind it, and a scrape
/// runs on a second thread so `/healthz` never waits behind a scrape either.
///
/// Nothing a peer does costs unbounded memory or holds the health page: at most
/// `connectionsMax` connections, a new one replacing the one quiet longest
/// (`HTTPConnectionTable`); a connection quiet for `idleSeconds` (no request finished, no
/// response written) is closed; a connection's next request waits, unread, while more than
/// `connectionResponseBytesMax` of its responses are unwritten; scrapes asked for while one
/// runs share its page.
public final class OperationsHTTPServer: Sendable {
    public struct Configuration: Sendable {
        public var connectionsMax = Limits.httpConnectionsMax
        public var connectionResponseBytesMax = Limits.httpConnectionResponseBytesMax
        public var idleSeconds: Int64 = 30
        /// The time idle connections are measured in. Tests pass a clock they move by hand
        /// and call `tick()`; a real listener ticks every second.
        public var clock: any MillraceClock = SystemClock()
        public var ticksAutomatically = true
        /// TLS, as on the broker's other listeners (the same context, reloaded with them).
        public var tls: ServerTLS?
        /// `/metrics` is served to peers on this machine, to peers that present a client
        /// certificate (`tls` with a client CA), and to peers that send `Authorization:
        /// Bearer` with this token; to nobody else. `/healthz` and `/readyz` are open.
        public var metricsToken: String?

        public init() {}
    }

    private let pages: OperationsPages
    private let host: String
    private let port: Int
    private let configuration: Configuration
    private let logger: Logger
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let scrapes: MetricsScrapes
    private let channel = Locked<(any Channel)?>(nil)
    private let connections: HTTPConnections
    private let ticker = Locked<RepeatedTask?>(nil)
    /// Request bodies are not wanted; a request sending more than this is cut off.
    static let bodyBytesMax = 64 << 10

    public convenience init(host: String, port: Int, broker: MillraceServer, configuration: Configuration = Configuration(), logger: Logger) {
        self.init(
            host: host, port: port, pages: OperationsPages(metrics: { broker.scrapeMetrics() }, readiness: { broker.readiness() }),
            configuration: configuration, logger: logger)
    }

    init(host: String, port: Int, pages: OperationsPages, configuration: Configuration, logger: Logger) {
        self.host = host
        self.port = port
        self.pages = pages
        self.configuration = configuration
        self.logger = logger
        scrapes = MetricsScrapes(scrape: pages.metrics)
        connections = HTTPConnections(
            table: HTTPConnectionTable(connectionsMax: configuration.connectionsMax, idleMs: configuration.idleSeconds * 1_000), clock: configuration.clock)
    }

    /// Binds and starts serving; returns the bound address (port 0 picks a free one).
    public func start() async throws -> SocketAddress {
        let pages = self.pages
        let scrapes = self.scrapes
        let connections = self.connections
        let logger = self.logger
        let bytesMax = configuration.connectionResponseBytesMax
        let tls = configuration.tls
        let access = MetricsAccess(token: configuration.metricsToken, clientCertificates: tls?.requiresClientCertificate ?? false)
        scrapes.start()
        let bound = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: bytesMax / 2, high: bytesMax))
            .childChannelInitializer { channel in
                if let replaced = connections.opened(channel) {
                    logger.debug("operations HTTP: connectionsMax reached; closed the connection quiet longest for a new one")
                    replaced.close(promise: nil)
                }
                channel.closeFuture.whenComplete { _ in connections.closed(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context)) }
                }.flatMap {
                    channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                }.flatMap {
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            OperationsHTTPHandler(pages: pages, scrapes: scrapes, connections: connections, access: access, logger: logger))
                    }
                }
            }
            .bind(host: host, port: port).get()
        channel.withLock { $0 = bound }
        if configuration.ticksAutomatically {
            let task = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [connections] _ in connections.closeIdle() }
            ticker.withLock { $0 = task }
        }
        guard let address = bound.localAddress else { throw MillraceError(.unexpected, "the HTTP socket has no address") }
        return address
    }

    /// Closes connections quiet for `idleSeconds` by the configured clock.
    public func tick() { connections.closeIdle() }

    /// HTTP connections open now.
    public var connectionCount: Int { connections.count }

    /// Connections whose next request waits for their responses to be read.
    var heldRequests: Int { connections.held.withLock { $0 } }

    public func stop() async {
        ticker.withLock { $0 }?.cancel()
        try? await channel.withLock({ $0 })?.close().get()
        for open in connections.all() { try? await open.close().get() }
        try? await group.shutdownGracefully()
        try? await scrapes.shutdown()
    }
}

/// What the HTTP listener serves, as functions (tests give their own).
struct OperationsPages: Sendable {
    /// The whole `/metrics` page; run on the scrape thread, never on the event loop.
    var metrics: @Sendable () -> [UInt8]
    /// For `/readyz`: cheap, run on the event loop.
    var readiness: @Sendable () -> Readiness
}

/// The open connections and their table, shared by the accepting and the serving code.
final class HTTPConnections: Sendable {
    private let state: Locked<(table: HTTPConnectionTable<ObjectIdentifier>, channels: [ObjectIdentifier: any Channel])>
    private let clock: any MillraceClock
    /// Connections with a request held until their unwritten responses drain.
    let held = Locked(0)

    init(table: HTTPConnectionTable<ObjectIdentifier>, clock: any MillraceClock) {
        state = Locked((table, [:]))
        self.clock = clock
    }

    /// Counts `channel`; returns the one to close to make room for it.
    func opened(_ channel: any Channel) -> (any Channel)? {
        let now = clock.nowMilliseconds()
        return state.withLock { state in
            state.channels[ObjectIdentifier(channel)] = channel
            guard let replaced = state.table.opened(ObjectIdentifier(channel), nowMs: now) else { return nil }
            return state.channels.removeValue(forKey: replaced)
        }
    }

    func active(_ channel: any Channel) {
        let now = clock.nowMilliseconds()
        state.withLock { $0.table.active(ObjectIdentifier(channel), nowMs: now) }
    }

    func closed(_ channel: any Channel) {
        state.withLock { state in
            // A replaced connection's identifier may be reused by a later channel: only forget our own.
            guard state.channels[ObjectIdentifier(channel)] === channel else { return }
            state.table.closed(ObjectIdentifier(channel))
            state.channels[ObjectIdentifier(channel)] = nil
        }
    }

    func closeIdle() {
        let now = clock.nowMilliseconds()
        let idle = state.withLock { state in state.table.idle(nowMs: now).compactMap { state.channels[$0] } }
        for channel in idle { channel.close(promise: nil) }
    }

    var count: Int { state.withLock { $0.table.count } }

    func all() -> [any Channel] { state.withLock { Array($0.channels.values) } }
}

/// Runs `/metrics` scrapes on a thread of their own, one at a time: a request arriving while
/// one runs gets that scrape's page. The page is one buffer that every connection writes
/// (ByteBuffer shares its storage), so many scrapers cost one page of memory.
final class MetricsScrapes: Sendable {
    private let pool = NIOThreadPool(numberOfThreads: 1)
    private let scrape: @Sendable () -> [UInt8]
    private let running = Locked<EventLoopFuture<ByteBuffer>?>(nil)

    init(scrape: @escaping @Sendable () -> [UInt8]) { self.scrape = scrape }

    func start() { pool.start() }

    func shutdown() async throws { try await pool.shutdownGracefully() }

    /// The page of the scrape running now, or of one started for this call.
    func page(on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer> {
        let scrape = self.scrape
        let (future, started) = running.withLock { running -> (EventLoopFuture<ByteBuffer>, Bool) in
            if let running { return (running, false) }
            let made = pool.runIfActive(eventLoop: eventLoop) { ByteBuffer(bytes: scrape()) }
            running = made
            return (made, true)
        }
        // Outside the lock: a future failed at once (the pool stopped) runs this inline.
        if started {
            future.whenComplete { [running] _ in running.withLock { if $0 === future { $0 = nil } } }
        }
        return future.hop(to: eventLoop)
    }
}

/// One HTTP connection. NIO's pipelining handler before it passes one request at a time and
/// reads nothing more until that request's response is written; this handler holds a request
/// while the channel is not writable (more than the high watermark unwritten), so a peer that
/// pipelines and never reads costs one watermark of memory, not a response per request.
final class OperationsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let pages: OperationsPages
    private let scrapes: MetricsScrapes
    private let connections: HTTPConnections
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    /// A request read while the channel was not writable: answered when it is.
    private var held: HTTPRequestHead?

    private let access: MetricsAccess

    init(pages: OperationsPages, scrapes: MetricsScrapes, connections: HTTPConnections, access: MetricsAccess, logger: Logger) {
        self.access = access
        self.pages = pages
        self.scrapes = scrapes
        self.connections = connections
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyBytes = 0
        case .body(let body):
            bodyBytes += body.readableBytes
            if bodyBytes > OperationsHTTPServer.bodyBytesMax { context.close(promise: nil) }
        case .end:
            guard let head else { return }
            self.head = nil
            connections.active(context.channel)
            if context.channel.isWritable {
                respond(to: head, context: context)
            } else {
                held = head
                connections.held.withLock { $0 += 1 }
            }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let head = held {
            held = nil
            connections.held.withLock { $0 -= 1 }
            respond(to: head, context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if held != nil { connections.held.withLock { $0 -= 1 } }
        held = nil
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard head.method == .GET || head.method == .HEAD else {
            return send(.methodNotAllowed, "only GET and HEAD are served here\n", extra: [("Allow", "GET, HEAD")], head: head, context: context)
        }
        switch path {
        case "/metrics":
            guard access.allows(head, peer: context.channel.remoteAddress) else {
                return send(
                    .forbidden,
                    "/metrics is served to this machine only; from elsewhere send Authorization: Bearer with the broker's metrics token (--metrics-token-file), or a client certificate (--tls-client-ca)\n",
                    head: head, context: context)
            }
            scrapes.page(on: context.eventLoop).assumeIsolated().whenComplete { result in
                guard context.channel.isActive else { return }
                switch result {
                case .success(let page):
                    self.send(.ok, page, contentType: "text/plain; version=0.0.4; charset=utf-8", head: head, context: context)
                case .failure(let error):
                    self.send(.serviceUnavailable, "the scrape failed: \(error)\n", head: head, context: context)
                }
            }
        case "/healthz":
            send(.ok, "ok\n", head: head, context: context)
        case "/readyz":
            let readiness = pages.readiness()
            if readiness.ready {
                send(.ok, "ready\n", head: head, context: context)
            } else {
                send(.serviceUnavailable, "not ready: " + readiness.reasons.joined(separator: "; ") + "\n", head: head, context: context)
            }
        default:
            send(.notFound, "no such page: \(path.prefix(200)); try /metrics, /healthz or /readyz\n", head: head, context: context)
        }
    }

    private func send(
        _ status: HTTPResponseStatus, _ text: String, extra: [(String, String)] = [], head: HTTPRequestHead, context: ChannelHandlerContext
    ) {
        send(status, context.channel.allocator.buffer(string: text), contentType: "text/plain; charset=utf-8", extra: extra, head: head, context: context)
    }

    private func send(
        _ status: HTTPResponseStatus, _ body: ByteBuffer, contentType: String, extra: [(String, String)] = [], head: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", "\(body.readableBytes)")] + extra)
        headers.add(name: "Connection", value: head.isKeepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel, connections] result in
            if case .success = result { connections.active(channel) }
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("operations HTTP connection from \(context.remoteAddress.map(ConnectionHandler.describe) ?? "?") failed: \(error)")
        context.close(promise: nil)
    }
}

/// Who may read `/metrics`: this machine, a client certificate, or the token.
struct MetricsAccess: Sendable {
    var token: String?
    var clientCertificates: Bool

    func allows(_ head: HTTPRequestHead, peer: SocketAddress?) -> Bool {
        if clientCertificates || peer?.isThisMachine == true { return true }
        guard let token, !token.isEmpty, let header = head.headers.first(name: "Authorization"), header.hasPrefix("Bearer ") else { return false }
        let offered = Array(header.dropFirst(7).utf8)
        let expected = Array(token.utf8)
        // Constant time over the token's length.
        guard offered.count == expected.count else { return false }
        return zip(offered, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
