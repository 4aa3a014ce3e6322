import MillraceFormat
import MillraceSchema
import MillraceStorage
import MillraceWire
import NIOCore

/// The key index's requests: setting a topic's policy, its status, and traces.
extension RequestDispatcher {
    func setIndexPolicy(topic: String, policy wire: IndexPolicyWire, on eventLoop: any EventLoop) throws -> EventLoopFuture<ResponseBody> {
        let policy = wire.policy
        try policy.validate()
        for (_, pointer) in policy.pointers { _ = try JSONPointer(pointer) }
        let promise = eventLoop.makePromise(of: ResponseBody.self)
        storage.setIndexPolicy(topic: topic, policy: policy) { result in
            promise.completeWith(result.map { _ in .setIndexPolicy }.mapError { $0 as any Error })
        }
        return promise.futureResult
    }

    func indexStatus(topic: String) throws -> ResponseBody {
        guard let info = storage.topicInfo(topic) else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
        let status = try storage.indexStatus(topic: topic)
        return .indexStatus(
            IndexStatusResponse(
                policy: IndexPolicyWire(info.config.index), entriesWritten: Int64(clamping: status?.entriesWritten ?? 0),
                entriesHeld: Int64(status?.entriesHeld ?? 0), runs: Int32(clamping: status?.runs ?? 0), diskBytes: Int64(status?.diskBytes ?? 0)))
    }

    /// Answer bytes a trace page stays under (its hits' fields included); past it the page
    /// ends early and says where to go on.
    static let tracePageBytesMax = 1 << 20
    /// Values shown per field of a hit, and bytes per value.
    static let traceValuesShownMax = 16
    static let traceValueBytesShownMax = 256

    /// Off the event loop (a trace reads index runs and each hit's record): the page, each hit
    /// with the indexed fields of its record as the topic's policy reads them now.
    func trace(_ request: TraceRequest, on eventLoop: any EventLoop) -> EventLoopFuture<ResponseBody> {
        let storage = self.storage
        return validationLanes.runTrace(on: eventLoop) {
            let after = request.after.map { TraceCursor(timeMs: $0.timeMs, topicID: $0.topicID, partition: $0.partition, offset: $0.offset) }
            let page = try storage.trace(key: request.key, topics: request.topics.isEmpty ? nil : request.topics, after: after, limit: Int(request.limit))
            var hits: [TraceHitWire] = []
            var bytes = 0
            var next = page.next
            var lastShown: TraceHit?
            let records = try storage.records(at: page.hits.map { ($0.topic, $0.partition, $0.offset, $0.position) })
            var compiled: [String: (IndexPolicy, [(String, JSONPointer)])] = [:]
            for (hit, record) in zip(page.hits, records) {
                if compiled[hit.topic] == nil {
                    let policy = storage.topicInfo(hit.topic)?.config.index ?? IndexPolicy()
                    compiled[hit.topic] = (policy, Self.compile(policy))
                }
                let (policy, pointers) = compiled[hit.topic] ?? (IndexPolicy(), [])
                let fields = Self.indexedFields(of: record, policy: policy, pointers: pointers)
                let size = 64 + hit.topic.utf8.count + fields.reduce(0) { $0 + 8 + $1.name.utf8.count + $1.values.reduce(0) { $0 + 2 + $1.utf8.count } }
                if bytes + size > Self.tracePageBytesMax, let lastShown {
                    next = lastShown.cursor
                    break
                }
                bytes += size
                lastShown = hit
                hits.append(
                    TraceHitWire(
                        topic: hit.topic, partition: hit.partition, offset: hit.offset, timeMs: hit.timeMs, matched: Self.unique(hit.slots.map { policy.describe(slot: $0) }),
                        fields: fields))
            }
            return .trace(
                TraceResponse(
                    hits: hits, next: next.map { TraceCursorWire(timeMs: $0.timeMs, topicID: $0.topicID, partition: $0.partition, offset: $0.offset) }))
        }
    }

    /// Off the event loop: the tree of values linked to the start value, breadth first. A link
    /// says its child side was consumed into its parent side. Down (where-used): records
    /// holding a value on a link's child side name what it went into on the parent side; up
    /// (where-from), the other way. A value met again on the path back to the
    /// start is a cycle, and one met before elsewhere a repeat: both are shown, neither is
    /// walked again, so a walk always ends. It reads at most `Limits.walkIndexEntriesMax`
    /// index entries in all (a value in a million records naming one parent would otherwise
    /// be read whole for that one edge), and says so when it stops there.
    func walk(_ request: WalkRequest, on eventLoop: any EventLoop) -> EventLoopFuture<ResponseBody> {
        let storage = self.storage
        return validationLanes.runTrace(on: eventLoop) { .walk(try Self.walk(request, storage: storage)) }
    }

