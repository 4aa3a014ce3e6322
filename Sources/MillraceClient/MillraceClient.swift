import Logging
import MillraceFormat
import MillraceSchema
import MillraceWire
import NIOCore
import NIOPosix

/// A client of a broker: admin calls, offsets and fetches over one pipelined connection,
/// reconnecting when it drops. Producers and consumers are built on it.
///
/// ```swift
/// var configuration = MillraceClient.Configuration()
/// configuration.brokers = ["mes-broker-1:7450", "mes-broker-2:7450"]
/// let client = MillraceClient(configuration: configuration)
/// do {
///     try await work(client)  // producers, consumers, services using the client
/// } catch {
///     await client.close()
///     throw error
/// }
/// await client.close()
/// ```
///
/// Close it once, after everything using it has stopped. (`defer` cannot await, and a task
/// started from `defer` may never run before the process ends.)
public final class MillraceClient: Sendable {
    /// Where the client's connections run.
    public enum EventLoopGroupProvider: Sendable {
        /// SwiftNIO's process-wide group (`MultiThreadedEventLoopGroup.singleton`): many
        /// clients share its threads; `close()` leaves it running.
        case singleton
        /// A group the application owns (and shuts down itself, after closing its clients).
        case shared(any EventLoopGroup)
    }

    /// What a client connects to and how long it waits.
    public struct Configuration: Sendable {
        /// Brokers to connect to, `HOST:PORT`, tried in order until one answers (each new
        /// connection starts again from the first).
        public var brokers: [String] = ["127.0.0.1:7450"]
        /// Where connections run: SwiftNIO's shared group (the default) or the application's.
        public var eventLoopGroup: EventLoopGroupProvider = .singleton
        /// Times a request is sent again on a new connection when the one it went out on
        /// dropped before the answer (admin and read requests; producers retry on their own
        /// terms, see `Producer.Configuration.deliveryTimeout`).
        public var requestRetries: Int = 1
        /// How long a request may wait for its answer (a fetch adds its own wait).
        public var requestTimeout: TimeAmount = .seconds(30)
        /// How long a connection may take to open.
        public var connectTimeout: TimeAmount = .seconds(5)
        /// Followers (consumers with `stopAtEnd: false`, group consumers) reconnect after a
        /// lost connection with exponential backoff from `reconnectBackoffMin` up to
        /// `reconnectBackoffMax`, with jitter.
        public var reconnectBackoffMin: Duration = .milliseconds(100)
        /// The longest wait between reconnects.
        public var reconnectBackoffMax: Duration = .seconds(5)
        /// The user every connection logs in as (SCRAM), for a broker run with `--auth`; nil:
        /// no login (a broker with `--auth off`, or `optional` as `anonymous`).
        public var credentials: Credentials?
        /// TLS to every broker; nil: plain TCP.
        public var tls: ClientTLS?
        /// Where the client says what it does on its own (reconnects, skipped records).
        public var logger = Logger(label: "millrace.client", factory: { _ in SwiftLogNoOpLogHandler() })

        /// Defaults: 127.0.0.1:7450, 30 s requests, 5 s connects, one retry, SwiftNIO's shared group.
        public init() {}
    }

    /// The first broker in `configuration.brokers` (the one log lines name).
    public let host: String
    public let port: Int
    public let configuration: Configuration
    let group: any EventLoopGroup
    /// Every broker to try, parsed.
    private let brokers: [(host: String, port: Int)]
    private let eventLoop: any EventLoop
    private enum Link {
        case opening(EventLoopFuture<Connection>)
        case open(Connection)
    }

    /// The live connection, or the one being opened (shared, so requests keep their order).
    private let link = Locked<Link?>(nil)
    /// Compiled schemas fetched by version, per topic (versions never change once registered).
    let schemaCache = Locked<[String: [Int32: Schema]]>([:])

    /// A client of the broker at `host`:`port` (the configuration's `brokers` are not used).
    public convenience init(host: String = "127.0.0.1", port: Int = 7450, configuration: Configuration = Configuration()) {
        var configuration = configuration
        configuration.brokers = ["\(host):\(port)"]
        self.init(configuration: configuration)
    }

