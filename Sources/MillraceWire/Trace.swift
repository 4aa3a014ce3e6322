import MillraceFormat
import NIOCore

/// A topic's index policy on the wire (SetIndexPolicy, IndexStatus): `i8` record key, then
/// `[string]` fields, then `[link]`, each `string` parent, `string` child.
public struct IndexPolicyWire: WireCodable {
    public var recordKey: Bool
    public var fields: [String]
    public var links: [IndexLink]

    public static let minimumBytes = 1 + 4 + 4

    public init(_ policy: IndexPolicy?) {
        recordKey = policy?.recordKey ?? false
        fields = policy?.fields ?? []
        links = policy?.links ?? []
    }

    public var policy: IndexPolicy { IndexPolicy(recordKey: recordKey, fields: fields, links: links) }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(Int8(recordKey ? 1 : 0))
        buffer.writeMillraceArray(fields) { $0.writeMillraceString($1) }
        buffer.writeMillraceArray(links) { buffer, link in
            buffer.writeMillraceString(link.parent)
            buffer.writeMillraceString(link.child)
        }
    }

    public init(from buffer: inout ByteBuffer) throws {
        recordKey = try buffer.readMillraceInteger("record key", as: Int8.self) != 0
        let pointer = { (buffer: inout ByteBuffer, what: String) in try buffer.readMillraceString(what, maxBytes: Limits.dedupKeySpecBytesMax) }
        fields = try buffer.readMillraceArray("index fields", minimumElementBytes: 2, countMax: Limits.indexFieldsMax) { try pointer(&$0, "index field") }
        links = try buffer.readMillraceArray("links", minimumElementBytes: 4, countMax: Limits.indexLinksMax) {
            IndexLink(parent: try pointer(&$0, "link parent"), child: try pointer(&$0, "link child"))
        }
    }
}

/// IndexStatus's answer: the policy, entries written for the topic, and the whole index's
/// entries held, runs and bytes on disk.
public struct IndexStatusResponse: Equatable, Sendable {
    public var policy: IndexPolicyWire
    public var entriesWritten: Int64
    public var entriesHeld: Int64
    public var runs: Int32
    public var diskBytes: Int64

    public init(policy: IndexPolicyWire, entriesWritten: Int64, entriesHeld: Int64, runs: Int32, diskBytes: Int64) {
        self.policy = policy
        self.entriesWritten = entriesWritten
        self.entriesHeld = entriesHeld
        self.runs = runs
        self.diskBytes = diskBytes
    }

    func write(to buffer: inout ByteBuffer) {
        policy.write(to: &buffer)
        buffer.writeInteger(entriesWritten)
        buffer.writeInteger(entriesHeld)
        buffer.writeInteger(runs)
        buffer.writeInteger(diskBytes)
    }

    init(from buffer: inout ByteBuffer) throws {
        policy = try IndexPolicyWire(from: &buffer)
        entriesWritten = try buffer.readMillraceInteger("entries written")
        entriesHeld = try buffer.readMillraceInteger("entries held")
        runs = try buffer.readMillraceInteger("runs")
        diskBytes = try buffer.readMillraceInteger("disk bytes")
    }
}

/// Where a trace page ends (`i64` time ms, `i32` topic id, `i32` partition, `i64` offset).
public struct TraceCursorWire: WireCodable, Hashable {
    public var timeMs: Int64
    public var topicID: UInt32
    public var partition: Int32
    public var offset: Int64

    public static let minimumBytes = 24

    public init(timeMs: Int64, topicID: UInt32, partition: Int32, offset: Int64) {
        self.timeMs = timeMs
        self.topicID = topicID
        self.partition = partition
        self.offset = offset
    }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(timeMs)
        buffer.writeInteger(topicID)
        buffer.writeInteger(partition)
        buffer.writeInteger(offset)
    }

    public init(from buffer: inout ByteBuffer) throws {
        timeMs = try buffer.readMillraceInteger("cursor time")
        topicID = try buffer.readMillraceInteger("cursor topic")
        partition = try buffer.readMillraceInteger("cursor partition")
        offset = try buffer.readMillraceInteger("cursor offset")
    }
}

