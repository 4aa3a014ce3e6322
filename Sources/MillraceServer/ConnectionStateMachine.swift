import MillraceFormat
import NIOCore

/// One connection's bookkeeping, with no channel: the order answers go out in, the requests
/// and bytes it may hold, when it reads, when it is closed and why. Events go in (a frame
/// read, a response ready, a write done, writability, a tick, shutdown, the channel gone);
/// actions come out, and the channel handler only carries them out (`ConnectionHandler`).
///
/// It knows nothing of framing: `Frame` is whatever the listener's decoder hands on and
/// `Response` whatever its encoder made, so another protocol's listener (Kafka's) brings its
/// own decoder and dispatcher and uses this unchanged. Time comes from the injected clock;
/// bytes are counted against the shared `MemoryBudget`.
///
/// Every `.dispatch` action is answered by the handler with `dispatched()` once it has handed
/// the request on, and later by `responseReady` with the answer: held frames are dispatched
/// one at a time, so each decision sees the answers that came back synchronously before it.
struct ConnectionStateMachine<Frame, Response> {
    struct Configuration {
        var inFlightRequestsMax: Int
        /// A connection with responses waiting and no write progress for this long is closed
        /// (a client that never reads must not hold its budget for ever)...
        var stalledWriteMs: Int64
        /// ...or for this long while the broker-wide memory limit is reached, so that clients
        /// that read are not kept waiting behind those that do not.
        var stalledWriteUnderPressureMs: Int64
        /// Requests one connection may start in one turn of its event loop; the rest wait for
        /// the next turn, so one busy client (one read can bring thousands of frames) does not
        /// keep the loop from the others on it.
        var dispatchesPerTurn = 64
    }

    enum State: Equatable {
        /// Reading, dispatching and answering.
        case open
        /// A frame broke the protocol: the requests before it and its own are answered, then
        /// the connection closes. Nothing more is read or dispatched.
        case closingAfter(sequence: Int)
        /// The broker is stopping: nothing more is read; everything read is answered.
        case draining
        /// Drained: every request read was answered and the output was ended.
        case drained
        /// The machine asked for the channel to be closed; waiting for it to go.
        case closing
        /// The channel is gone. Answers still coming are dropped.
        case closed
    }

    /// Why the machine closes a connection (the handler logs it).
    enum CloseReason: Equatable {
        /// Nothing in flight and no traffic for `idleMs`.
        case idle(idleMs: Int64)
        /// `bytes` of responses unread with no write progress for `stalledMs`.
        case stalledWrite(bytes: Int, stalledMs: Int64, underPressure: Bool)
        /// A frame broke the protocol; its answer and those before it were written.
        case protocolError
    }

    enum Action {
        /// Carry the request out; answer with `dispatched()` at once and `responseReady` later.
        case dispatch(Frame, sequence: Int)
        /// Write this response; report `writeCompleted(bytes:)` when the socket took it (or
        /// the write failed).
        case write(Response, bytes: Int)
        case flush
        case pauseReading
        case resumeReading
        /// Call `turnEnded()` on the next turn of the event loop.
        case scheduleTurnEnd
        /// Call `budgetAvailable()` once the broker-wide budget has room again.
        case waitForBudget
        /// Close the channel, logging why.
        case close(CloseReason)
        /// Everything read is answered while draining: end the output after the responses.
        case closeOutput
        /// The channel is gone: cancel the requests still waiting (parked long polls).
        case cancelWaiting
        /// Draining: have the requests still waiting (parked long polls) answer now.
        case answerWaiting
    }

    private(set) var state: State = .open
    private let configuration: Configuration
    private let memory: MemoryBudget
    private let clock: any MillraceClock
    /// Gives a frame that has to wait storage of its own (a slice would keep the whole read
    /// buffer it came from alive while it waits).
    private let keep: (Frame) -> Frame