    /// A client of the configuration's brokers. An address that is not `HOST:PORT` is left
    /// out (with none left, connecting fails with a message saying so).
    public init(configuration: Configuration) {
        self.configuration = configuration
        brokers = configuration.brokers.compactMap { address in
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (1...65_535).contains(port) else { return nil }
            return (String(address[..<colon]), port)
        }
        host = brokers.first?.host ?? "127.0.0.1"
        port = brokers.first?.port ?? 7450
        switch configuration.eventLoopGroup {
        case .singleton: group = MultiThreadedEventLoopGroup.singleton
        case .shared(let shared): group = shared
        }
        eventLoop = group.next()
    }

    public var logger: Logger { configuration.logger }

    /// The current connection, or a new one if there is none or it dropped. Callers that ask
    /// while a connection is being opened share it, and their requests go out in the order
    /// they asked.
    func connection() -> EventLoopFuture<Connection> {
        link.withLock { link in
            switch link {
            case .opening(let opening): return opening
            case .open(let open) where open.isActive: return eventLoop.makeSucceededFuture(open)
            case .open, nil: break
            }
            let promise = eventLoop.makePromise(of: Connection.self)
            let opening = promise.futureResult
            // Registered before any request's callback, so the state is current when they run.
            opening.whenComplete { [self] result in
                self.link.withLock { link in
                    guard case .opening(let current) = link, current === opening else { return }
                    switch result {
                    case .success(let open): link = .open(open)
                    case .failure: link = nil
                    }
                }
            }
            let (brokers, group, configuration) = (brokers, group, configuration)
            promise.completeWithTask {
                var lastError = MillraceError(.networkError, "no broker address to connect to (configuration.brokers: \(configuration.brokers))")
                for broker in brokers {
                    do {
                        return try await Connection.connect(
                            host: broker.host, port: broker.port, group: group, connectTimeout: configuration.connectTimeout,
                            requestTimeout: configuration.requestTimeout, credentials: configuration.credentials, tls: configuration.tls)
                    } catch let error as MillraceError where error.code == .networkError {
                        lastError = error
                    }
                }
                throw lastError
            }
            link = .opening(opening)
            return opening
        }
    }

    /// Sends a request on the current connection, opening one if needed; no retry. Requests
    /// made one after another from one thread go out in that order.
    package func request(_ request: Request) -> EventLoopFuture<ResponseBody> {
        // Always through the event loop's queue, even when called on it: a request made on
        // the loop must not overtake one made just before from another thread and still
        // queued (a producer's linger timer and its sender run on different threads).
        eventLoop.flatSubmit { [self] in connection().flatMap { $0.request(request) } }
    }

    /// Sends a request; when the connection it went out on had dropped, one retry on a new one.
    package func send(_ request: Request) async throws -> ResponseBody {
        var retries = max(0, configuration.requestRetries)
        while true {
            do {
                return try await self.request(request).get()
            } catch let error as MillraceError where error.code == .networkError && retries > 0 {
                retries -= 1
            }
        }
    }

    /// Closes the connection (waiting for one being opened). Requests after it open a new
    /// one; close producers and consumers first, as their own closing talks to the broker.
    public func close() async {
        let current = link.withLock { link -> EventLoopFuture<Connection>? in
            switch link {
            case .opening(let opening): return opening
            case .open(let open): return eventLoop.makeSucceededFuture(open)
            case nil: return nil
            }
        }
        if let open = try? await current?.get() { await open.close() }
    }

    // MARK: Admin

    package func createTopic(_ request: CreateTopicRequest) async throws {
        _ = try await send(.createTopic(request))
    }

    public func deleteTopic(_ name: String) async throws {
        _ = try await send(.deleteTopic(name: name))
    }

    /// A topic's name and partition count, as `listTopics` gives them.
    public struct TopicListing: Sendable, Equatable {
        /// The topic's name.
        public var name: String
        public var partitionCount: Int32
    }

    /// Every topic, by name.
    public func listTopics() async throws -> [TopicListing] {
        guard case .listTopics(let topics) = try await send(.listTopics) else { throw Self.unexpectedBody }
        return topics.map { TopicListing(name: $0.name, partitionCount: $0.partitionCount) }
    }

    /// A topic's settings and each partition's offsets and size.
    public struct TopicDescription: Sendable, Equatable {
        /// One partition's offsets and size.
        public struct Partition: Sendable, Equatable {
            /// The partition.
            public var partition: Int32
            /// The earliest offset still held.
            public var logStartOffset: Int64
            /// The offset the next record gets.
            public var logEndOffset: Int64
            /// Bytes held.
            public var bytes: Int64
            /// Record batches held.
            public var batches: Int64
            public var records: Int64 { logEndOffset - logStartOffset }
        }

