import Dispatch
import Logging
import MillraceFormat
import MillraceSchema
import MillraceSecurity
import MillraceStorage
import MillraceWire
import NIOCore

/// Carries out requests against the storage. Reads run on the calling event loop in short
/// read transactions; produces go to the writer and complete when durable.
final class RequestDispatcher: Sendable {
    let storage: Storage
    let logger: Logger
    /// Where Metadata says the broker is: the native listener's address, known once it is bound.
    let advertised: Locked<(host: String, port: Int32)>
    let waiters = FetchWaiters()
    let groups: GroupCoordinator
    let schemas: SchemaRegistry
    /// Threads that check records against schemas, one per core; a partition always uses the
    /// same one, so its batches are appended in the order they arrived.
    let validationLanes = ValidationLanes(count: System.coreCount)
    /// Produces of each partition on its lane, so the partition's next ones follow them there.
    let laneBacklog = LaneBacklog()
    let metrics: BrokerMetrics
    /// Log lines a peer can cause go through this.
    let logLimiter: LogLimiter
    /// BrokerStatus's answer, from the server that owns this dispatcher.
    let brokerStatus = Locked<(@Sendable () -> BrokerStatusResponse)?>(nil)
    /// Users, rights and logins; nil where nothing is checked (the fuzzer, unit tests).
    let security: BrokerSecurity?

    init(
        storage: Storage, advertisedHost: String, advertisedPort: Int32, clock: any MillraceClock = SystemClock(), logger: Logger,
        metrics: BrokerMetrics = BrokerMetrics(), groupsMax: Int = Limits.groupsMax, security: BrokerSecurity? = nil, logLimiter: LogLimiter? = nil
    ) {
        self.storage = storage
        self.security = security
        self.logger = logger
        self.metrics = metrics
        self.logLimiter = logLimiter ?? LogLimiter(clock: clock)
        groups = GroupCoordinator(storage: storage, clock: clock, groupsMax: groupsMax, logger: logger)
        schemas = SchemaRegistry(storage: storage)
        advertised = Locked((advertisedHost, advertisedPort))
        storage.observeCommits { [waiters] partitions in waiters.wake(partitions) }
    }

    /// Carries out `request`. `responseBytesAllowed` says, when asked on `eventLoop`, how many
    /// response bytes the connection and the broker have room for; fetches read no more.
    /// A long poll registers in `waiting` (its connection's), which cancels it when the
    /// connection goes. `principal` is who asks: a request it lacks a right for is refused
    /// with `notAuthorized`, and lists leave out what it may not see.
    /// Administrative changes and refusals are recorded in the audit log with `peer`.
    func handle(
        _ request: Request, on eventLoop: any EventLoop, responseBytesAllowed: @escaping () -> Int = { Limits.fetchBytesMax },
        waiting: ConnectionWaits? = nil, principal: Principal = .unrestricted, peer: String = "the broker"
    ) -> EventLoopFuture<ResponseBody> {
        let future = perform(request, on: eventLoop, responseBytesAllowed: responseBytesAllowed, waiting: waiting, principal: principal, peer: peer)
        guard let audit = security?.audit else { return future }
        let change = request.auditedChange
        if case .apiVersions = request { return future }
        // A change or a refusal is answered once its audit record is durable.
        let answered = eventLoop.makePromise(of: ResponseBody.self)
        future.whenComplete { result in
            let done: @Sendable () -> Void = { answered.completeWith(result) }
            switch result {
            case .success:
                guard let change else { return done() }
                audit.record(principal: principal, peer: peer, operation: change.operation, resource: change.resource, result: "ok", then: done)
            case .failure(let error):
                let error = error as? MillraceError ?? MillraceError(.unexpected, "\(error)")
                let refused = error.code == .notAuthorized || error.code == .notOwner
                guard refused || change != nil else { return done() }
                audit.record(
                    principal: principal, peer: peer, operation: change?.operation ?? request.apiKey.metricName,
                    resource: change?.resource ?? request.requiredRights.first.map { "\($0.1)" } ?? "-", result: error.code.description, detail: error.message, then: done)
            }
        }
        return answered.futureResult
    }

