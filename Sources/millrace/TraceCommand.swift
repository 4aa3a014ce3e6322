import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceSchema
import MillraceWire

/// `millrace trace KEY`: every record holding a lot, serial or order in its indexed fields.
struct TraceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Every record whose indexed fields hold KEY (a lot, a serial, an order), across topics, in the order they were appended.",
        discussion: """
            Topics index fields with `millrace topic create T --index /lot` or `millrace index set T --index /lot`. Genealogy follows each topic's links, `--link /parent_lot:/child_lot`: a record whose parent_lot holds P and whose child_lot holds C says lot C was consumed into lot P (P was built from C), as `millrace generate` writes them. --where-used (or --down) walks from a component to what it went into; --where-from (or --up) from a finished lot to its components.
            """ + Help.examples("millrace trace LOT-0815", "millrace trace LOT-0815 --topic confirmations --json", "millrace trace CMP-LOT-17 --where-used --depth 5", "millrace trace SN-100007 --where-from"))

    @OptionGroup var broker: BrokerOptions
    @Argument(help: "The value to trace, as the index reads it: a string's characters, a number's digits, or a record key.") var key: String
    @Option(name: .customLong("topic"), help: "Only this topic (repeat for more; default: every topic).") var topics: [String] = []
    @Option(help: "Stop after this many hits (default: all); with --where-used or --where-from, this many nodes (default 1000).") var limit: Int?
    @Flag(help: "Print one JSON object per hit, then a summary line, instead of a table (with --where-used or --where-from: one JSON object).") var json = false
    @Flag(
        name: [.customLong("where-used"), .customLong("down")],
        help: "Where-used (downstream): from a component or material lot KEY to every lot and serial it was built into, along the topics' --link fields (a recall).")
    var down = false
    @Flag(
        name: [.customLong("where-from"), .customLong("up")],
        help: "Where-from (upstream): from a finished lot or serial KEY to every lot it was built from, along the same links.")
    var up = false
    @Option(help: "With --where-used or --where-from: levels to walk, 1...32.") var depth = 10

    func run() async throws {
        if down || up { return try await walk() }
        if let limit, limit < 1 {
            Output.standardError("error: --limit takes 1 or more (got \(limit))")
            throw ExitCode(2)
        }
        let (key, topics, limit, json) = (self.key, self.topics, self.limit, self.json)
        let hits = try await withClient(broker) { client -> [MillraceClient.TraceHit] in
            var hits: [MillraceClient.TraceHit] = []
            for try await hit in client.trace(key: key, topics: topics, pageSize: min(limit ?? 500, 500)) {
                hits.append(hit)
                if json { print(Output.json(Self.object(hit))) }
                if let limit, hits.count >= limit { break }
            }
            return hits
        }
        if json {
            print(Output.json(["key": key, "hits": hits.count, "topics": Set(hits.map(\.topic)).sorted()]))
            return
        }
        guard !hits.isEmpty else {
            print("\(key): no records hold it in an indexed field\(topics.isEmpty ? "" : " of \(topics.joined(separator: ", "))")")
            return
        }
        print(
            Output.table(
                ["TIME", "TOPIC", "PARTITION", "OFFSET", "MATCHED", "FIELDS"],
                hits.map { hit in
                    [
                        JSONText.isoTime(milliseconds: hit.timeMs), hit.topic, "\(hit.partition)", "\(hit.offset)", hit.matched.joined(separator: ","),
                        hit.fields.map { "\($0.name)=\($0.values.joined(separator: ","))" }.joined(separator: " "),
                    ]
                }, rightAligned: [2, 3]))
        print("\(Output.count(Int64(hits.count))) record\(hits.count == 1 ? "" : "s") in \(Set(hits.map(\.topic)).count) topic\(Set(hits.map(\.topic)).count == 1 ? "" : "s")")
    }

    func walk() async throws {
        guard !(down && up) else {
            Output.standardError("error: give --where-used (--down) or --where-from (--up), not both")
            throw ExitCode(2)
        }
        guard (1...Int(WalkRequest.depthMax)).contains(depth) else {
            Output.standardError("error: --depth takes 1...\(WalkRequest.depthMax) (got \(depth))")
            throw ExitCode(2)
        }
        let nodesMax = limit ?? 1_000
        guard (1...Int(WalkRequest.nodesLimit)).contains(nodesMax) else {
            Output.standardError("error: --limit takes 1...\(WalkRequest.nodesLimit) nodes for a walk (got \(nodesMax))")
            throw ExitCode(2)
        }
        let (key, topics, depth, down) = (self.key, self.topics, self.depth, self.down)
        let tree = try await withClient(broker) { try await $0.walk(key: key, direction: down ? .down : .up, depth: depth, topics: topics, nodesMax: nodesMax) }
        if json {
            print(
                Output.json([
                    "start": key, "direction": down ? "down" : "up", "truncated": tree.truncated, "stopped_by": Self.stopName(tree.stoppedBy),
                    "nodes": tree.nodes.map { node -> [String: Any] in
                        var object: [String: Any] = ["value": node.value, "depth": Int(node.depth), "parent": Int(node.parent), "kind": Self.kindName(node.kind)]
                        if node.kind != .start { object["record"] = ["topic": node.topic, "partition": Int(node.partition), "offset": node.offset] }
                        return object
                    },
                ]))
            return
        }
        var children: [Int: [Int]] = [:]
        for (index, node) in tree.nodes.enumerated() where node.parent >= 0 { children[Int(node.parent), default: []].append(index) }
        func show(_ index: Int, _ prefix: String, _ last: Bool) {
            let node = tree.nodes[index]
            let note: String
            switch node.kind {
            case .start: note = ""
            case .linked: note = "  (\(node.topic) \(node.partition)/\(node.offset))"
            case .cycle: note = "  (\(node.topic) \(node.partition)/\(node.offset)) cycle: \(node.value) is above it; not walked again"
            case .repeated: note = "  (\(node.topic) \(node.partition)/\(node.offset)) also reached above; not walked again"
            }
            print(index == 0 ? node.value : prefix + (last ? "└─ " : "├─ ") + node.value + note)
            let kids = children[index] ?? []
            for (position, child) in kids.enumerated() {
                show(child, index == 0 ? "" : prefix + (last ? "   " : "│  "), position == kids.count - 1)
            }
        }
        show(0, "", true)
        let cycles = tree.nodes.filter { $0.kind == .cycle }.count
        let count = "\(tree.nodes.count - 1) linked value\(tree.nodes.count == 2 ? "" : "s")"
        let summary = (down ? "\(count) built from \(key) (where-used)" : "\(count) \(key) was built from (where-from)")
            + (cycles > 0 ? ", \(cycles) cycle\(cycles == 1 ? "" : "s")" : "")
        switch tree.stoppedBy {
        case nil: print(summary)
        case .nodesMax: print(summary + "; stopped at \(nodesMax) nodes (raise --limit)")
        case .readBound:
            print(summary + "; stopped at the broker's bound on index entries one walk reads (walk on from a value further down)")
        }
    }

    static func stopName(_ stop: MillraceClient.GenealogyTree.Stop?) -> Any {
        switch stop {
        case nil: NSNull()
        case .nodesMax: "nodes_max"
        case .readBound: "read_bound"
        }
    }

    static func kindName(_ kind: MillraceClient.GenealogyTree.Node.Kind) -> String {
        switch kind {
        case .start: "start"
        case .linked: "linked"
        case .cycle: "cycle"
        case .repeated: "repeat"
        }
    }

    static func object(_ hit: MillraceClient.TraceHit) -> [String: Any] {
        [
            "time": JSONText.isoTime(milliseconds: hit.timeMs), "topic": hit.topic, "partition": Int(hit.partition), "offset": hit.offset,
            "matched": hit.matched, "fields": Dictionary(hit.fields.map { ($0.name, $0.values) }, uniquingKeysWith: { first, _ in first }),
        ]
    }
}

