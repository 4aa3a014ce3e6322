import MillraceFormat
import MillraceWire
import NIOConcurrencyHelpers
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
    public struct Configuration: Sendable {
        public var lingerMs: Int64 = 5
        public var batchBytesMax: Int = 256 << 10
        /// nil: the topic's compression (`millrace topic create --compression`).
        public var compression: CompressionCodec?
        /// How long a record may take, retries included, before it fails.
        public var deliveryTimeout: TimeAmount = .minutes(2)
        /// Records sent but not yet answered; `send` waits while this many are outstanding.
        public var outstandingRecordsMax: Int = 100_000

        public init() {}
    }

    public typealias Completion = @Sendable (Result<(partition: Int32, offset: Int64), any Error>) -> Void

    private struct Pending {
        var records: [Record] = []
        var completions: [Completion] = []
        var bytes = 0
        var timer: Scheduled<Void>?
        var createdAt = NIODeadline.now()
    }

    /// A batch on its way: its request, and what to complete.
    private struct Shipment {
        var request: Request
        var pending: Pending
        var lastError: (any Error)?
    }

    private struct Topic {
        var partitionCount: Int32
        var compression: CompressionCodec
    }

    private struct State {
        var partitions: [TopicPartitionKey: Pending] = [:]
        var topics: [String: Topic] = [:]
        var stickyPartition: [String: Int32] = [:]
        var inFlight = 0
        var outstanding = 0
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

    private let client: MillraceClient
    private let configuration: Configuration
    private let eventLoop: any EventLoop
    private let state = NIOLockedValueBox(State())
    /// Taken before `state` when both are held, never after.
    private let sendOrder = NIOLockedValueBox(SendOrder())

    public init(client: MillraceClient, configuration: Configuration = Configuration()) {
        self.client = client
        self.configuration = configuration
        eventLoop = client.group.next()
    }

    /// Sends one record and returns where it was stored, once durable.
    public func send(topic: String, key: [UInt8]? = nil, value: [UInt8], headers: [RecordHeader] = []) async throws -> (partition: Int32, offset: Int64) {
        let partitions = try await topicInfo(topic).partitionCount
        try await waitForRoom()
        return try await withCheckedThrowingContinuation { continuation in
            enqueue(topic: topic, partitions: partitions, key: key, value: value, headers: headers) { continuation.resume(with: $0) }
        }
    }

    /// Sends one record without waiting; `completion` runs when it is durable or has failed.
    public func send(
        topic: String, key: [UInt8]? = nil, value: [UInt8], headers: [RecordHeader] = [], completion: @escaping Completion
    ) async throws {
        let partitions = try await topicInfo(topic).partitionCount
        try await waitForRoom()
        enqueue(topic: topic, partitions: partitions, key: key, value: value, headers: headers, completion: completion)
    }

    /// Sends to a partition chosen by the caller (for example a record going back where it
    /// came from), not by its key.
    public func send(
        topic: String, partition: Int32, key: [UInt8]? = nil, value: [UInt8], headers: [RecordHeader] = [], completion: @escaping Completion
    ) async throws {
        let partitions = try await topicInfo(topic).partitionCount
        guard partition >= 0, partition < partitions else {
            throw MillraceError(.unknownPartition, "topic \(topic) has partitions 0...\(partitions - 1); \(partition) is not one")
        }
        try await waitForRoom()
        enqueue(topic: topic, partitions: partitions, key: key, value: value, headers: headers, partition: partition, completion: completion)
    }

    /// Back-pressure: returns once fewer than `outstandingRecordsMax` records are unanswered.
    /// Throws `CancellationError` if the task is cancelled while it waits (a producer stuck
    /// behind a full disk must still stop on Ctrl-C).
    private func waitForRoom() async throws {
        let full = state.withLockedValue { $0.outstanding >= configuration.outstandingRecordsMax }
        guard full else { return }
        let id = UInt64.random(in: 0...UInt64.max)
        try await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLockedValue { state -> Bool in
                    guard state.outstanding >= configuration.outstandingRecordsMax, !Task.isCancelled else { return true }
                    state.roomWaiters.append((id, continuation))
                    return false
                }
                if resumeNow { continuation.resume() }
            }
            try Task.checkCancellation()
        } onCancel: {
            let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
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
        let completed = NIOLockedValueBox(false)
        @Sendable func complete(_ value: Bool) {
            guard completed.withLockedValue({ let first = !$0; $0 = true; return first }) else { return }
            done.succeed(value)
        }
        let timer = eventLoop.scheduleTask(in: limit) { complete(false) }
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
        let keys = state.withLockedValue { Array($0.partitions.keys) }
        for key in keys { ship(key) }
        let promise = eventLoop.makePromise(of: Void.self)
        let idle = state.withLockedValue { state -> Bool in
            if state.inFlight == 0 && state.partitions.isEmpty { return true }
            state.drainWaiters.append(promise)
            return false
        }
        if idle { promise.succeed() }
        try await promise.futureResult.get()
    }

    private func topicInfo(_ topic: String) async throws -> Topic {
        if let known = state.withLockedValue({ $0.topics[topic] }) { return known }
        let described: DescribeTopicResponse
        do {
            described = try await client.describeTopic(topic)
        } catch let error as MillraceError where error.code == .unknownTopic {
            throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist; create it with `millrace topic create \(topic)`")
        }
        let info = Topic(
            partitionCount: Int32(described.partitions.count),
            compression: configuration.compression ?? CompressionCodec(rawValue: described.compression) ?? .none)
        state.withLockedValue { $0.topics[topic] = info }
        return info
    }

    private func enqueue(
        topic: String, partitions: Int32, key: [UInt8]?, value: [UInt8], headers: [RecordHeader], partition chosen: Int32? = nil,
        completion: @escaping Completion
    ) {
        let recordBytes = value.count + (key?.count ?? 0) + 16
        let (target, full) = state.withLockedValue { state -> (TopicPartitionKey, Bool) in
            let partition: Int32
            if let chosen {
                partition = chosen
            } else if let key {
                partition = KeyPartitioner.partition(for: key, partitionCount: partitions)
            } else {
                // Sticky: keyless records fill one partition's batch, then move on.
                partition = state.stickyPartition[topic] ?? Int32.random(in: 0..<partitions)
                state.stickyPartition[topic] = partition
            }
            let target = TopicPartitionKey(topic: topic, partition: partition)
            state.outstanding += 1
            if state.partitions[target] == nil {
                var fresh = Pending()
                fresh.timer = eventLoop.scheduleTask(in: .milliseconds(configuration.lingerMs)) { [self] in ship(target) }
                state.partitions[target] = fresh
            }
            // Mutated in place: copying the pending batch out and back would copy its records
            // on every append.
            let offsetDelta = Int32(state.partitions[target]!.records.count)
            state.partitions[target]!.records.append(
                Record(timestampDelta: 0, offsetDelta: offsetDelta, key: key, value: value, headers: headers))
            state.partitions[target]!.completions.append(completion)
            state.partitions[target]!.bytes += recordBytes
            let full = state.partitions[target]!.bytes >= configuration.batchBytesMax
                || state.partitions[target]!.records.count >= Limits.recordsPerBatchMax
            if full && key == nil { state.stickyPartition[topic] = (partition + 1) % partitions }
            return (target, full)
        }
        if full { ship(target) }
    }

    /// Takes the batch of one partition and sends it.
    private func ship(_ key: TopicPartitionKey) {
        guard let (pending, number) = state.withLockedValue({ state -> (Pending, UInt64)? in
            guard let pending = state.partitions.removeValue(forKey: key) else { return nil }
            state.inFlight += 1
            if state.stickyPartition[key.topic] == key.partition, let count = state.topics[key.topic]?.partitionCount {
                state.stickyPartition[key.topic] = (key.partition + 1) % count
            }
            defer { state.nextShipment += 1 }
            return (pending, state.nextShipment)
        }) else { return }
        pending.timer?.cancel()
        let now = SystemClock().nowMilliseconds()
        let codec = state.withLockedValue { $0.topics[key.topic]?.compression } ?? .none
        let batch = RecordBatch(attributes: .init(codec: codec), baseTimestamp: now, records: pending.records)
        var shipment: Shipment?
        do {
            let bytes = try batch.encoded()
            let request = Request.produce(
                ProduceRequest(
                    timeoutMs: 30_000, topics: [TopicEntries(topic: key.topic, [ProducePartition(partition: key.partition, records: bytes)])], version: 1))
            shipment = Shipment(request: request, pending: pending)
        } catch {
            finish(pending, .failure(error))
        }
        // In the order the batches were taken; each behind any retries.
        sendOrder.withLockedValue { order in
            order.ready[number] = .some(shipment)
            while let next = order.ready.removeValue(forKey: order.next) {
                order.next += 1
                guard let next else { continue }
                let queued = state.withLockedValue { state -> Bool in
                    guard !state.retries.isEmpty else { return false }
                    state.retries.append(next)
                    return true
                }
                if !queued { attempt(next) }
            }
        }
    }

    private func attempt(_ shipment: Shipment) {
        client.request(shipment.request).whenComplete { [self] result in
            switch result {
            case .success(.produce(let topics)):
                guard let entry = topics.first?.entries.first else {
                    return finish(shipment.pending, .failure(MillraceClient.unexpectedBody))
                }
                if entry.errorCode == .none {
                    recovered()
                    return finish(shipment.pending, .success((entry.partition, entry.baseOffset)), outcomes: entry.outcomes, topic: topics[0].topic)
                }
                if entry.errorCode == .invalidRecord {
                    return finish(shipment.pending, .failure(MillraceError(entry.errorCode, entry.message)), outcomes: entry.outcomes, topic: topics[0].topic)
                }
                retryOrFail(shipment, MillraceError(entry.errorCode, entry.message))
            case .success:
                finish(shipment.pending, .failure(MillraceClient.unexpectedBody))
            case .failure(let error):
                retryOrFail(shipment, error)
            }
        }
    }

    private func retryOrFail(_ shipment: Shipment, _ error: any Error) {
        let retriable = (error as? MillraceError)?.code.isRetriable ?? false
        guard retriable, NIODeadline.now() < shipment.pending.createdAt + configuration.deliveryTimeout else {
            let message = retriable ? "not delivered within the delivery timeout; last error: " : ""
            let failure = (error as? MillraceError).map { MillraceError($0.code, message + $0.message) } ?? error
            return finish(shipment.pending, .failure(failure))
        }
        var failed = shipment
        failed.lastError = error
        let (delay, report) = state.withLockedValue { state -> (Duration?, Bool) in
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
        if let delay { eventLoop.scheduleTask(in: .nanoseconds(Backoff.nanoseconds(delay))) { self.resend() } }
    }

    /// Sends every waiting shipment again, in order.
    private func resend() {
        let waiting = state.withLockedValue { state -> [Shipment] in
            state.retryScheduled = false
            defer { state.retries = [] }
            return state.retries
        }
        for shipment in waiting { attempt(shipment) }
    }

    private func recovered() {
        let wasDown = state.withLockedValue { state -> Bool in
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
    private func finish(_ pending: Pending, _ result: Result<(Int32, Int64), any Error>, outcomes: [RecordOutcome] = [], topic: String = "") {
        let named = Dictionary(outcomes.map { (Int($0.index), $0) }, uniquingKeysWith: { first, _ in first })
        var appended: Int64 = 0
        for (index, completion) in pending.completions.enumerated() {
            if let outcome = named[index] {
                switch outcome.kind {
                case .quarantined:
                    completion(.failure(RecordQuarantined(topic: topic + ".quarantine", offset: outcome.offset, outcome: outcome)))
                case .invalid:
                    completion(.failure(MillraceError(.invalidRecord, "\(outcome.path.isEmpty ? "/" : outcome.path): \(outcome.message)")))
                case .duplicate:
                    completion(result.map { ($0.0, outcome.offset) })
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
        let (drained, room) = state.withLockedValue { state -> ([EventLoopPromise<Void>], [(id: UInt64, continuation: CheckedContinuation<Void, Never>)]) in
            state.inFlight -= 1
            state.outstanding -= pending.completions.count
            let room = state.outstanding < configuration.outstandingRecordsMax ? state.roomWaiters : []
            if !room.isEmpty { state.roomWaiters = [] }
            guard state.inFlight == 0 && state.partitions.isEmpty else { return ([], room) }
            defer { state.drainWaiters = [] }
            return (state.drainWaiters, room)
        }
        for waiter in room { waiter.continuation.resume() }
        for waiter in drained { waiter.succeed() }
    }
}

/// A record the broker parked in the topic's quarantine because it broke the schema (policy
/// `quarantine`): acknowledged, not appended to the topic; fix it and re-drive it.
public struct RecordQuarantined: Error, Sendable, CustomStringConvertible {
    public let topic: String
    public let offset: Int64
    public let outcome: RecordOutcome

    public var description: String {
        "quarantined in \(topic) at offset \(offset): \(outcome.path.isEmpty ? "/" : outcome.path): \(outcome.message)"
    }
}