    private var nextSequence = 0
    private var nextToWrite = 0
    /// Answers that came back before those ahead of them, by sequence.
    private var ready: [Int: (response: Response, bytes: Int)] = [:]
    /// Frame bytes of each request dispatched and not yet answered.
    private var requestBytesBySequence: [Int: Int] = [:]
    /// Frames read and not yet dispatched, with their bytes.
    private var held: CircularBuffer<(frame: Frame, bytes: Int)> = []
    /// A `.dispatch` was given and `dispatched()` has not come back yet.
    private var dispatchOutstanding = false
    private var turnDispatches = 0
    private var turnScheduled = false
    private(set) var requestBytes = 0
    /// Bytes of responses made and not yet written to the socket.
    private(set) var responseBytes = 0
    private(set) var readingPaused = false
    private var waitingForBudget = false
    private var writable = true
    /// When a request last came in or a response went out (the idle check measures from it).
    private var lastActivityMs: Int64
    /// When a write last completed, or responses started waiting (the stalled-write check).
    private var lastWriteProgressMs: Int64

    init(configuration: Configuration, memory: MemoryBudget, clock: any MillraceClock, keep: @escaping (Frame) -> Frame = { $0 }) {
        self.configuration = configuration
        self.memory = memory
        self.clock = clock
        self.keep = keep
        lastActivityMs = clock.nowMilliseconds()
        lastWriteProgressMs = lastActivityMs
    }

    /// Requests read and dispatched, not yet answered on the socket.
    var inFlight: Int { nextSequence - nextToWrite }

    /// Whether answers made now can still go out (else the handler need not encode them).
    var isAnswering: Bool {
        switch state {
        case .open, .draining, .closingAfter: return true
        case .drained, .closing, .closed: return false
        }
    }

    /// Requests read since the connection opened.
    var requestsRead: Int { nextSequence }

    /// Frames read and waiting to be dispatched.
    var heldCount: Int { held.count }

    /// Response bytes a fetch may still make: what is left of this connection's limit and of
    /// the broker's. A connection that holds nothing is never starved by others that do.
    var fetchAllowance: Int {
        let allowance = min(max(0, memory.limits.connectionResponseBytesMax - responseBytes), memory.responseBytesAvailable)
        return responseBytes == 0 ? max(allowance, memory.responseFloorAvailable) : allowance
    }

    // MARK: Events

    /// The decoder handed on a frame of `bytes` bytes (0 for a report that the stream is
    /// unusable, which still gets an answer).
    mutating func frameRead(_ frame: Frame, bytes: Int) -> [Action] {
        switch state {
        case .open, .draining:
            lastActivityMs = clock.nowMilliseconds()
            requestBytes += bytes
            memory.add(requestBytes: bytes)
            // Frames read while the connection is over a limit wait here, undecoded, until it
            // is under again: working out answers that cannot be sent would only spend the
            // broker's time on a client that is not reading.
            if held.isEmpty && mayDispatch && turnDispatches < configuration.dispatchesPerTurn {
                return startDispatch(frame, bytes: bytes)
            }
            held.append((keep(frame), bytes))
            return next()
        case .closingAfter, .drained, .closing, .closed:
            // No answer could be sent: the connection is closing, or its output has ended.
            return []
        }
    }

    /// The handler has handed on the request of the last `.dispatch` (its answer may already
    /// have come back through `responseReady`).
    mutating func dispatched() -> [Action] {
        dispatchOutstanding = false
        switch state {
        case .open, .draining, .closingAfter: return next()
        case .drained, .closing, .closed: return []
        }
    }

