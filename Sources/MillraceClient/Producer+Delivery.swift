import Foundation
import MillraceFormat
import NIOCore

/// A record to send: where it goes, its key, value, headers and event time.
///
/// ```swift
/// let handle = try await producer.send(ProducerRecord(topic: "confirmations", key: "ORD-7", value: #"{"order":"ORD-7","qty":5}"#))
/// let delivery = try await handle.delivery()   // once it is on disk
/// ```
public struct ProducerRecord: Sendable, Equatable {
    /// The topic to send to.
    public var topic: String
    /// The partition; nil picks one from the key (or, without a key, fills one partition's
    /// batch and moves on).
    public var partition: Int32?
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [RecordHeader]
    /// The record's event time in milliseconds since 1970; nil stamps it when its batch is sent.
    public var timestampMs: Int64?

    public init(topic: String, partition: Int32? = nil, key: [UInt8]? = nil, value: [UInt8], headers: [RecordHeader] = [], timestampMs: Int64? = nil) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestampMs = timestampMs
    }

    /// A text value and key, sent as their UTF-8 bytes.
    public init(topic: String, partition: Int32? = nil, key: String? = nil, value: String, headers: [RecordHeader] = [], timestampMs: Int64? = nil) {
        self.init(topic: topic, partition: partition, key: key.map { Array($0.utf8) }, value: Array(value.utf8), headers: headers, timestampMs: timestampMs)
    }

    public init(topic: String, partition: Int32? = nil, key: String? = nil, value: Data, headers: [RecordHeader] = [], timestampMs: Int64? = nil) {
        self.init(topic: topic, partition: partition, key: key.map { Array($0.utf8) }, value: Array(value), headers: headers, timestampMs: timestampMs)
    }

    public init(topic: String, partition: Int32? = nil, key: String? = nil, value: ByteBuffer, headers: [RecordHeader] = [], timestampMs: Int64? = nil) {
        self.init(
            topic: topic, partition: partition, key: key.map { Array($0.utf8) }, value: Array(value.readableBytesView), headers: headers,
            timestampMs: timestampMs)
    }

    /// Any `Encodable` value, sent as JSON (`encoder` decides dates, key order and so on).
    public init<Value: Encodable>(
        topic: String, partition: Int32? = nil, key: String? = nil, json value: Value, encoder: JSONEncoder = JSONEncoder(), headers: [RecordHeader] = [],
        timestampMs: Int64? = nil
    ) throws {
        self.init(
            topic: topic, partition: partition, key: key.map { Array($0.utf8) }, value: Array(try encoder.encode(value)), headers: headers,
            timestampMs: timestampMs)
    }
}

/// What became of a record the broker answered for.
public struct Delivery: Sendable, Equatable {
    /// Appended, or one of the outcomes that are not errors.
    public enum Outcome: Sendable, Equatable {
        /// Stored at `partition`/`offset`.
        case appended
        /// A duplicate by the topic's business key: not stored again; `partition`/`offset`
        /// name the original.
        case duplicate
        /// Broke the topic's schema and was parked: `topic`/`partition`/`offset` are its place
        /// in `TOPIC.quarantine`; `detail` names the field and rule.
        case quarantined
        /// Broke the topic's schema and was refused (the topic rejects invalid records; the
        /// other records of its batch were refused with it); `detail` says why.
        case invalid
    }

    /// The topic (for a quarantined record: `TOPIC.quarantine`).
    public var topic: String
    /// The partition (-1 for an invalid record).
    public var partition: Int32
    /// Where it is (appended), where the original is (duplicate), its place in the quarantine (quarantined); -1 for an invalid record.
    public var offset: Int64
    /// What became of it.
    public var outcome: Outcome
    /// For a quarantined or invalid record, the field and rule it broke.
    public var detail: String

    public init(topic: String, partition: Int32, offset: Int64, outcome: Outcome, detail: String = "") {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.outcome = outcome
        self.detail = detail
    }
}

/// One record's report in `Producer.deliveryReports`: the handle's id, and its delivery or
/// the error that ended it (timed out, the topic deleted, the producer closed…).
public struct DeliveryReport: Sendable {
    /// The send's id, as in its delivery handle.
    public let id: UInt64
    /// Its delivery, or why there is none.
    public let result: Result<Delivery, MillraceError>
}

/// A sent record's place in line: `delivery()` waits until the broker has answered for it.
public final class DeliveryHandle: Sendable {
    /// The send's id, as in its delivery handle.
    public let id: UInt64
    private let future: EventLoopFuture<Delivery>

    init(id: UInt64, future: EventLoopFuture<Delivery>) {
        self.id = id
        self.future = future
    }

    /// Waits for the record's outcome; throws `MillraceError` when it could not be delivered.
    public func delivery() async throws -> Delivery { try await future.get() }
}

/// Every sent record's report, in the order they land (unbounded: read it, or do not ask for
/// it).
public struct DeliveryReports: AsyncSequence, Sendable {
    /// One record's report.
    public typealias Element = DeliveryReport
    let stream: AsyncStream<DeliveryReport>

    public func makeAsyncIterator() -> AsyncStream<DeliveryReport>.AsyncIterator { stream.makeAsyncIterator() }
}

