import Foundation
import MillraceFormat
import MillraceSecurity
import MillraceWire
import NIOCore
import NIOPosix
import NIOSSL

/// One TCP connection to a broker, carrying pipelined requests. Responses arrive in request
/// order, so the handler matches each to the oldest request still waiting.
///
/// No request waits forever: each has a deadline (the connection is closed when one passes,
/// since nothing queued behind it could be answered first), a request on a closed connection
/// fails at once, and a peer that does not speak the protocol is named as such.
package final class Connection: Sendable {
    private let channel: any Channel
    let requestTimeout: TimeAmount
    /// Why the connection became unusable, as its handler saw it (a TLS handshake refused
    /// before the first request went out, say): what a request on the closed channel fails with.
    let failure: Locked<MillraceError?>

    init(channel: any Channel, requestTimeout: TimeAmount, failure: Locked<MillraceError?> = Locked(nil)) {
        self.channel = channel
        self.requestTimeout = requestTimeout
        self.failure = failure
    }

    /// Connects and checks with an ApiVersions request that the peer is a Millrace broker.
    package static func connect(
        host: String, port: Int, group: any EventLoopGroup, connectTimeout: TimeAmount = .seconds(5), requestTimeout: TimeAmount = .seconds(30),
        credentials: Credentials? = nil, tls: ClientTLS? = nil
    ) async throws -> Connection {
        let peer = "\(host):\(port)"
        let context = try tls.map { try $0.context() }
        let failure = Locked<MillraceError?>(nil)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                // Reads of up to 1 MiB (NIO's default stops at 64 KiB): a replay's responses
                // are megabytes, and each read is a trip through the pipeline (and TLS).
                .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 1 << 20))
                .connectTimeout(connectTimeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context {
                            // The name checked against the broker's certificate: the host asked
                            // for (an IP address is checked against the certificate's IP names).
                            try channel.pipeline.syncOperations.addHandler(
                                NIOSSLClientHandler(context: context, serverHostname: tls?.serverName ?? (Self.isAddress(host) ? nil : host)))
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ResponseFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(ClientHandler(peer: peer, failure: failure))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            let text = "\(error)"
            // A name that does not resolve is a typo or a DNS problem, not a stopped broker.
            if text.contains("UnknownHost") || text.contains("unknownHost") {
                throw MillraceError(.networkError, "cannot resolve the host name \(host); check the broker address (HOST:PORT) and the machine's DNS")
            }
            let reason = text.contains("refused") ? "connection refused" : text.contains("timed out") || text.contains("Timeout") ? "timed out" : text
            throw MillraceError(
                .networkError,
                "no broker at \(peer) (\(reason)); is it running there? (on a server: `systemctl status millrace`; to start one here: `millrace serve`)")
        }
        let connection = Connection(channel: channel, requestTimeout: requestTimeout, failure: failure)
        do {
            // The TLS handshake, when there is one, completes inside this first request: it is
            // part of connecting, so a longer connect timeout lengthens this wait too.
            let handshakeTimeout = min(requestTimeout, max(.seconds(10), connectTimeout))
            guard case .apiVersions = try await connection.request(.apiVersions, timeout: handshakeTimeout).get() else {
                throw MillraceError(.notABroker, "\(peer) answered ApiVersions with another response")
            }
        } catch let error as MillraceError {
            await connection.close()
            switch error.code {
            case .notABroker: throw error
            case .requestTimedOut:
                throw MillraceError(.notABroker, "\(peer) accepted a connection but did not answer ApiVersions: is it a Millrace broker?")
            case .networkError where tls == nil && !error.message.contains("TLS"):
                throw MillraceError(
                    error.code, "\(peer) did not complete the protocol handshake: \(error.message) (if the broker takes TLS on this port, connect with --tls or MILLRACE_TLS=1)")
            default:
                throw MillraceError(error.code, "\(peer) did not complete the protocol handshake: \(error.message)")
            }
        }
        if let credentials {
            do {
                try await connection.logIn(credentials, peer: peer)
            } catch {
                await connection.close()
                throw error
            }
        }
        return connection
    }

    static func isAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// SCRAM: client-first, server-first, client-final, server-final; the broker's last
    /// message proves it holds the user's credential (not only that it let us in).
    private func logIn(_ credentials: Credentials, peer: String) async throws {
        var generator = SystemRandomNumberGenerator()
        let nonce = Data((0..<18).map { _ in UInt8.random(in: 0...255, using: &generator) }).base64EncodedString()
        var client = SCRAMClient(mechanism: credentials.mechanism, user: credentials.user, password: credentials.password, nonce: nonce)
        let mechanism = credentials.mechanism.rawValue
        func step(_ message: String) async throws -> AuthenticateResponse {
            do {
                guard case .authenticate(let answer) = try await send(.authenticate(AuthenticateRequest(mechanism: mechanism, message: Array(message.utf8)))) else {
                    throw MillraceError(.notABroker, "\(peer) answered Authenticate with another response")
                }
                return answer
            } catch let error as MillraceError where error.code == .unknownApi {
                throw MillraceError(.authenticationFailed, "\(peer) is a Millrace broker without logins (older than 0.26): connect without a user")
            }
        }
        do {
            let first = try await step(client.clientFirst)
            let final = try client.receiveServerFirst(String(decoding: first.message, as: UTF8.self))
            let last = try await step(final)
            guard last.complete else { throw MillraceError(.authenticationFailed, "\(peer) did not complete the login after the client's proof") }
            try client.verifyServerFinal(String(decoding: last.message, as: UTF8.self))
        } catch let error as SCRAMError {
            throw MillraceError(.authenticationFailed, "the login to \(peer) as \(credentials.user) failed: \(error.message)")
        }
    }

    public var isActive: Bool { channel.isActive }
    public var eventLoop: any EventLoop { channel.eventLoop }

    /// Sends a request. The future fails with the response's error, with `networkError` if
    /// the connection is or becomes closed, or with `requestTimedOut` after `timeout` (the
    /// connection's request timeout when nil; a fetch adds its own wait to it).
    package func request(_ request: Request, timeout: TimeAmount? = nil) -> EventLoopFuture<ResponseBody> {
        let promise = channel.eventLoop.makePromise(of: ResponseBody.self)
        var deadline = timeout ?? requestTimeout
        if case .fetch(let fetch) = request { deadline = deadline + .milliseconds(Int64(max(fetch.maxWaitMs, 0))) }
        // The handler takes the response promise and completes the write promise itself; when
        // the channel is closed the handler is gone and the write fails here instead.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { [failure] _ in
            promise.fail(failure.withLock { $0 } ?? MillraceError(.networkError, "the connection to the broker is closed; retry"))
        }
        channel.writeAndFlush(OutgoingRequest(request: request, timeout: deadline, promise: promise), promise: written)
        return promise.futureResult
    }

    package func send(_ request: Request) async throws -> ResponseBody {
        try await self.request(request).get()
    }

    public func close() async {
        try? await channel.close().get()
    }
}