    /// The walk itself, on the calling thread; `entriesMax` is the read bound.
    static func walk(_ request: WalkRequest, storage: Storage, entriesMax: Int = Limits.walkIndexEntriesMax) throws -> WalkResponse {
        let topics = request.topics.isEmpty ? nil : request.topics
        let start = String(decoding: request.key, as: UTF8.self)
        var nodes = [WalkNode(value: start, depth: 0, parent: -1, kind: .start)]
        var first: [String: Int] = [start: 0]
        var next = 0
        var entriesLeft = entriesMax
        var truncation = WalkResponse.Truncation.whole
        walking: while next < nodes.count {
            let current = next
            next += 1
            guard nodes[current].kind == .start || nodes[current].kind == .linked, nodes[current].depth < request.depth else { continue }
            // No more edges are read than the node budget can still take.
            let room = Int(request.nodesMax) - nodes.count + 1
            let found = try edges(from: nodes[current].value, down: request.direction == .down, topics: topics, storage: storage, limit: room, entriesLeft: &entriesLeft)
            for edge in found.edges {
                guard nodes.count < Int(request.nodesMax) else {
                    truncation = .nodesMax
                    break walking
                }
                var kind = WalkNode.Kind.linked
                if let seen = first[edge.value] {
                    kind = isAncestor(seen, of: current, in: nodes) ? .cycle : .repeated
                } else {
                    first[edge.value] = nodes.count
                }
                nodes.append(
                    WalkNode(
                        value: edge.value, depth: nodes[current].depth + 1, parent: Int32(current), kind: kind, topic: edge.topic,
                        partition: edge.partition, offset: edge.offset))
            }
            if !found.complete {
                truncation = .readBound
                break walking
            }
        }
        return WalkResponse(nodes: nodes, truncation: truncation)
    }

    /// Values linked to `value`, each once, with the first record that links them: until
    /// `limit` are found or the value's hits end (`complete`), or `entriesLeft` index entries
    /// have been read (then not complete).
    static func edges(
        from value: String, down: Bool, topics: [String]?, storage: Storage, limit: Int = .max, entriesLeft: inout Int
    ) throws -> (edges: [(value: String, topic: String, partition: Int32, offset: Int64)], complete: Bool) {
        var edges: [(value: String, topic: String, partition: Int32, offset: Int64)] = []
        var seen = Set<String>()
        var cursor: TraceCursor?
        repeat {
            guard entriesLeft > 0 else { return (edges, false) }
            let page = try storage.trace(
                key: Array(value.utf8), topics: topics, after: cursor, limit: Limits.traceHitsPerPageMax, entriesMax: min(entriesLeft, Limits.traceEntriesPerPageMax))
            entriesLeft -= page.entriesRead
            // The links whose side toward `value` holds it, per hit; only those records are read.
            let linked = page.hits.compactMap { hit -> (TraceHit, IndexPolicy, [Int])? in
                guard let policy = storage.topicInfo(hit.topic)?.config.index, !policy.links.isEmpty else { return nil }
                let links = policy.links.indices.filter { hit.slots.contains(down ? IndexPolicy.childSlot($0) : IndexPolicy.parentSlot($0)) }
                return links.isEmpty ? nil : (hit, policy, links)
            }
            let records = try storage.records(at: linked.map { ($0.0.topic, $0.0.partition, $0.0.offset, $0.0.position) })
            for ((hit, policy, links), record) in zip(linked, records) {
                guard let json = record?.value else { continue }
                var tape = JSONTape()
                guard (try? tape.parse(json, depthMax: Limits.jsonDepthMax)) != nil else { continue }
                for link in links {
                    guard let other = try? JSONPointer(stored: down ? policy.links[link].parent : policy.links[link].child) else { continue }
                    for found in other.indexValues(in: tape, limit: Limits.indexValuesPerRecordMax) where seen.insert(found).inserted {
                        edges.append((found, hit.topic, hit.partition, hit.offset))
                    }
                }
            }
            cursor = page.next
        } while cursor != nil && edges.count < limit
        return (edges, true)
    }

    static func isAncestor(_ candidate: Int, of node: Int, in nodes: [WalkNode]) -> Bool {
        var current = node
        while current >= 0 {
            if current == candidate { return true }
            current = Int(nodes[current].parent)
        }
        return false
    }