/// `millrace index`: what a topic indexes for traces.
struct IndexCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index", abstract: "What a topic indexes for `millrace trace`: set it, or show it and the index's size.",
        subcommands: [Set.self, Status.self, Rebuild.self])

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set the fields a topic indexes, replacing what it indexed before (give them all); records appended from now on are indexed by them (--off: none).", discussion: Help.exampleLines("millrace index set confirmations --index /lot --index /serial", "millrace index set confirmations --off"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic name.") var topic: String
        @OptionGroup var fields: IndexOptions
        @Flag(help: "Index nothing from now on (entries already written stay).") var off = false
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            let policy = try fields.policy() ?? IndexPolicy()
            guard off == policy.isEmpty else {
                Output.standardError("error: give --index-key, --index POINTER or --link PARENT:CHILD, or --off")
                throw ExitCode(2)
            }
            let topic = self.topic
            try await withClient(broker) { try await $0.setIndexPolicy(topic: topic, policy: policy) }
            if json {
                return print(
                    Output.json(["topic": topic, "record_key": policy.recordKey, "fields": policy.fields, "links": policy.links.map(\.description)]))
            }
            print(off ? "\(topic): new records are not indexed" : "\(topic): new records are indexed by \(IndexOptions.describe(policy))")
        }
    }

    struct Rebuild: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Index the records a topic held before its index fields were set (a stopped rebuild resumes where it was).", discussion: Help.exampleLines("millrace index rebuild confirmations", "millrace index rebuild confirmations --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic name.") var topic: String
        @Flag(help: "Print one JSON summary instead of progress and a sentence.") var json = false

        func run() async throws {
            let (topic, json, broker) = (self.topic, self.json, self.broker)
            // Each step is durable with where the rebuild goes on: Ctrl-C or SIGTERM stops after
            // the step in hand, and the next run resumes there.
            let work = Task {
                try await withClient(broker) { client -> Int64 in
                    let partitions = try await client.partitionCount(topic)
                    var indexed: Int64 = 0
                    for partition in 0..<partitions {
                        while !Task.isCancelled {
                            let step = try await client.indexRebuildStep(topic: topic, partition: partition)
                            indexed += Int64(step.indexed)
                            if !json { Output.standardError("  partition \(partition): up to offset \(Output.count(step.next)) of \(Output.count(step.end))") }
                            if step.done { break }
                        }
                    }
                    return indexed
                }
            }
            let signals = TerminationSignals(graceSeconds: 30) { work.cancel() }
            defer { signals.cancel() }
            let indexed = try await signals.wait(for: work)
            let stopped = signals.signalled
            if json {
                print(Output.json(["topic": topic, "entries_indexed": indexed, "stopped": stopped]))
            } else if stopped {
                print("\(topic): \(Output.count(indexed)) entries indexed, then stopped by a signal; run it again to go on where it stopped")
            } else {
                print("\(topic): \(Output.count(indexed)) entries indexed; the records held before its index was set are traced too")
            }
            if stopped { throw ExitCode(1) }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A topic's index fields, the entries written for it, and the whole index's size.", discussion: Help.exampleLines("millrace index status confirmations", "millrace index status confirmations --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic name.") var topic: String
        @Flag(help: "Print JSON instead of a sentence.") var json = false

        func run() async throws {
            let topic = self.topic
            let status = try await withClient(broker) { try await $0.indexStatus(topic: topic) }
            if json {
                print(Output.json(IndexOptions.object(status)))
            } else {
                print("\(topic): \(IndexOptions.line(status))")
            }
        }
    }
}