        /// The topic's name.
        public var name: String
        /// nil: batches are kept forever.
        public var retention: Duration?
        /// Per partition; nil: no size limit.
        public var retentionBytes: Int64?
        /// The codec producers use.
        public var compression: TopicConfig.Compression
        /// Whose clock stamps records.
        public var timestamps: TopicConfig.Timestamps
        /// When the topic was created, milliseconds since 1970.
        public var createdAtMs: Int64
        /// Each partition's offsets and size.
        public var partitions: [Partition]
        /// The one principal allowed to produce to the topic; nil: any with the write right.
        public var owner: String?
    }

    public func describeTopic(_ name: String) async throws -> TopicDescription {
        guard case .describeTopic(let topic) = try await send(.describeTopic(name: name)) else { throw Self.unexpectedBody }
        return TopicDescription(
            name: topic.name, retention: topic.retentionMs >= 0 ? .milliseconds(topic.retentionMs) : nil,
            retentionBytes: topic.retentionBytes >= 0 ? topic.retentionBytes : nil, compression: topic.compression == CompressionCodec.zstd.rawValue ? .zstd : .none,
            timestamps: topic.timestampType == 1 ? .logAppend : .create, createdAtMs: topic.createdAtMs,
            partitions: topic.partitions.map {
                TopicDescription.Partition(
                    partition: $0.partition, logStartOffset: $0.logStartOffset, logEndOffset: $0.logEndOffset, bytes: $0.bytes, batches: $0.batches)
            }, owner: topic.owner.isEmpty ? nil : topic.owner)
    }

    /// An idempotent producer identity: a new producer id (`producerId` -1), or the next
    /// epoch of one (fencing the session that held it).
    public func initProducer(producerId: Int64 = -1, epoch: Int16 = -1) async throws -> (producerId: Int64, epoch: Int16) {
        guard case .initProducer(let id, let newEpoch) = try await send(.initProducer(producerId: producerId, epoch: epoch)) else {
            throw Self.unexpectedBody
        }
        return (id, newEpoch)
    }

    /// Turns a topic's duplicate detection on (`key`: `key`, `header:NAME` or `json:/pointer`)
    /// or off (nil).
    public func setDedupPolicy(topic: String, key: String?, windowMs: Int64 = DedupPolicy.defaultWindowMs) async throws {
        _ = try await send(.setDedupPolicy(topic: topic, key: key ?? "", windowMs: windowMs))
    }

    /// Whether a topic holds a business key, and where the first record with it is.
    public struct DedupCheck: Sendable, Equatable {
        /// Whether the topic holds the key inside its window.
        public var found: Bool
        /// The partition.
        public var partition: Int32
        /// The offset.
        public var offset: Int64
        /// When the key was first seen, milliseconds since 1970.
        public var firstSeenMs: Int64
    }

    /// A topic's duplicate detection.
    public struct DedupStatus: Sendable, Equatable {
        /// The key spec (`key`, `header:NAME`, `json:/pointer`); empty when detection is off.
        public var key: String
        /// How long a key is remembered, in milliseconds.
        public var windowMs: Int64
        /// Keys held now.
        public var keysHeld: Int64
        /// Sorted runs the keys are in on disk.
        public var runs: Int32
        /// When the oldest key held was first seen (ms since 1970); -1 when none is held.
        public var oldestKeyMs: Int64
        /// Duplicates caught since detection was turned on.
        public var duplicatesTotal: Int64
        /// Duplicates caught in the last five minutes.
        public var duplicatesRecent: Int32
    }

    /// Whether the topic holds `key` inside its window, and where the first record with it is.
    public func dedupCheck(topic: String, key: [UInt8]) async throws -> DedupCheck {
        guard case .dedupCheck(let check) = try await send(.dedupCheck(topic: topic, key: key)) else { throw Self.unexpectedBody }
        return DedupCheck(found: check.found, partition: check.partition, offset: check.offset, firstSeenMs: check.firstSeenMs)
    }

