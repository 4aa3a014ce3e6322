import MillraceFormat
import MillraceWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// One TCP connection to a broker, carrying pipelined requests. Responses arrive in request
/// order, so the handler matches each to the oldest request still waiting.
public final class Connection: Sendable {
    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    public static func connect(host: String, port: Int, group: any EventLoopGroup) async throws -> Connection {
        do {
            let channel = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ResponseFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(ClientHandler())
                    }
                }
                .connect(host: host, port: port).get()
            return Connection(channel: channel)
        } catch {
            let text = "\(error)"
            let reason = text.contains("refused") ? "connection refused" : text.contains("timed out") || text.contains("Timeout") ? "timed out" : text
            throw MillraceError(
                .unexpected, "no broker at \(host):\(port) (\(reason)); start one with `scripts/run` or pass --broker HOST:PORT")
        }
    }

    public var isActive: Bool { channel.isActive }
    public var eventLoop: any EventLoop { channel.eventLoop }

    /// Sends a request; the future fails with the response's error, or if the connection drops.
    public func request(_ request: Request) -> EventLoopFuture<ResponseBody> {
        let promise = channel.eventLoop.makePromise(of: ResponseBody.self)
        channel.writeAndFlush(OutgoingRequest(request: request, promise: promise), promise: nil)
        return promise.futureResult
    }

    public func send(_ request: Request) async throws -> ResponseBody {
        try await self.request(request).get()
    }

    public func close() async {
        try? await channel.close().get()
    }
}

struct OutgoingRequest {
    var request: Request
    var promise: EventLoopPromise<ResponseBody>
}

struct ResponseFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try FrameDecoder.nextFrame(
            &buffer, minimumBytes: ResponseCodec.minimumFrameBytes, frameBytesMax: Limits.responseFrameBytesMax)
        else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }
}

final class ClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = OutgoingRequest
    typealias OutboundOut = ByteBuffer

    private var waiting: CircularBuffer<(correlationID: Int32, api: ApiKey, promise: EventLoopPromise<ResponseBody>)> = []
    private var nextCorrelationID: Int32 = 1

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outgoing = unwrapOutboundIn(data)
        let correlationID = nextCorrelationID
        nextCorrelationID = nextCorrelationID == Int32.max ? 1 : nextCorrelationID + 1
        var buffer = context.channel.allocator.buffer(capacity: 64)
        RequestCodec.encode(outgoing.request, correlationID: correlationID, into: &buffer)
        waiting.append((correlationID, outgoing.request.apiKey, outgoing.promise))
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let head = waiting.popFirst() else {
            return context.fireErrorCaught(MillraceError(.unexpected, "the broker sent a response nobody asked for"))
        }
        do {
            let response = try ResponseCodec.decode(frame: frame, apiKey: head.api)
            guard response.correlationID == head.correlationID || response.correlationID == -1 else {
                throw MillraceError(.unexpected, "response \(response.correlationID) arrived for request \(head.correlationID)")
            }
            if let body = response.body {
                head.promise.succeed(body)
            } else {
                head.promise.fail(MillraceError(response.errorCode, response.message))
            }
        } catch {
            head.promise.fail(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let error = MillraceError(.unexpected, "the connection to the broker closed; retry")
        while let head = waiting.popFirst() { head.promise.fail(error) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
