import Logging
import MillraceFormat
import MillraceSecurity
import MillraceStorage
import MillraceWire
import NIOCore

/// One request frame through the broker's own path — decode, dispatch against a storage,
/// encode the response — with no socket: for the fuzzer (`scripts/fuzz`), which must show that
/// nothing a peer sends reaches a trap anywhere on that path, not only in the decoders.
public final class FrameResponder: Sendable {
    private let dispatcher: RequestDispatcher
    private let maxWaitCapMs: Int32
    private let kafka: KafkaService

    /// `maxWaitCapMs` bounds long polls, so a fuzz input cannot make it wait.
    public init(storage: Storage, maxWaitCapMs: Int32 = 0) {
        // Logins optional: Kafka frames run the SASL exchange and the anonymous role's checks.
        let logger = Logger(label: "millrace.responder")
        let security = try? BrokerSecurity(storage: storage, mode: .optional, clock: SystemClock(), logger: logger, logLimiter: LogLimiter(clock: SystemClock()))
        dispatcher = RequestDispatcher(
            storage: storage, advertisedHost: "127.0.0.1", advertisedPort: 0, logger: logger, security: security)
        self.maxWaitCapMs = maxWaitCapMs
        kafka = KafkaService(dispatcher: dispatcher, fetchWaitMaxMs: maxWaitCapMs)
    }

    /// The Kafka listener's answer to one Kafka request frame (the bytes after its size): the
    /// response frame, empty when none is sent; `closes` when the listener would close the
    /// connection after it. Some requests wait for others (a group member's SyncGroup waits
    /// for its leader's): the caller bounds its wait.
    public func respondKafka(to frame: ByteBuffer, on eventLoop: any EventLoop) -> EventLoopFuture<(response: ByteBuffer, closes: Bool)> {
        let promise = eventLoop.makePromise(of: (response: ByteBuffer, closes: Bool).self)
        let peer = ConnectionPeer(
            description: "the fuzzer", host: "192.0.2.1", isLoopback: false,
            session: dispatcher.security?.newSession(encrypted: false) ?? ConnectionSession(principal: .unrestricted, encrypted: false), eventLoop: eventLoop, responseBytesAllowed: { Limits.fetchBytesMax }, waiting: ConnectionWaits(),
            protocolError: { _, _ in })
        eventLoop.execute {
            self.kafka.serve(frame, from: peer) { answer in
                var joined = ByteBuffer()
                for var part in answer.encode(ByteBufferAllocator()) { joined.writeBuffer(&part) }
                promise.succeed((joined, answer.thenClose))
            }
        }
        return promise.futureResult
    }

    /// Stops the threads the dispatcher keeps (its validation lanes).
    public func shutdown() {
        dispatcher.validationLanes.syncShutdown()
        dispatcher.schemas.syncShutdown()
    }

    private static func encoded(_ response: Response) -> ByteBuffer {
        var buffer = ByteBuffer()
        ResponseCodec.encode(response, into: &buffer)
        return buffer
    }

    /// The encoded response frame for one request frame (the bytes after its size field).
    public func respond(to frame: ByteBuffer, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer> {
        switch RequestCodec.decode(frame: frame) {
        case .request(let header, var request):
            if case .fetch(var fetch) = request {
                fetch.maxWaitMs = min(fetch.maxWaitMs, maxWaitCapMs)
                request = .fetch(fetch)
            }
            // As for a peer on another machine: a fuzz input must not write files where it likes.
            if case .backup = request {
                let error = MillraceError(.invalidRequest, "backups are made by a client on the broker's own machine")
                return eventLoop.makeSucceededFuture(Self.encoded(Response(correlationID: header.correlationID, error: error)))
            }
            // Odd correlation ids run as `anonymous` (the authorization checks and the answers
            // narrowed to what it may see), even ones unrestricted (every request carried out).
            let principal: Principal = header.correlationID & 1 == 1 ? .anonymous : .unrestricted
            return dispatcher.handle(request, on: eventLoop, principal: principal).map { body in
                var response = Response(correlationID: header.correlationID, body: body)
                response.apiVersion = header.apiVersion
                return Self.encoded(response)
            }
                .flatMapErrorThrowing { error in
                    Self.encoded(Response(correlationID: header.correlationID, error: error as? MillraceError ?? MillraceError(.unexpected, "\(error)")))
                }
        case .unknownApi(let header), .unsupportedVersion(let header):
            return eventLoop.makeSucceededFuture(Self.encoded(Response(correlationID: header.correlationID, error: MillraceError(.unknownApi, "unknown"))))
        case .refused(let header, let error), .malformed(let header, let error):
            return eventLoop.makeSucceededFuture(Self.encoded(Response(correlationID: header.correlationID, error: error)))
        }
    }
}
