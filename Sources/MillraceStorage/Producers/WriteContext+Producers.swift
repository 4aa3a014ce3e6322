import CLMDB
import MillraceFormat

/// Idempotent producers inside one write transaction: ids and epochs given out, batches
/// placed by their sequence numbers, and ids forgotten when idle (through `ProducerExpiry`,
/// so no pass reads every id).
extension WriteContext {
    mutating func producerRecord(_ id: Int64) throws -> ProducerRecord? {
        if let cached = producerRecords[id] { return cached }
        let loaded = try txn.get(try databases.requireProducers(), Keys.producer(id)).map { try ProducerRecord(decoding: $0) }
        producerRecords[id] = .some(loaded)
        storedProducerRecords[id] = .some(loaded)
        return loaded
    }

    /// Changes a record read with `producerRecord`, or adds a new id's.
    mutating func setProducerRecord(_ id: Int64, _ record: ProducerRecord) {
        producerRecords[id] = .some(record)
        changedProducers.insert(id)
    }

    private mutating func producerPartition(_ key: ProducerPartitionKey) throws -> ProducerPartitionState? {
        if let cached = producerPartitions[key] { return cached }
        let stored = try txn.get(
            try databases.requireProducers(), Keys.producerPartition(key.producerId, key.partition.topicID, key.partition.partition))
        let loaded = try stored.map { try ProducerPartitionState(decoding: $0) }
        producerPartitions[key] = .some(loaded)
        return loaded
    }

    /// Writes the changed records (moving their expiry entries) and sequence states.
    func flushProducers() throws {
        guard !changedProducers.isEmpty || !changedProducerPartitions.isEmpty else { return }
        let producers = try databases.requireProducers()
        let expiry = try databases.requireProducerExpiry()
        for id in changedProducers {
            guard let record = producerRecords[id] ?? nil else { continue }
            try ProducerExpiry.move(txn, expiry, producerId: id, from: storedProducerRecords[id] ?? nil, to: record)
            try txn.put(producers, Keys.producer(id), record.encoded())
        }
        for key in changedProducerPartitions {
            if let state = producerPartitions[key] ?? nil {
                try txn.put(producers, Keys.producerPartition(key.producerId, key.partition.topicID, key.partition.partition), state.encoded())
            }
        }
    }

    /// Checks an operation's producer sequences before anything is written: nil when the
    /// batches are new (append them), else the answer (their original offsets, or a refusal).
    mutating func placeSequences(_ op: AppendOperation, _ id: PartitionID, logStartOffset: Int64) throws -> Result<AppendResult, MillraceError>? {
        var duplicates: [(Int64, Int64)] = []
        var fresh = 0
        var simulated: [Int64: ProducerPartitionState?] = [:]
        for span in op.sequences {
            guard let record = try producerRecord(span.producerId) else {
                return .failure(
                    MillraceError(
                        .unknownProducerId, "producer id \(span.producerId) is unknown here (never given out, expired after its idle time, or not used for a "
                            + "batch soon enough after InitProducer); ask for a new one"))
            }
            let key = ProducerPartitionKey(producerId: span.producerId, partition: id)
            let state = try simulated[span.producerId] ?? producerPartition(key)
            switch ProducerPartitionState.place(span, state: state, producerEpoch: record.epoch) {
            case .refuse(let error): return .failure(error)
            case .duplicate(let base, let last): duplicates.append((base, last))
            case .append:
                fresh += 1
                simulated[span.producerId] = .some((state ?? ProducerPartitionState(epoch: span.epoch)).recording(span, baseOffset: -1, lastOffset: -1))
            }
        }
        guard !duplicates.isEmpty else { return nil }
        guard fresh == 0 else {
            return .failure(MillraceError(.outOfOrderSequence, "a request mixes batches already stored with new ones for the same partition; send them apart"))
        }
        return .success(
            AppendResult(
                baseOffset: duplicates[0].0, lastOffset: duplicates[duplicates.count - 1].1, logAppendTimeMs: nil, logStartOffset: logStartOffset,
                duplicate: true))
    }