struct OutgoingRequest {
    var request: Request
    var timeout: TimeAmount
    var promise: EventLoopPromise<ResponseBody>
}

struct ResponseFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    /// The largest response room is made for ahead of its bytes: a fetch's 4 MiB and then some.
    static let reserveBytesMax = 8 << 20

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        // A TLS record (an alert or a handshake: 0x15 or 0x16, then version 3.x) where a
        // frame size should be: the broker takes TLS on this port.
        if let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self), first == 0x15 || first == 0x16,
            buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) == 0x03
        {
            throw MillraceError(.networkError, "the broker answers with TLS on this port: connect with --tls (and --ca FILE, or MILLRACE_TLS=1 and MILLRACE_TLS_CA)")
        }
        guard let frame = try FrameDecoder.nextFrame(
            &buffer, minimumBytes: ResponseCodec.minimumFrameBytes, frameBytesMax: Limits.responseFrameBytesMax)
        else {
            // A large response (a fetch's megabytes) is gathered into room made once, rather
            // than into a buffer that doubles, copying what it holds, a dozen times on the way.
            if let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self), Int(size) <= Self.reserveBytesMax {
                buffer.reserveCapacity(minimumWritableBytes: 4 + Int(size) - buffer.readableBytes)
            }
            return .needMoreData
        }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }
}

