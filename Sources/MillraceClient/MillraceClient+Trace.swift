import MillraceFormat
import MillraceWire

extension MillraceClient {
    /// Sets what `topic` indexes for traces; an empty policy stops indexing its new records.
    public func setIndexPolicy(topic: String, policy: IndexPolicy) async throws {
        guard case .setIndexPolicy = try await send(.setIndexPolicy(topic: topic, policy: IndexPolicyWire(policy))) else { throw Self.unexpectedBody }
    }

    /// A topic's index policy and the entries written for it, with the whole key index's size.
    public struct IndexStatus: Sendable, Equatable {
        public var policy: IndexPolicy
        /// Entries written for the topic since its policy was set.
        public var entriesWritten: Int64
        /// The whole index (all topics): entries held, runs, bytes on disk.
        public var entriesHeld: Int64
        public var runs: Int32
        public var diskBytes: Int64
    }

    /// The topic's index policy, entries written for it, and the whole index's size.
    public func indexStatus(topic: String) async throws -> IndexStatus {
        guard case .indexStatus(let status) = try await send(.indexStatus(topic: topic)) else { throw Self.unexpectedBody }
        return IndexStatus(
            policy: status.policy.policy, entriesWritten: status.entriesWritten, entriesHeld: status.entriesHeld, runs: status.runs, diskBytes: status.diskBytes)
    }

    /// One page of a trace: records whose indexed values include `key`, in append order.
    public func tracePage(key: [UInt8], topics: [String] = [], after: TraceCursorWire? = nil, limit: Int = 100) async throws -> TraceResponse {
        guard case .trace(let page) = try await send(.trace(TraceRequest(key: key, topics: topics, after: after, limit: Int32(clamping: limit)))) else {
            throw Self.unexpectedBody
        }
        return page
    }

    /// One step of indexing `partition`'s records appended before its topic's index policy
    /// was set: up to `maxRecords` of them. Call again until the answer is `done`; a stopped
    /// rebuild resumes where it was.
    public func indexRebuildStep(topic: String, partition: Int32, maxRecords: Int = 20_000) async throws -> IndexRebuildResponse {
        let request = IndexRebuildRequest(topic: topic, partition: partition, maxRecords: Int32(clamping: maxRecords))
        guard case .indexRebuild(let step) = try await send(.indexRebuild(request)) else { throw Self.unexpectedBody }
        return step
    }

    /// The genealogy tree from `key` along the topics' links: `.down` where-used (every
    /// descendant), `.up` where-from; breadth first, at most `depth` levels and `nodesMax` nodes.
    public func walk(
        key: String, direction: WalkRequest.Direction, depth: Int = 10, topics: [String] = [], nodesMax: Int = 1_000
    ) async throws -> WalkResponse {
        let request = WalkRequest(key: Array(key.utf8), direction: direction, depth: Int32(clamping: depth), topics: topics, nodesMax: Int32(clamping: nodesMax))
        guard case .walk(let tree) = try await send(.walk(request)) else { throw Self.unexpectedBody }
        return tree
    }

    /// Every record whose indexed values include `key` (in `topics`, or all), in the order
    /// they were appended, fetched a page at a time as the sequence is read.
    public func trace(key: String, topics: [String] = [], pageSize: Int = 100) -> TraceHits {
        TraceHits(client: self, key: Array(key.utf8), topics: topics, pageSize: pageSize)
    }
}

/// The hits of a trace, paged from the broker as they are read.
public struct TraceHits: AsyncSequence, Sendable {
    public typealias Element = TraceHitWire
    let client: MillraceClient
    let key: [UInt8]
    let topics: [String]
    let pageSize: Int

    public func makeAsyncIterator() -> Iterator { Iterator(sequence: self) }

    public struct Iterator: AsyncIteratorProtocol {
        let sequence: TraceHits
        var buffered: [TraceHitWire] = []
        var cursor: TraceCursorWire?
        var finished = false

        init(sequence: TraceHits) { self.sequence = sequence }

        public mutating func next() async throws -> TraceHitWire? {
            while buffered.isEmpty {
                guard !finished else { return nil }
                let page = try await sequence.client.tracePage(key: sequence.key, topics: sequence.topics, after: cursor, limit: sequence.pageSize)
                buffered = page.hits.reversed()
                cursor = page.next
                finished = page.next == nil
            }
            return buffered.popLast()
        }
    }
}