/// Trace: `bytes` key, `[string]` topics (empty: all), `i8` has cursor + cursor, `i32` limit.
public struct TraceRequest: Equatable, Sendable {
    public var key: [UInt8]
    public var topics: [String]
    public var after: TraceCursorWire?
    public var limit: Int32

    public init(key: [UInt8], topics: [String] = [], after: TraceCursorWire? = nil, limit: Int32 = 100) {
        self.key = key
        self.topics = topics
        self.after = after
        self.limit = limit
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceBytes(key)
        buffer.writeMillraceArray(topics) { $0.writeMillraceString($1) }
        buffer.writeInteger(Int8(after == nil ? 0 : 1))
        after?.write(to: &buffer)
        buffer.writeInteger(limit)
    }

    init(from buffer: inout ByteBuffer, readTopic: (inout ByteBuffer) throws -> String) throws {
        guard let key = try buffer.readMillraceBytes("trace key") else { throw MillraceError(.invalidRequest, "the key to trace is null") }
        guard key.count <= Limits.dedupKeyBytesMax else {
            throw MillraceError(.invalidRequest, "the key is \(key.count) bytes; values over \(Limits.dedupKeyBytesMax) bytes are never indexed")
        }
        self.key = key
        topics = try buffer.readMillraceArray("topics", minimumElementBytes: 2, countMax: Limits.topicsPerRequestMax) { try readTopic(&$0) }
        let hasCursor: Int8 = try buffer.readMillraceInteger("has cursor")
        after = hasCursor != 0 ? try TraceCursorWire(from: &buffer) : nil
        limit = try buffer.readMillraceInteger("limit")
        guard (1...Int32(Limits.traceHitsPerPageMax)).contains(limit) else {
            throw MillraceError(.invalidRequest, "a trace page holds 1...\(Limits.traceHitsPerPageMax) hits (asked for \(limit))")
        }
    }
}

/// One indexed field of a hit: `string` name (`key`, a pointer) and `[string]` values.
public struct TraceField: WireCodable {
    public var name: String
    public var values: [String]

    public static let minimumBytes = 6

    public init(name: String, values: [String]) {
        self.name = name
        self.values = values
    }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(name)
        buffer.writeMillraceArray(values) { $0.writeMillraceString($1) }
    }

    public init(from buffer: inout ByteBuffer) throws {
        name = try buffer.readMillraceString("field name")
        values = try buffer.readMillraceArray("field values", minimumElementBytes: 2) { try $0.readMillraceString("field value") }
    }
}

/// One record a trace found: `string` topic, `i32` partition, `i64` offset, `i64` append time
/// (ms), `[string]` the fields that held the key, `[field]` the record's indexed fields.
public struct TraceHitWire: WireCodable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var timeMs: Int64
    public var matched: [String]
    public var fields: [TraceField]

    public static let minimumBytes = 2 + 4 + 8 + 8 + 4 + 4

    public init(topic: String, partition: Int32, offset: Int64, timeMs: Int64, matched: [String], fields: [TraceField]) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timeMs = timeMs
        self.matched = matched
        self.fields = fields
    }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(topic)
        buffer.writeInteger(partition)
        buffer.writeInteger(offset)
        buffer.writeInteger(timeMs)
        buffer.writeMillraceArray(matched) { $0.writeMillraceString($1) }
        fields.write(to: &buffer)
    }

    public init(from buffer: inout ByteBuffer) throws {
        topic = try buffer.readMillraceString("topic")
        partition = try buffer.readMillraceInteger("partition")
        offset = try buffer.readMillraceInteger("offset")
        timeMs = try buffer.readMillraceInteger("time")
        matched = try buffer.readMillraceArray("matched fields", minimumElementBytes: 2) { try $0.readMillraceString("matched field") }
        fields = try .init(from: &buffer, "fields")
    }
}

/// Trace's answer: `[hit]`, then `i8` has next + the cursor to pass for the next page.
public struct TraceResponse: Equatable, Sendable {
    public var hits: [TraceHitWire]
    public var next: TraceCursorWire?

    public init(hits: [TraceHitWire], next: TraceCursorWire?) {
        self.hits = hits
        self.next = next
    }

