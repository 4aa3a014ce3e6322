import MillraceFormat
import MillraceWire
import NIOCore

/// One consumed record.
public struct ConsumedRecord: Sendable, Equatable {
    /// The topic it was read from.
    public var topic: String
    /// The partition it was read from.
    public var partition: Int32
    /// The record's offset in its partition.
    public var offset: Int64
    /// The record's time, milliseconds since 1970: the producer's or, for a log-append topic, the broker's.
    public var timestamp: Int64
    /// The record key; nil when it has none.
    public var key: [UInt8]?
    /// nil for a record with no value (a tombstone).
    public var value: [UInt8]?
    /// The record's headers, in order.
    public var headers: [RecordHeader]

    /// The schema version the record names (header `millrace-schema-version`); nil when it
    /// names none — the broker then checked it against the topic's latest version at append.
    public var schemaVersion: Int32? {
        headers.first { $0.key == schemaVersionHeader }?.value.flatMap { Int32(String(decoding: $0, as: UTF8.self)) }
    }
}

/// Where a consumer starts in each partition.
public enum StartPosition: Sendable, Equatable {
    /// The earliest offset each partition still holds.
    case earliest
    case latest
    case offset(Int64)
    /// The first record at or after this time (ms since the epoch).
    case timestamp(Int64)
}

/// Reads chosen partitions of a topic from a start position, as an `AsyncSequence` of records
/// in offset order per partition. With `stopAtEnd` it finishes at the log end as it stood
/// when iteration began; otherwise it long-polls for new records until the task is cancelled.
public struct Consumer: AsyncSequence, Sendable {
    /// A record read.
    public typealias Element = ConsumedRecord

    let client: MillraceClient
    /// The topic `start` and `partitions` apply to.
    let topic: String
    let partitions: [Int32]?
    let start: StartPosition
    let stopAtEnd: Bool
    let maxWaitMs: Int32
    /// Exact positions per partition, of one topic or several (used by `GroupConsumer`);
    /// overrides `start`.
    let positions: [TopicPartition: Int64]?
    /// The clock a follower's reconnect back-off sleeps on; tests pass a clock they drive.
    let clock: any Clock<Duration>

    public init(
        client: MillraceClient, topic: String, partitions: [Int32]? = nil, from start: StartPosition, stopAtEnd: Bool, maxWaitMs: Int32 = 500,
        clock: any Clock<Duration> = ContinuousClock()
    ) {
        self.client = client
        self.clock = clock
        self.topic = topic
        self.partitions = partitions
        self.start = start
        self.stopAtEnd = stopAtEnd
        self.maxWaitMs = maxWaitMs
        positions = nil
    }

    /// Reads from exact positions per partition.
    public init(
        client: MillraceClient, topic: String, positions: [Int32: Int64], stopAtEnd: Bool, maxWaitMs: Int32 = 500,
        clock: any Clock<Duration> = ContinuousClock()
    ) {
        self.init(
            client: client, positions: Dictionary(uniqueKeysWithValues: positions.map { (TopicPartition(topic: topic, partition: $0.key), $0.value) }),
            idleTopic: topic, stopAtEnd: stopAtEnd, maxWaitMs: maxWaitMs, clock: clock)
    }

    /// Reads from exact positions in partitions of several topics, in one fetch per poll.
    /// With no positions it long-polls `idleTopic` for nothing (a group member with nothing
    /// assigned still waits between looks).
    init(
        client: MillraceClient, positions: [TopicPartition: Int64], idleTopic: String, stopAtEnd: Bool, maxWaitMs: Int32,
        clock: any Clock<Duration>
    ) {
        self.client = client
        self.clock = clock
        topic = idleTopic
        partitions = nil
        start = .earliest
        self.stopAtEnd = stopAtEnd
        self.maxWaitMs = maxWaitMs
        self.positions = positions
    }

    public func makeAsyncIterator() -> Iterator { Iterator(consumer: self) }

    /// Fetches batches and hands out their records in offset order.
    public struct Iterator: AsyncIteratorProtocol {
        let consumer: Consumer
        var positions: [TopicPartition: Int64] = [:]
        var ends: [TopicPartition: Int64] = [:]
        /// Records fetched and not yet handed out, the next one last: handing one out moves it
        /// out of the array (no copy, no reference counting).
        var buffered: [ConsumedRecord] = []
        var started = false
        /// Fetches sent; and for each partition, the fetch it last came first in.
        var polls = 0
        var ledAt: [TopicPartition: Int] = [:]
        /// Whether the last response brought records: only then may two fetches overlap.
        var overlapping = true
        /// Fetches sent and not yet decoded, oldest first; each partition is in at most one.
        /// The next fetch goes out before the records of the last are decoded, so the broker
        /// reads while this side decodes; with a backlog, two go out for disjoint halves of the
        /// partitions, so one is on its way while the other is decoded (over TLS, a response's
        /// encryption and decryption take as long as its decoding). They are dropped if
        /// decoding a response fails.
        var inFlight: [(request: FetchRequest, response: EventLoopFuture<ResponseBody>)] = []
        /// Where the next fetch of each partition starts: after the batches received for it.
        var fetchFrom: [TopicPartition: Int64] = [:]
        /// Each partition's log end as the latest response told it.
        var knownEnds: [TopicPartition: Int64] = [:]
        /// How many times this follower lost the broker and got it back.
        public private(set) var reconnects = 0

