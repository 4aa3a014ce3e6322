import MillraceFormat
import NIOCore
import NIOPosix

/// A TCP relay on 127.0.0.1 between clients and a broker that can cut every relayed
/// connection at a chosen request, so a test can restart the broker at an exact moment of a
/// client's protocol cycle (its third heartbeat, its first commit) rather than at a time.
///
/// Requests are counted frame by frame (`size i32`, `api key i16`, …; docs/PROTOCOL.md,
/// "Frames") across all connections. When the armed request arrives the proxy closes every
/// client connection, either before the request reaches the broker (`.beforeRequest`: the
/// broker never saw it) or after (`.afterRequest`: the broker acts on it, the client never
/// hears the answer), and counts it in `cuts`. From a cut until `setUpstream` names the
/// broker again, new connections are closed at once, as a client sees a broker that is down.
public final class FaultProxy: Sendable {
    public enum Cut: Sendable { case beforeRequest, afterRequest }

    struct Trap {
        var apiKeys: Set<Int16>
        var skip: Int
        var cut: Cut
    }

    struct State {
        var upstreamPort: Int
        var trap: Trap?
        var clients: [ObjectIdentifier: any Channel] = [:]
        var listener: (any Channel)?
        var cuts = 0
    }

    private let state: Locked<State>

    public init(upstreamPort: Int) { state = Locked(State(upstreamPort: upstreamPort)) }

    /// How many times the proxy has cut.
    public var cuts: Int { state.withLock { $0.cuts } }

    /// Starts listening; returns the port clients should use.
    public func start() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in self.relay(inbound) }
            .bind(host: "127.0.0.1", port: 0).get()
        state.withLock { $0.listener = channel }
        return channel.localAddress?.port ?? 0
    }

    /// Where new connections go from now on.
    public func setUpstream(port: Int) { state.withLock { $0.upstreamPort = port } }

    /// Cuts at the `occurrence`-th request (1 = the next) whose api key is in `apiKeys`.
    public func arm(_ apiKeys: Set<Int16>, occurrence: Int = 1, cut: Cut) {
        state.withLock { $0.trap = Trap(apiKeys: apiKeys, skip: max(0, occurrence - 1), cut: cut) }
    }

    /// Closes every relayed connection now.
    public func cutAll() {
        let clients = state.withLock { state in
            defer { state.clients = [:] }
            return Array(state.clients.values)
        }
        for client in clients { client.close(promise: nil) }
    }

    public func stop() async {
        cutAll()
        let listener = state.withLock { $0.listener }
        try? await listener?.close()
    }

    private func relay(_ inbound: any Channel) -> EventLoopFuture<Void> {
        let port = state.withLock { $0.upstreamPort }
        return ClientBootstrap(group: inbound.eventLoop)
            .channelInitializer { upstream in
                upstream.eventLoop.makeCompletedFuture { try upstream.pipeline.syncOperations.addHandler(ResponseRelay(client: inbound)) }
            }
            .connect(host: "127.0.0.1", port: port)
            .flatMapThrowing { upstream in
                try inbound.pipeline.syncOperations.addHandler(RequestRelay(upstream: upstream, proxy: self))
                self.state.withLock { $0.clients[ObjectIdentifier(inbound)] = inbound }
            }
    }

    /// What to do with a request frame: forward it, or cut (before or after forwarding).
    fileprivate func judge(_ apiKey: Int16) -> Cut? {
        state.withLock { state -> Cut? in
            guard var trap = state.trap, trap.apiKeys.contains(apiKey) else { return nil }
            guard trap.skip == 0 else {
                trap.skip -= 1
                state.trap = trap
                return nil
            }
            state.trap = nil
            state.cuts += 1
            state.upstreamPort = 0  // down until the test says where it is again
            return trap.cut
        }
    }

    fileprivate func forget(_ inbound: any Channel) {
        _ = state.withLock { $0.clients.removeValue(forKey: ObjectIdentifier(inbound)) }
    }
}

/// Client → broker: splits the stream into frames and asks the proxy about each.
private final class RequestRelay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let upstream: any Channel
    let proxy: FaultProxy
    private var held = ByteBuffer()
    private var cut = false

    init(upstream: any Channel, proxy: FaultProxy) {
        self.upstream = upstream
        self.proxy = proxy
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !cut else { return }
        var bytes = unwrapInboundIn(data)
        held.writeBuffer(&bytes)
        while let size = held.getInteger(at: held.readerIndex, as: Int32.self), size >= 8, held.readableBytes >= 4 + Int(size),
            let frame = held.readSlice(length: 4 + Int(size))
        {
            let apiKey = frame.getInteger(at: frame.readerIndex + 4, as: Int16.self) ?? -1
            switch proxy.judge(apiKey) {
            case nil:
                upstream.writeAndFlush(frame, promise: nil)
            case .beforeRequest:
                cut = true
                upstream.close(promise: nil)
                proxy.cutAll()
                return
            case .afterRequest:
                // The broker gets the request; the upstream stays open until it answers (the
                // answer is dropped: the client is gone) or the broker goes away.
                cut = true
                upstream.writeAndFlush(frame, promise: nil)
                proxy.cutAll()
                return
            }
        }
        if held.readableBytes == 0 { held.clear() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        proxy.forget(context.channel)
        if !cut { upstream.close(promise: nil) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

/// Broker → client: passes answers back while the client is there; once it was cut, drops
/// the answer to the request that caused the cut and closes.
private final class ResponseRelay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let client: any Channel

    init(client: any Channel) { self.client = client }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard client.isActive else {
            context.close(promise: nil)
            return
        }
        client.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        client.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}