/// Matches responses to requests in order, and enforces every request's deadline with one
/// timer set for the earliest. Time comes from the channel's event loop, so tests drive it
/// with `EmbeddedEventLoop.advanceTime`.
final class ClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = OutgoingRequest
    typealias OutboundOut = ByteBuffer

    private struct Waiting {
        var correlationID: Int32
        var api: ApiKey
        var apiVersion: Int16
        var deadline: NIODeadline
        var promise: EventLoopPromise<ResponseBody>
    }

    private let peer: String
    private var waiting: CircularBuffer<Waiting> = []
    private var nextCorrelationID: Int32 = 1
    private var timer: (deadline: NIODeadline, task: Scheduled<Void>)?
    /// Set once the connection is unusable; later writes fail at once with it.
    private var failure: MillraceError?

    /// Shared with the `Connection`, which reports it for requests the closed channel refuses.
    private let sharedFailure: Locked<MillraceError?>

    init(peer: String, failure: Locked<MillraceError?> = Locked(nil)) {
        self.peer = peer
        sharedFailure = failure
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outgoing = unwrapOutboundIn(data)
        if let failure {
            promise?.succeed()
            outgoing.promise.fail(failure)
            return
        }
        let correlationID = nextCorrelationID
        nextCorrelationID = nextCorrelationID == Int32.max ? 1 : nextCorrelationID + 1
        var buffer = context.channel.allocator.buffer(capacity: 64)
        RequestCodec.encode(outgoing.request, correlationID: correlationID, into: &buffer)
        let deadline = context.eventLoop.now + outgoing.timeout
        waiting.append(
            Waiting(correlationID: correlationID, api: outgoing.request.apiKey, apiVersion: outgoing.request.apiVersion, deadline: deadline, promise: outgoing.promise))
        promise?.succeed()
        context.write(wrapOutboundOut(buffer), promise: nil)
        armTimer(context: context, for: deadline)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let head = waiting.popFirst() else {
            return fail(context: context, MillraceError(.notABroker, "\(peer) sent a response nobody asked for: is it a Millrace broker?"))
        }
        let response: Response
        do {
            response = try ResponseCodec.decode(frame: frame, apiKey: head.api, apiVersion: head.apiVersion)
        } catch {
            let reason = (error as? MillraceError)?.message ?? "\(error)"
            let failure = MillraceError(.notABroker, "\(peer) sent an answer that is not a Millrace \(head.api) response (\(reason))")
            head.promise.fail(failure)
            return fail(context: context, failure)
        }
        guard response.correlationID == head.correlationID || response.correlationID == -1 else {
            let failure = MillraceError(.notABroker, "\(peer) answered request \(head.correlationID) with response \(response.correlationID)")
            head.promise.fail(failure)
            return fail(context: context, failure)
        }
        if let body = response.body {
            head.promise.succeed(body)
        } else {
            head.promise.fail(MillraceError(response.errorCode, response.message))
        }
    }

    /// One timer, set for the earliest deadline; when it fires every waiting request fails,
    /// since answers come in order and the late one blocks all behind it.
    private func armTimer(context: ChannelHandlerContext, for deadline: NIODeadline) {
        if let timer, timer.deadline <= deadline { return }
        timer?.task.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let task = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.timerFired(context: context)
        }
        timer = (deadline, task)
    }

    private func timerFired(context: ChannelHandlerContext) {
        timer = nil
        let now = context.eventLoop.now
        if let late = waiting.first(where: { $0.deadline <= now }) {
            return fail(
                context: context,
                MillraceError(.requestTimedOut, "\(peer) did not answer a \(late.api) request in time; the connection was closed and will be reopened"))
        }
        if let next = waiting.map(\.deadline).min() { armTimer(context: context, for: next) }
    }

    /// The connection is unusable: fail everything waiting with `error`, and close.
    private func fail(context: ChannelHandlerContext, _ error: MillraceError) {
        if failure == nil {
            failure = error
            sharedFailure.withLock { $0 = error }
        }
        timer?.task.cancel()
        timer = nil
        while let head = waiting.popFirst() { head.promise.fail(failure ?? error) }
        context.close(promise: nil)
    }

    /// What a TLS failure means for the person who reads it, with BoringSSL's reason.
    static func explain(_ error: any Error) -> String {
        let text = "\(error)"
        let reason = text.range(of: "OPENSSL_internal:").map { String(text[$0.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }) } ?? text
        switch reason {
        case "CERTIFICATE_VERIFY_FAILED":
            return "the broker's certificate is not signed by a CA this client trusts, has expired, or does not name this host (give --ca with the CA that signed it) [\(reason)]"
        case "WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG":
            return "the broker does not speak TLS on this port (connect without --tls, or to its TLS port) [\(reason)]"
        case "TLSV1_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE", "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_DECRYPT_ERROR",
            "SSLV3_ALERT_CERTIFICATE_EXPIRED":
            return "the broker refused this client's certificate (it asks for one signed by its client CA: give --cert and --tls-key) [\(reason)]"
        default:
            return "\(reason) (check the port takes TLS, --ca, and the certificates' dates)"
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(context: context, MillraceError(.networkError, "the connection to \(peer) closed before the broker answered; retry"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return fail(context: context, MillraceError(.networkError, "TLS with \(peer) failed: \(Self.explain(error))"))
        }
        if let error = error as? MillraceError, error.code == .networkError {
            return fail(context: context, MillraceError(.networkError, "\(peer): \(error.message)"))
        }
        if let error = error as? MillraceError, error.code == .frameTooLarge || error.code == .malformedRequest {
            return fail(context: context, MillraceError(.notABroker, "\(peer) sent bytes that are not Millrace responses (\(error.message)): is it a Millrace broker?"))
        }
        fail(context: context, MillraceError(.networkError, "the connection to \(peer) failed: \(error)"))
    }
}

/// Who a client logs in as (SCRAM; docs/SECURITY.md).
public struct Credentials: Sendable {
    public var user: String
    public var password: String
    public var mechanism: SCRAMMechanism

    public init(user: String, password: String, mechanism: SCRAMMechanism = .sha512) {
        self.user = user
        self.password = password
        self.mechanism = mechanism
    }
}

/// TLS to the broker (`--tls`, `--ca`, `--cert`, `--key`; docs/SECURITY.md).
public struct ClientTLS: Sendable, Equatable {
    /// PEM: the CAs to trust for the broker's certificate; nil: the system's.
    public var caFile: String?
    /// PEM: this client's certificate and key, for a broker that asks for one (mutual TLS).
    public var certificateFile: String?
    public var keyFile: String?
    /// The name to check the broker's certificate against; nil: the host connected to.
    public var serverName: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverName = serverName
    }

    func context() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        do {
            if let caFile { configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile)) }
        } catch {
            throw MillraceError(.invalidConfig, "cannot read the CA file \(caFile ?? "") (PEM): \(error)")
        }
        switch (certificateFile, keyFile) {
        case (let certificate?, let key?):
            do {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw MillraceError(.invalidConfig, "cannot read the client certificate \(certificate) or key \(key) (PEM): \(error)")
            }
        case (nil, nil): break
        default: throw MillraceError(.invalidConfig, "a client certificate needs both --cert and --tls-key")
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw MillraceError(.invalidConfig, "the TLS settings do not make a usable context: \(error)")
        }
    }
}