    /// The policy's pointers, each once (a pointer that is both a field and a link side is
    /// shown once), compiled.
    static func compile(_ policy: IndexPolicy) -> [(String, JSONPointer)] {
        var seen = Set<String>()
        return policy.pointers.compactMap { _, pointer in
            guard seen.insert(pointer).inserted, let compiled = try? JSONPointer(stored: pointer) else { return nil }
            return (pointer, compiled)
        }
    }

    /// One rebuild step, off the event loop: up to `maxRecords` of the records the partition
    /// held before its topic's index policy was set are read, their values taken as the
    /// produce path takes them, and written with where the rebuild goes on. Entries are
    /// ordered by their batch's newest timestamp (their append time is not kept).
    func indexRebuild(_ request: IndexRebuildRequest, on eventLoop: any EventLoop) -> EventLoopFuture<ResponseBody> {
        let storage = self.storage
        let promise = eventLoop.makePromise(of: ResponseBody.self)
        let read = validationLanes.run(lane: RequestDispatcher.lane(request.topic, request.partition), on: eventLoop) { [self] () -> (Int64, Int64, [(Int64, Int64, IndexKey)])? in
            guard let info = storage.topicInfo(request.topic) else { throw MillraceError(.unknownTopic, "topic \"\(request.topic)\" does not exist") }
            guard let policy = info.config.index else {
                throw MillraceError(.invalidConfig, "topic \(request.topic) indexes nothing; set what it indexes first (`millrace index set`)")
            }
            guard let (next, end) = try storage.indexRebuildPending(topic: request.topic, partition: request.partition) else { return nil }
            var batches: [[UInt8]] = []
            var headers: [RecordBatchHeader] = []
            var records = 0
            var through = next
            try storage.forEachBatch(topic: request.topic, partition: request.partition, from: next) { header, bytes in
                guard header.baseOffset < end, records < Int(request.maxRecords) else { return false }
                batches.append(Array(bytes))
                headers.append(header)
                records += Int(header.recordCount)
                through = min(end, header.nextOffset)
                return true
            }
            let inspection = try inspect(
                topic: request.topic, entry: .none(topic: request.topic, topicID: info.id), dedup: nil, index: policy, batches: batches)
            var entries: [(Int64, Int64, IndexKey)] = []
            for (batch, keys) in (inspection.indexKeys ?? []).enumerated() {
                for key in keys { entries.append((headers[batch].baseOffset + Int64(key.record), headers[batch].maxTimestamp, key)) }
            }
            return (next, through, entries)
        }
        read.whenComplete { result in
            switch result {
            case .failure(let error): promise.fail(error)
            case .success(nil):
                let end = (try? storage.offsets(topic: request.topic, partition: request.partition).nextOffset) ?? 0
                promise.succeed(.indexRebuild(IndexRebuildResponse(partition: request.partition, next: end, end: end, indexed: 0)))
            case .success(let (from, through, entries)?):
                storage.indexRecords(
                    topic: request.topic, partition: request.partition, from: from, through: through, entries: entries.map { ($0.0, $0.1, $0.2) }
                ) { step in
                    promise.completeWith(
                        step.map { .indexRebuild(IndexRebuildResponse(partition: $0.partition, next: $0.next, end: $0.end, indexed: Int32(clamping: $0.indexed))) }
                            .mapError { $0 as any Error })
                }
            }
        }
        return promise.futureResult
    }

    /// A record's indexed fields under `policy`: the key, each field, each link's sides.
    static func indexedFields(of record: Record?, policy: IndexPolicy, pointers: [(String, JSONPointer)]) -> [TraceField] {
        guard let record else { return [] }
        var fields: [TraceField] = []
        if policy.recordKey, let key = record.key { fields.append(TraceField(name: "key", values: [clip(String(decoding: key, as: UTF8.self))])) }
        var tape = JSONTape()
        guard !pointers.isEmpty, let value = record.value, (try? tape.parse(value, depthMax: Limits.jsonDepthMax)) != nil else { return fields }
        for (pointer, compiled) in pointers {
            let values = compiled.indexValues(in: tape, limit: traceValuesShownMax)
            if !values.isEmpty { fields.append(TraceField(name: pointer, values: values.map(clip))) }
        }
        return fields
    }

    static func unique(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }

    private static func clip(_ text: String) -> String {
        guard text.utf8.count > traceValueBytesShownMax else { return text }
        return String(decoding: text.clippedUTF8(maxBytes: traceValueBytesShownMax), as: UTF8.self) + "…"
    }
}
