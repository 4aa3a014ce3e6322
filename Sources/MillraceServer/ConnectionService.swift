import MillraceFormat
import MillraceSecurity
import MillraceStorage
import MillraceWire
import NIOCore

/// One request's answer: how to encode it (not done when the connection can no longer
/// answer) and whether the connection closes once it is written.
struct ConnectionAnswer: Sendable {
    var encode: @Sendable (ByteBufferAllocator) -> [ByteBuffer]
    var thenClose = false
}

/// What serving a frame may know of, and do to, the connection it came on.
struct ConnectionPeer: Sendable {
    /// `192.0.2.7:51234`, as the log names it.
    let description: String
    /// The peer's address without its port (what failed logins are counted by).
    let host: String
    /// Whether the peer is on this machine.
    let isLoopback: Bool
    /// Who the connection acts as, and its login under way.
    let session: ConnectionSession
    let eventLoop: any EventLoop
    /// Response bytes the connection and the broker have room for (asked on `eventLoop`).
    let responseBytesAllowed: @Sendable () -> Int
    /// The connection's long polls.
    let waiting: ConnectionWaits
    /// Counts and logs (rate-limited) a request that breaks the protocol.
    let protocolError: @Sendable (MillraceError, _ closing: Bool) -> Void
}

/// A wire protocol a listener speaks: what a frame means and how it is answered. Everything
/// else about a connection (order, limits, memory, timeouts, closing) is the one connection
/// state machine's, whichever protocol it carries.
protocol ConnectionService: Sendable {
    /// Who carries out the requests.
    var dispatcher: RequestDispatcher { get }
    /// The fewest bytes a request frame holds (its header): a shorter frame is malformed.
    var frameBytesMin: Int { get }
    /// Serves one request frame (the bytes after its size) and calls `answer` exactly once,
    /// on `peer.eventLoop`.
    func serve(_ frame: ByteBuffer, from peer: ConnectionPeer, answer: @escaping @Sendable (ConnectionAnswer) -> Void)
    /// The answer to a stream that cannot be read on (a frame's size is wrong): there is no
    /// header to answer with. The connection closes after it.
    func unusable(_ error: MillraceError) -> ConnectionAnswer
}

/// The native protocol (docs/PROTOCOL.md).
struct NativeService: ConnectionService {
    let dispatcher: RequestDispatcher

    var frameBytesMin: Int { RequestHeader.bytes }

    private static func answer(_ response: Response, thenClose: Bool = false) -> ConnectionAnswer {
        ConnectionAnswer(encode: { ResponseCodec.encodeParts(response, allocator: $0) }, thenClose: thenClose)
    }

    func unusable(_ error: MillraceError) -> ConnectionAnswer {
        Self.answer(Response(correlationID: -1, error: error), thenClose: true)
    }

