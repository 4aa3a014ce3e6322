import MillraceFormat
import MillraceSchema
import MillraceStorage
import MillraceWire
import NIOCore

/// The produce path for a topic with a schema or duplicate detection: one pass over each
/// partition's records on its validation lane, then the appends.
extension RequestDispatcher {
    /// What the produce path learns from one pass over a partition's records: those that
    /// break the topic's schema (if it has one), each with its outcome, and each record's
    /// business-key hash (if the topic has duplicate detection).
    struct Inspection: Sendable {
        /// The batches, each checked in the same walk that read its records.
        var checked: [CheckedBatch] = []
        var invalid: [(batch: Int, record: Int, outcome: RecordOutcome)] = []
        var hashes: [[DedupHash?]]?
        /// Per batch, the records' indexed values (if the topic has an index policy).
        var indexKeys: [[IndexKey]]?
    }

    /// Each value is parsed at most once, where it lies in its batch, and that one parse feeds
    /// the validator, the dedup key's JSON pointer and the index's pointers; headers are not
    /// decoded unless the dedup key is one. That walk is also each batch's whole check
    /// (`CheckedBatch`), so the append checks nothing again. A batch that does not parse is
    /// named as storage names it ("batch 2 of 3: ..."); a value that is not JSON is simply not
    /// indexed.
    func inspect(
        topic: String, entry: SchemaRegistry.Entry, dedup: DedupPolicy?, index indexPolicy: IndexPolicy? = nil, batches: [[UInt8]],
        steps: ValidationSteps = ValidationSteps(Limits.validationStepsPerRequestMax)
    ) throws -> Inspection {
        var tape = JSONTape()
        var inspection = Inspection()
        if dedup != nil { inspection.hashes = [] }
        if indexPolicy != nil { inspection.indexKeys = [] }
        let extractor = try indexPolicy.map { try IndexExtractor($0) }
        var index: Int32 = 0
        let versionHeader = Array(schemaVersionHeader.utf8)
        // The versions records name, each looked up (and compiled, if not cached) once.
        var versions: [Int32: Schema] = [:]
        if let latest = entry.latestSchema { versions[entry.latest] = latest }
        let pointer: JSONPointer?
        var headerName: [UInt8]?
        switch dedup?.key {
        case .json(let text)?: pointer = try JSONPointer(stored: text)
        case .header(let name)?:
            pointer = nil
            headerName = Array(name.utf8)
        default: pointer = nil
        }
        for (batchIndex, bytes) in batches.enumerated() {
            do {
                var recordIndex = 0
                var hashes: [DedupHash?] = []
                var indexKeys: [IndexKey] = []
                let checked = try CheckedBatch(checking: bytes, decodeHeaders: headerName != nil, findHeader: versionHeader) { view, headers in
                    defer {
                        index += 1
                        recordIndex += 1
                    }
                    var indexed = false
                    if entry.latest > 0 {
                        let (outcome, parsed) = Self.check(view, index: index, topic: topic, entry: entry, versions: &versions, tape: &tape, steps: steps)
                        indexed = parsed
                        if let outcome { inspection.invalid.append((batchIndex, recordIndex, outcome)) }
                    }
                    if let extractor {
                        indexed = extractor.append(view, record: Int32(recordIndex), tape: &tape, parsed: indexed, to: &indexKeys)
                    }
                    guard let dedup else { return }
                    switch dedup.key {
                    case .recordKey:
                        hashes.append(view.key.flatMap { $0.count <= Limits.dedupKeyBytesMax ? DedupHash($0) : nil })
                    case .header:
                        let value = headers.first { $0.key.utf8.elementsEqual(headerName ?? []) }?.value
                        hashes.append(value.flatMap { $0.count <= Limits.dedupKeyBytesMax ? DedupHash($0) : nil })
                    case .json:
                        guard let pointer, let value = view.value else { return hashes.append(nil) }
                        let text = value.assumingMemoryBound(to: UInt8.self)
                        // The schema's parse when there was one; else read only as far as the key.
                        hashes.append(indexed ? pointer.keyHash(in: tape, text: text) : pointer.keyHash(scanning: text))
                    }
                }
                inspection.checked.append(checked)
                inspection.hashes?.append(hashes)
                inspection.indexKeys?.append(indexKeys)
            } catch {
                throw CheckedBatch.placed(error, batch: batchIndex, of: batches.count)
            }
        }
        return inspection
    }