    /// A topic's duplicate detection: policy, keys held, duplicates caught (key "" when off).
    public func dedupStatus(topic: String) async throws -> DedupStatus {
        guard case .dedupStatus(let status) = try await send(.dedupStatus(topic: topic)) else { throw Self.unexpectedBody }
        return DedupStatus(
            key: status.key, windowMs: status.windowMs, keysHeld: status.keysHeld, runs: status.runs, oldestKeyMs: status.oldestKeyMs,
            duplicatesTotal: status.duplicatesTotal, duplicatesRecent: status.duplicatesRecent)
    }

    /// Partition count of a topic; `unknownTopic` when it does not exist.
    public func partitionCount(_ topic: String) async throws -> Int32 {
        guard case .metadata(let metadata) = try await send(.metadata(topics: [topic])), let entry = metadata.topics.first else {
            throw Self.unexpectedBody
        }
        guard entry.errorCode == .none else {
            throw MillraceError(entry.errorCode, "topic \"\(topic)\" does not exist; create it with `millrace topic create \(topic)`")
        }
        guard (1...Int32(Limits.partitionsPerTopicMax)).contains(entry.partitionCount) else {
            throw MillraceError(.unexpected, "the broker said topic \"\(topic)\" has \(entry.partitionCount) partitions; a topic has 1...\(Limits.partitionsPerTopicMax)")
        }
        return entry.partitionCount
    }

    /// Offsets for `timestamp` (`ListOffsetsPartition.earliest`, `.latest`, or ms) per partition.
    package func listOffsets(_ topic: String, partitions: [Int32], timestamp: Int64) async throws -> [ListOffsetsPartitionResult] {
        let request = ListOffsetsRequest(topics: [TopicEntries(topic: topic, partitions.map { ListOffsetsPartition(partition: $0, timestamp: timestamp) })])
        guard case .listOffsets(let topics) = try await send(.listOffsets(request)), let entries = topics.first?.entries else {
            throw Self.unexpectedBody
        }
        if let failed = entries.first(where: { $0.errorCode != .none }) {
            throw MillraceError(failed.errorCode, "cannot list offsets of \(topic)/\(failed.partition)")
        }
        return entries
    }

    // MARK: Groups

    package func listGroups() async throws -> [GroupSummary] {
        guard case .listGroups(let groups) = try await send(.listGroups) else { throw Self.unexpectedBody }
        return groups
    }

    package func describeGroup(_ group: String) async throws -> DescribeGroupResponse {
        guard case .describeGroup(let described) = try await send(.describeGroup(group: group)) else { throw Self.unexpectedBody }
        return described
    }

    /// Deletes an idle group's committed offsets (refused while it has live members).
    public func deleteGroup(_ group: String) async throws {
        _ = try await send(.deleteGroup(group: group))
    }

    /// The group's committed offsets for these partitions (-1 where none).
    package func committedOffsets(group: String, topic: String, partitions: [Int32]) async throws -> [OffsetEntry] {
        let request = OffsetFetchRequest(group: group, topics: [TopicEntries(topic: topic, partitions.map { PartitionNumber($0) })])
        guard case .offsetFetch(let topics) = try await send(.offsetFetch(request)) else { throw Self.unexpectedBody }
        return topics.first?.entries ?? []
    }

    /// Commits offsets as a member (with its generation) or, with no member, for a group
    /// without live members (the broker refuses it otherwise).
    package func commitOffsets(group: String, memberID: String = "", generation: Int32 = -1, topic: String, offsets: [OffsetEntry]) async throws {
        _ = try await send(
            .offsetCommit(OffsetCommitRequest(group: group, memberID: memberID, generation: generation, topics: [TopicEntries(topic: topic, offsets)])))
    }

    static let unexpectedBody = MillraceError(.unexpected, "the broker answered with a different kind of response")
}

extension MillraceClient {
    /// Where in a partition: its first offset still held, its end (the next offset to be
    /// written), or the first record at or after a time.
    public enum OffsetPosition: Sendable, Equatable {
        /// The earliest offset still held.
        case earliest, latest
        /// Milliseconds since 1970.
        case time(Int64)
    }

    /// Each partition's offset at `position` (for a time past every record: the end).
    public func offsets(topic: String, partitions: [Int32], at position: OffsetPosition) async throws -> [Int32: Int64] {
        let timestamp: Int64 =
            switch position {
            case .earliest: ListOffsetsPartition.earliest
            case .latest: ListOffsetsPartition.latest
            case .time(let ms): ms
            }
        let found = try await listOffsets(topic, partitions: partitions, timestamp: timestamp)
        return Dictionary(found.map { ($0.partition, $0.offset) }, uniquingKeysWith: { first, _ in first })
    }

