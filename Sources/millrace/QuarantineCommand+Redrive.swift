import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceSchema
import MillraceWire

extension QuarantineCommand {
    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check parked records against the topic's latest schema; append those that pass to the topic, each at most once.",
            discussion: """
                Records that pass go back to the partition they came from, without the error headers and with the \
                schema version they passed; one the topic already holds (duplicate detection) is done too. Records \
                still invalid stay where they are in the quarantine, and the next run looks at them again; nothing is \
                parked again. A cursor (group millrace.redrive) records how far re-drive got and which records before \
                it are still invalid, so a second run never re-drives the same record. --dry-run only reports.
                """ + Help.examples("millrace quarantine redrive checked --dry-run", "millrace quarantine redrive checked"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "The topic (not its .quarantine).") var topic: String
        @Option(help: "Look at every record from this quarantine offset, instead of those the cursor says are still parked.") var from: Int64?
        @Flag(help: "Only report what would happen.") var dryRun = false
        @Flag(help: "Print one JSON object per record and a summary.") var json = false
        @Flag(help: "List every record's outcome (without it, the first \(Self.listedMax) are listed, then the count of the rest).") var verbose = false

        /// Records listed one by one without --verbose, as `produce` lists refused lines.
        static let listedMax = 20

        /// What became of one parked record.
        struct Outcome: Sendable {
            enum Kind: Sendable {
                case redriven, alreadyInTopic, wouldRedrive
                /// Stays parked (and in the cursor's still-invalid records).
                case stillInvalid
                /// The broker found it invalid after all and parked it as a new record: that
                /// one stands for it now.
                case parkedAnew
                /// Not handled: the broker did not take it.
                case failed
            }
            var kind: Kind
            var line: String
        }

        struct Tally {
            var redriven = 0, alreadyInTopic = 0, stillInvalid = 0
            var stopped = false
            var total: Int { redriven + alreadyInTopic + stillInvalid }

            mutating func count(_ kind: Outcome.Kind) {
                switch kind {
                case .redriven, .wouldRedrive: redriven += 1
                case .alreadyInTopic: alreadyInTopic += 1
                case .stillInvalid, .parkedAnew: stillInvalid += 1
                case .failed: break
                }
            }
        }

        func run() async throws {
            if let from, from < 0 {
                Output.standardError("error: --from takes an offset, 0 or more (got \(from))")
                throw ExitCode(2)
            }
            let (topic, from, dryRun, json) = (self.topic, self.from, self.dryRun, self.json)
            let listed = json || verbose ? Int.max : Self.listedMax
            let stop = Locked(false)
            // Ctrl-C / SIGTERM: finish the chunk in hand, move the cursor past it, stop.
            let signals = TerminationSignals(graceSeconds: 30) { stop.withLock { $0 = true } }
            defer { signals.cancel() }
            let broker = self.broker
            let work = Task {
                try await withClient(broker) { client in
                    // Re-drive appends to the topic as its owner (its system of record): run as
                    // anyone else, the broker would refuse every record.
                    if !dryRun, let owner = try? await client.describeTopic(topic).owner {
                        let identity = try await client.whoAmI()
                        if identity.authentication != "none" && identity.principal != owner {
                            throw MillraceError(
                                .notOwner,
                                "topic \(topic) is owned by \(owner): re-drive appends to it as its owner, so run it as \(owner) (MILLRACE_USER=\(owner), or its certificate); this is \(identity.principal)")
                        }
                    }
                    return try await Self.redrive(client, topic: topic, from: from, dryRun: dryRun, json: json, listed: listed) { stop.withLock { $0 } }
                }
            }
            // Under swift-service-lifecycle; a signal lets the chunk in hand finish (not a cancel).
            let tally = try await signals.wait(for: work, cancelling: false)
            if tally.stopped { Output.standardError("stopped by a signal; the cursor is after the last record handled — run re-drive again to go on") }
            if json {
                print(
                    Output.json([
                        "topic": topic, "redriven": tally.redriven, "already_in_topic": tally.alreadyInTopic, "still_invalid": tally.stillInvalid, "dry_run": dryRun,
                    ]))
            } else if tally.redriven + tally.alreadyInTopic + tally.stillInvalid == 0 {
                print("nothing parked for \(topic)")
            } else {
                let unlisted = tally.redriven + tally.alreadyInTopic + tally.stillInvalid - min(listed, tally.redriven + tally.alreadyInTopic + tally.stillInvalid)
                if unlisted > 0 { print("… and \(unlisted) more record\(unlisted == 1 ? "" : "s") (--verbose lists each; `millrace quarantine list \(topic)` groups those still parked by rule)") }
                let already = tally.alreadyInTopic == 0 ? "" : "; \(tally.alreadyInTopic) already in the topic"
                print(
                    "\(dryRun ? "would re-drive" : "re-drove") \(tally.redriven) record\(tally.redriven == 1 ? "" : "s") to \(topic)\(already); \(tally.stillInvalid) still invalid\(dryRun || tally.stillInvalid == 0 ? "" : " (left parked)")"
                )
            }
        }