    func write(to buffer: inout ByteBuffer) {
        hits.write(to: &buffer)
        buffer.writeInteger(Int8(next == nil ? 0 : 1))
        next?.write(to: &buffer)
    }

    init(from buffer: inout ByteBuffer) throws {
        hits = try .init(from: &buffer, "hits")
        let hasNext: Int8 = try buffer.readMillraceInteger("has next")
        next = hasNext != 0 ? try TraceCursorWire(from: &buffer) : nil
    }
}

/// Walk: `bytes` start value, `i8` direction (1 down: where-used, 2 up: where-from), `i32`
/// depth (1…32), `[string]` topics (empty: every topic), `i32` nodes max (1…10,000).
public struct WalkRequest: Equatable, Sendable {
    public enum Direction: Int8, Sendable { case down = 1, up = 2 }

    public var key: [UInt8]
    public var direction: Direction
    public var depth: Int32
    public var topics: [String]
    public var nodesMax: Int32

    public static let depthMax: Int32 = 32
    public static let nodesLimit: Int32 = 10_000

    public init(key: [UInt8], direction: Direction, depth: Int32 = 10, topics: [String] = [], nodesMax: Int32 = 1_000) {
        self.key = key
        self.direction = direction
        self.depth = depth
        self.topics = topics
        self.nodesMax = nodesMax
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceBytes(key)
        buffer.writeInteger(direction.rawValue)
        buffer.writeInteger(depth)
        buffer.writeMillraceArray(topics) { $0.writeMillraceString($1) }
        buffer.writeInteger(nodesMax)
    }

    init(from buffer: inout ByteBuffer, readTopic: (inout ByteBuffer) throws -> String) throws {
        guard let key = try buffer.readMillraceBytes("walk start") else { throw MillraceError(.invalidRequest, "the value to walk from is null") }
        guard key.count <= Limits.dedupKeyBytesMax else {
            throw MillraceError(.invalidRequest, "the value is \(key.count) bytes; values over \(Limits.dedupKeyBytesMax) bytes are never indexed")
        }
        self.key = key
        let raw: Int8 = try buffer.readMillraceInteger("direction")
        guard let direction = Direction(rawValue: raw) else { throw MillraceError(.invalidRequest, "walk direction \(raw) is neither 1 (down) nor 2 (up)") }
        self.direction = direction
        depth = try buffer.readMillraceInteger("depth")
        guard (1...Self.depthMax).contains(depth) else { throw MillraceError(.invalidRequest, "walk depth must be 1...\(Self.depthMax) (got \(depth))") }
        topics = try buffer.readMillraceArray("topics", minimumElementBytes: 2, countMax: Limits.topicsPerRequestMax) { try readTopic(&$0) }
        nodesMax = try buffer.readMillraceInteger("nodes max")
        guard (1...Self.nodesLimit).contains(nodesMax) else { throw MillraceError(.invalidRequest, "a walk returns 1...\(Self.nodesLimit) nodes (asked for \(nodesMax))") }
    }
}

/// One node of a walk's tree: `string` value, `i32` depth, `i32` parent (its index in the
/// list; -1 for the start), `i8` kind, `string` topic, `i32` partition, `i64` offset (the
/// record that links it to its parent; empty and -1 for the start).
public struct WalkNode: WireCodable {
    public enum Kind: Int8, Sendable {
        case start = 0
        /// Linked to its parent; expanded.
        case linked = 1
        /// The value is an ancestor of its parent: a cycle, not expanded again.
        case cycle = 2
        /// Reached before by another path: shown, not expanded again.
        case repeated = 3
    }

    public var value: String
    public var depth: Int32
    public var parent: Int32
    public var kind: Kind
    public var topic: String
    public var partition: Int32
    public var offset: Int64

    public static let minimumBytes = 2 + 4 + 4 + 1 + 2 + 4 + 8

    public init(value: String, depth: Int32, parent: Int32, kind: Kind, topic: String = "", partition: Int32 = -1, offset: Int64 = -1) {
        self.value = value
        self.depth = depth
        self.parent = parent
        self.kind = kind
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(value)
        buffer.writeInteger(depth)
        buffer.writeInteger(parent)
        buffer.writeInteger(kind.rawValue)
        buffer.writeMillraceString(topic)
        buffer.writeInteger(partition)
        buffer.writeInteger(offset)
    }

