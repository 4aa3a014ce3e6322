import MillraceFormat
import MillraceStorage
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
/// unanswered requests, past its request or response byte limits (or the broker's), or while
/// the peer is not reading its responses, it stops reading from the socket (TCP
/// back-pressure) instead of buffering; fetches are sized to the response bytes left.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = FrameEvent
    typealias OutboundOut = ByteBuffer

    struct Configuration {
        var inFlightRequestsMax: Int
        /// A connection with responses waiting and no write progress for this long is closed
        /// (a client that never reads must not hold its budget for ever)...
        var stalledWriteMs: Int64
        /// ...or for this long while the broker-wide memory limit is reached, so that clients
        /// that read are not kept waiting behind those that do not.
        var stalledWriteUnderPressureMs: Int64
    }

    private let dispatcher: RequestDispatcher
    private let configuration: Configuration
    private let memory: MemoryBudget
    private var nextSequence = 0
    private var nextToWrite = 0
    private var ready: [Int: [ByteBuffer]] = [:]
    /// Frame bytes of each request read and not yet answered.
    private var requestBytesBySequence: [Int: Int] = [:]
    /// Frames read and not yet dispatched, with their bytes (see `channelRead`).
    private var held: CircularBuffer<(FrameEvent, Int)> = []
    private var dispatching = false
    private var turnDispatches = 0
    private var turnScheduled = false
    private var requestBytes = 0
    /// Bytes of responses made and not yet written to the socket.
    private var responseBytes = 0
    private var closeAfterSequence: Int?
    private var readingPaused = false
    private var waitingForBudget = false
    private var closed = false
    /// Stopping: no more requests are read; close once everything read is answered.
    private var draining = false
    /// The peer's address, as the log names it (kept: a closed channel no longer knows it).
    private var remoteAddress: String?
    private var peerAddress: SocketAddress?

    private let serverInFlight: NIOLockedValueBox<Int>
    private let clock: any MillraceClock
    /// When a request last came in or a response went out (the idle check measures from it).
    private var lastActivityMs: Int64
    /// When a write last completed, or responses started waiting (the stalled-write check).
    private var lastWriteProgressMs: Int64

    init(
        dispatcher: RequestDispatcher, configuration: Configuration, memory: MemoryBudget, serverInFlight: NIOLockedValueBox<Int>,
        clock: any MillraceClock
    ) {
        self.dispatcher = dispatcher
        self.configuration = configuration
        self.memory = memory
        self.serverInFlight = serverInFlight
        self.clock = clock
        lastActivityMs = clock.nowMilliseconds()
        lastWriteProgressMs = lastActivityMs
    }

    private var inFlight: Int { nextSequence - nextToWrite }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Frames the decoder hands on while the connection closes (it decodes what it had
        // buffered) get no answer: there is no one to send it to.
        guard context.channel.isActive, !closed else { return }
        lastActivityMs = clock.nowMilliseconds()
        let event = unwrapInboundIn(data)
        var bytes = 0
        if case .frame(let frame) = event {
            bytes = frame.readableBytes + 4
            requestBytes += bytes
            memory.add(requestBytes: bytes)
        }
        // Frames read while the connection is over a limit wait here, undecoded, until it is
        // under again: one read can bring many, and working out answers that cannot be sent
        // would only spend the broker's time on a client that is not reading.
        if held.isEmpty && !closed && closeAfterSequence == nil && mayDispatch && turnDispatches < Self.dispatchesPerTurn {
            turnDispatches += 1
            scheduleNextTurn(context: context)
            dispatch(event, bytes: bytes, context: context)
        } else if case .frame(let frame) = event {
            // A held frame gets storage of its own: a slice would keep the whole read buffer
            // it came from (and every copy the decoder makes of it) alive while it waits.
            held.append((.frame(context.channel.allocator.buffer(bytes: frame.readableBytesView)), bytes))
        } else {
            held.append((event, bytes))
        }
        updateReading(context: context)
    }

    /// Whether the next held frame may be dispatched now.
    private var mayDispatch: Bool {
        if draining { return true }
        // Under the broker-wide response limit only connections whose answers wait unwritten
        // are held back: a client that reads its answers is served.
        return closeAfterSequence == nil && inFlight < configuration.inFlightRequestsMax
            && responseBytes < memory.limits.connectionResponseBytesMax && !memory.shouldHold(requestBytes: 0, responseBytes: responseBytes)
    }

    /// Dispatches held frames while the limits allow. Not re-entered: a request answered at
    /// once completes inside `dispatch`, and its completion asks for more dispatching; doing
    /// that recursively kept every answer of the chain alive on the stack (gigabytes under
    /// a fetch flood, found with heaptrack), so the outer loop goes on instead.
    private func dispatchHeld(context: ChannelHandlerContext) {
        guard !dispatching else { return }
        dispatching = true
        defer { dispatching = false }
        while closeAfterSequence == nil, !closed, mayDispatch, !held.isEmpty {
            guard turnDispatches < Self.dispatchesPerTurn else {
                scheduleNextTurn(context: context)
                return
            }
            turnDispatches += 1
            scheduleNextTurn(context: context)
            let (event, bytes) = held.removeFirst()
            dispatch(event, bytes: bytes, context: context)
        }
    }

    /// Requests one connection may start in one turn of its event loop; the rest wait for the
    /// next turn, so one busy client (one read can bring thousands of frames) does not keep
    /// the loop from the others on it.
    static let dispatchesPerTurn = 64

    private func scheduleNextTurn(context: ChannelHandlerContext) {
        guard !turnScheduled else { return }
        turnScheduled = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.turnScheduled = false
            handler.turnDispatches = 0
            if !handler.closed { handler.updateReading(context: context) }
        }
    }

    private func dispatch(_ event: FrameEvent, bytes: Int, context: ChannelHandlerContext) {
        let sequence = nextSequence
        nextSequence += 1
        serverInFlight.withLockedValue { $0 += 1 }
        if bytes > 0 { requestBytesBySequence[sequence] = bytes }
        switch event {
        case .unusable(let error):
            // No header to answer with: correlation id -1, then close.
            closeAfterSequence = sequence
            protocolError(error, context: context)
            complete(sequence, Response(correlationID: -1, error: error), context: context)
        case .frame(let frame):
            switch RequestCodec.decode(frame: frame) {
            case .request(let header, let request):
                if case .backup = request, !isLoopback {
                    let error = MillraceError(.invalidRequest, "backups are made by a client on the broker's own machine (this connection is from \(peer(context)))")
                    dispatcher.metrics.requestAnswered(header.apiKey, nanoseconds: 0, error: error.code)
                    return complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
                }
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                let allowance: () -> Int = { loopBound.value.0.fetchAllowance }
                let started = monotonicNanoseconds()
                let metrics = dispatcher.metrics
                dispatcher.handle(request, on: context.eventLoop, responseBytesAllowed: allowance).whenComplete { result in
                    let (handler, context) = loopBound.value
                    switch result {
                    case .success(let body):
                        metrics.requestAnswered(header.apiKey, nanoseconds: monotonicNanoseconds() - started, error: .none)
                        var response = Response(correlationID: header.correlationID, body: body)
                        response.apiVersion = header.apiVersion
                        handler.complete(sequence, response, context: context)
                    case .failure(let error):
                        let error = error as? MillraceError ?? MillraceError(.unexpected, "\(error)")
                        metrics.requestAnswered(header.apiKey, nanoseconds: monotonicNanoseconds() - started, error: error.code)
                        handler.complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
                    }
                }
            case .unknownApi(let header):
                let error = MillraceError(.unknownApi, "no API with key \(header.apiKey); see ApiVersions")
                protocolError(error, context: context)
                complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
            case .unsupportedVersion(let header):
                let error = MillraceError(.unsupportedVersion, "API \(header.apiKey) has no version \(header.apiVersion); see ApiVersions")
                protocolError(error, context: context)
                complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
            case .refused(let header, let error):
                dispatcher.metrics.requestAnswered(header.apiKey, nanoseconds: 0, error: error.code)
                complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
            case .malformed(let header, let error):
                closeAfterSequence = sequence
                protocolError(error, context: context)
                complete(sequence, Response(correlationID: header.correlationID, error: error), context: context)
            }
        }
    }

    /// A frame that breaks the protocol: counted, and logged with the peer's address (at
    /// most once a second across the broker: a peer can send these as fast as it likes).
    private func protocolError(_ error: MillraceError, context: ChannelHandlerContext) {
        dispatcher.metrics.protocolErrors.increment()
        guard let held = dispatcher.logLimiter.allow("protocol") else { return }
        let closing = closeAfterSequence != nil ? "; closing the connection" : ""
        dispatcher.logger.notice("protocol error from \(peer(context)): \(error.code): \(error.message)\(closing)\(held)")
    }

    private func peer(_ context: ChannelHandlerContext) -> String {
        remoteAddress ?? context.remoteAddress.map(Self.describe) ?? "an unknown peer"
    }

    /// Whether the peer is this machine (127.0.0.0/8, ::1 or a local socket).
    private var isLoopback: Bool {
        switch peerAddress {
        case .v4(let address)?: return UInt32(bigEndian: address.address.sin_addr.s_addr) >> 24 == 127
        case .v6?:
            // A dual-stack listener sees an IPv4 loopback peer as `::ffff:127.x.x.x`.
            guard let ip = peerAddress?.ipAddress else { return false }
            return ip == "::1" || ip.hasPrefix("::ffff:127.")
        case .unixDomainSocket?: return true
        case nil: return false
        }
    }

    /// `192.0.2.7:51234`, `[2001:db8::7]:51234`: a peer as people write it.
    static func describe(_ address: SocketAddress) -> String {
        switch address {
        case .v4: return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        case .v6: return "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
        case .unixDomainSocket: return address.pathname ?? "a local socket"
        }
    }

    /// Response bytes a fetch may still make: what is left of this connection's limit and of
    /// the broker's. Read on this connection's event loop right before the fetch reads.
    private var fetchAllowance: Int {
        let allowance = min(max(0, memory.limits.connectionResponseBytesMax - responseBytes), memory.responseBytesAvailable)
        // A connection that holds nothing is never starved by others that do.
        return responseBytes == 0 ? max(allowance, memory.responseFloorAvailable) : allowance
    }

    private func complete(_ sequence: Int, _ response: Response, context: ChannelHandlerContext) {
        if let bytes = requestBytesBySequence.removeValue(forKey: sequence) {
            requestBytes -= bytes
            memory.release(requestBytes: bytes)
        }
        guard !closed else { return }
        let parts = ResponseCodec.encodeParts(response, allocator: context.channel.allocator)
        let bytes = parts.reduce(0) { $0 + $1.readableBytes }
        if responseBytes == 0 { lastWriteProgressMs = clock.nowMilliseconds() }
        responseBytes += bytes
        memory.add(responseBytes: bytes)
        ready[sequence] = parts
        var wrote = false
        while let next = ready.removeValue(forKey: nextToWrite) {
            serverInFlight.withLockedValue { $0 -= 1 }
            write(next, context: context)
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

    /// Writes a response's parts; its bytes stay counted until the socket has taken them.
    private func write(_ parts: [ByteBuffer], context: ChannelHandlerContext) {
        let bytes = parts.reduce(0) { $0 + $1.readableBytes }
        for part in parts.dropLast() { context.write(wrapOutboundOut(part), promise: nil) }
        let promise = context.eventLoop.makePromise(of: Void.self)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { _ in
            let (handler, context) = loopBound.value
            handler.responseBytes -= bytes
            handler.memory.release(responseBytes: bytes)
            handler.lastWriteProgressMs = handler.clock.nowMilliseconds()
            if !handler.closed { handler.updateReading(context: context) }
        }
        context.write(wrapOutboundOut(parts[parts.count - 1]), promise: promise)
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

    /// Reads only while few requests are unanswered, their bytes and the responses waiting
    /// are within this connection's and the broker's limits, and the peer takes its responses.
    private func updateReading(context: ChannelHandlerContext) {
        dispatchHeld(context: context)
        // Past the broker-wide limits only connections holding bytes stop: one that holds
        // nothing is not made to wait for others that will not read.
        let overBroker = memory.shouldHold(requestBytes: requestBytes, responseBytes: responseBytes)
        let shouldPause =
            !held.isEmpty || inFlight >= configuration.inFlightRequestsMax || !context.channel.isWritable || closeAfterSequence != nil || draining
            || requestBytes >= memory.limits.connectionRequestBytesMax || responseBytes >= memory.limits.connectionResponseBytesMax || overBroker
        if shouldPause && overBroker && !waitingForBudget {
            // Woken when the broker has room again, by whichever connection releases it.
            waitingForBudget = true
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            memory.whenUnderBudget {
                eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.waitingForBudget = false
                    if !handler.closed { handler.updateReading(context: context) }
                }
            }
        }
        guard shouldPause != readingPaused else { return }
        readingPaused = shouldPause
        context.channel.setOption(ChannelOptions.autoRead, value: !shouldPause).whenComplete { _ in }
        if !shouldPause { context.read() }
    }

    /// Sent by the server's graceful stop.
    struct Drain {}

    /// Sent by the server's tick: close when idle past the timeout with nothing in flight, or
    /// when responses have waited with no write progress past the stalled-write limit.
    struct IdleCheck {
        var nowMs: Int64
        var idleMs: Int64
        var underPressure: Bool
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let check = event as? IdleCheck {
            if inFlight == 0 && check.nowMs - lastActivityMs > check.idleMs {
                dispatcher.logger.info("closing the connection from \(peer(context)): idle for \((check.nowMs - lastActivityMs) / 1_000) s")
                context.close(promise: nil)
            }
            let stalledLimit = check.underPressure ? configuration.stalledWriteUnderPressureMs : configuration.stalledWriteMs
            if responseBytes > 0 && check.nowMs - lastWriteProgressMs > stalledLimit {
                dispatcher.logger.warning(
                    "closing the connection from \(peer(context)): \(responseBytes) response bytes unread for \((check.nowMs - lastWriteProgressMs) / 1000) s\(check.underPressure ? " while the broker's memory limit is reached" : "")")
                context.close(promise: nil)
            }
            return
        }
        if event is Drain {
            // Every request read is answered, held ones included; nothing more is read.
            draining = true
            updateReading(context: context)
            finishDrainIfDone(context: context)
            return
        }

        context.fireUserInboundEventTriggered(event)
    }

    func channelActive(context: ChannelHandlerContext) {
        remoteAddress = context.remoteAddress.map(Self.describe)
        peerAddress = context.remoteAddress
        dispatcher.logger.debug("connection from \(peer(context))")
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        dispatcher.logger.debug("connection from \(peer(context)) closed after \(nextSequence) requests")
        closed = true
        // Requests still running answer into a closed channel; stop counting them. Responses
        // not yet handed to the channel are dropped here; those handed over are released by
        // their failed writes.
        serverInFlight.withLockedValue { $0 -= inFlight }
        let heldBytes = held.reduce(0) { $0 + $1.1 }
        requestBytes -= heldBytes
        memory.release(requestBytes: heldBytes)
        held.removeAll()
        nextToWrite = nextSequence
        let unwritten = ready.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.readableBytes } }
        responseBytes -= unwritten
        memory.release(responseBytes: unwritten)
        ready = [:]
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let held = dispatcher.logLimiter.allow("connection-error") {
            dispatcher.logger.info("connection from \(peer(context)) failed: \(error); closing it\(held)")
        }
        context.close(promise: nil)
    }
}
