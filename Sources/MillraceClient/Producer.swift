import MillraceFormat
import MillraceWire
import NIOConcurrencyHelpers
import NIOCore

/// Batches records per partition (up to `batchBytesMax`, or `lingerMs` after the first),
/// sends each batch as a Produce request, and completes every record with its partition and
/// offset once the broker has it on disk. Retriable errors are retried `retries` times.
public final class Producer: Sendable {
    public struct Configuration: Sendable {
        public var lingerMs: Int64 = 5
        public var batchBytesMax: Int = 256 << 10
        public var compression: CompressionCodec = .none
        public var retries: Int = 5
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
    }

    private struct State {
        var partitions: [TopicPartitionKey: Pending] = [:]
        var partitionCounts: [String: Int32] = [:]
        var stickyPartition: [String: Int32] = [:]
        var inFlight = 0
        var outstanding = 0
        var drainWaiters: [EventLoopPromise<Void>] = []
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private struct TopicPartitionKey: Hashable {
        var topic: String
        var partition: Int32
    }

    private let client: MillraceClient
    private let configuration: Configuration
    private let eventLoop: any EventLoop
    private let state = NIOLockedValueBox(State())

    public init(client: MillraceClient, configuration: Configuration = Configuration()) {
        self.client = client
        self.configuration = configuration
        eventLoop = client.group.next()
    }

    /// Sends one record and returns where it was stored, once durable.
    public func send(topic: String, key: [UInt8]? = nil, value: [UInt8], headers: [RecordHeader] = []) async throws -> (partition: Int32, offset: Int64) {
        let partitions = try await partitionCount(topic)
        await waitForRoom()
        return try await withCheckedThrowingContinuation { continuation in
            enqueue(topic: topic, partitions: partitions, key: key, value: value, headers: headers) { continuation.resume(with: $0) }
        }
    }

    /// Sends one record without waiting; `completion` runs when it is durable or has failed.
    public func send(
        topic: String, key: [UInt8]? = nil, value: [UInt8], headers: [RecordHeader] = [], completion: @escaping Completion
    ) async throws {
        let partitions = try await partitionCount(topic)
        await waitForRoom()
        enqueue(topic: topic, partitions: partitions, key: key, value: value, headers: headers, completion: completion)
    }

    /// Back-pressure: returns once fewer than `outstandingRecordsMax` records are unanswered.
    private func waitForRoom() async {
        let full = state.withLockedValue { $0.outstanding >= configuration.outstandingRecordsMax }
        guard full else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLockedValue { state -> Bool in
                guard state.outstanding >= configuration.outstandingRecordsMax else { return true }
                state.roomWaiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
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

    private func partitionCount(_ topic: String) async throws -> Int32 {
        if let known = state.withLockedValue({ $0.partitionCounts[topic] }) { return known }
        let count = try await client.partitionCount(topic)
        state.withLockedValue { $0.partitionCounts[topic] = count }
        return count
    }

    private func enqueue(
        topic: String, partitions: Int32, key: [UInt8]?, value: [UInt8], headers: [RecordHeader], completion: @escaping Completion
    ) {
        let recordBytes = value.count + (key?.count ?? 0) + 16
        let (target, full) = state.withLockedValue { state -> (TopicPartitionKey, Bool) in
            let partition: Int32
            if let key {
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
        guard let pending = state.withLockedValue({ state -> Pending? in
            guard let pending = state.partitions.removeValue(forKey: key) else { return nil }
            state.inFlight += 1
            if state.stickyPartition[key.topic] == key.partition, let count = state.partitionCounts[key.topic] {
                state.stickyPartition[key.topic] = (key.partition + 1) % count
            }
            return pending
        }) else { return }
        pending.timer?.cancel()
        let now = SystemClock().nowMilliseconds()
        let batch = RecordBatch(attributes: .init(codec: configuration.compression), baseTimestamp: now, records: pending.records)
        let bytes: [UInt8]
        do {
            bytes = try batch.encoded()
        } catch {
            return finish(pending, .failure(error))
        }
        let request = Request.produce(
            ProduceRequest(timeoutMs: 30_000, topics: [TopicEntries(topic: key.topic, [ProducePartition(partition: key.partition, records: bytes)])]))
        attempt(request, pending, triesLeft: configuration.retries)
    }

    private func attempt(_ request: Request, _ pending: Pending, triesLeft: Int) {
        let promise = eventLoop.makePromise(of: ResponseBody.self)
        promise.completeWithTask { [client] in try await client.send(request) }
        promise.futureResult.whenComplete { [self] result in
            switch result {
            case .success(.produce(let topics)):
                guard let entry = topics.first?.entries.first else {
                    return finish(pending, .failure(MillraceClient.unexpectedBody))
                }
                if entry.errorCode == .none {
                    return finish(pending, .success((entry.partition, entry.baseOffset)))
                }
                let error = MillraceError(entry.errorCode, entry.message)
                if error.code.isRetriable && triesLeft > 0 {
                    eventLoop.scheduleTask(in: .milliseconds(100)) { self.attempt(request, pending, triesLeft: triesLeft - 1) }
                } else {
                    finish(pending, .failure(error))
                }
            case .success:
                finish(pending, .failure(MillraceClient.unexpectedBody))
            case .failure(let error):
                if triesLeft > 0, (error as? MillraceError)?.code.isRetriable ?? true {
                    eventLoop.scheduleTask(in: .milliseconds(100)) { self.attempt(request, pending, triesLeft: triesLeft - 1) }
                } else {
                    finish(pending, .failure(error))
                }
            }
        }
    }

    private func finish(_ pending: Pending, _ result: Result<(Int32, Int64), any Error>) {
        for (index, completion) in pending.completions.enumerated() {
            completion(result.map { ($0.0, $0.1 + Int64(index)) })
        }
        let (drained, room) = state.withLockedValue { state -> ([EventLoopPromise<Void>], [CheckedContinuation<Void, Never>]) in
            state.inFlight -= 1
            state.outstanding -= pending.completions.count
            let room = state.outstanding < configuration.outstandingRecordsMax ? state.roomWaiters : []
            if !room.isEmpty { state.roomWaiters = [] }
            guard state.inFlight == 0 && state.partitions.isEmpty else { return ([], room) }
            defer { state.drainWaiters = [] }
            return (state.drainWaiters, room)
        }
        for waiter in room { waiter.resume() }
        for waiter in drained { waiter.succeed() }
    }
}