    /// One record against the version it names (or the latest), each version looked up once
    /// per request in `versions`: its outcome (nil when valid), and whether `tape` now holds
    /// its value. Spends `steps`, the request's validation budget, on the check and on
    /// compiling an uncached version; past it, records are invalid (`budget`).
    private static func check(
        _ view: RecordView, index: Int32, topic: String, entry: SchemaRegistry.Entry, versions: inout [Int32: Schema], tape: inout JSONTape,
        steps: ValidationSteps
    ) -> (RecordOutcome?, Bool) {
        var version = entry.latest
        // The CLI and most producers name the latest version: that is recognised in place.
        if view.foundHeader, !(view.foundHeaderValue.map { Self.isDecimal($0, entry.latest) } ?? false) {
            let named = view.foundHeaderValue.map { String(decoding: $0, as: UTF8.self) }
            guard let named, let number = Int32(named), number >= 1, number <= entry.latest else {
                let shown = named.map { String($0.prefix(16)) } ?? "null"
                return (
                    RecordOutcome(
                        index: index, kind: .invalid, path: "", rule: "schema-version",
                        message: "header \(schemaVersionHeader) is \(shown); topic \(topic) has schema versions 1...\(entry.latest)"), false
                )
            }
            version = number
        }
        let schema: Schema
        if let known = versions[version] {
            schema = known
        } else {
            do {
                var compiledBytes = 0
                guard let loaded = try entry.schema(version, compiledBytes: &compiledBytes) else {
                    throw MillraceError(.unknownSchemaVersion, "topic \(topic) has no schema version \(version)")
                }
                steps.spend(compiledBytes * SchemaRegistry.compileStepsPerByte)
                versions[version] = loaded
                schema = loaded
            } catch {
                let reason = (error as? MillraceError)?.message ?? "\(error)"
                return (
                    RecordOutcome(
                        index: index, kind: .invalid, schemaVersion: version, rule: "schema-version",
                        message: "schema version \(version) of topic \(topic) could not be loaded to check this record: \(reason)"), false
                )
            }
        }
        guard let value = view.value else {
            return (
                RecordOutcome(index: index, kind: .invalid, schemaVersion: version, rule: "json", message: "the value is null; the topic's schema needs a JSON value"),
                false
            )
        }
        let violation: SchemaViolation?
        var parsed = false
        do {
            let text = value.assumingMemoryBound(to: UInt8.self)
            try tape.index(text, depthMax: Limits.jsonDepthMax)
            parsed = true
            let allowance = steps.take(Limits.validationStepsPerValueMax)
            var left = allowance
            if schema.isValid(tape, in: text, steps: &left) {
                violation = nil
            } else if left < 0 && allowance == Limits.validationStepsPerValueMax {
                violation = .overBudget(stepsMax: allowance)
            } else if left < 0 {
                violation = SchemaViolation(
                    path: "", rule: "budget",
                    message:
                        "not checked: the records before it in this request used up its \(Limits.validationStepsPerRequestMax) validation steps (validationStepsPerRequestMax); send fewer or smaller records per request"
                )
            } else {
                // The message's run redoes the check: charged as much again.
                let spent = allowance - left
                violation = schema.validate(tape, in: text, limit: 1, stepsMax: allowance).first
                left -= spent
            }
            steps.giveBack(max(0, left))
        } catch {
            violation = SchemaViolation(path: "", rule: "json", message: "\(error)")
        }
        return (
            violation.map {
                RecordOutcome(index: index, kind: .invalid, schemaVersion: version, path: $0.path, rule: $0.rule, message: $0.message)
            }, parsed
        )
    }

    /// Whether `bytes` are the decimal digits of `number` (no sign, no leading zero).
    static func isDecimal(_ bytes: UnsafeRawBufferPointer, _ number: Int32) -> Bool {
        var rest = number
        var position = bytes.count
        guard position > 0, number >= 0 else { return false }
        while position > 0 {
            position -= 1
            guard bytes[position] == UInt8(ascii: "0") + UInt8(rest % 10) else { return false }
            rest /= 10
            if rest == 0 { return position == 0 }
        }
        return false
    }

