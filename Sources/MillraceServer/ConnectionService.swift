import MillraceFormat
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
    /// Whether the peer is on this machine.
    let isLoopback: Bool
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
        switch RequestCodec.decode(frame: frame) {
        case .request(let header, let request):
            if case .backup = request, !peer.isLoopback {
                let error = MillraceError(
                    .invalidRequest, "backups are made by a client on the broker's own machine (this connection is from \(peer.description))")
                dispatcher.metrics.requestAnswered(header.apiKey, nanoseconds: 0, error: error.code)
                return answer(Self.answer(Response(correlationID: header.correlationID, error: error)))
            }
            let started = monotonicNanoseconds()
            let metrics = dispatcher.metrics
            dispatcher.handle(request, on: peer.eventLoop, responseBytesAllowed: peer.responseBytesAllowed, waiting: peer.waiting).whenComplete {
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