    public init(from buffer: inout ByteBuffer) throws {
        value = try buffer.readMillraceString("node value")
        depth = try buffer.readMillraceInteger("node depth")
        parent = try buffer.readMillraceInteger("node parent")
        let raw: Int8 = try buffer.readMillraceInteger("node kind")
        guard let kind = Kind(rawValue: raw) else { throw MillraceError(.malformedRequest, "node kind \(raw) is unknown") }
        self.kind = kind
        topic = try buffer.readMillraceString("node topic")
        partition = try buffer.readMillraceInteger("node partition")
        offset = try buffer.readMillraceInteger("node offset")
    }
}

/// Walk's answer: `[node]` in breadth-first order, then `i8` truncated: 0 the walk is whole,
/// 1 `nodes max` cut it short, 2 it read `Limits.walkIndexEntriesMax` index entries and
/// stopped there (brokers before 2 was defined send only 0 and 1; clients before it read any
/// non-zero value as cut short, which it is).
public struct WalkResponse: Equatable, Sendable {
    /// Why a walk stopped before its end.
    public enum Truncation: Int8, Sendable {
        /// The tree is whole.
        case whole = 0
        case nodesMax = 1
        /// The walk read as many index entries as one walk may.
        case readBound = 2
    }

    public var nodes: [WalkNode]
    public var truncation: Truncation
    public var truncated: Bool { truncation != .whole }

    public init(nodes: [WalkNode], truncation: Truncation) {
        self.nodes = nodes
        self.truncation = truncation
    }

    func write(to buffer: inout ByteBuffer) {
        nodes.write(to: &buffer)
        buffer.writeInteger(truncation.rawValue)
    }

    init(from buffer: inout ByteBuffer) throws {
        nodes = try .init(from: &buffer, "nodes")
        let raw = try buffer.readMillraceInteger("truncated", as: Int8.self)
        // A reason added later is still a walk cut short.
        truncation = Truncation(rawValue: raw) ?? .readBound
    }
}

/// IndexRebuild: `string` topic, `i32` partition, `i32` max records (1…100,000). Answer:
/// `i32` partition, `i64` next, `i64` end (records `next..<end` are left; done when equal),
/// `i32` entries indexed by this step.
public struct IndexRebuildRequest: Equatable, Sendable {
    public var topic: String
    public var partition: Int32
    public var maxRecords: Int32

    public static let maxRecordsLimit: Int32 = 100_000

    public init(topic: String, partition: Int32, maxRecords: Int32 = 20_000) {
        self.topic = topic
        self.partition = partition
        self.maxRecords = maxRecords
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(topic)
        buffer.writeInteger(partition)
        buffer.writeInteger(maxRecords)
    }

    init(from buffer: inout ByteBuffer, readTopic: (inout ByteBuffer) throws -> String) throws {
        topic = try readTopic(&buffer)
        partition = try buffer.readMillraceInteger("partition")
        maxRecords = try buffer.readMillraceInteger("max records")
        guard (1...Self.maxRecordsLimit).contains(maxRecords) else {
            throw MillraceError(.invalidRequest, "a rebuild step takes 1...\(Self.maxRecordsLimit) records (asked for \(maxRecords))")
        }
    }
}

public struct IndexRebuildResponse: Equatable, Sendable {
    public var partition: Int32
    public var next: Int64
    public var end: Int64
    public var indexed: Int32

    public init(partition: Int32, next: Int64, end: Int64, indexed: Int32) {
        self.partition = partition
        self.next = next
        self.end = end
        self.indexed = indexed
    }

    public var done: Bool { next >= end }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeInteger(next)
        buffer.writeInteger(end)
        buffer.writeInteger(indexed)
    }

    init(from buffer: inout ByteBuffer) throws {
        partition = try buffer.readMillraceInteger("partition")
        next = try buffer.readMillraceInteger("next")
        end = try buffer.readMillraceInteger("end")
        indexed = try buffer.readMillraceInteger("indexed")
    }
}