    private func perform(
        _ request: Request, on eventLoop: any EventLoop, responseBytesAllowed: @escaping () -> Int, waiting: ConnectionWaits?, principal: Principal, peer: String
    ) -> EventLoopFuture<ResponseBody> {
        do {
            try authorize(request, principal)
            switch request {
            case .apiVersions:
                return eventLoop.makeSucceededFuture(.apiVersions(.current))
            case .metadata(let names):
                return eventLoop.makeSucceededFuture(.metadata(try metadata(names, principal: principal)))
            case .listTopics:
                // Internal topics (`_audit`) are named, not listed.
                let topics = try storage.listTopics().filter { !$0.name.hasPrefix("_") && allows(principal, .describe, .topic($0.name)) }.map {
                    TopicSummary(name: $0.name, partitionCount: $0.partitionCount)
                }
                return eventLoop.makeSucceededFuture(.listTopics(topics))
            case .describeTopic(let name):
                return eventLoop.makeSucceededFuture(.describeTopic(try describe(name)))
            case .createTopic(let create):
                return createTopic(create, on: eventLoop)
            case .deleteTopic(let name):
                // Callbacks, not tasks: the broker never waits on Swift's cooperative pool.
                let promise = eventLoop.makePromise(of: ResponseBody.self)
                storage.deleteTopic(name) { [schemas] result in
                    schemas.forget(name)
                    promise.completeWith(result.map { .deleteTopic }.mapError { $0 as any Error })
                }
                // The topic's committed offsets went with it; recount on the event loop.
                promise.futureResult.whenSuccess { [groups] _ in groups.topicDeleted() }
                return promise.futureResult
            case .registerSchema(let register):
                let promise = eventLoop.makePromise(of: ResponseBody.self)
                schemas.register(register) { result in promise.completeWith(result.map { .registerSchema($0) }.mapError { $0 as any Error }) }
                return promise.futureResult
            case .getSchema(let topic, let version):
                guard let stored = try storage.schema(topic: topic, version: version < 0 ? nil : version) else {
                    let count = try storage.schema(topic: topic, version: nil)?.version ?? 0
                    throw MillraceError(
                        .unknownSchemaVersion,
                        count == 0 ? "topic \(topic) has no schema; register one with `millrace schema register \(topic) FILE`"
                            : "topic \(topic) has schema versions 1...\(count); \(version) is not one")
                }
                return eventLoop.makeSucceededFuture(.getSchema(SchemaResponse(version: stored.version, registeredAtMs: stored.registeredAtMs, schema: stored.document)))
            case .listSchemas(let topic):
                guard let info = storage.topicInfo(topic) else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
                let versions = try storage.schemaVersions(topic: topic).map {
                    SchemaVersionSummary(version: $0.version, registeredAtMs: $0.registeredAtMs, bytes: Int32(clamping: $0.bytes))
                }
                return eventLoop.makeSucceededFuture(
                    .listSchemas(
                        ListSchemasResponse(
                            compatibility: Int8(info.config.compatibility.rawValue), onInvalid: Int8(info.config.onInvalid.rawValue), versions: versions)))
            case .setSchemaPolicy(let policy):
                return setSchemaPolicy(policy, on: eventLoop)
            case .alterTopic(let alter):
                return alterTopic(alter, on: eventLoop)
            case .setDedupPolicy(let topic, let key, let windowMs):
                let policy = try key.isEmpty ? nil : DedupPolicy(key: DedupKeySpec(parsing: key), windowMs: windowMs)
                if case .json(let pointer)? = policy?.key { _ = try JSONPointer(pointer) }
                let promise = eventLoop.makePromise(of: ResponseBody.self)
                storage.setDedupPolicy(topic: topic, policy: policy) { result in
                    promise.completeWith(result.map { _ in .setDedupPolicy }.mapError { $0 as any Error })
                }
                return promise.futureResult
            case .dedupCheck(let topic, let key):
                let hit = try storage.dedupLookup(topic: topic, key: key)
                return eventLoop.makeSucceededFuture(
                    .dedupCheck(hit.map { DedupCheckResponse(found: true, partition: $0.partition, offset: $0.offset, firstSeenMs: $0.firstSeenMs) } ?? DedupCheckResponse(found: false)))
            case .dedupStatus(let topic):
                guard storage.topicInfo(topic) != nil else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
                guard let status = storage.dedupStatus(topic: topic) else {
                    return eventLoop.makeSucceededFuture(
                        .dedupStatus(DedupStatusResponse(key: "", windowMs: 0, keysHeld: 0, runs: 0, oldestKeyMs: -1, duplicatesTotal: 0, duplicatesRecent: 0)))
                }
                return eventLoop.makeSucceededFuture(
                    .dedupStatus(
                        DedupStatusResponse(
                            key: status.policy.key.description, windowMs: status.policy.windowMs, keysHeld: Int64(status.keysHeld), runs: Int32(status.runs),
                            oldestKeyMs: status.oldestKeyMs ?? -1, duplicatesTotal: Int64(clamping: status.duplicatesTotal),
                            duplicatesRecent: Int32(clamping: status.duplicatesRecent))))
            case .setIndexPolicy(let topic, let policy):
                return try setIndexPolicy(topic: topic, policy: policy, on: eventLoop)
            case .indexStatus(let topic):
                return eventLoop.makeSucceededFuture(try indexStatus(topic: topic))
            case .trace(var trace):
                if trace.topics.isEmpty, let readable = try readableTopics(principal) { trace.topics = readable }
                return self.trace(trace, on: eventLoop)
            case .walk(var walk):
                if walk.topics.isEmpty, let readable = try readableTopics(principal) { walk.topics = readable }
                return self.walk(walk, on: eventLoop)
            case .indexRebuild(let rebuild):
                return self.indexRebuild(rebuild, on: eventLoop)
            case .initProducer(let producerId, let epoch):
                if let refused = security?.claimProducer(producerId, by: principal) { throw refused }
                let promise = eventLoop.makePromise(of: ResponseBody.self)
                storage.initProducer(producerId: producerId, epoch: epoch) { [security] result in
                    if case .success(let identity) = result { _ = security?.claimProducer(identity.producerId, by: principal) }
                    promise.completeWith(result.map { .initProducer(producerId: $0.producerId, epoch: $0.epoch) }.mapError { $0 as any Error })
                }
                return promise.futureResult
            case .produce(let produce):
                return self.produce(produce, on: eventLoop, principal: principal, peer: peer)
            case .fetch(let fetch):
                return self.fetch(fetch, on: eventLoop, responseBytesAllowed: responseBytesAllowed, waiting: waiting)
            case .listOffsets(let list):
                return eventLoop.makeSucceededFuture(.listOffsets(listOffsets(list)))
            case .joinGroup(let join):
                return eventLoop.makeSucceededFuture(.joinGroup(try groups.join(join)))
            case .heartbeat(let member):
                return eventLoop.makeSucceededFuture(.heartbeat(try groups.heartbeat(member)))
            case .leaveGroup(let member):
                try groups.leave(member)
                return eventLoop.makeSucceededFuture(.leaveGroup)
            case .offsetCommit(let commit):
                try groups.checkCommit(commit)
                let commits = commit.topics.flatMap { topic in
                    topic.entries.map {
                        OffsetCommit(group: commit.group, topic: topic.topic, partition: $0.partition, offset: $0.offset, metadata: $0.metadata)
                    }
                }
                let promise = eventLoop.makePromise(of: ResponseBody.self)
                storage.commitOffsets(commits) { result in promise.completeWith(result.map { .offsetCommit }.mapError { $0 as any Error }) }
                // On the event loop, not the writer's thread (which must not open a read transaction).
                promise.futureResult.whenFailure { [groups] _ in groups.commitFailed(commit.group) }
                return promise.futureResult
            case .offsetFetch(let fetch):
                // A group's offsets name topics: only those the principal may see.
                let offsets = try committedOffsets(fetch).filter { allows(principal, .describe, .topic($0.topic)) }
                return eventLoop.makeSucceededFuture(.offsetFetch(offsets))
            case .describeGroup(let name):
                var described = try describeGroup(name)
                described.offsets = described.offsets.filter { allows(principal, .describe, .topic($0.topic)) }
                return eventLoop.makeSucceededFuture(.describeGroup(described))
            case .deleteGroup(let name):
                if let live = groups.liveGroups()[name] {
                    throw MillraceError(.groupNotEmpty, "group \(name) has \(live) live member\(live == 1 ? "" : "s"); stop \(live == 1 ? "it" : "them") before deleting the group")
                }
                let promise = eventLoop.makePromise(of: ResponseBody.self)
                storage.deleteGroupOffsets(name) { [groups] result in
                    if case .success = result { groups.offsetsDeleted(name) }
                    promise.completeWith(result.map { _ in .deleteGroup }.mapError { $0 as any Error })
                }
                return promise.futureResult
            case .brokerStatus:
                guard let status = brokerStatus.withLock({ $0 }) else { throw MillraceError(.unexpected, "the broker's status is not available yet") }
                var answer = status()
                // Only what the principal may see: its topics, its groups and their members.
                answer.topics = answer.topics.filter { !$0.name.hasPrefix("_") && allows(principal, .describe, .topic($0.name)) }
                answer.groups = answer.groups.filter { allows(principal, .describe, .group($0.name)) }
                answer.kafkaMembers = answer.kafkaMembers.filter { allows(principal, .describe, .group($0.group)) }
                answer.owners = answer.owners.filter { allows(principal, .describe, .topic($0.key)) }
                if !allows(principal, .admin, .cluster) { answer.dataDirectory = "" }
                return eventLoop.makeSucceededFuture(.brokerStatus(answer))
            case .backup(let backup):
                return self.backup(backup, on: eventLoop)
            case .trainDictionary(let train):
                return trainDictionary(train, on: eventLoop)
            case .getDictionary(let topic, let id):
                guard let stored = try storage.dictionary(topic: topic, id: id) else {
                    throw MillraceError(
                        .unknownDictionary,
                        id == 0 ? "topic \(topic) has no dictionary; train one with `millrace topic train-dictionary \(topic)`"
                            : "topic \(topic) has no dictionary \(id)")
                }
                return eventLoop.makeSucceededFuture(.getDictionary(Self.wire(stored)))
            case .authenticate:
                throw MillraceError(.invalidRequest, "a login is made by the connection, not carried out as a request")
            case .whoAmI:
                return eventLoop.makeSucceededFuture(.whoAmI(Identity(principal, encrypted: false)))
            case .describeSecurity:
                return eventLoop.makeSucceededFuture(.describeSecurity(SecurityDescription(security?.state ?? .initial)))
            case .alterSecurity(let change):
                guard let security else { throw MillraceError(.invalidRequest, "this broker keeps no users (security is not set up)") }
                let promise = eventLoop.makePromise(of: ResponseBody.self)
                security.change(change) { result in promise.completeWith(result.map { .alterSecurity }.mapError { $0 as any Error }) }
                return promise.futureResult
            case .listGroups:
                let live = groups.liveGroups()
                let names = Set(live.keys).union(try storage.groupsWithCommittedOffsets()).sorted().filter { allows(principal, .describe, .group($0)) }
                return eventLoop.makeSucceededFuture(
                    .listGroups(names.map { GroupSummary(group: $0, state: live[$0] == nil ? "empty" : "stable", memberCount: Int32(live[$0] ?? 0)) }))
            }
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
    }

    /// Copies the data file on a thread of its own (a large one takes a while); answered once
    /// the copy is synced. The connection has checked that the peer is on this machine.
    private func backup(_ request: BackupRequest, on eventLoop: any EventLoop) -> EventLoopFuture<ResponseBody> {
        let promise = eventLoop.makePromise(of: ResponseBody.self)
        let storage = self.storage
        let logger = self.logger
        DispatchQueue.global().async {
            let started = monotonicNanoseconds()
            do {
                let bytes = try storage.backup(to: request.destination, compact: request.compact)
                let milliseconds = Int64((monotonicNanoseconds() - started) / 1_000_000)
                logger.info("backup: copied the data file to \(request.destination) (\(bytes) bytes, \(milliseconds) ms)")
                promise.succeed(.backup(BackupResponse(bytes: bytes, milliseconds: milliseconds)))
            } catch {
                logger.warning("backup to \(request.destination) failed: \(error)")
                promise.fail(error)
            }
        }
        return promise.futureResult
    }

    private func metadata(_ names: [String], principal: Principal) throws -> MetadataResponse {
        let topics = try storage.listTopics()
        let wanted = names.isEmpty ? topics.map(\.name).filter { !$0.hasPrefix("_") && allows(principal, .describe, .topic($0)) } : names
        let byName = Dictionary(uniqueKeysWithValues: topics.map { ($0.name, $0) })
        let (host, port) = advertised.withLock { $0 }
        return MetadataResponse(
            brokerHost: host, brokerPort: port,
            topics: wanted.map { name in
                byName[name].map { MetadataResponse.Topic(name: name, partitionCount: $0.partitionCount) }
                    ?? MetadataResponse.Topic(errorCode: .unknownTopic, name: name, partitionCount: 0)
            })
    }

    private func describe(_ name: String) throws -> DescribeTopicResponse {
        let description = try storage.describeTopic(name)
        let config = description.info.config
        return DescribeTopicResponse(
            name: name, retentionMs: config.retentionMs ?? -1, retentionBytes: config.retentionBytes ?? -1,
            compression: config.compression.rawValue, timestampType: config.timestampType.rawValue,
            createdAtMs: description.info.createdAtMs,
            partitions: description.partitions.map {
                .init(partition: $0.partition, logStartOffset: $0.logStartOffset, logEndOffset: $0.nextOffset, bytes: $0.bytes, batches: $0.batchCount)
            }, owner: config.owner ?? "")
    }

    private func createTopic(_ create: CreateTopicRequest, on eventLoop: any EventLoop) -> EventLoopFuture<ResponseBody> {
        guard let codec = CompressionCodec(rawValue: create.compression) else {
            return eventLoop.makeFailedFuture(MillraceError(.invalidConfig, "compression \(create.compression) is not a codec; use 0 (none) or 4 (zstd)"))
        }
        guard let timestampType = TimestampType(rawValue: create.timestampType) else {
            return eventLoop.makeFailedFuture(
                MillraceError(.invalidConfig, "timestamp type \(create.timestampType) is unknown; use 0 (producer) or 1 (log append)"))
        }
        let config = TopicConfig(
            retentionMs: create.retentionMs < 0 ? nil : create.retentionMs, retentionBytes: create.retentionBytes < 0 ? nil : create.retentionBytes,
            compression: codec, timestampType: timestampType)
        let promise = eventLoop.makePromise(of: ResponseBody.self)
        storage.createTopic(create.name, partitions: create.partitions, config: config) { result in
            promise.completeWith(result.map { _ in .createTopic }.mapError { $0 as any Error })
        }
        return promise.futureResult
    }

    /// Splits each partition's records into batches and appends them all; every partition's
    /// result comes back when its batches are durable or one has failed.
    /// A topic's owner; a quarantine topic (`T.quarantine`) has its topic's, so nobody else
    /// can park records for the owner's re-drive to append.
    func owner(of topic: String) -> String? {
        if let owner = storage.topicInfo(topic)?.config.owner { return owner }
        guard topic.hasSuffix(Self.quarantineSuffix) else { return nil }
        return storage.topicInfo(String(topic.dropLast(Self.quarantineSuffix.count)))?.config.owner
    }

    private func produce(_ produce: ProduceRequest, on eventLoop: any EventLoop, principal: Principal, peer: String) -> EventLoopFuture<ResponseBody> {
        var futures: [EventLoopFuture<ProducePartitionResult>] = []
        var shape: [(topic: String, count: Int)] = []
        // Schema checks of all the request's partitions draw on one budget: spreading records
        // over many partitions buys no more lane time.
        let steps = ValidationSteps(Limits.validationStepsPerRequestMax)
        for topic in produce.topics {
            shape.append((topic.topic, topic.entries.count))
            for entry in topic.entries { futures.append(append(topic.topic, entry, steps: steps, principal: principal, peer: peer, on: eventLoop)) }
        }
        let layout = shape
        let started = monotonicNanoseconds()
        let metrics = self.metrics
        return EventLoopFuture.whenAllSucceed(futures, on: eventLoop).map { results in
            metrics.produceAck.recordNanoseconds(Int64(clamping: monotonicNanoseconds() - started))
            var index = 0
            return .produce(
                layout.map { topic in
                    defer { index += topic.count }
                    return TopicEntries(topic: topic.topic, Array(results[index..<(index + topic.count)]))
                })
        }
    }

    private func append(
        _ topic: String, _ entry: ProducePartition, steps: ValidationSteps, principal: Principal, peer: String, on eventLoop: any EventLoop
    ) -> EventLoopFuture<
        ProducePartitionResult
    > {
        func failed(_ error: MillraceError) -> EventLoopFuture<ProducePartitionResult> {
            eventLoop.makeSucceededFuture(
                ProducePartitionResult(partition: entry.partition, errorCode: error.code, message: error.message, baseOffset: -1, logStartOffset: -1))
        }
        let batches: [[UInt8]]
        do {
            batches = try Self.splitBatches(entry.records)
        } catch let error as MillraceError {
            return failed(error)
        } catch {
            return failed(MillraceError(.corruptBatch, "\(error)"))
        }
        // A topic with an owner (its system of record) takes records from that principal only,
        // whatever write rights others hold. With `--auth off` nobody has a name to check.
        if !principal.isUnrestricted, let owner = owner(of: topic), owner != principal.name {
            let error = MillraceError(
                .notOwner, "topic \(topic) is owned by \(owner), its system of record: only \(owner) may produce to it (principal \(principal.name) may not)")
            guard let audit = security?.audit else { return failed(error) }
            let recorded = eventLoop.makePromise(of: Void.self)
            audit.record(principal: principal, peer: peer, operation: "produce", resource: "topic \(topic)", result: error.code.description, detail: error.message) {
                recorded.succeed()
            }
            let partition = entry.partition
            return recorded.futureResult.map {
                ProducePartitionResult(partition: partition, errorCode: error.code, message: error.message, baseOffset: -1, logStartOffset: -1)
            }
        }
        // An idempotent producer's id must be the principal's own (RecordBatch v2: the
        // producer id is the i64 at byte 43 of each batch).
        // (Not for an unrestricted principal: nothing to check, and this is the produce path.)
        if let security, !principal.isUnrestricted {
            for batch in batches where batch.count >= 51 {
                let id = batch[43..<51].reduce(Int64(0)) { $0 << 8 | Int64($1) }
                if let refused = security.claimProducer(id, by: principal, claiming: false) {
                    security.audit.record(principal: principal, peer: peer, operation: "produce", resource: "topic \(topic)", result: refused.code.description, detail: refused.message)
                    return failed(refused)
                }
            }
        }
        // One operation for all of the partition's batches: appended together or not at all,
        // once they pass the topic's schema (if it has one).
        let storage = self.storage
        let metrics = self.metrics
        let records = batches.reduce(0) { $0 + RecordBatch.recordCount(of: $1) }
        let bytes = entry.records.count
        return appendValidated(topic, entry, batches: batches, steps: steps, on: eventLoop) { topic, partition, batches, sequences, hashes, checkedThrough, indexKeys, completion in
            storage.append(
                topic: topic, partition: partition, checked: batches, sequences: sequences, dedupHashes: hashes, dedupCheckedThrough: checkedThrough,
                indexKeys: indexKeys, completion: completion)
        }.map { produced in
            let result = produced.result
            var (rejected, quarantined, duplicates) = (0, 0, 0)
            for outcome in result.outcomes {
                switch outcome.kind {
                case .invalid: rejected += 1
                case .quarantined: quarantined += 1
                case .duplicate: duplicates += 1
                }
            }
            let appended = result.errorCode == .none ? max(0, records - rejected - quarantined - duplicates) : 0
            // A parked record's retry, answered with the place it was parked at, is a duplicate.
            let parkedBefore = max(0, quarantined - produced.parked)
            metrics.produced(
                topic: topic, records: appended, bytes: appended > 0 ? bytes : 0, rejected: rejected, quarantined: produced.parked,
                duplicates: duplicates + parkedBefore)
            return result
        }
    }

    /// Whole batches back to back, each sized by its own length field.
    static func splitBatches(_ records: [UInt8]) throws -> [[UInt8]] {
        var batches: [[UInt8]] = []
        var index = 0
        while index < records.count {
            guard records.count - index >= RecordBatchLayout.lengthPrefixBytes else {
                throw MillraceError(
                    .corruptBatch,
                    "batch \(batches.count + 1): \(records.count - index) bytes after the last batch are too few for a batch header; nothing was appended")
            }
            let length = records[(index + 8)..<(index + 12)].reduce(0) { $0 << 8 | Int($1) }
            let total = length + RecordBatchLayout.lengthPrefixBytes
            guard length >= 0, total <= records.count - index else {
                throw MillraceError(
                    .corruptBatch, "batch \(batches.count + 1) claims \(length) bytes, \(records.count - index - 12) remain; nothing was appended")
            }
            batches.append(Array(records[index..<(index + total)]))
            index += total
        }
        guard !batches.isEmpty else { throw MillraceError(.invalidRecordCount, "no record batches in the request") }
        return batches
    }

    // MARK: Fetch

    private func fetch(
        _ request: FetchRequest, on eventLoop: any EventLoop, responseBytesAllowed: @escaping () -> Int, waiting: ConnectionWaits?
    ) -> EventLoopFuture<ResponseBody> {
        let (results, bytes, counts) = readAll(request, allowed: responseBytesAllowed())
        let minBytes = Self.minBytes(request)
        if bytes >= minBytes || request.maxWaitMs <= 0 {
            countFetched(counts)
            return eventLoop.makeSucceededFuture(.fetch(results))
        }
        return ParkedFetch.park(
            request, seen: Self.bytesByPartition(results), minBytes: minBytes, dispatcher: self, on: eventLoop, responseBytesAllowed: responseBytesAllowed,
            waiting: waiting)
    }

    /// The bytes a fetch waits for: its `min bytes`, but never more than it may carry (its
    /// `max bytes`, the partitions' together, `fetchBytesMax`), which no commit could reach.
    static func minBytes(_ request: FetchRequest) -> Int {
        let partitions = request.topics.reduce(0) { $0 + $1.entries.reduce(0) { $0 + Int(max($1.maxBytes, 0)) } }
        return min(Int(request.minBytes), Int(max(request.maxBytes, 0)), partitions, Limits.fetchBytesMax)
    }

    static func bytesByPartition(_ results: [TopicEntries<FetchPartitionResult>]) -> [TopicPartition: Int] {
        var bytes: [TopicPartition: Int] = [:]
        for topic in results {
            for entry in topic.entries { bytes[TopicPartition(topic: topic.topic, partition: entry.partition)] = entry.records.readableBytes }
        }
        return bytes
    }

    /// Reads every partition of `request` within its byte limits and `allowed` (the memory the
    /// connection and broker have left; see MemoryBudget). Only when `allowed` leaves room for
    /// a whole batch may the first batch pass the request's limits.
    func readAll(_ request: FetchRequest, allowed: Int) -> ([TopicEntries<FetchPartitionResult>], Int, [String: (records: Int, bytes: Int)]) {
        let room = max(0, allowed - Self.fetchResponseOverheadBytes(request))
        var budget = min(Int(max(request.maxBytes, 0)), Limits.fetchBytesMax, room)
        let firstMayExceed = room >= Limits.batchBytesMax
        var total = 0
        var counts: [String: (records: Int, bytes: Int)] = [:]
        let results = request.topics.map { topic in
            TopicEntries(
                topic: topic.topic,
                topic.entries.map { entry -> FetchPartitionResult in
                    do {
                        // Kafka's rule: only the first batch of the first partition with data
                        // may pass the limits (so a consumer never stalls behind a large
                        // batch); after it, nothing passes them. A response stays within
                        // `fetchBytesMax` plus one batch, however many partitions it names.
                        let limit = min(Int(max(entry.maxBytes, 0)), max(budget, 0))
                        // Batches go from the map into the buffer the socket writes from: one
                        // copy (see ResponseCodec.encodeParts).
                        var records = ByteBuffer()
                        let read = try storage.read(
                            topic: topic.topic, partition: entry.partition, from: entry.offset, maxBytes: limit,
                            firstBatchMayExceed: total == 0 && firstMayExceed
                        ) { batch in
                            if records.capacity == 0 { records = Self.allocator.buffer(capacity: max(batch.count, min(limit, 1 << 20))) }
                            records.writeBytes(batch)
                        }
                        budget -= read.byteCount
                        total += read.byteCount
                        if read.recordCount > 0 {
                            let sofar = counts[topic.topic] ?? (0, 0)
                            counts[topic.topic] = (sofar.records + read.recordCount, sofar.bytes + read.byteCount)
                        }
                        return FetchPartitionResult(
                            partition: entry.partition, logStartOffset: read.logStartOffset, logEndOffset: read.nextOffset, records: records)
                    } catch {
                        let error = error as? MillraceError ?? MillraceError(.unexpected, "\(error)")
                        let offsets = try? storage.offsets(topic: topic.topic, partition: entry.partition)
                        return FetchPartitionResult(
                            partition: entry.partition, errorCode: error.code, message: error.message,
                            logStartOffset: offsets?.logStartOffset ?? -1, logEndOffset: offsets?.nextOffset ?? -1)
                    }
                })
        }
        return (results, total, counts)
    }

    static let allocator = ByteBufferAllocator()

    /// Records and bytes a fetch's answer carries, per topic (whole batches, as sent).
    func countFetched(_ counts: [String: (records: Int, bytes: Int)]) {
        for (topic, count) in counts { metrics.fetched(topic: topic, records: count.records, bytes: count.bytes) }
    }

    /// Response bytes around the records: per partition, its header fields and a message.
    static func fetchResponseOverheadBytes(_ request: FetchRequest) -> Int {
        request.topics.reduce(64) { $0 + 8 + $1.topic.utf8.count + $1.entries.count * 160 }
    }

    private func committedOffsets(_ request: OffsetFetchRequest) throws -> [TopicEntries<OffsetEntry>] {
        let stored = try storage.committedOffsets(group: request.group)
        guard !request.topics.isEmpty else {
            return Dictionary(grouping: stored, by: \.topic).sorted { $0.key < $1.key }.map { topic, offsets in
                TopicEntries(topic: topic, offsets.map { OffsetEntry(partition: $0.partition, offset: $0.offset, metadata: $0.metadata) })
            }
        }
        var byKey: [TopicPartition: CommittedOffset] = [:]
        for offset in stored { byKey[TopicPartition(topic: offset.topic, partition: offset.partition)] = offset }
        return request.topics.map { topic in
            TopicEntries(
                topic: topic.topic,
                topic.entries.map { entry in
                    let found = byKey[TopicPartition(topic: topic.topic, partition: entry.partition)]
                    return OffsetEntry(partition: entry.partition, offset: found?.offset ?? -1, metadata: found?.metadata ?? "")
                })
        }
    }

    /// State, members, and per partition the committed offset, log end and lag: cheap enough
    /// to poll every second (one read transaction per partition, no scans).
    func describeGroup(_ name: String) throws -> DescribeGroupResponse {
        let live = groups.snapshot(name)
        let committed = try storage.committedOffsets(group: name)
        guard live != nil || !committed.isEmpty else {
            throw MillraceError(.unknownGroup, "group \(name) has no members and no committed offsets")
        }
        var owner: [TopicPartition: String] = [:]
        for (member, owned) in live?.assignment ?? [:] { for partition in owned { owner[partition] = member } }
        var byPartition: [TopicPartition: CommittedOffset] = [:]
        for offset in committed { byPartition[TopicPartition(topic: offset.topic, partition: offset.partition)] = offset }
        // Every partition of every topic the group reads or has committed to: a partition no
        // one has committed to yet still has lag.
        var all = Set(owner.keys).union(byPartition.keys)
        let counts = Dictionary(uniqueKeysWithValues: try storage.listTopics().map { ($0.name, $0.partitionCount) })
        for topic in (live?.topics ?? []).union(committed.map(\.topic)) {
            for partition in 0..<(counts[topic] ?? 0) { all.insert(TopicPartition(topic: topic, partition: partition)) }
        }
        let partitions = all.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
        var rows: [String: [GroupLagEntry]] = [:]
        for partition in partitions {
            guard let offsets = try? storage.offsets(topic: partition.topic, partition: partition.partition) else { continue }
            let done = byPartition[partition]?.offset ?? -1
            let lag = done >= 0 ? max(0, offsets.nextOffset - done) : offsets.nextOffset - offsets.logStartOffset
            rows[partition.topic, default: []].append(
                GroupLagEntry(partition: partition.partition, committedOffset: done, logEndOffset: offsets.nextOffset, lag: lag, memberID: owner[partition] ?? ""))
        }
        let kafkaMembers = groups.kafkaMembers()[name]
        // A Kafka group can be between generations: say so ("preparing-rebalance", …).
        let kafkaState = groups.describeKafka(name).map { String(snakeCased($0.state).dropFirst().map { $0 == "_" ? "-" : $0 }) }
        return DescribeGroupResponse(
            state: live == nil ? "empty" : kafkaState ?? "stable", generation: live?.generation ?? 0,
            members: (live?.assignment ?? [:]).sorted { $0.key < $1.key }.map { GroupMemberEntry(memberID: $0.key, assignment: GroupCoordinator.wire($0.value)) },
            offsets: rows.sorted { $0.key < $1.key }.map { TopicEntries(topic: $0.key, $0.value) },
            groupProtocol: live == nil ? "" : kafkaMembers == nil ? "native" : "kafka",
            clients: (kafkaMembers ?? []).map { GroupClientEntry(memberID: $0.memberID, clientID: $0.clientID, host: $0.clientHost) })
    }

    private func listOffsets(_ request: ListOffsetsRequest) -> [TopicEntries<ListOffsetsPartitionResult>] {
        request.topics.map { topic in
            TopicEntries(
                topic: topic.topic,
                topic.entries.map { entry in
                    do {
                        switch entry.timestamp {
                        case ListOffsetsPartition.earliest:
                            return .init(partition: entry.partition, offset: try storage.offsets(topic: topic.topic, partition: entry.partition).logStartOffset)
                        case ListOffsetsPartition.latest:
                            return .init(partition: entry.partition, offset: try storage.offsets(topic: topic.topic, partition: entry.partition).nextOffset)
                        default:
                            let found = try storage.offset(forTimestamp: entry.timestamp, topic: topic.topic, partition: entry.partition)
                            return .init(partition: entry.partition, offset: found.offset, timestamp: found.timestamp ?? -1)
                        }
                    } catch {
                        let error = error as? MillraceError ?? MillraceError(.unexpected, "\(error)")
                        return .init(partition: entry.partition, errorCode: error.code, offset: -1)
                    }
                })
        }
    }
}
