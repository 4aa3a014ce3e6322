import MillraceFormat
import MillraceStorage
import MillraceWire
import NIOCore
#if canImport(Glibc)
import Glibc
#endif
import NIOSSL
import NIOTLS

/// What the frame decoder hands on: a whole frame, or the reason the stream is unusable.
enum FrameEvent {
    case frame(ByteBuffer)
    case unusable(MillraceError)
}

/// Splits the byte stream into request frames. After a frame that cannot be right (bad
/// size) it reports once and ignores the rest of the stream; the connection is closing.
struct RequestFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = FrameEvent
    /// The fewest bytes a frame of this protocol holds (its request header).
    let minimumBytes: Int
    /// Who the connection is: before a login, frames are held to `Limits.frameBytesBeforeLogin`
    /// (a login is a few hundred bytes), so a stranger cannot make the broker buffer 64 MiB.
    let session: ConnectionSession?
    private var failed = false

    init(minimumBytes: Int, session: ConnectionSession? = nil) {
        self.minimumBytes = minimumBytes
        self.session = session
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if failed {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        do {
            let frameBytesMax = session?.principal == nil && session != nil ? Limits.frameBytesBeforeLogin : Limits.frameBytesMax
            guard let frame = try FrameDecoder.nextFrame(&buffer, minimumBytes: minimumBytes, frameBytesMax: frameBytesMax) else { return .needMoreData }
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

/// One connection's channel handler: it carries out what its `ConnectionStateMachine` decides
/// (dispatch, write, pause or resume reading, close) and feeds the machine what happens (a
/// frame read, an answer made, a write done, writability, the tick, shutdown, the channel
/// gone). Order, limits, budgets and timeouts are the machine's; requests are the
/// dispatcher's; the bytes on the wire are the codecs'.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = FrameEvent
    typealias OutboundOut = ByteBuffer
    typealias Machine = ConnectionStateMachine<FrameEvent, [ByteBuffer]>
    typealias Configuration = Machine.Configuration

    private let dispatcher: RequestDispatcher
    /// The protocol this listener speaks: what a frame means and how it is answered.
    private let service: any ConnectionService
    private var machine: Machine
    private let memory: MemoryBudget
    private let serverInFlight: Locked<Int>
    /// Who the connection acts as.
    private let session: ConnectionSession
    /// Actions not yet carried out, and whether they are being: an answer that comes back
    /// while a request is dispatched queues its actions behind the others instead of
    /// recursing (recursion kept every answer of a chain alive on the stack: gigabytes under
    /// a fetch flood, found with heaptrack).
    private var pending: CircularBuffer<Machine.Action> = []
    private var running = false
    /// Requests of this connection that wait (long polls): cancelled when it closes.
    let waiting = ConnectionWaits()
    /// The peer's address, as the log names it (kept: a closed channel no longer knows it).
    private var remoteAddress: String?
    private var peerAddress: SocketAddress?
    private let clock: any MillraceClock
    /// When the connection opened (a login, and a TLS handshake, must come within the login
    /// deadline).
    private var openedAtMs: Int64 = 0
    private var handshakeDone = false

    init(
        dispatcher: RequestDispatcher, service: any ConnectionService, configuration: Configuration, memory: MemoryBudget, serverInFlight: Locked<Int>,
        clock: any MillraceClock, session: ConnectionSession
    ) {
        self.session = session
        self.clock = clock
        self.dispatcher = dispatcher
        self.service = service
        self.memory = memory
        self.serverInFlight = serverInFlight
        machine = Machine(configuration: configuration, memory: memory, clock: clock) { event in
            // A held frame gets storage of its own: a slice would keep the whole read buffer it
            // came from (and every copy the decoder makes of it) alive while it waits.
            guard case .frame(let frame) = event else { return event }
            return .frame(Self.allocator.buffer(bytes: frame.readableBytesView))
        }
    }

    private static let allocator = ByteBufferAllocator()

    /// Feeds the machine one event and carries out what it decides; the broker's count of
    /// requests in flight follows the machine's.
    private func handle(_ context: ChannelHandlerContext, _ event: (inout Machine) -> [Machine.Action]) {
        let before = machine.inFlight
        let actions = event(&machine)
        let change = machine.inFlight - before
        if change != 0 { serverInFlight.withLock { $0 += change } }
        pending.append(contentsOf: actions)
        guard !running else { return }
        running = true
        defer { running = false }
        while let action = pending.popFirst() { perform(action, context: context) }
    }

    private func perform(_ action: Machine.Action, context: ChannelHandlerContext) {
        switch action {
        case .dispatch(let event, let sequence):
            dispatch(event, sequence: sequence, context: context)
            handle(context) { $0.dispatched() }
        case .write(let parts, let bytes):
            write(parts, bytes: bytes, context: context)
        case .flush:
            context.flush()
        case .pauseReading:
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        case .resumeReading:
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            context.read()
        case .scheduleTurnEnd:
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.handle(context) { $0.turnEnded() }
            }
        case .waitForBudget:
            // Woken when the broker has room again, by whichever connection releases it.
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            memory.whenUnderBudget {
                eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.handle(context) { $0.budgetAvailable() }
                }
            }
        case .close(let reason):
            log(reason, context: context)
            context.close(promise: nil)
        case .closeOutput:
            // The server closes the connection fully a moment later.
            context.close(mode: .output, promise: nil)
        case .cancelWaiting:
            waiting.cancelAll()
        case .answerWaiting:
            waiting.answerAll()
        }
    }

    private func log(_ reason: Machine.CloseReason, context: ChannelHandlerContext) {
        switch reason {
        case .idle(let idleMs):
            dispatcher.logger.info("closing the connection from \(peer(context)): idle for \(idleMs / 1_000) s")
        case .stalledWrite(let bytes, let stalledMs, let underPressure):
            dispatcher.logger.warning(
                "closing the connection from \(peer(context)): \(bytes) response bytes unread for \(stalledMs / 1000) s\(underPressure ? " while the broker's memory limit is reached" : "")")
        case .protocolError:
            // Logged (rate-limited) when the frame was refused.
            break
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Frames the decoder hands on while the connection closes (it decodes what it had
        // buffered) get no answer: there is no one to send it to.
        guard context.channel.isActive else { return }
        let event = unwrapInboundIn(data)
        var bytes = 0
        if case .frame(let frame) = event { bytes = frame.readableBytes + 4 }
        handle(context) { $0.frameRead(event, bytes: bytes) }
    }

    private func dispatch(_ event: FrameEvent, sequence: Int, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        switch event {
        case .unusable(let error):
            // No header to answer with: the protocol's answer without one, then close.
            protocolError(error, closing: true, context: context)
            complete(sequence, service.unusable(error), context: context)
        case .frame(let frame):
            let peer = ConnectionPeer(
                description: peer(context), host: peerAddress?.ipAddress ?? peer(context), isLoopback: isLoopback, session: session,
                eventLoop: context.eventLoop,
                responseBytesAllowed: { loopBound.value.0.machine.fetchAllowance }, waiting: waiting,
                protocolError: { error, closing in
                    let (handler, context) = loopBound.value
                    handler.protocolError(error, closing: closing, context: context)
                })
            service.serve(frame, from: peer) { answer in
                let (handler, context) = loopBound.value
                handler.complete(sequence, answer, context: context)
            }
        }
    }

    /// Hands request `sequence`'s answer to the machine, encoded (unless no answer can go out).
    private func complete(_ sequence: Int, _ answer: ConnectionAnswer, context: ChannelHandlerContext) {
        let parts = machine.isAnswering ? answer.encode(context.channel.allocator) : []
        let bytes = parts.reduce(0) { $0 + $1.readableBytes }
        handle(context) { $0.responseReady(sequence: sequence, parts, bytes: bytes, thenClose: answer.thenClose) }
    }

    /// Writes a response's parts; its bytes stay counted until the socket has taken them.
    private func write(_ parts: [ByteBuffer], bytes: Int, context: ChannelHandlerContext) {
        guard let last = parts.last else { return }
        for part in parts.dropLast() { context.write(wrapOutboundOut(part), promise: nil) }
        let promise = context.eventLoop.makePromise(of: Void.self)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { _ in
            let (handler, context) = loopBound.value
            handler.handle(context) { $0.writeCompleted(bytes: bytes) }
        }
        context.write(wrapOutboundOut(last), promise: promise)
    }

    /// A frame that breaks the protocol: counted, and logged with the peer's address (at
    /// most once a second across the broker: a peer can send these as fast as it likes).
    private func protocolError(_ error: MillraceError, closing: Bool, context: ChannelHandlerContext) {
        dispatcher.metrics.protocolErrors.increment()
        guard let held = dispatcher.logLimiter.allow("protocol") else { return }
        let closing = closing ? "; closing the connection" : ""
        dispatcher.logger.notice("protocol error from \(peer(context)): \(error.code): \(error.message)\(closing)\(held)")
    }

    private func peer(_ context: ChannelHandlerContext) -> String {
        remoteAddress ?? context.remoteAddress.map(Self.describe) ?? "an unknown peer"
    }

    private var isLoopback: Bool { peerAddress?.isThisMachine ?? false }

    /// `192.0.2.7:51234`, `[2001:db8::7]:51234`: a peer as people write it.
    static func describe(_ address: SocketAddress) -> String {
        switch address {
        case .v4: return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        case .v6: return "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
        case .unixDomainSocket: return address.pathname ?? "a local socket"
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        handle(context) { $0.writabilityChanged(isWritable: writable) }
        context.fireChannelWritabilityChanged()
    }

    /// Sent by the server's graceful stop.
    struct Drain {}

    /// Sent by the server's tick: close when idle past the timeout with nothing in flight, or
    /// when responses have waited with no write progress past the stalled-write limit.
    struct IdleCheck {
        var idleMs: Int64
        var underPressure: Bool
        /// A connection that has not logged in by then (`--auth required`) is closed.
        var loginDeadlineMs: Int64
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let check = event as? IdleCheck {
            if session.principal == nil || (session.encrypted && !handshakeDone), clock.nowMilliseconds() - openedAtMs >= check.loginDeadlineMs {
                if let held = dispatcher.logLimiter.allow("login-deadline") {
                    dispatcher.logger.notice("\(peer(context)) did not log in within \(check.loginDeadlineMs / 1_000) s; closing the connection\(held)")
                }
                context.close(promise: nil)
                return
            }
            handle(context) { $0.tick(idleMs: check.idleMs, underPressure: check.underPressure) }
            return
        }
        if event is Drain {
            handle(context) { $0.drain() }
            return
        }
        if case TLSUserEvent.handshakeCompleted = event {
            // Mutual TLS: the client's certificate (verified against --tls-client-ca) names who
            // it is, before any of its requests is read.
            handshakeDone = true
            // The client's last handshake message is acknowledged now, not 40 ms later: a client
            // that leaves Nagle on (librdkafka does) holds its first request until that ACK.
            #if canImport(Glibc)
            let quickAck = ChannelOptions.Types.SocketOption(level: SocketOptionLevel(IPPROTO_TCP), name: SocketOptionName(TCP_QUICKACK))
            context.channel.setOption(quickAck, value: 1).whenComplete { _ in }
            #endif
            if let certificate = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate, let security = dispatcher.security {
                guard let subject = ServerTLS.subject(of: certificate) else {
                    if let held = dispatcher.logLimiter.allow("certificate-subject") {
                        dispatcher.logger.notice(
                            "\(peer(context)) presented a certificate whose subject has attributes or characters no principal name can hold unambiguously; closing the connection\(held)")
                    }
                    context.close(promise: nil)
                    return
                }
                let principal = session.presented(certificate: subject, security: security)
                dispatcher.logger.debug("\(peer(context)) presented a certificate for \(subject): acting as \(principal?.name ?? "-")")
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelActive(context: ChannelHandlerContext) {
        remoteAddress = context.remoteAddress.map(Self.describe)
        peerAddress = context.remoteAddress
        openedAtMs = clock.nowMilliseconds()
        dispatcher.logger.debug("connection from \(peer(context))")
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        dispatcher.logger.debug("connection from \(peer(context)) closed after \(machine.requestsRead) requests")
        handle(context) { $0.channelInactive() }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case NIOSSLError.uncleanShutdown = error {
            // A client that closed its socket without TLS's close_notify (kafka-python does):
            // nothing was lost that it had not already given up on.
            dispatcher.logger.debug("TLS with \(peer(context)) ended without close_notify")
        } else if error is NIOSSLError || error is BoringSSLError {
            if let held = dispatcher.logLimiter.allow("tls-error") {
                dispatcher.logger.notice(
                    "TLS with \(peer(context)) failed: \(error); closing it (a client speaking plain TCP to this TLS port, an untrusted or expired certificate, or no client certificate where one is required)\(held)")
            }
        } else if let held = dispatcher.logLimiter.allow("connection-error") {
            dispatcher.logger.info("connection from \(peer(context)) failed: \(error); closing it\(held)")
        }
        context.close(promise: nil)
    }
}

extension SocketAddress {
    /// Whether a peer at this address is this machine (127.0.0.0/8, ::1 or a local socket).
    var isThisMachine: Bool {
        switch self {
        case .v4(let address): return UInt32(bigEndian: address.address.sin_addr.s_addr) >> 24 == 127
        case .v6:
            // A dual-stack listener sees an IPv4 loopback peer as `::ffff:127.x.x.x`.
            guard let ip = ipAddress else { return false }
            return ip == "::1" || ip.hasPrefix("::ffff:127.")
        case .unixDomainSocket: return true
        }
    }
}