    /// The answer to request `sequence` is made, `bytes` long. `thenClose`: the request broke
    /// the protocol; the connection closes once this answer is written.
    mutating func responseReady(sequence: Int, _ response: Response, bytes: Int, thenClose: Bool = false) -> [Action] {
        if let requestBytes = requestBytesBySequence.removeValue(forKey: sequence) {
            self.requestBytes -= requestBytes
            memory.release(requestBytes: requestBytes)
        }
        switch state {
        case .open, .draining, .closingAfter:
            break
        case .drained, .closing, .closed:
            return []
        }
        if thenClose {
            if case .closingAfter(let earlier) = state, earlier < sequence {
                // Already closing after an earlier request: this one's answer is never sent.
                return next()
            }
            state = .closingAfter(sequence: sequence)
        }
        let now = clock.nowMilliseconds()
        if responseBytes == 0 { lastWriteProgressMs = now }
        responseBytes += bytes
        memory.add(responseBytes: bytes)
        ready[sequence] = (response, bytes)
        var actions: [Action] = []
        while let next = ready.removeValue(forKey: nextToWrite) {
            actions.append(.write(next.response, bytes: next.bytes))
            if case .closingAfter(let last) = state, last == nextToWrite {
                nextToWrite += 1
                state = .closing
                actions.append(.flush)
                actions.append(.close(.protocolError))
                return actions
            }
            nextToWrite += 1
        }
        if !actions.isEmpty {
            lastActivityMs = now
            actions.append(.flush)
        }
        return actions + next()
    }

    /// The socket took a response of `bytes` bytes (or its write failed on a closed channel).
    mutating func writeCompleted(bytes: Int) -> [Action] {
        responseBytes -= bytes
        memory.release(responseBytes: bytes)
        lastWriteProgressMs = clock.nowMilliseconds()
        switch state {
        case .open, .draining, .closingAfter: return next()
        case .drained, .closing, .closed: return []
        }
    }

    mutating func writabilityChanged(isWritable: Bool) -> [Action] {
        writable = isWritable
        switch state {
        case .open, .draining, .closingAfter: return next()
        case .drained, .closing, .closed: return []
        }
    }

    /// The event loop turned: this connection may start `dispatchesPerTurn` requests again.
    mutating func turnEnded() -> [Action] {
        turnScheduled = false
        turnDispatches = 0
        switch state {
        case .open, .draining, .closingAfter: return next()
        case .drained, .closing, .closed: return []
        }
    }

    /// The broker-wide budget has room again (after `.waitForBudget`).
    mutating func budgetAvailable() -> [Action] {
        waitingForBudget = false
        switch state {
        case .open, .draining, .closingAfter: return next()
        case .drained, .closing, .closed: return []
        }
    }

    /// The server's tick: closes a connection idle past `idleMs` with nothing in flight, or
    /// one whose responses have waited with no write progress past the stalled-write limit
    /// (the shorter one while the broker-wide memory limit is reached).
    mutating func tick(idleMs: Int64, underPressure: Bool) -> [Action] {
        switch state {
        case .open, .draining, .closingAfter, .drained:
            let now = clock.nowMilliseconds()
            if inFlight == 0 && now - lastActivityMs > idleMs {
                state = .closing
                return [.close(.idle(idleMs: now - lastActivityMs))]
            }
            let stalledLimit = underPressure ? configuration.stalledWriteUnderPressureMs : configuration.stalledWriteMs
            if responseBytes > 0 && now - lastWriteProgressMs > stalledLimit {
                state = .closing
                return [.close(.stalledWrite(bytes: responseBytes, stalledMs: now - lastWriteProgressMs, underPressure: underPressure))]
            }
            return []
        case .closing, .closed:
            return []
        }
    }

    /// The broker is stopping: answer every request read (held ones too), read nothing more,
    /// then end the output.
    mutating func drain() -> [Action] {
        switch state {
        case .open:
            state = .draining
            return [.answerWaiting] + next()
        case .draining, .closingAfter, .drained, .closing, .closed:
            return []
        }
    }

