import CLMDB
import MillraceFormat

// Which operations share a transaction, and how their outcomes reach their callers.

extension Writer {
    /// Runs consecutive appends and commits as one group; catalog and retention work alone.
    func process(_ ops: [WriteOperation]) {
        var start = ops.startIndex
        while start < ops.endIndex {
            if !ops[start].joinsGroupCommit {
                processAlone(ops[start])
                start += 1
                continue
            }
            var end = start
            var bytes = 0
            while end < ops.endIndex && ops[end].joinsGroupCommit && (end == start || bytes < Limits.groupCommitBytesMax) {
                bytes += ops[end].batchBytes
                end += 1
            }
            processGroup(ops[start..<end])
            start = end
        }
    }

    enum Outcome {
        case append(Result<AppendResult, MillraceError>)
        case commit(Result<Void, MillraceError>)
    }

    func processGroup(_ ops: ArraySlice<WriteOperation>) {
        lastGroupSize = ops.count
        if let refused = refusedWhileFull() {
            for op in ops { op.fail(refused) }
            return
        }
        let result = withTransaction { context -> ([Outcome], Set<PartitionID>) in
            var outcomes: [Outcome] = []
            outcomes.reserveCapacity(ops.count)
            for op in ops {
                switch op {
                case .append(let append): outcomes.append(.append(try context.append(append)))
                case .commitOffsets(let commit): outcomes.append(.commit(try context.commitOffsets(commit)))
                case .createTopic, .deleteTopic, .retention, .deleteGroup, .registerSchema, .setSchemaPolicy, .initProducer, .indexRecords, .storeDictionary, .updateMeta:
                    preconditionFailure("not a group-commit operation")
                }
            }
            try context.flushDedup()
            try context.flushIndex()
            try context.flushStates()
            return (outcomes, context.appendedPartitions)
        }
        noteOutcome(result.failureValue)
        switch result {
        case .failure(let error):
            for op in ops { op.fail(error) }
        case .success(let (outcomes, touched)):
            events?.committed(writes: ops.count, commitSeconds: lastCommitSeconds)
            // Statistics first: a caller that wakes up may read them at once.
            statistics.withLock { statistics in
                for (op, outcome) in zip(ops, outcomes) {
                    switch (op, outcome) {
                    case (.append, .append(.success)): statistics.appends += 1
                    case (.commitOffsets(let commit), .commit(.success)): statistics.offsetCommits += commit.commits.count
                    default: break
                    }
                }
            }
            var deliveries: [Delivery] = []
            deliveries.reserveCapacity(ops.count)
            var wrote = false
            for (op, outcome) in zip(ops, outcomes) {
                switch (op, outcome) {
                case (.append(let append), .append(let result)):
                    if case .success = result { wrote = true }
                    deliveries.append(Delivery(result: result, append.completion))
                case (.commitOffsets(let commit), .commit(let result)):
                    if case .success = result { wrote = true }
                    deliveries.append(Delivery(result: result, commit.completion))
                default: preconditionFailure("outcome does not match its operation")
                }
            }
            deliver(deliveries, wrote: wrote)
            if !touched.isEmpty { notifyCommitObservers(touched) }
        }
    }

    func notifyCommitObservers(_ touched: Set<PartitionID>) {
        let observers = commitObservers.withLock { $0 }
        guard !observers.isEmpty else { return }
        let snapshot = catalog.withLock { $0 }
        var names: [UInt32: String] = [:]
        for info in snapshot.topics.values { names[info.id] = info.name }
        let partitions = Set(touched.compactMap { id in names[id.topicID].map { TopicPartition(topic: $0, partition: id.partition) } })
        for observer in observers { observer(partitions) }
    }

    func processAlone(_ op: WriteOperation) {
        switch op {
        case .createTopic(let create):
            if let refused = refusedWhileFull() { return create.completion(.failure(refused)) }
            let result = createTopic(create)
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, create.completion)], wrote: (try? result.get()) != nil)
        case .deleteTopic(let delete):
            let result = withReserve { deleteTopic(delete) }
            deliver([Delivery(result: result, delete.completion)], wrote: (try? result.get()) != nil)
        case .retention(let retention):
            let result = withReserve { runRetention() }
            deliver([Delivery(result: result, retention.completion)], wrote: (try? result.get().batchesDeleted) ?? 0 > 0)
        case .deleteGroup(let delete):
            let result = withReserve { deleteGroup(delete.group) }
            deliver([Delivery(result: result, delete.completion)], wrote: ((try? result.get()) ?? 0) > 0)
        case .registerSchema(let register):
            if let refused = refusedWhileFull() { return register.completion(.failure(refused)) }
            let result = registerSchema(register)
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, register.completion)], wrote: (try? result.get().created) ?? false)
        case .initProducer(let initialize):
            if let refused = refusedWhileFull() { return initialize.completion(.failure(refused)) }
            let result = withTransaction { context in try context.initProducer(initialize) }
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result.flatMap { $0 }, initialize.completion)], wrote: (try? result.get().get()) != nil)
        case .setSchemaPolicy(let policy):
            if let refused = refusedWhileFull() { return policy.completion(.failure(refused)) }
            let result = setSchemaPolicy(policy)
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, policy.completion)], wrote: (try? result.get()) != nil)
        case .indexRecords(let records):
            if let refused = refusedWhileFull() { return records.completion(.failure(refused)) }
            let result = withTransaction { context -> Result<IndexRebuildStep, MillraceError> in
                let step = try context.indexRecords(records)
                try context.flushIndex()
                return step
            }.flatMap { $0 }
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, records.completion)], wrote: (try? result.get()) != nil)
        case .storeDictionary(let store):
            if let refused = refusedWhileFull() { return store.completion(.failure(refused)) }
            let result = storeDictionary(store)
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, store.completion)], wrote: (try? result.get()) != nil)
        case .updateMeta(let update):
            if let refused = refusedWhileFull() { return update.completion(.failure(refused)) }
            let result = updateMeta(update)
            noteOutcome(result.failureValue)
            deliver([Delivery(result: result, update.completion)], wrote: (try? result.get()) != nil)
        case .append, .commitOffsets: preconditionFailure("group-commit operation run alone")
        }
    }
}
