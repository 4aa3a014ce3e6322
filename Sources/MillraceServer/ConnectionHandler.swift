import MillraceFormat
import MillraceWire
import NIOConcurrencyHelpers
import NIOCore

/// What the frame decoder hands on: a whole frame, or the reason the stream is unusable.
enum FrameEvent {
    case frame(ByteBuffer)
    case unusable(MillraceError)
}

/// Splits the byte stream into request frames. After a frame that cannot be right (bad
/// size) it reports once and ignores the rest of the stream; the connection is closing.
struct RequestFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = FrameEvent
    private var failed = false

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if failed {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        do {
            guard let frame = try FrameDecoder.nextFrame(&buffer, minimumBytes: RequestHeader.bytes) else { return .needMoreData }
            context.fireChannelRead(wrapInboundOut(.frame(frame)))
            return .continue
        } catch let error as MillraceError {
            failed = true
            context.fireChannelRead(wrapInboundOut(.unusable(error)))
            return .needMoreData
        }
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A frame cut off by the peer closing is dropped: nothing of it reaches the log.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

/// One connection: decodes requests, dispatches them, and writes responses strictly in
/// request order, whatever order they complete in. Bounded: past `inFlightRequestsMax`
/// unanswered requests, or while the peer is not reading its responses, it stops reading
/// from the socket (TCP back-pressure) instead of buffering.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = FrameEvent
    typealias OutboundOut = ByteBuffer

    private let dispatcher: RequestDispatcher
    private let inFlightRequestsMax: Int
    private var nextSequence = 0
    private var nextToWrite = 0
    private var ready: [Int: ByteBuffer] = [:]
    private var closeAfterSequence: Int?
    private var readingPaused = false
    /// Stopping: no more requests are read; close once everything read is answered.
    private var draining = false

    private let serverInFlight: NIOLockedValueBox<Int>
    private let clock: any MillraceClock
    /// When a request last came in or a response went out (the idle check measures from it).
    private var lastActivityMs: Int64

    init(dispatcher: RequestDispatcher, inFlightRequestsMax: Int, serverInFlight: NIOLockedValueBox<Int>, clock: any MillraceClock) {
        self.dispatcher = dispatcher
        self.inFlightRequestsMax = inFlightRequestsMax
        self.serverInFlight = serverInFlight
        self.clock = clock
        lastActivityMs = clock.nowMilliseconds()
    }

    private var inFlight: Int { nextSequence - nextToWrite }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActivityMs = clock.nowMilliseconds()
        let sequence = nextSequence
        nextSequence += 1
        serverInFlight.withLockedValue { $0 += 1 }
        switch unwrapInboundIn(data) {
        case .unusable(let error):
            // No header to answer with: correlation id -1, then close.
            closeAfterSequence = sequence
            complete(sequence, Response(correlationID: -1, error: error), context: context)
        case .frame(let frame):
            switch RequestCodec.decode(frame: frame) {
            case .request(let header, let request):
                if inFlight > inFlightRequestsMax * 2 {
                    let error = MillraceError(.tooManyInFlight, "more than \(inFlightRequestsMax) requests unanswered; wait for responses")
                    complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
                    break
                }
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                dispatcher.handle(request, on: context.eventLoop).whenComplete { result in
                    let (handler, context) = loopBound.value
                    switch result {
                    case .success(let body): handler.complete(sequence, Response(correlationID: header.correlationID, body: body), context: context)
                    case .failure(let error):
                        let error = error as? MillraceError ?? MillraceError(.unexpected, "\(error)")
                        handler.complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
                    }
                }
            case .unknownApi(let header):
                let error = MillraceError(.unknownApi, "no API with key \(header.apiKey); see ApiVersions")
                complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
            case .unsupportedVersion(let header):
                let error = MillraceError(.unsupportedVersion, "API \(header.apiKey) has no version \(header.apiVersion); see ApiVersions")
                complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
            case .refused(let header, let error):
                complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
            case .malformed(let header, let error):
                closeAfterSequence = sequence
                complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
            }
        }
        updateReading(context: context)
    }

    private func complete(_ sequence: Int, _ response: Response, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        ResponseCodec.encode(response, into: &buffer)
        ready[sequence] = buffer
        var wrote = false
        while let next = ready.removeValue(forKey: nextToWrite) {
            serverInFlight.withLockedValue { $0 -= 1 }
            context.write(wrapOutboundOut(next), promise: nil)
            wrote = true
            if closeAfterSequence == nextToWrite {
                let channel = context.channel
                context.flush()
                channel.close(promise: nil)
                nextToWrite += 1
                return
            }
            nextToWrite += 1
        }
        if wrote {
            lastActivityMs = clock.nowMilliseconds()
            context.flush()
        }
        updateReading(context: context)
        finishDrainIfDone(context: context)
    }

    /// While draining, once every request read has been answered: end-of-stream after the
    /// responses. The server closes the connection fully a moment later.
    private func finishDrainIfDone(context: ChannelHandlerContext) {
        guard draining, inFlight == 0 else { return }
        context.close(mode: .output, promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        updateReading(context: context)
        context.fireChannelWritabilityChanged()
    }

    /// Reads only while few requests are unanswered and the peer takes its responses.
    private func updateReading(context: ChannelHandlerContext) {
        let shouldPause = inFlight >= inFlightRequestsMax || !context.channel.isWritable || closeAfterSequence != nil || draining
        guard shouldPause != readingPaused else { return }
        readingPaused = shouldPause
        context.channel.setOption(ChannelOptions.autoRead, value: !shouldPause).whenComplete { _ in }
        if !shouldPause { context.read() }
    }

    /// Sent by the server's graceful stop.
    struct Drain {}

    /// Sent by the server's tick: close when idle past the timeout with nothing in flight.
    struct IdleCheck {
        var nowMs: Int64
        var idleMs: Int64
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let check = event as? IdleCheck {
            if inFlight == 0 && check.nowMs - lastActivityMs > check.idleMs { context.close(promise: nil) }
            return
        }
        if event is Drain {
            draining = true
            updateReading(context: context)
            finishDrainIfDone(context: context)
            return
        }

        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Requests still running answer into a closed channel; stop counting them.
        serverInFlight.withLockedValue { $0 -= inFlight }
        nextToWrite = nextSequence
        ready = [:]
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
