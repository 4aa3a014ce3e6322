import Logging
import MillraceFormat
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The operator's HTTP port (`serve --http-listen`, 127.0.0.1:7451 by default): `/metrics`
/// in Prometheus's text format, `/healthz` (the process answers) and `/readyz` (503 with the
/// reasons while the broker should not get traffic). GET and HEAD only; one thread of its
/// own, so a scrape never waits behind the broker's event loops nor they behind it; at most
/// `connectionsMax` connections, each closed after `idleSeconds` without a request.
public final class OperationsHTTPServer: Sendable {
    private let broker: MillraceServer
    private let host: String
    private let port: Int
    private let logger: Logger
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)
    private let open = NIOLockedValueBox(0)
    static let connectionsMax = 64
    static let idleSeconds: Int64 = 30
    /// Request bodies are not wanted; a request sending more than this is cut off.
    static let bodyBytesMax = 64 << 10

    public init(host: String, port: Int, broker: MillraceServer, logger: Logger) {
        self.host = host
        self.port = port
        self.broker = broker
        self.logger = logger
    }

    /// Binds and starts serving; returns the bound address (port 0 picks a free one).
    public func start() async throws -> SocketAddress {
        let broker = self.broker
        let open = self.open
        let logger = self.logger
        let bound = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let admitted = open.withLockedValue { count -> Bool in
                    guard count < Self.connectionsMax else { return false }
                    count += 1
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in open.withLockedValue { $0 -= 1 } }
                return channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(Self.idleSeconds)))
                        try channel.pipeline.syncOperations.addHandler(OperationsHTTPHandler(broker: broker, logger: logger))
                    }
                }
            }
            .bind(host: host, port: port).get()
        channel.withLockedValue { $0 = bound }
        guard let address = bound.localAddress else { throw MillraceError(.unexpected, "the HTTP socket has no address") }
        return address
    }

    public func stop() async {
        try? await channel.withLockedValue({ $0 })?.close().get()
        try? await group.shutdownGracefully()
    }
}

final class OperationsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let broker: MillraceServer
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var bodyBytes = 0

    init(broker: MillraceServer, logger: Logger) {
        self.broker = broker
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
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard head.method == .GET || head.method == .HEAD else {
            return send(.methodNotAllowed, "only GET and HEAD are served here\n", extra: [("Allow", "GET, HEAD")], head: head, context: context)
        }
        switch path {
        case "/metrics":
            send(.ok, broker.scrapeMetrics(), contentType: "text/plain; version=0.0.4; charset=utf-8", head: head, context: context)
        case "/healthz":
            send(.ok, "ok\n", head: head, context: context)
        case "/readyz":
            let readiness = broker.readiness()
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
        send(status, Array(text.utf8), contentType: "text/plain; charset=utf-8", extra: extra, head: head, context: context)
    }

    private func send(
        _ status: HTTPResponseStatus, _ body: [UInt8], contentType: String, extra: [(String, String)] = [], head: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", "\(body.count)")] + extra)
        headers.add(name: "Connection", value: head.isKeepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil) }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("operations HTTP connection from \(context.remoteAddress.map(ConnectionHandler.describe) ?? "?") failed: \(error)")
        context.close(promise: nil)
    }
}
