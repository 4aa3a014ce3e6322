import Foundation
import MillraceFormat
import Testing

@testable import MillraceClient

/// `ConsumedRecord.decode` reads back what `send(topic:key:json:)` wrote, and says which record
/// and which field when it cannot.
@Suite struct RecordDecodeTests {
    struct Order: Codable, Equatable {
        struct Line: Codable, Equatable {
            var sku: String
            var qty: Int
        }

        var order: String
        var placed: Date
        var lines: [Line]
    }

    func record(_ value: [UInt8]?, offset: Int64 = 41) -> ConsumedRecord {
        ConsumedRecord(topic: "orders", partition: 2, offset: offset, timestamp: 0, key: nil, value: value, headers: [])
    }

    @Test func decodesWhatTheProducerEncoded() throws {
        let order = Order(order: "ORD-7", placed: Date(timeIntervalSince1970: 1_700_000_000), lines: [.init(sku: "A", qty: 2)])
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        let sent = try ProducerRecord(topic: "orders", key: "ORD-7", json: order, encoder: encoder)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        #expect(try record(sent.value).decode(Order.self, decoder: decoder) == order)
        // The decoder matters: the default one does not read ISO 8601 dates.
        #expect(throws: RecordDecodingError.self) { try record(sent.value).decode(Order.self) }
    }

    @Test func anErrorNamesTheRecordAndTheField() throws {
        let missing = Array(#"{"order":"ORD-7","placed":0,"lines":[{"sku":"A"}]}"#.utf8)
        let error = try #require(throws: RecordDecodingError.self) { try record(missing).decode(Order.self) }
        #expect(error.topic == "orders" && error.partition == 2 && error.offset == 41 && error.type == "Order")
        #expect(error.path == "/lines/0/qty" && error.reason == "required, missing")
        #expect(error.description == "orders/2 offset 41 does not decode as Order: /lines/0/qty: required, missing")

        let wrongType = Array(#"{"order":7,"placed":0,"lines":[]}"#.utf8)
        let mismatch = try #require(throws: RecordDecodingError.self) { try record(wrongType).decode(Order.self) }
        #expect(mismatch.path == "/order" && mismatch.reason.hasPrefix("expected String"))

        let notJSON = try #require(throws: RecordDecodingError.self) { try record(Array("ORD-7;5".utf8), offset: 9).decode(Order.self) }
        #expect(notJSON.offset == 9 && notJSON.path == "" && notJSON.description.hasPrefix("orders/2 offset 9 does not decode as Order: /: "))

        let tombstone = try #require(throws: RecordDecodingError.self) { try record(nil).decode(Order.self) }
        #expect(tombstone.reason == "the record has no value (a tombstone)")
    }
}