    func serve(_ frame: ByteBuffer, from peer: ConnectionPeer, answer: @escaping @Sendable (ConnectionAnswer) -> Void) {
        // Before a login (`--auth required`) only ApiVersions and Authenticate bodies are read:
        // nothing else of what a stranger sends is even decoded.
        if peer.session.principal == nil, let key = frame.getInteger(at: frame.readerIndex, as: Int16.self),
            key != ApiKey.apiVersions.rawValue && key != ApiKey.authenticate.rawValue
        {
            let correlationID = frame.getInteger(at: frame.readerIndex + 4, as: Int32.self) ?? -1
            dispatcher.security?.audit.record(
                principal: Principal(name: "unknown", roles: [], authentication: .anonymous), peer: peer.description,
                operation: ApiKey(rawValue: key)?.metricName ?? "api \(key)", resource: "-", result: ErrorCode.authenticationRequired.description,
                detail: "a request before the login")
            // Answered (and closed) once the record is in `_audit`.
            let refusal = loginFirst(key, correlationID: correlationID)
            return afterRecord(peer) { answer(refusal) }
        }
        switch RequestCodec.decode(frame: frame) {
        case .request(let header, let request):
            let principal: Principal
            switch (request, peer.session.principal) {
            case (.authenticate(let login), _):
                return authenticate(login, header: header, peer: peer, answer: answer)
            case (.whoAmI, let principal?):
                dispatcher.metrics.requestAnswered(header.apiKey, nanoseconds: 0, error: .none)
                let current = dispatcher.security?.state.current(principal) ?? principal
                return answer(Self.answer(Response(correlationID: header.correlationID, body: .whoAmI(Identity(current, encrypted: peer.session.encrypted)))))
            case (.apiVersions, let known):
                principal = known ?? .anonymous
            case (_, let known?):
                principal = known
            case (_, nil):
                return answer(loginFirst(header.apiKey, correlationID: header.correlationID))
            }
            if case .backup = request, !peer.isLoopback, dispatcher.security?.mode ?? .off == .off {
                let error = MillraceError(
                    .invalidRequest,
                    "backups are made by a client on the broker's own machine (this connection is from \(peer.description)), or by an administrator when the broker runs with --auth")
                dispatcher.metrics.requestAnswered(header.apiKey, nanoseconds: 0, error: error.code)
                return answer(Self.answer(Response(correlationID: header.correlationID, error: error)))
            }
            let started = monotonicNanoseconds()
            let metrics = dispatcher.metrics
            dispatcher.handle(
                request, on: peer.eventLoop, responseBytesAllowed: peer.responseBytesAllowed, waiting: peer.waiting, principal: principal, peer: peer.description
            ).whenComplete {
                result in
                switch result {
                case .success(let body):
                    metrics.requestAnswered(header.apiKey, nanoseconds: monotonicNanoseconds() - started, error: .none)
                    var response = Response(correlationID: header.correlationID, body: body)
                    response.apiVersion = header.apiVersion
                    answer(Self.answer(response))
                case .failure(let error):
                    let error = error as? MillraceError ?? MillraceError(.unexpected, "\(error)")
                    metrics.requestAnswered(header.apiKey, nanoseconds: monotonicNanoseconds() - started, error: error.code)
                    answer(Self.answer(Response(correlationID: header.correlationID, error: error)))
                }
            }
        case .unknownApi(let header):
            let error = MillraceError(.unknownApi, "no API with key \(header.apiKey); see ApiVersions")
            peer.protocolError(error, false)
            answer(Self.answer(Response(correlationID: header.correlationID, error: error)))
        case .unsupportedVersion(let header):
            let error = MillraceError(.unsupportedVersion, "API \(header.apiKey) has no version \(header.apiVersion); see ApiVersions")
            peer.protocolError(error, false)
            answer(Self.answer(Response(correlationID: header.correlationID, error: error)))
        case .refused(let header, let error):
            dispatcher.metrics.requestAnswered(header.apiKey, nanoseconds: 0, error: error.code)
            answer(Self.answer(Response(correlationID: header.correlationID, error: error)))
        case .malformed(let header, let error):
            peer.protocolError(error, true)
            answer(Self.answer(Response(correlationID: header.correlationID, error: error), thenClose: true))
        }
    }
}

extension NativeService {
    /// The answer to a request before the login, after which the connection closes.
    private func loginFirst(_ api: Int16, correlationID: Int32) -> ConnectionAnswer {
        let error = MillraceError(
            .authenticationRequired, "this broker needs a login first (SCRAM-SHA-256 or SCRAM-SHA-512): pass --user, or set MILLRACE_USER and MILLRACE_PASSWORD")
        dispatcher.metrics.requestAnswered(api, nanoseconds: 0, error: error.code)
        return Self.answer(Response(correlationID: correlationID, error: error), thenClose: true)
    }

    /// Runs `body` on the connection's event loop once every audit record so far is durable.
    private func afterRecord(_ peer: ConnectionPeer, _ body: @escaping @Sendable () -> Void) {
        guard let audit = dispatcher.security?.audit else { return body() }
        let eventLoop = peer.eventLoop
        audit.whenRecorded { eventLoop.execute(body) }
    }

    /// One login step; a refused login is answered, once its audit record is durable, and
    /// the connection closed.
    private func authenticate(_ login: AuthenticateRequest, header: RequestHeader, peer: ConnectionPeer, answer: @escaping @Sendable (ConnectionAnswer) -> Void) {
        guard let security = dispatcher.security else {
            let error = MillraceError(.authenticationFailed, "this broker keeps no users; connect without a user")
            return answer(Self.answer(Response(correlationID: header.correlationID, error: error), thenClose: true))
        }
        switch security.authenticate(peer.session, mechanism: login.mechanism, message: login.message, host: peer.host, peer: peer.description) {
        case .success(let step):
            dispatcher.metrics.requestAnswered(header.apiKey, nanoseconds: 0, error: .none)
            let identity = step.principal.map { Identity($0, encrypted: peer.session.encrypted) } ?? Identity()
            answer(
                Self.answer(
                    Response(correlationID: header.correlationID, body: .authenticate(AuthenticateResponse(message: step.reply, complete: step.principal != nil, identity: identity)))))
        case .failure(let error):
            dispatcher.metrics.requestAnswered(header.apiKey, nanoseconds: 0, error: error.code)
            let refusal = Self.answer(Response(correlationID: header.correlationID, error: error), thenClose: true)
            afterRecord(peer) { answer(refusal) }
        }
    }
}