        init(consumer: Consumer) { self.consumer = consumer }

        public mutating func next() async throws -> ConsumedRecord? {
            if !started { try await begin() }
            while buffered.isEmpty {
                if consumer.stopAtEnd && positions.allSatisfy({ $0.value >= ends[$0.key, default: 0] }) { return nil }
                try Task.checkCancellation()
                try await poll()
            }
            return buffered.popLast()
        }

        /// One fetch (a long poll of at most `maxWaitMs` when following): the records it
        /// brought, possibly none; nil once a `stopAtEnd` consumer has reached the end.
        /// For callers that must do other work between polls (group heartbeats).
        public mutating func nextChunk() async throws -> [ConsumedRecord]? {
            if !started { try await begin() }
            if buffered.isEmpty {
                if consumer.stopAtEnd && positions.allSatisfy({ $0.value >= ends[$0.key, default: 0] }) { return nil }
                try await poll()
            }
            return Self.reversed(&buffered)
        }

        /// `records` reversed, leaving it empty: each record moves (`reverse()` would copy
        /// them, retaining and releasing every field).
        static func reversed(_ records: inout [ConsumedRecord]) -> [ConsumedRecord] {
            var reversed: [ConsumedRecord] = []
            reversed.reserveCapacity(records.count)
            while let record = records.popLast() { reversed.append(record) }
            return reversed
        }

        /// Where each partition starts and ends. A follower that cannot reach the broker yet
        /// (it is restarting) keeps trying, as it does for fetches.
        private mutating func begin() async throws {
            let consumer = self.consumer
            let (start, reconnected) = try await Self.persisting(consumer) { try await Self.lookUp(consumer) }
            if reconnected { reconnects += 1 }
            (positions, ends) = start
            fetchFrom = positions
            knownEnds = ends
            started = true
        }

        private static func lookUp(_ consumer: Consumer) async throws -> (positions: [TopicPartition: Int64], ends: [TopicPartition: Int64]) {
            let client = consumer.client
            if let exact = consumer.positions {
                var ends: [TopicPartition: Int64] = [:]
                for (topic, places) in Dictionary(grouping: exact.keys, by: \.topic) {
                    let latest = try await client.listOffsets(topic, partitions: places.map(\.partition).sorted(), timestamp: ListOffsetsPartition.latest)
                    for entry in latest { ends[TopicPartition(topic: topic, partition: entry.partition)] = entry.offset }
                }
                return (exact, ends)
            }
            let all = try await client.partitionCount(consumer.topic)
            let chosen = consumer.partitions ?? Array(0..<all)
            if let bad = chosen.first(where: { $0 < 0 || $0 >= all }) {
                throw MillraceError(.unknownPartition, "topic \"\(consumer.topic)\" has partitions 0...\(all - 1); \(bad) is not one")
            }
            let timestamp: Int64
            switch consumer.start {
            case .earliest: timestamp = ListOffsetsPartition.earliest
            case .latest, .offset: timestamp = ListOffsetsPartition.latest
            case .timestamp(let ms): timestamp = ms
            }
            let starts = try await client.listOffsets(consumer.topic, partitions: chosen, timestamp: timestamp)
            let latest = try await client.listOffsets(consumer.topic, partitions: chosen, timestamp: ListOffsetsPartition.latest)
            var ends: [TopicPartition: Int64] = [:]
            for entry in latest { ends[TopicPartition(topic: consumer.topic, partition: entry.partition)] = entry.offset }
            var positions: [TopicPartition: Int64] = [:]
            for entry in starts {
                let place = TopicPartition(topic: consumer.topic, partition: entry.partition)
                if case .offset(let offset) = consumer.start {
                    positions[place] = offset
                } else {
                    positions[place] = entry.offset
                }
            }
            return (positions, ends)
        }

        /// One response received and decoded. On any failure the fetches in flight are dropped
        /// and the next fetch starts where decoding stopped, so nothing is skipped.
        private mutating func poll() async throws {
            do {
                try await receive()
            } catch {
                inFlight.removeAll()
                fetchFrom = positions
                throw error
            }
        }

