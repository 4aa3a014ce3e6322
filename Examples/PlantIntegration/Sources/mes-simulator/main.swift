import Foundation
import MillraceClient
import PlantEvents

/// An MES line: for each unit built, a production confirmation (to `confirmations`, keyed by
/// order, deduplicated by event id, lots and serials indexed) and a genealogy link (to
/// `genealogy`: the component lot consumed into each serial built, so `millrace trace LOT-3
/// --where-used` lists the serials built from a lot and `millrace trace SN-100007 --where-from`
/// the lot a serial was built from). Every send returns a handle at once; the deliveries stream
/// reports each outcome. A gateway resending after an outage (`--resend`) sends the same
/// events again: the broker answers them as duplicates, none is stored twice.
///
///   mes-simulator --broker 127.0.0.1:7450 --units 1000 [--first 0] [--resend 1]
let arguments = Arguments()
var configuration = MillraceClient.Configuration()
configuration.brokers = arguments.string("broker", "127.0.0.1:7450").split(separator: ",").map(String.init)
let client = MillraceClient(configuration: configuration)
let units = arguments.int("units", 1_000)
let first = arguments.int("first", 0)
let rounds = 1 + arguments.int("resend", 0)

try await client.createTopic(
    "confirmations",
    .init(partitions: 3, retention: .seconds(30 * 86_400), dedupKey: "json:/eventID", index: IndexPolicy(fields: ["/lot", "/serial", "/order"])),
    ifNotExists: true)
try await client.createTopic("genealogy", .init(partitions: 1, index: IndexPolicy(links: [IndexLink(parent: "/parentSerial", child: "/childLot")])), ifNotExists: true)

let (producer, deliveries) = Producer.makeWithDeliveryReports(client: client)
// The reports are read beside the sends; `close()` waits for the last answer and ends them.
let (counts, failures) = try await withThrowingTaskGroup(of: ([Delivery.Outcome: Int], Int).self) { tasks in
    tasks.addTask {
        var counts: [Delivery.Outcome: Int] = [:]
        var failures = 0
        for await report in deliveries {
            switch report.result {
            case .success(let delivery): counts[delivery.outcome, default: 0] += 1
            case .failure: failures += 1
            }
        }
        return (counts, failures)
    }
    for round in 0..<rounds {
        for unit in first..<(first + units) {
            let lot = "LOT-\(unit / 50)"
            let serial = "SN-\(100_000 + unit)"
            let confirmation = ProductionConfirmation(
                eventID: "MES-L3-\(unit)", order: "ORD-\(unit / 10)", operation: "0020", lot: lot, serial: serial, yieldQty: 1, scrapQty: unit % 97 == 0 ? 1 : 0)
            // Each send returns its handle at once; the reports stream tells the outcome.
            _ = try await producer.send(topic: "confirmations", key: confirmation.order, json: confirmation)
            if round == 0 { _ = try await producer.send(topic: "genealogy", key: lot, json: GenealogyLink(parentSerial: serial, childLot: lot)) }
        }
    }
    try await producer.close()
    return try await tasks.next() ?? ([:], 0)
}
print(
    "mes-simulator: \(counts[.appended] ?? 0) appended, \(counts[.duplicate] ?? 0) duplicates caught, \(counts[.quarantined] ?? 0) quarantined, \(counts[.invalid] ?? 0) invalid, \(failures) failed"
)
await client.close()
if failures > 0 { exit(1) }