/// `--index-key`, `--index POINTER`, `--link PARENT:CHILD`, shared by `topic create` and `index set`.
struct IndexOptions: ParsableArguments {
    @Flag(help: "Index each record's key.") var indexKey = false
    @Option(name: .customLong("index"), help: "Index the values at this JSON pointer; * stands for each array element (e.g. /lot, /components/*/lot). Repeat, up to 8.")
    var pointers: [String] = []
    @Option(name: .customLong("link"), help: "A genealogy link, PARENT:CHILD: pointers to the lot or serial built and to a lot consumed into it (e.g. /parent_lot:/child_lot, as `millrace generate` writes them; /components/*/lot for each component). The quoted older form 'PARENT->CHILD' is read too. Repeat, up to 4.") var links: [String] = []

    /// The policy these flags give (nil: none given); exits 2 with the reason when one is wrong.
    func policy() throws -> IndexPolicy? {
        guard indexKey || !pointers.isEmpty || !links.isEmpty else { return nil }
        do {
            let policy = IndexPolicy(recordKey: indexKey, fields: pointers, links: try links.map { try IndexLink(parsing: $0) })
            try policy.validate()
            for (_, pointer) in policy.pointers { _ = try JSONPointer(pointer) }
            return policy
        } catch let error as MillraceError {
            Output.standardError("error: \(error.message)")
            throw ExitCode(2)
        }
    }

    static func describe(_ policy: IndexPolicy) -> String {
        ((policy.recordKey ? ["the record key"] : []) + policy.fields + policy.links.map { "link \($0)" }).joined(separator: ", ")
    }

    static func line(_ status: MillraceClient.IndexStatus) -> String {
        let policy = status.policy
        guard !policy.isEmpty else { return "nothing indexed" }
        return "indexes \(describe(policy)); \(Output.count(status.entriesWritten)) entries written for it; the index holds \(Output.count(status.entriesHeld)) entries in \(status.runs) runs, \(Output.bytes(status.diskBytes)) on disk"
    }

    static func object(_ status: MillraceClient.IndexStatus) -> [String: Any] {
        [
            "record_key": status.policy.recordKey, "fields": status.policy.fields, "links": status.policy.links.map(\.description),
            "entries_written": status.entriesWritten, "index_entries_held": status.entriesHeld, "index_runs": Int(status.runs), "index_disk_bytes": status.diskBytes,
        ]
    }
}