    /// The channel is gone. Every byte it held is given back at once, the answers still
    /// coming are dropped, and requests waiting on it are cancelled.
    mutating func channelInactive() -> [Action] {
        switch state {
        case .open, .draining, .closingAfter, .drained, .closing:
            state = .closed
        case .closed:
            return []
        }
        let heldBytes = held.reduce(0) { $0 + $1.bytes }
        let answering = requestBytesBySequence.values.reduce(0, +)
        requestBytes -= heldBytes + answering
        memory.release(requestBytes: heldBytes + answering)
        held.removeAll()
        requestBytesBySequence = [:]
        nextToWrite = nextSequence
        // Responses handed to the channel are released by their failed writes; these never were.
        let unwritten = ready.values.reduce(0) { $0 + $1.bytes }
        responseBytes -= unwritten
        memory.release(responseBytes: unwritten)
        ready = [:]
        return [.cancelWaiting]
    }

    // MARK: Decisions

    /// Whether the next frame may be dispatched now. Under the broker-wide response limit
    /// only connections whose answers wait unwritten are held back: a client that reads its
    /// answers is served. While draining everything read is answered, whatever the limits.
    private var mayDispatch: Bool {
        guard !dispatchOutstanding else { return false }
        switch state {
        case .open:
            return inFlight < configuration.inFlightRequestsMax && responseBytes < memory.limits.connectionResponseBytesMax
                && !memory.shouldHold(requestBytes: 0, responseBytes: responseBytes)
        case .draining:
            return true
        case .closingAfter, .drained, .closing, .closed:
            return false
        }
    }

    private mutating func startDispatch(_ frame: Frame, bytes: Int) -> [Action] {
        let sequence = nextSequence
        nextSequence += 1
        if bytes > 0 { requestBytesBySequence[sequence] = bytes }
        dispatchOutstanding = true
        turnDispatches += 1
        var actions: [Action] = []
        if !turnScheduled {
            turnScheduled = true
            actions.append(.scheduleTurnEnd)
        }
        actions.append(.dispatch(frame, sequence: sequence))
        return actions
    }

    /// After every event: the next held frame if one may go now; else whether to read, and
    /// whether a drain is done.
    private mutating func next() -> [Action] {
        if dispatchOutstanding { return [] }
        if !held.isEmpty && mayDispatch {
            guard turnDispatches < configuration.dispatchesPerTurn else {
                if turnScheduled { return reading() }
                turnScheduled = true
                return [.scheduleTurnEnd] + reading()
            }
            let (frame, bytes) = held.removeFirst()
            return startDispatch(frame, bytes: bytes)
        }
        if case .draining = state, inFlight == 0, held.isEmpty {
            state = .drained
            return reading() + [.closeOutput]
        }
        return reading()
    }

    /// Reads only while few requests are unanswered, their bytes and the responses waiting
    /// are within this connection's and the broker's limits, and the peer takes its
    /// responses. Past the broker-wide limits only connections holding bytes stop: one that
    /// holds nothing is not made to wait for others that will not read.
    private mutating func reading() -> [Action] {
        let overBroker = memory.shouldHold(requestBytes: requestBytes, responseBytes: responseBytes)
        let notOpen: Bool
        switch state {
        case .open: notOpen = false
        case .draining, .closingAfter, .drained, .closing, .closed: notOpen = true
        }
        let shouldPause =
            notOpen || !held.isEmpty || inFlight >= configuration.inFlightRequestsMax || !writable
            || requestBytes >= memory.limits.connectionRequestBytesMax || responseBytes >= memory.limits.connectionResponseBytesMax || overBroker
        var actions: [Action] = []
        if shouldPause && overBroker && !waitingForBudget {
            waitingForBudget = true
            actions.append(.waitForBudget)
        }
        if shouldPause != readingPaused {
            readingPaused = shouldPause
            actions.append(shouldPause ? .pauseReading : .resumeReading)
        }
        return actions
    }
}

extension ConnectionStateMachine.Action: Equatable where Frame: Equatable, Response: Equatable {}