    /// A consumer group as the broker lists it.
    public struct GroupListing: Sendable, Equatable {
        /// The group's name.
        public var group: String
        /// "stable" (live members) or "empty" (committed offsets only).
        public var state: String
        /// Live members.
        public var memberCount: Int32
    }

    /// A group's members, and per partition its committed offset, end and lag.
    public struct GroupDescription: Sendable, Equatable {
        /// A live member and the partitions it owns.
        public struct Member: Sendable, Equatable {
            /// The member's id.
            public var memberID: String
            /// Topic → the partitions the member owns now.
            public var assignment: [String: [Int32]]
        }

        /// One partition a group reads: its committed offset, end and lag.
        public struct PartitionLag: Sendable, Equatable {
            /// The topic.
            public var topic: String
            /// The partition.
            public var partition: Int32
            /// nil: the group has committed nothing for it.
            public var committedOffset: Int64?
            /// The partition's end.
            public var logEndOffset: Int64
            /// Records the group has yet to read here.
            public var lag: Int64
            /// The member that owns it now; nil when none does.
            public var memberID: String?
        }

        /// "stable" (live members) or "empty" (committed offsets only).
        public var state: String
        /// The generation: it moves on at every rebalance.
        public var generation: Int32
        /// The live members and what each owns.
        public var members: [Member]
        /// Each partition's offsets and size.
        public var partitions: [PartitionLag]

        /// Records the group has yet to read, over every partition.
        public var totalLag: Int64 { partitions.reduce(0) { $0 + $1.lag } }
    }

    /// Groups with live members or committed offsets.
    public func groups() async throws -> [GroupListing] {
        try await listGroups().map { GroupListing(group: $0.group, state: $0.state, memberCount: $0.memberCount) }
    }

    /// One group: members, assignment and lag per partition (`unknownGroup` when it has
    /// neither members nor commits).
    public func group(_ name: String) async throws -> GroupDescription {
        let described = try await describeGroup(name)
        return GroupDescription(
            state: described.state, generation: described.generation,
            members: described.members.map { member in
                GroupDescription.Member(
                    memberID: member.memberID,
                    assignment: Dictionary(member.assignment.map { ($0.topic, $0.entries.map(\.partition)) }, uniquingKeysWith: { first, _ in first }))
            },
            partitions: described.offsets.flatMap { topic in
                topic.entries.map {
                    GroupDescription.PartitionLag(
                        topic: topic.topic, partition: $0.partition, committedOffset: $0.committedOffset >= 0 ? $0.committedOffset : nil,
                        logEndOffset: $0.logEndOffset, lag: $0.lag, memberID: $0.memberID.isEmpty ? nil : $0.memberID)
                }
            })
    }

    /// The group's committed offset per partition of `topic` (partitions it has committed
    /// nothing for are left out).
    public func committedOffsets(group: String, topic: String) async throws -> [Int32: Int64] {
        let partitions = try await partitionCount(topic)
        let entries = try await committedOffsets(group: group, topic: topic, partitions: Array(0..<partitions))
        return Dictionary(entries.filter { $0.offset >= 0 }.map { ($0.partition, $0.offset) }, uniquingKeysWith: { first, _ in first })
    }

    /// Commits offsets (partition → the next offset to read) for a group without live
    /// members — a reset, or a tool's own cursor (members commit through `GroupConsumer`).
    public func commitOffsets(group: String, topic: String, offsets: [Int32: Int64]) async throws {
        try await commitOffsets(group: group, topic: topic, offsets: offsets.sorted { $0.key < $1.key }.map { OffsetEntry(partition: $0.key, offset: $0.value) })
    }
}

/// The documented key → partition rule: FNV-1a (32-bit) of the key bytes, modulo the
/// partition count. The same key always lands on the same partition while the count holds.
public enum KeyPartitioner {
    /// A count below 1 is taken as 1 (everything on partition 0).
    public static func partition(for key: [UInt8], partitionCount: Int32) -> Int32 {
        let partitionCount = max(1, partitionCount)
        var hash: UInt32 = 0x811C_9DC5
        for byte in key {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        return Int32(hash % UInt32(partitionCount))
    }
}