        /// Chunks: after each, every send is answered and the cursor moves past what was
        /// handled, so a stop (or a crash) re-drives at most the chunk in hand again.
        static func redrive(
            _ client: MillraceClient, topic: String, from: Int64?, dryRun: Bool, json: Bool, listed: Int, stopped: @escaping @Sendable () -> Bool
        ) async throws -> Tally {
            let found = try await QuarantineCommand.parked(client, topic: topic, from: from)
            var tally = Tally()
            guard !found.records.isEmpty else { return tally }
            let (version, schema) = try await client.compiledSchema(topic: topic)
            let producer = Producer(client: client)
            var cursor = found.cursor
            let chunkSize = 1_000
            for chunkStart in stride(from: 0, to: found.records.count, by: chunkSize) {
                if stopped() {
                    tally.stopped = true
                    return tally
                }
                let chunk = found.records[chunkStart..<min(chunkStart + chunkSize, found.records.count)]
                let outcomes = try await handle(chunk, topic: topic, version: version, schema: schema, end: found.end, producer: producer, dryRun: dryRun)
                for (offset, outcome) in outcomes where outcome.kind != .failed {
                    if tally.total < listed { print(json ? Output.json(["offset": offset, "outcome": outcome.line]) : "offset \(offset): \(outcome.line)") }
                    tally.count(outcome.kind)
                }
                guard !dryRun else { continue }
                // Everything before the first record not handled is done with; after the last
                // chunk, everything to the end as it was at the start.
                let failedAt = outcomes.first { $0.outcome.kind == .failed }?.offset
                let through = failedAt.map { $0 - 1 } ?? (chunkStart + chunkSize >= found.records.count ? found.end - 1 : chunk[chunk.endIndex - 1].record.offset)
                let stillInvalid = outcomes.filter { $0.offset <= through && $0.outcome.kind == .stillInvalid }.map(\.offset)
                cursor.looked(at: from ?? 0, through: through, stillInvalid: stillInvalid)
                let problems = outcomes.filter { $0.outcome.kind == .failed }.map { "offset \($0.offset): \($0.outcome.line)" }
                let offsets = chunk[chunk.startIndex].record.offset...chunk[chunk.endIndex - 1].record.offset
                try await commit(cursor, client: client, topic: topic, chunk: offsets, failedAt: failedAt, problems: problems)
            }
            return tally
        }

        /// Checks each record of a chunk and sends those that pass; its outcomes by offset.
        static func handle(
            _ chunk: ArraySlice<Parked>, topic: String, version: Int32, schema: Schema, end: Int64, producer: Producer, dryRun: Bool
        ) async throws -> [(offset: Int64, outcome: Outcome)] {
            let outcomes = Locked<[Int64: Outcome]>([:])
            for parked in chunk {
                let record = parked.record
                let offset = record.offset
                if let problem = schema.validate(json: record.value ?? []).first {
                    outcomes.withLock { $0[offset] = Outcome(kind: .stillInvalid, line: "still invalid against version \(version): \(problem.description)") }
                    continue
                }
                let partition = parked.sourcePartition ?? 0
                guard !dryRun else {
                    outcomes.withLock { $0[offset] = Outcome(kind: .wouldRedrive, line: "passes version \(version); would go back to \(topic)/\(partition)") }
                    continue
                }
                var headers = record.headers.filter { !QuarantineCommand.errorHeaders.contains($0.key) && $0.key != schemaVersionHeader }
                headers.append(RecordHeader(key: schemaVersionHeader, value: Array(String(version).utf8)))
                let answered: Producer.Completion = { result in
                    let outcome = Self.outcome(of: result, topic: topic, end: end)
                    outcomes.withLock { $0[offset] = outcome }
                }
                do {
                    try await producer.send(topic: topic, partition: partition, key: record.key, value: record.value ?? [], headers: headers, completion: answered)
                } catch {
                    // Refused before it was sent (a source partition the topic no longer has).
                    answered(.failure(error))
                }
            }
            try await producer.flush()
            return outcomes.withLock { $0 }.sorted { $0.key < $1.key }.map { (offset: $0.key, outcome: $0.value) }
        }