    typealias Append = @Sendable (
        _ topic: String, _ partition: Int32, _ batches: [CheckedBatch], _ sequences: [SequenceSpan]?, _ dedupHashes: [[DedupHash?]]?,
        _ dedupCheckedThrough: UInt64, _ indexKeys: [[IndexKey]]?, _ completion: @escaping @Sendable (Result<AppendResult, MillraceError>) -> Void
    ) -> Void

    /// A partition's records made ready on its validation lane: what to append and what to
    /// answer for the records that will not be.
    struct Prepared: Sendable {
        /// Records that break the schema (policy reject: the whole partition is refused).
        var invalid: [RecordOutcome] = []
        var rejected = false
        /// Records in the request.
        var total = 0
        /// Policy quarantine: the invalid records, as batches for `<topic>.quarantine`.
        var parked: Parking?
        /// Records whose key the topic already held (found on the lane).
        var duplicates: [RecordOutcome] = []
        /// What to append: the batches as sent, or re-encoded without the records above.
        var kept: [CheckedBatch] = []
        var keptHashes: [[DedupHash?]]?
        /// The kept records' indexed values, numbered within the kept batches.
        var keptIndexKeys: [[IndexKey]]?
        /// Each kept record's position in the request (its outcome index).
        var keptIndex: [[Int32]] = []
        /// The producer's sequence spans as sent (an idempotent producer's numbers are used up
        /// by records refused or re-encoded too).
        var spans: [SequenceSpan] = []
        /// Whether `kept` was rewritten (then `spans` go with the append explicitly).
        var rewritten = false
        var checkedThrough: UInt64 = 0
    }

    /// A partition's answer, and how many of its records were parked just now: a record
    /// answered with the place of one parked before (the topic's dedup key) is not counted
    /// as parked again.
    struct Produced: Sendable {
        var result: ProducePartitionResult
        var parked = 0
    }

    /// Checks the records against the topic's schema and looks their business keys up — on
    /// the partition's validation lane, off the event loop, in arrival order per partition —
    /// then appends what is left. A topic with neither goes straight to `append`.
    func appendValidated(
        _ topic: String, _ entry: ProducePartition, batches: [[UInt8]], steps: ValidationSteps = ValidationSteps(Limits.validationStepsPerRequestMax),
        on eventLoop: any EventLoop, append: @escaping Append
    ) -> EventLoopFuture<Produced> {
        let failed: @Sendable (Error) -> Produced = { error in
            let error = error as? MillraceError ?? MillraceError(.corruptBatch, "\(error)")
            return Produced(
                result: ProducePartitionResult(partition: entry.partition, errorCode: error.code, message: error.message, baseOffset: -1, logStartOffset: -1))
        }
        let contract: SchemaRegistry.Entry
        do {
            contract = try schemas.entry(topic)
        } catch {
            return eventLoop.makeSucceededFuture(failed(error))
        }
        let info = storage.topicInfo(topic)
        let dedup = info?.config.dedup
        let indexPolicy = info?.config.index
        let lane = Self.lane(topic, entry.partition)
        let partition = TopicPartition(topic: topic, partition: entry.partition)
        guard contract.latest > 0 || dedup != nil || indexPolicy != nil else {
            // The batches are checked (CRC, every record, zstd) here, where `append` runs: on
            // the loop only when small and uncompressed, else on the partition's lane.
            // The answer completes `promise` straight from the writer's completion: from the
            // lane there is no hop back to the loop first (each hop is a thread wake-up).
            let promise = eventLoop.makePromise(of: Produced.self)
            let appendPlain: @Sendable () -> Void = {
                let checked: [CheckedBatch]
                switch CheckedBatch.checkAll(batches) {
                case .success(let all): checked = all
                case .failure(let error): return promise.succeed(failed(error))
                }
                append(topic, entry.partition, checked, nil, nil, 0, nil) { result in
                    switch result {
                    case .success(let appended):
                        promise.succeed(
                            Produced(
                                result: ProducePartitionResult(
                                    partition: entry.partition, baseOffset: appended.baseOffset, logAppendTimeMs: appended.logAppendTimeMs ?? -1,
                                    logStartOffset: appended.logStartOffset)))
                    case .failure(let error): promise.succeed(failed(error))
                    }
                }
            }
            let bytes = batches.reduce(0) { $0 + $1.count }
            let wantsLane = bytes > Self.verifyOnLoopBytesMax || batches.contains(where: Self.isCompressed)
            guard laneBacklog.enter(partition, wantsLane: wantsLane) else {
                appendPlain()
                return promise.futureResult
            }
            let backlog = laneBacklog
            validationLanes.execute(lane: lane) { active in
                defer { backlog.leave(partition) }
                guard active else { return promise.succeed(failed(Self.lanesStopped)) }
                appendPlain()
            }
            return promise.futureResult
        }
        let quarantines = info?.config.onInvalid == .quarantine
        _ = laneBacklog.enter(partition, wantsLane: true)
        let backlog = laneBacklog
        // Inspected, prepared and queued for the writer on the lane: the batches are checked
        // there, never on the loop. The answer comes from the writer's completion, with no
        // hop back to the loop in between.
        let promise = eventLoop.makePromise(of: Produced.self)
        validationLanes.execute(lane: lane) { [self] active in
            defer { backlog.leave(partition) }
            guard active else { return promise.succeed(failed(Self.lanesStopped)) }
            do {
                let prepared = try prepare(
                    topic, entry.partition, inspection: inspect(topic: topic, entry: contract, dedup: dedup, index: indexPolicy, batches: batches, steps: steps),
                    quarantines: quarantines)
                appendPrepared(topic, entry, prepared, info: info, into: promise, append: append)
            } catch {
                promise.succeed(failed(error))
            }
        }
        return promise.futureResult
    }

