import Foundation
import MillraceClient
import PlantEvents

#if canImport(Glibc)
import Glibc
#endif

/// An ERP poster: consumes `confirmations` as the consumer group `erp`, "posts" each to the
/// ERP (here: a goods-receipt line per confirmation on standard output), and commits what
/// it posted. It rides through a broker restart — the group consumer reconnects and goes on
/// from the committed offsets — and stops after `--expect` confirmations.
///
///   erp-poster --broker 127.0.0.1:7450 --expect 1000
let arguments = Arguments()
var configuration = MillraceClient.Configuration()
configuration.brokers = arguments.string("broker", "127.0.0.1:7450").split(separator: ",").map(String.init)
let client = MillraceClient(configuration: configuration)
let expected = arguments.int("expect", 1_000)

var consumerConfiguration = GroupConsumer.Configuration()
consumerConfiguration.commitInterval = .milliseconds(200)
let consumer = GroupConsumer(client: client, group: arguments.string("group", "erp"), topic: "confirmations", configuration: consumerConfiguration)
var posted = Set<String>()
var yield = 0
let decoder = JSONDecoder()
for try await record in consumer {
    guard let value = record.value, let confirmation = try? decoder.decode(ProductionConfirmation.self, from: Data(value)) else { continue }
    // Posting is idempotent by event id: a record seen again after a restart is not booked twice.
    if posted.insert(confirmation.eventID).inserted {
        yield += confirmation.yieldQty
        print("GR \(confirmation.order) \(confirmation.operation) lot \(confirmation.lot) serial \(confirmation.serial) qty \(confirmation.yieldQty)")
        fflush(nil)
    }
    consumer.commit(record)
    if posted.count >= expected { break }
}
await consumer.close()
await client.close()
FileHandle.standardError.write(Data("erp-poster: posted \(posted.count) confirmations, \(yield) units\n".utf8))
