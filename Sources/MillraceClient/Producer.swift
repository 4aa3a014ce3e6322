import MillraceFormat
import MillraceWire
import NIOCore

/// Batches records per partition (up to `batchBytesMax`, or `lingerMs` after the first),
/// sends each batch as a Produce request, and completes every record with its partition and
/// offset once the broker has it on disk.
///
/// Retriable failures — a lost connection, a broker restarting, a busy or full writer — are
/// retried until `deliveryTimeout` has passed since the batch was made. Retries go out in the
/// order the batches were first sent, and while any wait, newer batches wait behind them, so a
/// broker restart does not reorder a partition. (A batch refused on its own, say as
/// `writer_busy`, while later batches of its partition were already in flight can land after
/// them; the idempotent producer will close that gap.)
public final class Producer: Sendable {
    /// Batching, compression, delivery timeout, back-pressure and idempotence.
    public struct Configuration: Sendable {
        public var lingerMs: Int64 = 5
        public var batchBytesMax: Int = 256 << 10
        /// nil: the topic's compression (`millrace topic create --compression`).
        public var compression: CompressionCodec?
        /// zstd's level. nil: 15 for batches whose records take at most 1 KiB before
        /// compression (one or two small events: tens of microseconds, and optimal parsing
        /// gets a one-record confirmation under 100 bytes with a dictionary), 3 for larger ones
        /// (about 1.5 µs per small record). Higher levels store less at more producer CPU:
        /// see docs/OPERATIONS.md, "Small events stored small".
        public var compressionLevel: Int32?
        /// How long a record may take, retries included, before it fails.
        public var deliveryTimeout: TimeAmount = .minutes(2)
        /// Records sent but not yet answered; `send` waits while this many are outstanding.
        public var outstandingRecordsMax: Int = 100_000
        /// Bytes of records sent but not yet answered (keys and values); `send` waits while
        /// this many are outstanding. This is what bounds an acknowledgement's wait when the
        /// broker is the bottleneck: at ~300 MB/s through it, 8 MiB is ~30 ms of queue.
        public var outstandingBytesMax: Int = 4 << 20
        /// Number each partition's batches (a producer id from the broker, and sequence
        /// numbers), so a batch sent again after a lost answer is stored once.
        public var idempotent = true
        /// The clock linger timers, retry back-off, the delivery timeout and
        /// `flush(within:)` run on; tests pass a clock they drive.
        public var clock: any Clock<Duration> = ContinuousClock()

        public init() {}
    }

    /// Called once per record: its partition and offset, or why it was not appended.
    public typealias Completion = @Sendable (Result<(partition: Int32, offset: Int64), any Error>) -> Void

    private struct Pending {
        var records: [Record] = []
        /// Each record's event time (ms), or `Int64.min` for "when the batch is sent".
        var timestamps: [Int64] = []
        var completions: [Completion] = []
        var bytes = 0
        var timer: ClockTimer?
        /// When its first record came (on `ClientClock.now`): its delivery timeout runs from here.
        var createdAt: Duration = .zero
        /// Its shipment number once taken for sending.
        var number: UInt64 = 0
    }

    /// A batch on its way: its request, and what to complete.
    private struct Shipment {
        /// Built by `encode`.
        var request: Request?
        var pending: Pending
        var lastError: (any Error)?
        var key: TopicPartitionKey
        /// The identity and first sequence it was numbered with (nil: not idempotent).
        var stamp: (identity: Identity, sequence: Int32)?
    }

    struct Identity: Equatable {
        var producerId: Int64
        var epoch: Int16
    }

    private struct Topic {
        var partitionCount: Int32
        var compression: CompressionCodec
        /// The topic's trained zstd dictionary, compressed with when the codec is zstd.
        var dictionary: UInt32?
    }