    /// The answer to a produce that reaches a lane after the lanes were shut down.
    static let lanesStopped = MillraceError(.storageClosed, "the broker is stopping; nothing was appended, retry")

    /// The largest produce (a partition's batches together) whose batches are checked on the
    /// event loop when none is compressed; larger ones, and compressed ones (zstd costs more
    /// than a hop to the lane whatever the size), are checked on the partition's validation
    /// lane. See DECISIONS.md, "Batch checks off the event loop".
    static let verifyOnLoopBytesMax = 16 << 10

    /// Whether a batch's codec bits name a codec (read without checking anything else: a batch
    /// too short to say goes to the lane, whose check refuses it).
    static func isCompressed(_ batch: [UInt8]) -> Bool {
        guard batch.count >= RecordBatchLayout.attributesAt + 2 else { return true }
        return batch[RecordBatchLayout.attributesAt + 1] & 0x07 != 0
    }

    /// A partition's lane: the topic's partitions take consecutive lanes from a point the
    /// topic's name picks (FNV-1a), so a topic spreads over all lanes evenly, run after run.
    static func lane(_ topic: String, _ partition: Int32) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in topic.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int((hash >> 2) + UInt64(UInt32(bitPattern: partition)))
    }

    /// On the lane: decides each record's fate. Invalid under reject → nothing goes in. A key
    /// the topic holds → a duplicate of its original, valid or not (its event is in the topic).
    /// Otherwise invalid under quarantine → parked (the quarantine's append answers a key parked
    /// before with that record's place). The rest are appended: as sent when nothing was taken
    /// out, else re-encoded here.
    func prepare(_ topic: String, _ partition: Int32, inspection: Inspection, quarantines: Bool) throws -> Prepared {
        var prepared = Prepared()
        prepared.invalid = inspection.invalid.map(\.outcome)
        let batches = inspection.checked
        let headers = batches.map(\.header)
        let counts = headers.map { Int($0.recordCount) }
        prepared.total = counts.reduce(0, +)
        prepared.spans = headers.compactMap { SequenceSpan($0) }
        if !inspection.invalid.isEmpty && !quarantines {
            prepared.rejected = true
            return prepared
        }
        // Per batch, per record: appended (true) or taken out (invalid, or a duplicate).
        var keep = counts.map { [Bool](repeating: true, count: $0) }
        var takenOut = 0
        for invalid in inspection.invalid where keep[invalid.batch][invalid.record] {
            keep[invalid.batch][invalid.record] = false
            takenOut += 1
        }
        var parking = inspection.invalid
        var parkingHashes: [DedupHash?]?
        if let hashes = inspection.hashes {
            let check = try storage.dedupPrecheck(topic: topic, hashes: hashes)
            parking.removeAll { check.originals[$0.batch][$0.record] != nil }
            prepared.invalid = parking.map(\.outcome)
            parkingHashes = parking.map { hashes[$0.batch][$0.record] }
            prepared.checkedThrough = check.checkedThrough
            var index: Int32 = 0
            for (batch, originals) in check.originals.enumerated() {
                for (record, original) in originals.enumerated() {
                    defer { index += 1 }
                    guard let original else { continue }
                    if keep[batch][record] {
                        keep[batch][record] = false
                        takenOut += 1
                    }
                    prepared.duplicates.append(
                        RecordOutcome(index: index, kind: .duplicate, offset: original.offset, partition: original.partition, rule: "duplicate", message: ""))
                }
            }
        }
        guard takenOut > 0 else {
            prepared.kept = batches
            prepared.keptHashes = inspection.hashes
            prepared.keptIndexKeys = inspection.indexKeys
            var next: Int32 = 0
            for count in counts {
                prepared.keptIndex.append((0..<Int32(count)).map { next + $0 })
                next += Int32(count)
            }
            return prepared
        }
        // Records come out: the batches are rewritten here, on the lane, without them (the
        // producer's sequence numbers go with the append as sent).
        prepared.rewritten = true
        if !parking.isEmpty {
            prepared.parked = try Self.quarantineBatches(
                parking, hashes: parkingHashes, from: try batches.map { try RecordBatch.decode($0.bytes) }, topic: topic, partition: partition)
        }
        var next: Int32 = 0
        if inspection.hashes != nil { prepared.keptHashes = [] }
        if inspection.indexKeys != nil { prepared.keptIndexKeys = [] }
        for (batchIndex, batch) in batches.enumerated() {
            let count = counts[batchIndex]
            let marks = keep[batchIndex]
            let whole = !marks.contains(false)
            // A batch re-encoded here is checked as any other: the append takes checked batches.
            if let rewritten = try whole ? batch : RecordBatch.keeping(marks, of: batch.bytes, verified: headers[batchIndex]).map({ try CheckedBatch(checking: $0) }) {
                prepared.kept.append(rewritten)
                let records = (0..<count).filter { marks[$0] }
                prepared.keptIndex.append(records.map { next + Int32($0) })
                if let hashes = inspection.hashes?[batchIndex] { prepared.keptHashes?.append(records.map { hashes[$0] }) }
                if let keys = inspection.indexKeys?[batchIndex] {
                    // Original record index → its place in the rewritten batch, and where it starts there.
                    var place = [Int32](repeating: -1, count: count)
                    for (position, record) in records.enumerated() { place[record] = Int32(position) }
                    let starts =
                        whole ? nil : rewritten.bytes.withUnsafeBytes { RecordBatch.recordPositions($0, header: rewritten.header) }
                    prepared.keptIndexKeys?.append(
                        keys.compactMap { key in
                            guard place.indices.contains(Int(key.record)), place[Int(key.record)] >= 0 else { return nil }
                            let kept = place[Int(key.record)]
                            let position = whole ? key.position : starts.flatMap { $0.indices.contains(Int(kept)) ? UInt32(clamping: $0[Int(kept)]) : nil }
                            return IndexKey(record: kept, slot: key.slot, hash: key.hash, position: position ?? IndexKey.unknownPosition)
                        })
                }
            }
            next += Int32(count)
        }
        return prepared
    }

    /// On the partition's lane: carries a prepared partition out. Quarantine first (so a failure
    /// between the two leaves the bad records parked and the producer told), then the kept
    /// records; an idempotent producer's numbers are used up even when nothing is appended.
    func appendPrepared(
        _ topic: String, _ entry: ProducePartition, _ prepared: Prepared, info: TopicInfo?, into promise: EventLoopPromise<Produced>, append: @escaping Append
    ) {
        let failed: @Sendable (MillraceError, [RecordOutcome], Int) -> Produced = { error, outcomes, parked in
            Produced(
                result: ProducePartitionResult(
                    partition: entry.partition, errorCode: error.code, message: error.message, baseOffset: -1, logStartOffset: -1, outcomes: outcomes),
                parked: parked)
        }
        let storage = self.storage
        let spans = prepared.spans
        let useUpSequences: @Sendable (@escaping @Sendable () -> Void) -> Void = { then in
            guard !spans.isEmpty else { return then() }
            storage.recordSequences(topic: topic, partition: entry.partition, sequences: spans) { _ in then() }
        }
        if prepared.rejected {
            let outcomes = prepared.invalid
            let total = prepared.total
            let shown = outcomes.prefix(5).map(\.description).joined(separator: "; ")
            let more = outcomes.count > 5 ? "; and \(outcomes.count - 5) more" : ""
            let error = MillraceError(
                .invalidRecord,
                "\(outcomes.count) of \(total) record\(total == 1 ? "" : "s") break the schema of topic \(topic); nothing of partition \(entry.partition) was appended: \(shown)\(more)")
            return useUpSequences { promise.succeed(failed(error, outcomes, 0)) }
        }
        // After the parked records (if any) are in: the kept ones, with every outcome.
        let appendKept: @Sendable ([RecordOutcome], Int) -> Void = { placed, parked in
            let early = (placed + prepared.duplicates).sorted { $0.index < $1.index }
            guard !prepared.kept.isEmpty else {
                return useUpSequences {
                    promise.succeed(
                        Produced(result: ProducePartitionResult(partition: entry.partition, baseOffset: -1, logStartOffset: -1, outcomes: early), parked: parked))
                }
            }
            append(topic, entry.partition, prepared.kept, prepared.rewritten ? spans : nil, prepared.keptHashes, prepared.checkedThrough, prepared.keptIndexKeys) {
                result in
                switch result {
                case .success(let appended):
                    let late = appended.duplicates.map { duplicate in
                        let positions = prepared.keptIndex.indices.contains(duplicate.batch) ? prepared.keptIndex[duplicate.batch] : []
                        return RecordOutcome(
                            index: positions.indices.contains(duplicate.record) ? positions[duplicate.record] : -1, kind: .duplicate, offset: duplicate.offset,
                            partition: duplicate.partition, rule: "duplicate", message: "")
                    }
                    promise.succeed(
                        Produced(
                            result: ProducePartitionResult(
                                partition: entry.partition, baseOffset: appended.baseOffset, logAppendTimeMs: appended.logAppendTimeMs ?? -1,
                                logStartOffset: appended.logStartOffset, outcomes: (early + late).sorted { $0.index < $1.index }),
                            parked: parked))
                case .failure(let error): promise.succeed(failed(error, placed, parked))
                }
            }
        }
        guard let parking = prepared.parked, !parking.batches.isEmpty, let info else {
            return appendKept([], 0)
        }
        let outcomes = prepared.invalid
        ensureQuarantine(for: info) { created in
            if case .failure(let error) = created { return promise.succeed(failed(error, [], 0)) }
            // Every batch in one append: one transaction, all parked or none.
            let checked: [CheckedBatch]
            switch CheckedBatch.checkAll(parking.batches) {
            case .success(let all): checked = all
            case .failure(let error):
                return promise.succeed(failed(MillraceError(error.code, "could not quarantine \(outcomes.count) invalid record(s): \(error.message); nothing was appended"), [], 0))
            }
            append(topic + Self.quarantineSuffix, 0, checked, nil, parking.hashes, 0, nil) { result in
                switch result {
                case .failure(let error):
                    promise.succeed(
                        failed(MillraceError(error.code, "could not quarantine \(outcomes.count) invalid record(s): \(error.message); nothing was appended"), [], 0))
                case .success(let quarantined):
                    let placed = Self.parkedOutcomes(outcomes, quarantined, counts: parking.counts)
                    appendKept(placed.outcomes, placed.parked)
                }
            }
        }
    }
}

/// A produce request's validation steps, drawn by every partition's check on whichever lane
/// it runs: each record takes up to its own limit and gives back what it did not use.
final class ValidationSteps: Sendable {
    private let left: Locked<Int>

    init(_ steps: Int) { left = Locked(steps) }

    /// Up to `wanted` steps (fewer, or 0, when the request has spent the rest).
    func take(_ wanted: Int) -> Int {
        left.withLock { left in
            let granted = max(0, min(wanted, left))
            left -= granted
            return granted
        }
    }

    func giveBack(_ steps: Int) { left.withLock { $0 += max(0, steps) } }

    /// Work done outside a check (compiling a version a record names).
    func spend(_ steps: Int) { left.withLock { $0 -= steps } }
}
