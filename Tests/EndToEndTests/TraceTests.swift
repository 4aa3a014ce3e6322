import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import Testing

/// Tracing a lot through a live broker: confirmations, inspections and shipments that name it
/// in different fields, a component list, paging, a schema's quarantine and dedup beside it.
@Suite(.serialized, .stopsLiveServers) struct TraceEndToEndTests {
    @Test func aLotIsFoundInEveryTopicInAppendOrder() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        for topic in ["confirmations", "inspections", "shipments"] { try await client.createTopic(CreateTopicRequest(name: topic, partitions: 2)) }
        try await client.setIndexPolicy(topic: "confirmations", policy: IndexPolicy(fields: ["/lot", "/components/*/lot"]))
        try await client.setIndexPolicy(topic: "inspections", policy: IndexPolicy(recordKey: true, fields: ["/lot"]))
        try await client.setDedupPolicy(topic: "shipments", key: "json:/event_id")
        try await client.setIndexPolicy(topic: "shipments", policy: IndexPolicy(fields: ["/lots/*"]))
        let producer = Producer(client: client)
        var expected: [String] = []
        for round in 0..<30 {
            let lot = round % 3 == 0 ? "L-42" : "L-\(round)"
            let confirmation = #"{"lot":"\#(lot)","components":[{"lot":"C-1"},{"lot":"\#(round % 5 == 0 ? "L-42" : "C-2")"}]}"#
            let offset = try await producer.send(topic: "confirmations", key: nil, value: Array(confirmation.utf8)).delivery()
            if lot == "L-42" || round % 5 == 0 { expected.append("confirmations/\(offset.partition)/\(offset.offset)") }
            let inspection = try await producer.send(topic: "inspections", key: Array((round % 2 == 0 ? "L-42" : "X").utf8), value: Array(#"{"lot":"Z"}"#.utf8)).delivery()
            if round % 2 == 0 { expected.append("inspections/\(inspection.partition)/\(inspection.offset)") }
            if round % 10 == 0 {
                let shipment = try await producer.send(topic: "shipments", key: nil, value: Array(#"{"event_id":"S\#(round)","lots":["A","L-42"]}"#.utf8)).delivery()
                expected.append("shipments/\(shipment.partition)/\(shipment.offset)")
                // The same shipment again: a duplicate, not appended, not indexed.
                let again = try await producer.send(topic: "shipments", key: nil, value: Array(#"{"event_id":"S\#(round)","lots":["L-42"]}"#.utf8)).delivery()
                #expect(again.outcome == .duplicate && again.partition == shipment.partition && again.offset == shipment.offset)
            }
        }
        var hits: [MillraceClient.TraceHit] = []
        for try await hit in client.trace(key: "L-42", pageSize: 7) { hits.append(hit) }
        #expect(hits.map { "\($0.topic)/\($0.partition)/\($0.offset)" } == expected)
        let both = try #require(hits.first { $0.topic == "confirmations" && $0.matched.count == 2 })
        #expect(both.matched == ["/lot", "/components/*/lot"] && both.fields.map(\.name) == ["/lot", "/components/*/lot"])
        #expect(both.fields[1].values == ["C-1", "L-42"])
        let inspection = try #require(hits.first { $0.topic == "inspections" })
        #expect(inspection.matched == ["key"] && inspection.fields.first?.values == ["L-42"])
        var shipments = 0
        for try await hit in client.trace(key: "L-42", topics: ["shipments"]) {
            #expect(hit.topic == "shipments")
            shipments += 1
        }
        #expect(shipments == 3)
        let status = try await client.indexStatus(topic: "confirmations")
        #expect(status.policy.fields == ["/lot", "/components/*/lot"] && status.entriesWritten == 90 && status.entriesHeld > 0 && status.diskBytes > 0)
        await #expect(throws: MillraceError.self) { _ = try await client.tracePage(key: Array("L-42".utf8), limit: 0) }
        await #expect(throws: MillraceError.self) { try await client.setIndexPolicy(topic: "inspections", policy: IndexPolicy(fields: ["lot"])) }
        await client.close()
    }

    /// A five-level genealogy with a diamond and a cycle, across two topics' links: down
    /// (where-used), up (where-from), depth-limited, the cycle reported and never looped.
    @Test func genealogyWalksDownAndUpThroughACycle() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "genealogy", partitions: 2))
        try await client.createTopic(CreateTopicRequest(name: "assembly", partitions: 1))
        try await client.setIndexPolicy(topic: "genealogy", policy: IndexPolicy(links: [IndexLink(parent: "/parentLot", child: "/childLot")]))
        try await client.setIndexPolicy(topic: "assembly", policy: IndexPolicy(fields: ["/serial"], links: [IndexLink(parent: "/serial", child: "/components/*/lot")]))
        let producer = Producer(client: client)
        // (consumed, built): a link's child lot went into its parent lot.
        for (used, built) in [("L0", "L1a"), ("L0", "L1b"), ("L1a", "L2a"), ("L1b", "L2b"), ("L2a", "L3"), ("L2b", "L3"), ("L3", "L4"), ("L4", "L0"), ("L1a", "L2a")] {
            _ = try await producer.send(topic: "genealogy", value: Array(#"{"parentLot":"\#(built)","childLot":"\#(used)","qty":1}"#.utf8)).delivery()
        }
        _ = try await producer.send(topic: "assembly", value: Array(#"{"serial":"S1","components":[{"lot":"L4"},{"lot":"X9"}]}"#.utf8)).delivery()

        let down = try await client.walk(key: "L0", direction: .down)
        let shape = down.nodes.map { "\($0.value)@\($0.depth)<\($0.parent >= 0 ? down.nodes[Int($0.parent)].value : "-")" + ($0.kind == .cycle ? " cycle" : $0.kind == .repeated ? " repeat" : "") }
        #expect(
            shape == ["L0@0<-", "L1a@1<L0", "L1b@1<L0", "L2a@2<L1a", "L2b@2<L1b", "L3@3<L2a", "L3@3<L2b repeat", "L4@4<L3", "L0@5<L4 cycle", "S1@5<L4"],
            "\(shape)")
        #expect(!down.truncated && down.nodes.first { $0.value == "S1" }?.topic == "assembly")

        let up = try await client.walk(key: "S1", direction: .up)
        let upShape = up.nodes.map { "\($0.value)@\($0.depth)" + ($0.kind == .cycle ? " cycle" : $0.kind == .repeated ? " repeat" : "") }
        #expect(upShape == ["S1@0", "L4@1", "X9@1", "L3@2", "L2a@3", "L2b@3", "L1a@4", "L1b@4", "L0@5", "L0@5 repeat", "L4@6 cycle"], "\(upShape)")

        let shallow = try await client.walk(key: "L0", direction: .down, depth: 2)
        #expect(shallow.nodes.map(\.value) == ["L0", "L1a", "L1b", "L2a", "L2b"])
        let capped = try await client.walk(key: "L0", direction: .down, nodesMax: 4)
        #expect(capped.truncated && capped.nodes.count == 4)
        let onlyGenealogy = try await client.walk(key: "L0", direction: .down, topics: ["genealogy"])
        #expect(!onlyGenealogy.nodes.contains { $0.value == "S1" })
        #expect(try await client.walk(key: "nothing", direction: .up).nodes.count == 1)
        await #expect(throws: MillraceError.self) { _ = try await client.walk(key: "L0", direction: .down, depth: 33) }
        await client.close()
    }

    /// Records held before a topic's index was set are traced once a rebuild indexed them —
    /// once, however often it runs or stops.
    @Test func aRebuildIndexesWhatCameBefore() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "old", partitions: 2))
        let producer = Producer(client: client)
        for index in 0..<500 { _ = try await producer.send(topic: "old", value: Array(#"{"lot":"L\#(index % 5)"}"#.utf8)).delivery() }
        try await client.setIndexPolicy(topic: "old", policy: IndexPolicy(fields: ["/lot"]))
        for index in 0..<50 { _ = try await producer.send(topic: "old", value: Array(#"{"lot":"L\#(index % 5)"}"#.utf8)).delivery() }
        var hits = 0
        for try await _ in client.trace(key: "L3") { hits += 1 }
        #expect(hits == 10)
        // Small steps, as a stopped and resumed rebuild would take them.
        var indexed: Int32 = 0
        for partition in Int32(0)..<2 {
            var steps = 0
            while true {
                let step = try await client.indexRebuildStep(topic: "old", partition: partition, maxRecords: 40)
                indexed += step.indexed
                steps += 1
                if step.done { break }
                #expect(steps < 100)
            }
        }
        #expect(indexed == 500)
        let again = try await client.indexRebuildStep(topic: "old", partition: 0)
        #expect(again.done && again.indexed == 0)
        hits = 0
        for try await _ in client.trace(key: "L3") { hits += 1 }
        #expect(hits == 110)
        #expect(try await client.indexStatus(topic: "old").entriesWritten == 550)
        await #expect(throws: MillraceError.self) { _ = try await client.indexRebuildStep(topic: "old", partition: 0, maxRecords: 0) }
        await client.close()
    }
}