    private struct State {
        var partitions: [TopicPartitionKey: Pending] = [:]
        var topics: [String: Topic] = [:]
        var stickyPartition: [String: Int32] = [:]
        var inFlight = 0
        var outstanding = 0
        var outstandingBytes = 0
        var drainWaiters: [EventLoopPromise<Void>] = []
        var roomWaiters: [(id: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
        /// Shipments waiting to be sent again, in the order they were first sent; new ones
        /// queue behind while any wait.
        var retries: [Shipment] = []
        var retryScheduled = false
        var backoff = Backoff(min: .milliseconds(100), max: .seconds(5))
        var reportedOutage = false
        /// Each batch taken for sending gets the next number; they are sent in that order.
        var nextShipment: UInt64 = 0
        /// The broker's producer id for this producer, once asked for (idempotent only).
        var identity: Identity?
        var identityRequest: EventLoopFuture<Identity>?
        /// The next sequence number per partition, under `identity`.
        var sequences: [TopicPartitionKey: Int32] = [:]
        /// Shipments sent and not yet answered, per partition: a batch refused as out of
        /// order while an older one of its partition is unanswered is only early (the older
        /// one is being sent again), and is sent again behind it.
        var unanswered: [TopicPartitionKey: Set<UInt64>] = [:]
        /// Full batches waiting for room under `unansweredPerPartitionMax`, in order.
        var held: [TopicPartitionKey: [Pending]] = [:]
    }

    /// Batches are taken from `state` by whichever thread fills them or whose linger timer
    /// fires, then encoded outside the lock; they go out in the order they were taken, so a
    /// partition's batches are never overtaken by a later one.
    private struct SendOrder {
        var next: UInt64 = 0
        var ready: [UInt64: Shipment?] = [:]
    }

    private struct TopicPartitionKey: Hashable {
        var topic: String
        var partition: Int32
    }

    let client: MillraceClient
    private let configuration: Configuration
    /// Where `send(_:)` reports each delivery, when a stream was asked for.
    let reportSink = Locked<AsyncStream<DeliveryReport>.Continuation?>(nil)
    let nextID = Locked<UInt64>(0)
    let closed = Locked(false)
    private let eventLoop: any EventLoop
    private let clock: ClientClock
    private let state = Locked(State())
    /// Taken before `state` when both are held, never after.
    private let sendOrder = Locked(SendOrder())

    public init(client: MillraceClient, configuration: Configuration = Configuration()) {
        self.client = client
        self.configuration = configuration
        eventLoop = client.group.next()
        clock = ClientClock(configuration.clock)
    }

    /// The callback form of `send(_:)`, for tools that send millions: queues the record
    /// (suspending only for room, as every `send` does) and returns; `completion` runs once
    /// the broker has answered for it. Outcomes other than appended arrive as errors here —
    /// `RecordDuplicate`, `RecordQuarantined`, an `invalid_record` `MillraceError` — where a
    /// `DeliveryHandle` gives them as a `Delivery`.
    public func send(
        topic: String, key: [UInt8]? = nil, value: [UInt8], headers: [RecordHeader] = [], completion: @escaping Completion
    ) async throws {
        let partitions = try await topicInfo(topic).partitionCount
        try await ensureIdentity()
        try await waitForRoom()
        enqueue(topic: topic, partitions: partitions, key: key, value: value, headers: headers, completion: completion)
    }

    /// The callback form, to a partition chosen by the caller (for example a record going
    /// back where it came from), not by its key; outcomes arrive as in the other callback form.
    public func send(
        topic: String, partition: Int32, key: [UInt8]? = nil, value: [UInt8], headers: [RecordHeader] = [], completion: @escaping Completion
    ) async throws {
        let partitions = try await topicInfo(topic).partitionCount
        guard partition >= 0, partition < partitions else {
            throw MillraceError(.unknownPartition, "topic \(topic) has partitions 0...\(partitions - 1); \(partition) is not one")
        }
        try await ensureIdentity()
        try await waitForRoom()
        enqueue(topic: topic, partitions: partitions, key: key, value: value, headers: headers, partition: partition, completion: completion)
    }

    /// Enqueues one record (waiting only for room under `outstandingRecordsMax`); the
    /// completion runs when it is durable or has failed. Used by `send(_:)`.
    func enqueue(_ record: ProducerRecord, completion: @escaping Completion) async throws {
        let partitions = try await topicInfo(record.topic).partitionCount
        if let partition = record.partition, !(0..<partitions).contains(partition) {
            throw MillraceError(.unknownPartition, "topic \(record.topic) has partitions 0...\(partitions - 1); \(partition) is not one")
        }
        try await ensureIdentity()
        try await waitForRoom()
        enqueue(
            topic: record.topic, partitions: partitions, key: record.key, value: record.value, headers: record.headers, partition: record.partition,
            timestampMs: record.timestampMs, completion: completion)
    }

    /// Asks the broker for a producer id once (idempotent producers); later calls return at once.
    private func ensureIdentity() async throws {
        guard configuration.idempotent, state.withLock({ $0.identity == nil }) else { return }
        _ = try await identity().get()
    }

    /// The producer's identity, asking the broker when there is none (one question at a time).
    private func identity() -> EventLoopFuture<Identity> {
        let (known, asking, promise) = state.withLock { state -> (Identity?, EventLoopFuture<Identity>?, EventLoopPromise<Identity>?) in
            if let identity = state.identity { return (identity, nil, nil) }
            if let asking = state.identityRequest { return (nil, asking, nil) }
            let promise = eventLoop.makePromise(of: Identity.self)
            state.identityRequest = promise.futureResult
            return (nil, nil, promise)
        }
        if let known { return eventLoop.makeSucceededFuture(known) }
        if let asking { return asking }
        guard let promise else { return eventLoop.makeFailedFuture(MillraceClient.unexpectedBody) }
        client.request(.initProducer(producerId: -1, epoch: -1)).whenComplete { [self] result in
            let outcome: Result<Identity, any Error> = result.flatMap { body in
                guard case .initProducer(let id, let epoch) = body else { return .failure(MillraceClient.unexpectedBody) }
                return .success(Identity(producerId: id, epoch: epoch))
            }
            state.withLock { state in
                state.identityRequest = nil
                if case .success(let identity) = outcome {
                    state.identity = identity
                    state.sequences = [:]
                }
            }
            promise.completeWith(outcome)
        }
        return promise.futureResult
    }

    /// Numbers a shipment with the current identity and its partition's next sequence.
    /// Called in send order per partition (ship, and resend after the broker forgot us).
    private func stamp(_ shipment: inout Shipment, in state: inout State) {
        guard configuration.idempotent, let identity = state.identity else {
            shipment.stamp = nil
            return
        }
        let first = state.sequences[shipment.key] ?? 0
        let count = Int64(shipment.pending.records.count)
        state.sequences[shipment.key] = Int32((Int64(first) + count) % (Int64(Int32.max) + 1))
        shipment.stamp = (identity, first)
    }

    /// The produce request for a shipment as stamped.
    private func encode(_ shipment: inout Shipment) throws {
        let topic = state.withLock { $0.topics[shipment.key.topic] }
        let codec = topic?.compression ?? .none
        // Records with an event time keep it; the others take the send time. The batch's base
        // is the earliest, so every delta is 0 or more.
        let now = SystemClock().nowMilliseconds()
        let times = shipment.pending.timestamps.map { $0 == Int64.min ? now : $0 }
        let base = times.min() ?? now
        var records = shipment.pending.records
        if base != now || times.contains(where: { $0 != now }) {
            for index in records.indices where index < times.count { records[index].timestampDelta = times[index] - base }
        }
        var batch = RecordBatch(attributes: .init(codec: codec), baseTimestamp: base, records: records)
        if let stamp = shipment.stamp {
            batch.producerId = stamp.identity.producerId
            batch.producerEpoch = stamp.identity.epoch
            batch.baseSequence = stamp.sequence
        }
        let level = configuration.compressionLevel ?? (shipment.pending.bytes <= Self.smallBatchBytes ? 15 : 3)
        let bytes = try batch.encoded(compressionLevel: level, dictionary: codec == .zstd ? topic?.dictionary : nil)
        shipment.request = Request.produce(
            ProduceRequest(
                timeoutMs: 30_000, topics: [TopicEntries(topic: shipment.key.topic, [ProducePartition(partition: shipment.key.partition, records: bytes)])],
                version: 2))
    }

    /// A batch this small (keys, values and 16 bytes a record) is compressed at zstd level 15
    /// unless the configuration names a level.
    static let smallBatchBytes = 1 << 10

    /// Whether `send` must wait: too many records, or too many bytes, unanswered.
    private static func isFull(_ state: borrowing State, _ configuration: Configuration) -> Bool {
        state.outstanding >= configuration.outstandingRecordsMax || state.outstandingBytes >= configuration.outstandingBytesMax
    }

    /// Back-pressure: returns once fewer than `outstandingRecordsMax` records, and fewer than
    /// `outstandingBytesMax` bytes, are unanswered.
    /// Throws `CancellationError` if the task is cancelled while it waits (a producer stuck
    /// behind a full disk must still stop on Ctrl-C).
    private func waitForRoom() async throws {
        let full = state.withLock { Self.isFull($0, configuration) }
        guard full else { return }
        let id = UInt64.random(in: 0...UInt64.max)
        try await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    guard Self.isFull(state, configuration), !Task.isCancelled else { return true }
                    state.roomWaiters.append((id, continuation))
                    return false
                }
                if resumeNow { continuation.resume() }
            }
            try Task.checkCancellation()
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard let index = state.roomWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.roomWaiters.remove(at: index).continuation
            }
            waiter?.resume()
        }
    }

    /// Like `flush()`, but returns after `limit` even if records are still unanswered (they
    /// go on); true when everything sent was answered.
    public func flush(within limit: TimeAmount) async throws -> Bool {
        let done = eventLoop.makePromise(of: Bool.self)
        let completed = Locked(false)
        @Sendable func complete(_ value: Bool) {
            guard completed.withLock({ let first = !$0; $0 = true; return first }) else { return }
            done.succeed(value)
        }
        let timer = clock.schedule(after: Duration(limit), on: eventLoop) { complete(false) }
        let flushing = eventLoop.makePromise(of: Void.self)
        flushing.completeWithTask { try await self.flush() }
        flushing.futureResult.whenComplete { _ in
            timer.cancel()
            complete(true)
        }
        return try await done.futureResult.get()
    }

    /// Sends what is batched now and waits until every record sent so far is answered.
    public func flush() async throws {
        shipBatched()
        let promise = eventLoop.makePromise(of: Void.self)
        let idle = state.withLock { state -> Bool in
            if state.inFlight == 0 && state.partitions.isEmpty { return true }
            state.drainWaiters.append(promise)
            return false
        }
        if idle { promise.succeed() }
        try await promise.futureResult.get()
    }

    /// Sends every partition's batch now, without waiting for its linger.
    func shipBatched() {
        let keys = state.withLock { Array($0.partitions.keys) }
        for key in keys { ship(key) }
    }

    private func topicInfo(_ topic: String) async throws -> Topic {
        if let known = state.withLock({ $0.topics[topic] }) { return known }
        let described: MillraceClient.TopicDescription
        do {
            described = try await client.describeTopic(topic)
        } catch let error as MillraceError where error.code == .unknownTopic {
            throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist; create it with `millrace topic create \(topic)`")
        }
        guard !described.partitions.isEmpty else {
            throw MillraceError(.unexpected, "the broker described topic \(topic) with no partitions; nothing can be sent to it")
        }
        let compression = configuration.compression ?? (described.compression == .zstd ? .zstd : .none)
        let dictionary = compression == .zstd ? try await client.loadDictionary(topic: topic, id: 0)?.id : nil
        let info = Topic(partitionCount: Int32(described.partitions.count), compression: compression, dictionary: dictionary)
        state.withLock { $0.topics[topic] = info }
        return info
    }

    private func enqueue(
        topic: String, partitions: Int32, key: [UInt8]?, value: [UInt8], headers: [RecordHeader], partition chosen: Int32? = nil,
        timestampMs: Int64? = nil, completion: @escaping Completion
    ) {
        let recordBytes = value.count + (key?.count ?? 0) + 16
        let (lingerMs, batchBytesMax, eventLoop, clock) = (configuration.lingerMs, configuration.batchBytesMax, eventLoop, clock)
        let now = clock.now
        let (target, full) = state.withLock { state -> (TopicPartitionKey, Bool) in
            let partition: Int32
            if let chosen {
                partition = chosen
            } else if let key {
                partition = KeyPartitioner.partition(for: key, partitionCount: partitions)
            } else if let sticky = state.stickyPartition[topic] {
                // Sticky: keyless records fill one partition's batch, then move on.
                partition = sticky
            } else {
                partition = Int32.random(in: 0..<partitions)
                state.stickyPartition[topic] = partition
            }
            let target = TopicPartitionKey(topic: topic, partition: partition)
            state.outstanding += 1
            state.outstandingBytes += recordBytes
            // One look-up of the partition's pending batch (its key hashes the topic name),
            // mutated in place: copying the batch out and back would copy its records.
            let full = Self.add(
                Record(timestampDelta: 0, offsetDelta: 0, key: key, value: value, headers: headers), bytes: recordBytes, completion: completion,
                timestampMs: timestampMs, batchBytesMax: batchBytesMax, now: now, to: &state.partitions[target, default: Pending()]
            ) {
                clock.schedule(after: .milliseconds(lingerMs), on: eventLoop) { [self] in ship(target) }
            }
            if full && key == nil { state.stickyPartition[topic] = (partition + 1) % partitions }
            return (target, full)
        }
        if full { ship(target) }
    }

    /// Appends a record to a partition's pending batch (starting its linger timer when the
    /// batch is new); true when the batch is full and should go now.
    private static func add(
        _ record: Record, bytes: Int, completion: @escaping Completion, timestampMs: Int64?, batchBytesMax: Int, now: Duration,
        to pending: inout Pending, startTimer: () -> ClockTimer
    ) -> Bool {
        if pending.timer == nil && pending.records.isEmpty {
            pending.timer = startTimer()
            pending.createdAt = now
        }
        var record = record
        record.offsetDelta = Int32(pending.records.count)
        pending.records.append(record)
        pending.completions.append(completion)
        pending.timestamps.append(timestampMs ?? Int64.min)
        pending.bytes += bytes
        return pending.bytes >= batchBytesMax || pending.records.count >= Limits.recordsPerBatchMax
    }

    /// Takes the batch of one partition and sends it. The batch is numbered (shipment order,
    /// and its partition's sequence) in one step under the lock, so a partition's sequence
    /// numbers follow the order the batches go out in.
    private func ship(_ key: TopicPartitionKey) {
        let taken = state.withLock { state -> [Shipment] in
            guard let pending = state.partitions.removeValue(forKey: key) else { return [] }
            pending.timer?.cancel()
            state.inFlight += 1
            if state.stickyPartition[key.topic] == key.partition, let count = state.topics[key.topic]?.partitionCount {
                state.stickyPartition[key.topic] = (key.partition + 1) % count
            }
            state.held[key, default: []].append(pending)
            return takeShippable(key, &state)
        }
        send(taken)
    }

    /// An idempotent producer has at most this many batches of a partition unanswered (the
    /// broker remembers the last five batches of each producer and partition: a retry of
    /// anything older could not be recognised). Full batches wait their turn in `held`.
    static let unansweredPerPartitionMax = 5

    /// Takes the partition's held batches that may go now, numbering each (shipment order and
    /// sequence) in one step under the lock, so its sequence numbers follow the order the
    /// batches go out in.
    private func takeShippable(_ key: TopicPartitionKey, _ state: inout State) -> [Shipment] {
        var taken: [Shipment] = []
        while let pending = state.held[key]?.first,
            !configuration.idempotent || state.unanswered[key, default: []].count < Self.unansweredPerPartitionMax
        {
            state.held[key]?.removeFirst()
            var numbered = pending
            numbered.number = state.nextShipment
            state.nextShipment += 1
            state.unanswered[key, default: []].insert(numbered.number)
            var shipment = Shipment(pending: numbered, key: key)
            stamp(&shipment, in: &state)
            taken.append(shipment)
        }
        if state.held[key]?.isEmpty == true { state.held[key] = nil }
        return taken
    }

    /// Encodes numbered shipments (outside the state lock) and sends them in number order,
    /// each behind any retries.
    private func send(_ taken: [Shipment]) {
        for var shipment in taken {
            var ready: Shipment?
            do {
                try encode(&shipment)
                ready = shipment
            } catch {
                finish(shipment.pending, target: shipment.key, .failure(error))
            }
            sendOrder.withLock { order in
                order.ready[shipment.pending.number] = .some(ready)
                while let next = order.ready.removeValue(forKey: order.next) {
                    order.next += 1
                    guard let next else { continue }
                    let queued = state.withLock { state -> Bool in
                        guard !state.retries.isEmpty else { return false }
                        state.retries.append(next)
                        return true
                    }
                    if !queued { attempt(next) }
                }
            }
        }
    }

    private func attempt(_ shipment: Shipment) {
        guard let request = shipment.request else { return finish(shipment.pending, target: shipment.key, .failure(MillraceClient.unexpectedBody)) }
        client.request(request).whenComplete { [self] result in
            switch result {
            case .success(.produce(let topics)):
                guard let entry = topics.first?.entries.first else {
                    return finish(shipment.pending, target: shipment.key, .failure(MillraceClient.unexpectedBody))
                }
                if entry.errorCode == .none {
                    recovered()
                    return finish(shipment.pending, target: shipment.key, .success((entry.partition, entry.baseOffset)), outcomes: entry.outcomes, topic: topics[0].topic)
                }
                if entry.errorCode == .invalidRecord {
                    return finish(shipment.pending, target: shipment.key, .failure(MillraceError(entry.errorCode, entry.message)), outcomes: entry.outcomes, topic: topics[0].topic)
                }
                retryOrFail(shipment, MillraceError(entry.errorCode, entry.message))
            case .success:
                finish(shipment.pending, target: shipment.key, .failure(MillraceClient.unexpectedBody))
            case .failure(let error):
                retryOrFail(shipment, error)
            }
        }
    }

    private func retryOrFail(_ shipment: Shipment, _ error: any Error) {
        let code = (error as? MillraceError)?.code
        // The broker forgot this producer (idle past its expiry): number the batch again under
        // a new id. A gap or a newer session: this batch fails, later ones start over.
        let renumber = code == .unknownProducerId
        let early = code == .outOfOrderSequence
            && state.withLock { state in state.unanswered[shipment.key]?.contains { $0 < shipment.pending.number } ?? false }
        if let stamp = shipment.stamp, !early, renumber || code == .outOfOrderSequence || code == .producerFenced {
            state.withLock { state in
                if state.identity == stamp.identity { state.identity = nil }
            }
        }
        let retriable = code?.isRetriable ?? false || (renumber && configuration.idempotent) || early
        guard retriable, clock.now < shipment.pending.createdAt + Duration(configuration.deliveryTimeout) else {
            let message = retriable ? "not delivered within the delivery timeout; last error: " : ""
            let failure = (error as? MillraceError).map { MillraceError($0.code, message + $0.message) } ?? error
            return finish(shipment.pending, target: shipment.key, .failure(failure))
        }
        var failed = shipment
        failed.lastError = error
        let (delay, report) = state.withLock { state -> (Duration?, Bool) in
            state.retries.append(failed)
            let report = !state.reportedOutage
            state.reportedOutage = true
            guard !state.retryScheduled else { return (nil, report) }
            state.retryScheduled = true
            return (state.backoff.next(), report)
        }
        if report {
            client.logger.warning("produce failed, retrying until the delivery timeout: \((error as? MillraceError)?.message ?? "\(error)")")
        }
        if let delay { _ = clock.schedule(after: delay, on: eventLoop) { self.resend() } }
    }

    /// Sends every waiting shipment again, in order. Shipments numbered under an identity
    /// the broker no longer knows are numbered again first (asking for a new id if need be).
    private func resend() {
        if configuration.idempotent {
            let stale = state.withLock { state in state.retries.contains { $0.stamp?.identity != state.identity } }
            let known = state.withLock { $0.identity != nil }
            if stale && !known {
                identity().whenComplete { [self] result in
                    if case .failure = result {
                        // The broker is unreachable: try again after the back-off.
                        let delay = state.withLock { $0.backoff.next() }
                        _ = clock.schedule(after: delay, on: eventLoop) { self.resend() }
                    } else {
                        resend()
                    }
                }
                return
            }
        }
        var (waiting, renumbered) = state.withLock { state -> ([Shipment], [Int]) in
            state.retryScheduled = false
            defer { state.retries = [] }
            // In the order they were first sent, whatever order their failures arrived in.
            var waiting = state.retries.sorted { $0.pending.number < $1.pending.number }
            var renumbered: [Int] = []
            if configuration.idempotent {
                for index in waiting.indices where waiting[index].stamp?.identity != state.identity {
                    stamp(&waiting[index], in: &state)
                    renumbered.append(index)
                }
            }
            return (waiting, renumbered)
        }
        for index in renumbered {
            do {
                try encode(&waiting[index])
            } catch {
                waiting[index].request = nil
            }
        }
        for shipment in waiting { attempt(shipment) }
    }

    private func recovered() {
        let wasDown = state.withLock { state -> Bool in
            defer {
                state.backoff.reset()
                state.reportedOutage = false
            }
            return state.reportedOutage && state.retries.isEmpty && !state.retryScheduled
        }
        if wasDown { client.logger.notice("produce is getting through again") }
    }

    /// Tells each record's caller what happened. Without outcomes, record n is at the base
    /// offset + n; with them (Produce version 1), records named there were not appended here
    /// and the others take the offsets in order.
    private func finish(
        _ pending: Pending, target: TopicPartitionKey?, _ result: Result<(Int32, Int64), any Error>, outcomes: [RecordOutcome] = [], topic: String = ""
    ) {
        // Outcomes by record index, walked alongside the records (the broker lists them in
        // order, which the sort only checks: a run of sorted input is one pass).
        let named = outcomes.sorted { $0.index < $1.index }
        var next = 0
        var appended: Int64 = 0
        for (index, completion) in pending.completions.enumerated() {
            while next < named.count, named[next].index < index { next += 1 }
            if next < named.count, named[next].index == index {
                let outcome = named[next]
                next += 1
                switch outcome.kind {
                case .quarantined:
                    completion(.failure(RecordQuarantined(topic: topic + ".quarantine", offset: outcome.offset, outcome: outcome)))
                case .invalid:
                    completion(.failure(MillraceError(.invalidRecord, "\(outcome.path.isEmpty ? "/" : outcome.path): \(outcome.message)")))
                case .duplicate:
                    completion(.failure(RecordDuplicate(partition: outcome.partition, offset: outcome.offset)))
                }
                continue
            }
            switch result {
            case .success(let (partition, base)):
                completion(.success((partition, base + appended)))
                appended += 1
            case .failure(let error as MillraceError) where error.code == .invalidRecord && !named.isEmpty:
                completion(.failure(MillraceError(.invalidRecord, "not appended: another record of the same batch broke the schema (\(error.message))")))
            case .failure(let error):
                completion(.failure(error))
            }
        }
        typealias Waiters = (drained: [EventLoopPromise<Void>], room: [(id: UInt64, continuation: CheckedContinuation<Void, Never>)], released: [Shipment])
        let (drained, room, released) = state.withLock { state -> Waiters in
            state.inFlight -= 1
            var released: [Shipment] = []
            if let key = target {
                state.unanswered[key]?.remove(pending.number)
                released = takeShippable(key, &state)
            }
            state.outstanding -= pending.completions.count
            state.outstandingBytes -= pending.bytes
            let room = !Self.isFull(state, configuration) ? state.roomWaiters : []
            if !room.isEmpty { state.roomWaiters = [] }
            guard state.inFlight == 0 && state.partitions.isEmpty else { return ([], room, released) }
            defer { state.drainWaiters = [] }
            return (state.drainWaiters, room, released)
        }
        // Not from here: this may run inside `send`'s lock.
        if !released.isEmpty { eventLoop.execute { [self] in send(released) } }
        for waiter in room { waiter.continuation.resume() }
        for waiter in drained { waiter.succeed() }
    }
}

