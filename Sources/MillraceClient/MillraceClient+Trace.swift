import MillraceFormat
import MillraceWire

extension MillraceClient {
    /// Sets what `topic` indexes for traces; an empty policy stops indexing its new records.
    public func setIndexPolicy(topic: String, policy: IndexPolicy) async throws {
        guard case .setIndexPolicy = try await send(.setIndexPolicy(topic: topic, policy: IndexPolicyWire(policy))) else { throw Self.unexpectedBody }
    }

    /// A topic's index policy and the entries written for it, with the whole key index's size.
    public struct IndexStatus: Sendable, Equatable {
        /// What the topic indexes.
        public var policy: IndexPolicy
        /// Entries written for the topic since its policy was set.
        public var entriesWritten: Int64
        /// The whole index (all topics): entries held, runs, bytes on disk.
        public var entriesHeld: Int64
        /// Sorted runs the index is in on disk.
        public var runs: Int32
        /// The whole index's bytes on disk.
        public var diskBytes: Int64
    }

    /// The topic's index policy, entries written for it, and the whole index's size.
    public func indexStatus(topic: String) async throws -> IndexStatus {
        guard case .indexStatus(let status) = try await send(.indexStatus(topic: topic)) else { throw Self.unexpectedBody }
        return IndexStatus(
            policy: status.policy.policy, entriesWritten: status.entriesWritten, entriesHeld: status.entriesHeld, runs: status.runs, diskBytes: status.diskBytes)
    }

    /// A record a trace found: where it is, when it was appended, which indexed fields held
    /// the key, and its indexed values.
    public struct TraceHit: Sendable, Equatable {
        /// An indexed field of the record and its values.
        public struct Field: Sendable, Equatable {
            /// `key`, a JSON pointer, or a link side.
            public var name: String
            public var values: [String]
        }

        public var topic: String
        /// The partition.
        public var partition: Int32
        /// The record's offset in its partition.
        public var offset: Int64
        /// When the broker appended it, milliseconds since 1970.
        public var timeMs: Int64
        public var matched: [String]
        public var fields: [Field]

        init(_ hit: TraceHitWire) {
            topic = hit.topic
            partition = hit.partition
            offset = hit.offset
            timeMs = hit.timeMs
            matched = hit.matched
            fields = hit.fields.map { Field(name: $0.name, values: $0.values) }
        }
    }

    /// Which way a genealogy walk goes.
    public enum WalkDirection: Sendable, Equatable {
        /// Where-used (downstream): from a component or material lot to every lot and serial
        /// it was consumed into, along the links' child side to their parent side.
        case down
        /// Where-from (upstream): from a finished lot or serial to the lots consumed into it,
        /// along the links' parent side to their child side.
        case up
    }

    /// A genealogy walk's tree, breadth first.
    public struct GenealogyTree: Sendable, Equatable {
        /// One value in the tree: where it sits, how it was reached, the record that linked it.
        public struct Node: Sendable, Equatable {
            /// How a node was reached.
            public enum Kind: Sendable, Equatable {
                /// The value the walk started from.
                case start
                /// Linked to its parent, and walked on.
                case linked
                /// Already on the path back to the start: reported, not walked again.
                case cycle
                /// Reached before by another path: reported, not walked again.
                case repeated
            }

            /// The lot, serial or other value.
            public var value: String
            /// Levels from the start.
            public var depth: Int32
            /// Index of the parent node in `nodes`; -1 for the start.
            public var parent: Int32
            /// How it was reached.
            public var kind: Kind
            /// The first record linking it to its parent (empty and -1 for the start).
            public var topic: String
            /// The partition.
            public var partition: Int32
            /// The record's offset (-1 for the start).
            public var offset: Int64
        }

        /// Why a walk stopped before its end.
        public enum Stop: Sendable, Equatable {
            /// It reached `nodesMax` nodes.
            case nodesMax
            /// It read as many index entries as the broker lets one walk read
            /// (`Limits.walkIndexEntriesMax`); walk on from a node further down.
            case readBound
        }

        /// The tree's nodes, breadth first; each names its parent's index.
        public var nodes: [Node]
        /// Why the walk stopped short; nil when the tree is whole.
        public var stoppedBy: Stop?
        /// The walk stopped short (`stoppedBy` says why).
        public var truncated: Bool { stoppedBy != nil }
    }

