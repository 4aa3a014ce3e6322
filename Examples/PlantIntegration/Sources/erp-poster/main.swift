import Foundation
import Logging
import MillraceClient
import PlantEvents
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// An ERP poster: consumes `confirmations` as the consumer group `erp` and "posts" each to
/// the ERP (here: a goods-receipt line per confirmation on standard output). It runs as a
/// `GroupConsumerService` in a `ServiceGroup`: a record is committed only once it has been
/// posted (at least once), and SIGTERM or Ctrl-C stops it gracefully — the record in hand is
/// posted, what was posted is committed, the member leaves the group. It rides through a
/// broker restart (the group consumer reconnects and goes on from the committed offsets) and
/// stops by itself after `--expect` confirmations.
///
///   erp-poster --broker 127.0.0.1:7450 --expect 1000
let arguments = Arguments()
var configuration = MillraceClient.Configuration()
configuration.brokers = arguments.string("broker", "127.0.0.1:7450").split(separator: ",").map(String.init)
let client = MillraceClient(configuration: configuration)
let ledger = ERPLedger(expected: arguments.int("expect", 1_000))

var consumerConfiguration = GroupConsumer.Configuration()
consumerConfiguration.commitInterval = .milliseconds(200)
let consumer = GroupConsumer(client: client, group: arguments.string("group", "erp"), topic: "confirmations", configuration: consumerConfiguration)
let posting = GroupConsumerService(consumer: consumer) { record in
    let confirmation: ProductionConfirmation
    do {
        confirmation = try record.decode(ProductionConfirmation.self)
    } catch {
        // Not a confirmation: nothing to post. Say which record, and go on past it.
        FileHandle.standardError.write(Data("erp-poster: skipped \(error)\n".utf8))
        return
    }
    await ledger.post(confirmation)
}
let services = ServiceGroup(services: [posting], gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "erp-poster"))
await ledger.stop(services)
do {
    try await services.run()
} catch {
    await client.close()
    throw error
}
await client.close()
let (count, units) = await ledger.totals
FileHandle.standardError.write(Data("erp-poster: posted \(count) confirmations, \(units) units\n".utf8))

/// The ERP side: books each confirmation once (idempotent by event id: a record read again
/// after a restart or a rebalance is not booked twice), and ends the run after `expected`.
actor ERPLedger {
    private var posted = Set<String>()
    private var units = 0
    private let expected: Int
    private var services: ServiceGroup?

    init(expected: Int) { self.expected = expected }

    /// The group to shut down gracefully once `expected` confirmations are booked.
    func stop(_ services: ServiceGroup) { self.services = services }

    func post(_ confirmation: ProductionConfirmation) async {
        if posted.insert(confirmation.eventID).inserted {
            units += confirmation.yieldQty
            print("GR \(confirmation.order) \(confirmation.operation) lot \(confirmation.lot) serial \(confirmation.serial) qty \(confirmation.yieldQty)")
            fflush(nil)
        }
        if posted.count == expected { await services?.triggerGracefulShutdown() }
    }

    var totals: (count: Int, units: Int) { (posted.count, units) }
}