        /// What the broker's answer to a re-driven record means for it.
        static func outcome(of result: Result<(partition: Int32, offset: Int64), any Error>, topic: String, end: Int64) -> Outcome {
            switch result {
            case .success(let placed):
                return Outcome(kind: .redriven, line: "re-driven to \(topic)/\(placed.partition) at offset \(placed.offset)")
            case .failure(let duplicate as RecordDuplicate):
                return Outcome(kind: .alreadyInTopic, line: "already in the topic (duplicate of partition \(duplicate.partition) offset \(duplicate.offset))")
            case .failure(let parked as RecordQuarantined):
                // Checked against a version registered since: parked as it was, or (a key the
                // quarantine held) answered with a record already there.
                return Outcome(kind: parked.offset >= end ? .parkedAnew : .stillInvalid, line: "still invalid when the broker checked it: \(parked)")
            case .failure(let error as MillraceError) where error.code == .invalidRecord:
                return Outcome(kind: .stillInvalid, line: "still invalid when the broker checked it: \(error.message)")
            case .failure(let error as MillraceError) where !error.code.isRetriable:
                // Sending it again would be refused again: it stays parked, with the reason.
                return Outcome(kind: .stillInvalid, line: "refused by the broker (\(error.code)), left parked: \(error.message)")
            case .failure(let error):
                return Outcome(kind: .failed, line: "not re-driven: \(error)")
            }
        }

        /// The records the broker did not take: the first few (a stopped broker fails them all alike).
        static func report(_ problems: [String]) {
            for problem in problems.prefix(3) { Output.standardError("error: \(problem)") }
            if problems.count > 3 { Output.standardError("error: and \(problems.count - 3) more records not re-driven") }
        }

        /// Moves the cursor past what a chunk handled; when the broker did not take all of
        /// it, or the cursor cannot be moved, says what the next run will do and fails this one.
        static func commit(
            _ cursor: RedriveCursor, client: MillraceClient, topic: String, chunk: ClosedRange<Int64>, failedAt: Int64?, problems: [String]
        ) async throws {
            let (metadata, released) = cursor.metadata()
            for range in released {
                Output.standardError(
                    "note: offsets \(RedriveCursor.text(range)) of \(topic).quarantine are still invalid but no longer looked at by re-drive (the cursor keeps at most \(Limits.offsetMetadataBytesMax) bytes of still-invalid offsets); read them with `millrace consume \(topic).quarantine --from offset:\(range.lowerBound)`"
                )
            }
            let again = "re-driven just now will be sent again by the next run (a topic with duplicate detection finds them already in it)"
            do {
                try await client.commitOffsets(
                    group: QuarantineCommand.cursorGroup, topic: topic + InvalidRecordPolicy.quarantineSuffix,
                    offsets: [OffsetEntry(partition: 0, offset: cursor.next, metadata: metadata)])
            } catch {
                report(problems)
                Output.standardError(
                    "error: the cursor could not be moved (\(error)); it stays where it was, so the records of offsets \(chunk.lowerBound)...\(chunk.upperBound) \(again); run re-drive again once the broker takes writes"
                )
                throw ExitCode(1)
            }
            guard let failedAt else { return }
            report(problems)
            Output.standardError(
                "error: the records from offset \(failedAt) to \(chunk.upperBound) stay parked for the next run (those of them \(again)); run re-drive again once the broker takes writes"
            )
            throw ExitCode(1)
        }
    }
}
