import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import Testing

/// Tracing a lot through a live broker: confirmations, inspections and shipments that name it
/// in different fields, a component list, paging, a schema's quarantine and dedup beside it.
@Suite(.serialized) struct TraceEndToEndTests {
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
            let offset = try await producer.send(topic: "confirmations", key: nil, value: Array(confirmation.utf8))
            if lot == "L-42" || round % 5 == 0 { expected.append("confirmations/\(offset.partition)/\(offset.offset)") }
            let inspection = try await producer.send(topic: "inspections", key: Array((round % 2 == 0 ? "L-42" : "X").utf8), value: Array(#"{"lot":"Z"}"#.utf8))
            if round % 2 == 0 { expected.append("inspections/\(inspection.partition)/\(inspection.offset)") }
            if round % 10 == 0 {
                let shipment = try await producer.send(topic: "shipments", key: nil, value: Array(#"{"event_id":"S\#(round)","lots":["A","L-42"]}"#.utf8))
                expected.append("shipments/\(shipment.partition)/\(shipment.offset)")
                // The same shipment again: a duplicate, not appended, not indexed.
                await #expect(throws: RecordDuplicate.self) {
                    _ = try await producer.send(topic: "shipments", key: nil, value: Array(#"{"event_id":"S\#(round)","lots":["L-42"]}"#.utf8))
                }
            }
        }
        var hits: [TraceHitWire] = []
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
}