        private mutating func receive() async throws {
            if inFlight.isEmpty { send() }
            let body: ResponseBody
            if inFlight.isEmpty {
                body = try await fetch(nextRequest(for: []))  // following, with nothing wanted: the idle long poll
            } else {
                let (request, response) = inFlight.removeFirst()
                do {
                    body = try await response.get()
                } catch {
                    body = try await fetch(request)  // reconnects (following) or fails as a fetch does
                }
            }
            guard case .fetch(let topics) = body else { throw MillraceClient.unexpectedBody }
            let entries = topics.flatMap { topic in topic.entries.map { (topic: topic.topic, entry: $0) } }
            for (_, entry) in entries where entry.errorCode != .none { throw MillraceError(entry.errorCode, entry.message) }
            // From the batch headers alone: where each partition goes on, and the dictionaries
            // to fetch before decoding.
            var unknown: [String: Set<UInt32>] = [:]
            for (topic, entry) in entries {
                let place = TopicPartition(topic: topic, partition: entry.partition)
                fetchFrom[place] = try Self.scan(entry, from: fetchFrom[place] ?? 0, unknownDictionaries: &unknown[topic, default: []])
                knownEnds[place] = entry.logEndOffset
            }
            // A response with no records while records wait (the broker short of memory, say)
            // stops the overlap until one brings records: the next fetch is the only one, with
            // the usual wait, rather than a loop of immediate empty answers.
            overlapping = entries.contains { $0.entry.records.readableBytes > 0 }
            for (topic, ids) in unknown {
                for id in ids { try await consumer.client.loadDictionary(topic: topic, id: id) }
            }
            // Ask for what follows before decoding this.
            send()
            // Decoded in order, kept next-last (also what was decoded before a failure).
            defer { buffered = Self.reversed(&buffered) }
            for (topic, entry) in entries { try decode(entry, of: topic) }
        }

        /// Sends fetches for the wanted partitions no fetch in flight holds: with none in
        /// flight, one for all of them (a long poll when following), or two for halves of
        /// them when each has records waiting; beside one in flight, one for all of them if
        /// any has records waiting (the broker answers at once), so a partition that caught up
        /// is still asked for while others are behind.
        private mutating func send() {
            let busy = Set(inFlight.flatMap { $0.request.topics.flatMap { topic in topic.entries.map { TopicPartition(topic: topic.topic, partition: $0.partition) } } })
            let free = fetchFrom.filter { !busy.contains($0.key) && (!consumer.stopAtEnd || $0.value < ends[$0.key, default: 0]) }.sorted { $0.key < $1.key }
            guard !free.isEmpty else { return }
            let waiting = free.filter { $0.value < knownEnds[$0.key, default: 0] }
            if inFlight.isEmpty {
                guard overlapping, waiting.count == free.count, free.count >= 2 else {
                    return issue(nextRequest(for: free))
                }
                let half = free.count / 2
                issue(nextRequest(for: Array(free[..<half]), waitMs: 0))
                issue(nextRequest(for: Array(free[half...]), waitMs: 0))
            } else if overlapping && !waiting.isEmpty {
                issue(nextRequest(for: free, waitMs: 0))
            }
        }

        private mutating func issue(_ request: FetchRequest) {
            inFlight.append((request, consumer.client.request(.fetch(request))))
        }

        /// A fetch of `wanted` from their positions, waiting `waitMs` (the consumer's long poll
        /// when following, none when stopping at the end) for records to arrive.
        private mutating func nextRequest(for wanted: [(key: TopicPartition, value: Int64)], waitMs: Int32? = nil) -> FetchRequest {
            var wanted = wanted
            // Only the first partition with data may pass the fetch's byte limit, so each
            // fetch starts at the partition that led one longest ago: none is starved behind
            // the others, whichever fetches it shares (two in flight take turns).
            if !wanted.isEmpty {
                let start = wanted.indices.min { ledAt[wanted[$0].key, default: -1] < ledAt[wanted[$1].key, default: -1] } ?? 0
                wanted = Array(wanted[start...] + wanted[..<start])
                ledAt[wanted[0].key] = polls
            }
            polls &+= 1
            return FetchRequest(
                maxWaitMs: consumer.stopAtEnd ? 0 : waitMs ?? consumer.maxWaitMs, minBytes: 1, maxBytes: 4 << 20,
                topics: Self.byTopic(wanted, idleTopic: consumer.topic))
        }

        /// The fetch's topics, each once, in the order their first partition comes in `wanted`
        /// (which rotates); with nothing wanted, the idle topic with no partitions.
        static func byTopic(_ wanted: [(key: TopicPartition, value: Int64)], idleTopic: String) -> [TopicEntries<FetchPartition>] {
            var order: [String] = []
            var entries: [String: [FetchPartition]] = [:]
            for (place, offset) in wanted {
                if entries[place.topic] == nil { order.append(place.topic) }
                entries[place.topic, default: []].append(FetchPartition(partition: place.partition, offset: offset, maxBytes: 1 << 20))
            }
            guard !order.isEmpty else { return [TopicEntries(topic: idleTopic, [])] }
            return order.map { TopicEntries(topic: $0, entries[$0] ?? []) }
        }