    /// Records the operation's sequences as stored at `baseOffset...lastOffset`, and that
    /// their producers wrote (the time moves in steps of `ProducerPolicy.activityStepMs`).
    mutating func recordSequences(_ op: AppendOperation, _ id: PartitionID, baseOffset: Int64, lastOffset: Int64) throws {
        for span in op.sequences {
            let key = ProducerPartitionKey(producerId: span.producerId, partition: id)
            let state = try producerPartition(key) ?? ProducerPartitionState(epoch: span.epoch)
            producerPartitions[key] = .some(state.recording(span, baseOffset: baseOffset, lastOffset: lastOffset))
            changedProducerPartitions.insert(key)
            if var record = try producerRecord(span.producerId),
                !record.wrote || nowMs - record.lastActiveMs >= producerPolicy.activityStepMs || span.epoch > record.epoch
            {
                record.wrote = true
                record.lastActiveMs = nowMs
                // The producer bumped its own epoch (see `ProducerPartitionState.place`).
                record.epoch = max(record.epoch, span.epoch)
                setProducerRecord(span.producerId, record)
            }
        }
    }

    /// Gives out a producer id (epoch 0), or starts the next epoch of one: the caller's
    /// current epoch must be the latest (else it is fenced; one never given out is refused);
    /// an id the broker no longer knows (expired) or whose epochs ran out gets a new id. A new
    /// id counts as unused until it writes; past `ProducerPolicy.unusedMax` the oldest unused
    /// ids are forgotten.
    mutating func initProducer(_ op: InitProducerOperation) throws -> Result<ProducerIdentity, MillraceError> {
        if op.producerId >= 0, let record = try producerRecord(op.producerId) {
            guard op.epoch >= 0 else {
                return .failure(
                    MillraceError(
                        .invalidRequest,
                        "InitProducer for producer \(op.producerId) needs its current epoch (0...32767), not \(op.epoch); ask for a new id with producer id -1"))
            }
            guard op.epoch <= record.epoch else {
                return .failure(
                    MillraceError(
                        .unknownProducerId,
                        "producer \(op.producerId) has no epoch \(op.epoch) here (the newest given out is \(record.epoch)); ask for a new id (producer id -1)"))
            }
            guard record.epoch == op.epoch else {
                return .failure(
                    MillraceError(.producerFenced, "producer \(op.producerId) epoch \(op.epoch) was replaced by epoch \(record.epoch); start a new producer"))
            }
            if record.epoch < Int16.max {
                setProducerRecord(op.producerId, ProducerRecord(epoch: record.epoch + 1, lastActiveMs: nowMs, wrote: record.wrote))
                try flushStates()
                return .success(ProducerIdentity(producerId: op.producerId, epoch: record.epoch + 1))
            }
        }
        var reader = try txn.get(databases.meta, SystemDatabases.nextProducerIDKey).map { ByteReader($0) }
        let next: Int64 = try reader?.readInteger("next producer id") ?? 1
        var value = ByteWriter(capacity: 8)
        value.writeInteger(next + 1)
        try txn.put(databases.meta, SystemDatabases.nextProducerIDKey, value.bytes)
        setProducerRecord(next, ProducerRecord(epoch: 0, lastActiveMs: nowMs, wrote: false))
        try flushStates()
        try evictUnusedProducers(keep: next)
        return .success(ProducerIdentity(producerId: next, epoch: 0))
    }

    /// Forgets the oldest unused ids while more than `unusedMax` are held (a few per call, so
    /// a lowered limit is reached over several new ids, each transaction short).
    private func evictUnusedProducers(keep: Int64) throws {
        let expiry = try databases.requireProducerExpiry()
        let excess = try txn.entryCount(expiry.unused) - producerPolicy.unusedMax
        guard excess > 0 else { return }
        _ = try ProducerExpiry.forget(
            txn, producers: try databases.requireProducers(), expiry.unused, through: Int64.max, limit: min(excess, Limits.producerEvictionsPerInitMax),
            keep: keep)
    }

    /// Forgets unused ids older than `unusedIdleMs` and the others idle for `idleMs`, with
    /// their sequence states: at most `Limits.producerExpiryPerPassMax` per pass, read from
    /// the expiry index in due order (ids still in use are not read). Returns how many, and
    /// how many entries it read.
    mutating func expireProducers() throws -> (forgotten: Int, read: Int) {
        let producers = try databases.requireProducers()
        let expiry = try databases.requireProducerExpiry()
        let unused = try ProducerExpiry.forget(
            txn, producers: producers, expiry.unused, through: nowMs - producerPolicy.unusedIdleMs, limit: Limits.producerExpiryPerPassMax)
        let active = try ProducerExpiry.forget(
            txn, producers: producers, expiry.active, through: nowMs - producerPolicy.idleMs, limit: Limits.producerExpiryPerPassMax - unused.forgotten)
        return (unused.forgotten + active.forgotten, unused.read + active.read)
    }
}