    /// One step of a rebuild: records `next..<end` of the partition are left.
    public struct IndexRebuildStep: Sendable, Equatable {
        /// The partition.
        public var partition: Int32
        public var next: Int64
        /// The first offset appended after the policy was set: the rebuild's end.
        public var end: Int64
        /// Entries this step wrote.
        public var indexed: Int32
        /// Whether the partition's rebuild is done.
        public var done: Bool { next >= end }
    }

    /// One page of a trace: records whose indexed values include `key`, in append order.
    package func tracePage(key: [UInt8], topics: [String] = [], after: TraceCursorWire? = nil, limit: Int = 100) async throws -> TraceResponse {
        guard case .trace(let page) = try await send(.trace(TraceRequest(key: key, topics: topics, after: after, limit: Int32(clamping: limit)))) else {
            throw Self.unexpectedBody
        }
        return page
    }

    /// One step of indexing `partition`'s records appended before its topic's index policy
    /// was set: up to `maxRecords` of them. Call again until the answer is `done`; a stopped
    /// rebuild resumes where it was.
    public func indexRebuildStep(topic: String, partition: Int32, maxRecords: Int = 20_000) async throws -> IndexRebuildStep {
        let request = IndexRebuildRequest(topic: topic, partition: partition, maxRecords: Int32(clamping: maxRecords))
        guard case .indexRebuild(let step) = try await send(.indexRebuild(request)) else { throw Self.unexpectedBody }
        return IndexRebuildStep(partition: step.partition, next: step.next, end: step.end, indexed: step.indexed)
    }

    /// The genealogy tree from `key` along the topics' links: `.down` where-used (everything
    /// it went into), `.up` where-from (everything it was built from); breadth first, at most `depth` levels and `nodesMax` nodes.
    public func walk(
        key: String, direction: WalkDirection, depth: Int = 10, topics: [String] = [], nodesMax: Int = 1_000
    ) async throws -> GenealogyTree {
        let request = WalkRequest(
            key: Array(key.utf8), direction: direction == .down ? .down : .up, depth: Int32(clamping: depth), topics: topics,
            nodesMax: Int32(clamping: nodesMax))
        guard case .walk(let tree) = try await send(.walk(request)) else { throw Self.unexpectedBody }
        return GenealogyTree(
            nodes: tree.nodes.map { node in
                let kind: GenealogyTree.Node.Kind =
                    switch node.kind {
                    case .start: .start
                    case .linked: .linked
                    case .cycle: .cycle
                    case .repeated: .repeated
                    }
                return GenealogyTree.Node(
                    value: node.value, depth: node.depth, parent: node.parent, kind: kind, topic: node.topic, partition: node.partition, offset: node.offset)
            },
            stoppedBy: {
                switch tree.truncation {
                case .whole: nil
                case .nodesMax: .nodesMax
                case .readBound: .readBound
                }
            }())
    }

    /// Every record whose indexed values include `key` (in `topics`, or all), in the order
    /// they were appended, fetched a page at a time as the sequence is read.
    public func trace(key: String, topics: [String] = [], pageSize: Int = 100) -> TraceHits {
        TraceHits(client: self, key: Array(key.utf8), topics: topics, pageSize: pageSize)
    }
}

/// The hits of a trace, paged from the broker as they are read.
public struct TraceHits: AsyncSequence, Sendable {
    /// One record the trace found.
    public typealias Element = MillraceClient.TraceHit
    let client: MillraceClient
    let key: [UInt8]
    let topics: [String]
    let pageSize: Int

    public func makeAsyncIterator() -> Iterator { Iterator(sequence: self) }

    /// Pages the trace from the broker as it is read.
    public struct Iterator: AsyncIteratorProtocol {
        let sequence: TraceHits
        var buffered: [MillraceClient.TraceHit] = []
        var cursor: TraceCursorWire?
        var finished = false

        init(sequence: TraceHits) { self.sequence = sequence }

        public mutating func next() async throws -> MillraceClient.TraceHit? {
            while buffered.isEmpty {
                guard !finished else { return nil }
                let page = try await sequence.client.tracePage(key: sequence.key, topics: sequence.topics, after: cursor, limit: sequence.pageSize)
                buffered = page.hits.reversed().map(MillraceClient.TraceHit.init)
                cursor = page.next
                finished = page.next == nil
            }
            return buffered.popLast()
        }
    }
}