/// A record the broker parked in the topic's quarantine because it broke the schema (policy
/// `quarantine`): acknowledged, not appended to the topic; fix it and re-drive it.
public struct RecordQuarantined: Error, Sendable, CustomStringConvertible {
    /// The quarantine topic (`TOPIC.quarantine`) and the record's offset there.
    public let topic: String
    public let offset: Int64
    /// The field that broke the schema (a JSON pointer; "" for the whole value), the rule it
    /// broke, and what was wrong.
    public let path: String
    public let rule: String
    public let message: String
    /// The schema version it was checked against.
    public let schemaVersion: Int32

    init(topic: String, offset: Int64, outcome: RecordOutcome) {
        self.topic = topic
        self.offset = offset
        path = outcome.path
        rule = outcome.rule
        message = outcome.message
        schemaVersion = outcome.schemaVersion
    }

    public var description: String {
        "quarantined in \(topic) at offset \(offset): \(path.isEmpty ? "/" : path): \(message)"
    }
}

/// A record the broker did not append because the topic already holds its business key
/// (duplicate detection, `millrace topic create --dedup-key`): acknowledged, not stored again.
/// The original is at `partition` and `offset`.
public struct RecordDuplicate: Error, Sendable, CustomStringConvertible {
    public let partition: Int32
    public let offset: Int64

    public var description: String { "duplicate of the record at partition \(partition) offset \(offset)" }
}