        /// The header of the batch at `index`, whose length must keep it inside `raw`.
        static func batchHeader(in raw: UnsafeRawBufferPointer, at index: Int) throws -> RecordBatchHeader {
            let header = try RecordBatchHeader(parsing: UnsafeRawBufferPointer(rebasing: raw[index...]))
            guard header.totalBytes >= RecordBatchLayout.headerBytes, header.totalBytes <= raw.count - index else {
                throw MillraceError(.corruptBatch, "the broker sent a batch at offset \(header.baseOffset) whose length (\(header.batchLength)) does not fit the response")
            }
            return header
        }

        /// Where a partition's reading goes on after `entry`'s batches (what `decode` will
        /// set), and the ids of the zstd dictionaries they were compressed with that this
        /// process has not loaded: from the batch headers and zstd frame headers alone.
        static func scan(_ entry: FetchPartitionResult, from position: Int64, unknownDictionaries: inout Set<UInt32>) throws -> Int64 {
            var position = position
            try entry.records.withUnsafeReadableBytes { raw in
                var index = 0
                while index < raw.count {
                    let header = try Self.batchHeader(in: raw, at: index)
                    position = Swift.max(position, header.nextOffset)
                    if header.attributes.codec == .zstd {
                        let section = UnsafeRawBufferPointer(rebasing: raw[(index + RecordBatchLayout.recordsAt)..<(index + header.totalBytes)])
                        let id = Zstd.dictionaryID(ofFrame: section)
                        if id != 0 && !ZstdDictionaries.shared.contains(id) { unknownDictionaries.insert(id) }
                    }
                    index += header.totalBytes
                }
            }
            return position
        }

        /// One fetch, sent again after a lost broker when following.
        private mutating func fetch(_ request: FetchRequest) async throws -> ResponseBody {
            let client = consumer.client
            let (body, reconnected) = try await Self.persisting(consumer) { try await client.request(.fetch(request)).get() }
            if reconnected { reconnects += 1 }
            return body
        }

        /// Runs `attempt`. A follower that loses the broker (a restart, a network cut) says so
        /// once, reconnects with backoff until it is back or the task is cancelled, and tells
        /// whether it had to; a consumer that stops at the end fails instead.
        private static func persisting<T>(_ consumer: Consumer, _ attempt: () async throws -> T) async throws -> (T, reconnected: Bool) {
            let client = consumer.client
            var backoff: Backoff?
            while true {
                do {
                    let value = try await attempt()
                    if let backoff {
                        client.logger.notice("reconnected to \(client.host):\(client.port) after \(backoff.attempts) attempt\(backoff.attempts == 1 ? "" : "s"); resuming")
                    }
                    return (value, backoff != nil)
                } catch let error as MillraceError where !consumer.stopAtEnd && error.code.isReconnectable {
                    if backoff == nil {
                        client.logger.warning("lost the broker at \(client.host):\(client.port) (\(error.message)); reconnecting")
                    }
                    var retry = backoff ?? Backoff(min: client.configuration.reconnectBackoffMin, max: client.configuration.reconnectBackoffMax)
                    try await consumer.clock.sleep(for: retry.next())
                    backoff = retry
                }
            }
        }

        private mutating func decode(_ entry: FetchPartitionResult, of topic: String) throws {
            let place = TopicPartition(topic: topic, partition: entry.partition)
            var position = positions[place] ?? 0
            let limit = consumer.stopAtEnd ? ends[place, default: .max] : .max
            try entry.records.withUnsafeReadableBytes { raw in
                var index = 0
                while index < raw.count {
                    let header = try Self.batchHeader(in: raw, at: index)
                    let bytes = UnsafeRawBufferPointer(rebasing: raw[index..<(index + header.totalBytes)])
                    try RecordBatch.verify(bytes)
                    try RecordBatch.forEachRecord(in: bytes, header: header, decodeHeaders: true) { record, headers in
                        let offset = header.baseOffset + Int64(record.offsetDelta)
                        guard offset >= position, offset < limit else { return }
                        buffered.append(
                            ConsumedRecord(
                                topic: topic, partition: entry.partition, offset: offset,
                                timestamp: RecordBatch.recordTimestamp(header: header, timestampDelta: record.timestampDelta),
                                key: record.key.map(Array.init), value: record.value.map(Array.init), headers: headers))
                    }
                    position = Swift.max(position, header.nextOffset)
                    index += header.totalBytes
                }
            }
            positions[place] = position
        }
    }
}