extension Producer {
    /// A producer and the stream of its delivery reports (the swift-kafka-client shape).
    public static func makeWithDeliveryReports(client: MillraceClient, configuration: Configuration = Configuration()) -> (Producer, DeliveryReports) {
        let producer = Producer(client: client, configuration: configuration)
        let (stream, continuation) = AsyncStream<DeliveryReport>.makeStream()
        producer.reportSink.withLock { $0 = continuation }
        return (producer, DeliveryReports(stream: stream))
    }

    /// Queues the record and returns at once with its handle — unless `outstandingRecordsMax`
    /// records are waiting for the broker, in which case it suspends until there is room
    /// (back-pressure). Records are batched per partition; each is answered once durable.
    ///
    /// Every `send` that does not take a completion behaves like this one, whatever the value
    /// (`String`, `[UInt8]`, `json:`): the handle comes back at once, and a duplicate, a
    /// quarantined or an invalid record is a `Delivery` outcome, not an error. It throws only
    /// when the record cannot be queued (the producer closed, the topic or partition unknown,
    /// the broker unreachable for its metadata, the task cancelled while waiting for room).
    /// `deliver(_:)` sends and waits.
    public func send(_ record: ProducerRecord) async throws -> DeliveryHandle {
        guard !closed.withLock({ $0 }) else { throw MillraceError(.invalidRequest, "the producer is closed; make a new one") }
        let id = nextID.withLock { id -> UInt64 in
            id += 1
            return id
        }
        let promise = client.group.next().makePromise(of: Delivery.self)
        let sink = reportSink.withLock { $0 }
        let topic = record.topic
        do {
            try await enqueue(record) { result in
                let delivery = Self.delivery(topic: topic, result)
                sink?.yield(DeliveryReport(id: id, result: delivery))
                promise.completeWith(delivery.mapError { $0 as any Error })
            }
        } catch {
            // Not queued (a topic the principal may not see, the producer closed meanwhile):
            // the caller gets the error; the promise must not be dropped unfulfilled.
            promise.fail(error)
            throw error
        }
        return DeliveryHandle(id: id, future: promise.futureResult)
    }

    /// Queues the record (suspending only for room, as `send(_:)`); `completion` runs when it
    /// is durable or has failed — outcomes other than appended arrive as `RecordDuplicate`,
    /// `RecordQuarantined` or an `invalid_record` error. For tools that send millions.
    public func send(_ record: ProducerRecord, completion: @escaping Completion) async throws {
        guard !closed.withLock({ $0 }) else { throw MillraceError(.invalidRequest, "the producer is closed; make a new one") }
        try await enqueue(record, completion: completion)
    }

    /// `send(_:)` for a text value (and key), sent as UTF-8: returns the handle at once.
    public func send(topic: String, key: String? = nil, value: String, headers: [RecordHeader] = []) async throws -> DeliveryHandle {
        try await send(ProducerRecord(topic: topic, key: key, value: value, headers: headers))
    }

    /// `send(_:)` for a value (and key) in bytes: returns the handle at once.
    public func send(topic: String, key: [UInt8]? = nil, value: [UInt8], headers: [RecordHeader] = []) async throws -> DeliveryHandle {
        try await send(ProducerRecord(topic: topic, key: key, value: value, headers: headers))
    }

    /// `send(_:)` for an `Encodable` value, as JSON (`encoder` decides dates, key order and
    /// so on): returns the handle at once. `ConsumedRecord.decode(_:decoder:)` reads it back.
    public func send<Value: Encodable>(
        topic: String, key: String? = nil, json value: Value, encoder: JSONEncoder = JSONEncoder(), headers: [RecordHeader] = []
    ) async throws -> DeliveryHandle {
        try await send(try ProducerRecord(topic: topic, key: key, json: value, encoder: encoder, headers: headers))
    }

    /// Sends the record and waits for the broker's answer: `try await send(record).delivery()`.
    /// One record at a time goes no faster than one disk sync each; send many and await their
    /// handles after, or read the delivery reports (`makeWithDeliveryReports`), when throughput matters.
    public func deliver(_ record: ProducerRecord) async throws -> Delivery {
        try await send(record).delivery()
    }

    /// Waits for every record sent so far, then refuses further sends and ends the delivery
    /// reports. Records that cannot be delivered within `deliveryTimeout` fail as usual.
    public func close() async throws {
        closed.withLock { $0 = true }
        defer { reportSink.withLock { $0?.finish() } }
        try await flush()
    }

    /// A completion's result as a delivery: the outcomes the broker names become outcomes,
    /// not errors.
    static func delivery(topic: String, _ result: Result<(partition: Int32, offset: Int64), any Error>) -> Result<Delivery, MillraceError> {
        switch result {
        case .success(let place):
            return .success(Delivery(topic: topic, partition: place.partition, offset: place.offset, outcome: .appended))
        case .failure(let duplicate as RecordDuplicate):
            return .success(Delivery(topic: topic, partition: duplicate.partition, offset: duplicate.offset, outcome: .duplicate))
        case .failure(let parked as RecordQuarantined):
            return .success(
                Delivery(topic: parked.topic, partition: 0, offset: parked.offset, outcome: .quarantined, detail: parked.description))
        case .failure(let error as MillraceError) where error.code == .invalidRecord:
            return .success(Delivery(topic: topic, partition: -1, offset: -1, outcome: .invalid, detail: error.message))
        case .failure(let error as MillraceError):
            return .failure(error)
        case .failure(let error):
            return .failure(MillraceError(.unexpected, "\(error)"))
        }
    }
}
