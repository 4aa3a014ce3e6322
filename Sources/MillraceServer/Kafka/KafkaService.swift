import Logging
import MillraceFormat
import MillraceKafka
import MillraceSecurity
import MillraceStorage
import MillraceWire
import NIOCore

/// The Kafka wire protocol (docs/KAFKA.md) on the broker's one log: each Kafka request is
/// carried out as the native request it means, by the same dispatcher (schemas, duplicate
/// detection, the key index, durability, metrics and memory limits are the native port's),
/// and the answer is written in Kafka's layout at the version asked for.
final class KafkaService: ConnectionService {
    let dispatcher: RequestDispatcher
    /// What Metadata and FindCoordinator name as the broker: set once the listener is bound.
    let advertised = Locked<(host: String, port: Int32)>(("127.0.0.1", 9092))
    /// The one broker's node id.
    static let nodeID: Int32 = 0
    static let clusterID = "millrace"

    /// The longest a fetch may wait for records (the fuzzer lowers it, so no input waits).
    let fetchWaitMaxMs: Int32

    init(dispatcher: RequestDispatcher, fetchWaitMaxMs: Int32 = Limits.fetchWaitMsMax) {
        self.dispatcher = dispatcher
        self.fetchWaitMaxMs = fetchWaitMaxMs
    }

    /// api key, api version, correlation id and the client id's length.
    var frameBytesMin: Int { 10 }

    /// A stream whose frame sizes are wrong has no header to answer: Kafka closes it.
    func unusable(_ error: MillraceError) -> ConnectionAnswer { ConnectionAnswer(encode: { _ in [] }, thenClose: true) }

    /// An answer to `header`: size, response header, then what `write` writes.
    static func answer(_ header: KafkaRequestHeader, _ write: @escaping @Sendable (inout ByteBuffer) -> Void) -> ConnectionAnswer {
        ConnectionAnswer(encode: { allocator in
            var buffer = allocator.buffer(capacity: 256)
            buffer.writeInteger(Int32(0))
            writeKafkaResponseHeader(for: header, into: &buffer)
            write(&buffer)
            buffer.setInteger(Int32(buffer.readableBytes - 4), at: buffer.readerIndex)
            return [buffer]
        })
    }

    /// No answer (a produce with acks 0), but the connection goes on.
    static let silence = ConnectionAnswer(encode: { _ in [] })

    func serve(_ frame: ByteBuffer, from peer: ConnectionPeer, answer: @escaping @Sendable (ConnectionAnswer) -> Void) {
        var body = frame
        let header: KafkaRequestHeader
        do {
            header = try KafkaRequestHeader(from: &body)
        } catch {
            peer.protocolError(Self.millraceError(error), true)
            return answer(ConnectionAnswer(encode: { _ in [] }, thenClose: true))
        }
        guard let api = header.api, let versions = KafkaApiVersions.served[api], versions.contains(header.apiVersion) else {
            return answer(unserved(header, peer: peer))
        }
        // `--auth required`: ApiVersions and the SASL login, nothing else, until logged in.
        // Kafka's brokers close such a connection; so does this one, saying why in its log.
        guard peer.session.principal != nil || api == .apiVersions || api == .saslHandshake || api == .saslAuthenticate else {
            let client = header.clientID.map { " (client \"\(LogText.printable($0))\")" } ?? ""
            dispatcher.security?.audit.record(
                principal: Principal(name: "unknown", roles: [], authentication: .anonymous), peer: peer.description, operation: "Kafka \(api)", resource: "-",
                result: ErrorCode.authenticationRequired.description, detail: "a request before the SASL login\(client)")
            peer.protocolError(
                MillraceError(
                    .authenticationRequired,
                    "Kafka \(api) before a SASL login\(client): this broker runs with --auth required; set security.protocol=SASL_PLAINTEXT or SASL_SSL and sasl.mechanism=SCRAM-SHA-256"),
                true)
            return answer(ConnectionAnswer(encode: { _ in [] }, thenClose: true))
        }
        let started = monotonicNanoseconds()
        let metrics = dispatcher.metrics
        let future: EventLoopFuture<ConnectionAnswer>
        do {
            future = try handle(api, header, body: &body, peer: peer)
        } catch {
            // A request that cannot be read: Kafka's broker closes the connection.
            let error = Self.millraceError(error)
            peer.protocolError(MillraceError(error.code, "Kafka \(api) v\(header.apiVersion): \(error.message)"), true)
            return answer(ConnectionAnswer(encode: { _ in [] }, thenClose: true))
        }
        future.whenComplete { result in
            metrics.kafkaRequestAnswered(api, nanoseconds: monotonicNanoseconds() - started)
            switch result {
            case .success(let made): answer(made)
            case .failure(let error):
                // Every handler answers its own errors; one that did not is a bug: close
                // rather than send bytes the client would misread.
                peer.protocolError(MillraceError(.unexpected, "Kafka \(api) v\(header.apiVersion) failed: \(error)"), true)
                answer(ConnectionAnswer(encode: { _ in [] }, thenClose: true))
            }
        }
    }

    /// An api or version not served. ApiVersions at a version it does not know is answered
    /// as Kafka's brokers do (UNSUPPORTED_VERSION in version 0's layout, with the versions
    /// served, so the client can ask again); anything else cannot be answered in a layout the
    /// client would read, so the connection is closed, with a log line naming it.
    private func unserved(_ header: KafkaRequestHeader, peer: ConnectionPeer) -> ConnectionAnswer {
        if header.apiKey == KafkaApiKey.apiVersions.rawValue {
            return Self.answer(header) { buffer in
                KafkaApiVersions.Response(errorCode: KafkaErrorCode.unsupportedVersion.rawValue, apis: KafkaApiVersions.advertised).write(to: &buffer, version: 0)
            }
        }
        let name = header.api.map { "\($0)" } ?? "key \(header.apiKey)"
        let client = header.clientID.map { " (client \"\(LogText.printable($0))\")" } ?? ""
        peer.protocolError(
            MillraceError(
                .unsupportedVersion,
                "Kafka API \(name) version \(header.apiVersion) is not served\(client); ApiVersions lists what is (docs/KAFKA.md)"),
            true)
        return ConnectionAnswer(encode: { _ in [] }, thenClose: true)
    }

    static func millraceError(_ error: any Error) -> MillraceError {
        error as? MillraceError ?? MillraceError(.malformedRequest, "\(error)")
    }

    private func handle(_ api: KafkaApiKey, _ header: KafkaRequestHeader, body: inout ByteBuffer, peer: ConnectionPeer) throws -> EventLoopFuture<
        ConnectionAnswer
    > {
        let version = header.apiVersion
        let eventLoop = peer.eventLoop
        switch api {
        case .apiVersions:
            _ = try KafkaApiVersions.Request(from: &body, version: version)
            let response = KafkaApiVersions.Response(apis: KafkaApiVersions.advertised)
            return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version) })
        case .metadata:
            let request = try KafkaMetadata.Request(from: &body, version: version)
            let response = metadata(request, principal: principal(peer), peer: peer)
            return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version) })
        case .findCoordinator:
            let request = try KafkaFindCoordinator.Request(from: &body, version: version)
            let (host, port) = advertised.withLock { $0 }
            let response =
                request.keyType == 0
                ? KafkaFindCoordinator.Response(nodeID: Self.nodeID, host: host, port: port)
                // A transaction's coordinator: refused for good (not "not available", which
                // clients retry until they time out), as docs/KAFKA.md says.
                : KafkaFindCoordinator.Response(
                    errorCode: KafkaErrorCode.transactionalIDAuthorizationFailed.rawValue,
                    errorMessage: "Millrace has no transactions; produce without a transactional id (docs/KAFKA.md)", nodeID: -1, host: "", port: -1)
            return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version) })
        case .listOffsets:
            let request = try KafkaListOffsets.Request(from: &body, version: version)
            return listOffsets(request, header: header, peer: peer)
        case .produce:
            let request = try KafkaProduce.Request(from: &body, version: version)
            return produce(request, header: header, peer: peer)
        case .fetch:
            let request = try KafkaFetch.Request(from: &body, version: version)
            return fetch(request, header: header, peer: peer)
        case .joinGroup, .syncGroup, .heartbeat, .leaveGroup, .offsetCommit, .offsetFetch, .describeGroups, .listGroups:
            return try handleGroup(api, header, body: &body, peer: peer)
        case .initProducerId, .createTopics, .deleteTopics, .describeConfigs:
            return try handleAdmin(api, header, body: &body, peer: peer)
        case .saslHandshake:
            let request = try KafkaSASL.HandshakeRequest(from: &body, version: version)
            return eventLoop.makeSucceededFuture(handshake(request, header: header, peer: peer))
        case .saslAuthenticate:
            let request = try KafkaSASL.AuthenticateRequest(from: &body, version: version)
            let made = authenticate(request, header: header, peer: peer)
            // A refusal (it closes the connection) goes out once its audit record is durable.
            guard made.thenClose, let audit = dispatcher.security?.audit else { return eventLoop.makeSucceededFuture(made) }
            let promise = eventLoop.makePromise(of: ConnectionAnswer.self)
            audit.whenRecorded { promise.succeed(made) }
            return promise.futureResult
        case .offsetForLeaderEpoch:
            // Not in `served` (no leader epochs): answered by `unserved` before this.
            throw MillraceError(.unsupportedVersion, "not served")
        }
    }

    // MARK: Metadata and offsets

    private func metadata(_ request: KafkaMetadata.Request, principal: Principal, peer: ConnectionPeer) -> KafkaMetadata.Response {
        let (host, port) = advertised.withLock { $0 }
        let known = (try? dispatcher.storage.listTopics()) ?? []
        let counts = Dictionary(known.map { ($0.name, $0.partitionCount) }, uniquingKeysWith: { first, _ in first })
        let names = request.topics ?? known.map(\.name).sorted().filter { !$0.hasPrefix("_") && dispatcher.allows(principal, .describe, .topic($0)) }
        let topics = names.map { name -> KafkaMetadata.Topic in
            guard allows(principal, .describe, .topic(name), peer: peer, api: .metadata) else {
                return KafkaMetadata.Topic(errorCode: KafkaErrorCode.topicAuthorizationFailed.rawValue, name: name, partitions: [])
            }
            guard let count = counts[name] else {
                return KafkaMetadata.Topic(errorCode: KafkaErrorCode.unknownTopicOrPartition.rawValue, name: name, partitions: [])
            }
            return KafkaMetadata.Topic(
                name: name,
                partitions: (0..<Int32(count)).map {
                    // No leader epochs: clients then skip OffsetForLeaderEpoch (docs/KAFKA.md).
                    KafkaMetadata.Partition(index: $0, leaderID: Self.nodeID, leaderEpoch: -1, replicas: [Self.nodeID], inSyncReplicas: [Self.nodeID])
                })
        }
        return KafkaMetadata.Response(
            brokers: [KafkaMetadata.Broker(nodeID: Self.nodeID, host: host, port: port)], clusterID: Self.clusterID, controllerID: Self.nodeID,
            topics: topics)
    }

    private func listOffsets(_ request: KafkaListOffsets.Request, header: KafkaRequestHeader, peer: ConnectionPeer) -> EventLoopFuture<ConnectionAnswer> {
        let native = ListOffsetsRequest(
            topics: request.topics.map { topic in
                TopicEntries(topic: topic.name, topic.entries.map { ListOffsetsPartition(partition: $0.index, timestamp: $0.timestamp) })
            })
        let version = header.apiVersion
        return dispatcher.handle(.listOffsets(native), on: peer.eventLoop, principal: principal(peer), peer: peer.description).map { body -> ConnectionAnswer in
            guard case .listOffsets(let topics) = body else { return Self.answer(header) { _ in } }
            let response = KafkaListOffsets.Response(
                topics: topics.map { topic in
                    KafkaTopic(
                        name: topic.topic,
                        topic.entries.map {
                            KafkaListOffsets.PartitionAnswer(
                                index: $0.partition, errorCode: KafkaErrorCode($0.errorCode).rawValue, timestamp: $0.timestamp, offset: $0.offset)
                        })
                })
            return Self.answer(header) { response.write(to: &$0, version: version) }
        }.flatMapErrorThrowing { error in
            let code = KafkaErrorCode((error as? MillraceError)?.code ?? .unexpected).rawValue
            let response = KafkaListOffsets.Response(
                topics: request.topics.map { topic in
                    KafkaTopic(name: topic.name, topic.entries.map { KafkaListOffsets.PartitionAnswer(index: $0.index, errorCode: code, timestamp: -1, offset: -1) })
                })
            return Self.answer(header) { response.write(to: &$0, version: version) }
        }
    }

    // MARK: Produce

    private func produce(_ request: KafkaProduce.Request, header: KafkaRequestHeader, peer: ConnectionPeer) -> EventLoopFuture<ConnectionAnswer> {
        let version = header.apiVersion
        let acks = request.acks
        @Sendable func refuseAll(_ code: KafkaErrorCode, _ message: String) -> EventLoopFuture<ConnectionAnswer> {
            let response = KafkaProduce.Response(
                topics: request.topics.map { topic in
                    KafkaTopic(name: topic.name, topic.entries.map { KafkaProduce.PartitionAnswer(index: $0.index, errorCode: code.rawValue, baseOffset: -1, errorMessage: message) })
                })
            return peer.eventLoop.makeSucceededFuture(acks == 0 ? Self.silence : Self.answer(header) { response.write(to: &$0, version: version) })
        }
        guard [-1, 0, 1].contains(request.acks) else {
            return refuseAll(.invalidRequiredAcks, "acks must be -1 (all), 0 or 1, not \(request.acks); Millrace answers once records are durable either way")
        }
        if request.transactionalID != nil {
            return refuseAll(.transactionalIDAuthorizationFailed, "Millrace has no transactions; produce without a transactional id (docs/KAFKA.md)")
        }
        // Record counts per partition, to tell a batch of duplicates from one appended.
        var counts: [TopicPartition: Int] = [:]
        let topics = request.topics.map { topic in
            TopicEntries(
                topic: topic.name,
                topic.entries.map { partition -> ProducePartition in
                    let bytes = Array(partition.records.readableBytesView)
                    counts[TopicPartition(topic: topic.name, partition: partition.index)] = Self.recordCount(bytes)
                    return ProducePartition(partition: partition.index, records: bytes)
                })
        }
        let native = ProduceRequest(timeoutMs: request.timeoutMs, topics: topics, version: 2)
        let recordCounts = counts
        return dispatcher.handle(.produce(native), on: peer.eventLoop, principal: principal(peer), peer: peer.description).map { body -> ConnectionAnswer in
            guard acks != 0 else { return Self.silence }
            guard case .produce(let results) = body else { return Self.answer(header) { _ in } }
            let response = KafkaProduce.Response(
                topics: results.map { topic in
                    KafkaTopic(
                        name: topic.topic,
                        topic.entries.map { Self.produced($0, records: recordCounts[TopicPartition(topic: topic.topic, partition: $0.partition)] ?? 0) })
                })
            return Self.answer(header) { response.write(to: &$0, version: version) }
        }.flatMapError { error in
            let error = error as? MillraceError ?? MillraceError(.unexpected, "\(error)")
            return refuseAll(KafkaErrorCode(error.code), error.message)
        }
    }

    /// Records in batches back to back, from their headers (0 when they cannot be counted;
    /// the storage says why).
    static func recordCount(_ bytes: [UInt8]) -> Int {
        var index = 0
        var count = 0
        while bytes.count - index >= RecordBatchLayout.headerBytes {
            let length = bytes[(index + RecordBatchLayout.batchLengthAt)..<(index + RecordBatchLayout.batchLengthAt + 4)].reduce(0) { $0 << 8 | Int($1) }
            let records = bytes[(index + RecordBatchLayout.recordCountAt)..<(index + RecordBatchLayout.recordCountAt + 4)].reduce(0) { $0 << 8 | Int($1) }
            guard length > 0, length <= bytes.count - index - RecordBatchLayout.lengthPrefixBytes, records <= Limits.recordsPerBatchMax else { return 0 }
            count += records
            index += length + RecordBatchLayout.lengthPrefixBytes
        }
        return index == bytes.count ? count : 0
    }

    /// A partition's produce result as Kafka says it. Records that break the topic's schema
    /// (policy reject) fail the batch with INVALID_RECORD and one record error each, naming
    /// the field (KIP-467); a batch whose every record is a duplicate is acknowledged at the
    /// original's offset, as Kafka acknowledges an idempotent retry.
    static func produced(_ result: ProducePartitionResult, records: Int) -> KafkaProduce.PartitionAnswer {
        let invalid = result.outcomes.filter { $0.kind == .invalid }
        if !invalid.isEmpty || result.errorCode != .none {
            let code = invalid.isEmpty ? KafkaErrorCode(result.errorCode) : .invalidRecord
            let message = invalid.first.map { "\(invalid.count) of \(records) records break the topic's schema; \($0.description)" } ?? result.message
            return KafkaProduce.PartitionAnswer(
                index: result.partition, errorCode: code.rawValue, baseOffset: -1, logStartOffset: result.logStartOffset,
                recordErrors: invalid.map { KafkaProduce.RecordError(batchIndex: $0.index, message: $0.description) }, errorMessage: message)
        }
        var baseOffset = result.baseOffset
        let duplicates = result.outcomes.filter { $0.kind == .duplicate }
        if records > 0, duplicates.count == records, let first = duplicates.first { baseOffset = first.offset }
        return KafkaProduce.PartitionAnswer(
            index: result.partition, baseOffset: baseOffset, logAppendTimeMs: result.logAppendTimeMs, logStartOffset: result.logStartOffset)
    }

    // MARK: Fetch

    private func fetch(_ request: KafkaFetch.Request, header: KafkaRequestHeader, peer: ConnectionPeer) -> EventLoopFuture<ConnectionAnswer> {
        let version = header.apiVersion
        let native = FetchRequest(
            maxWaitMs: min(max(request.maxWaitMs, 0), fetchWaitMaxMs), minBytes: request.minBytes, maxBytes: request.maxBytes,
            topics: request.topics.map { topic in
                TopicEntries(topic: topic.name, topic.entries.map { FetchPartition(partition: $0.index, offset: $0.fetchOffset, maxBytes: $0.maxBytes) })
            })
        let logger = dispatcher.logger
        return dispatcher.handle(
            .fetch(native), on: peer.eventLoop, responseBytesAllowed: peer.responseBytesAllowed, waiting: peer.waiting, principal: principal(peer), peer: peer.description
        ).map {
            body -> ConnectionAnswer in
            guard case .fetch(let topics) = body else { return Self.answer(header) { _ in } }
            let response = KafkaFetch.Response(
                topics: topics.map { topic in
                    KafkaTopic(
                        name: topic.topic,
                        topic.entries.map { entry in
                            var code = KafkaErrorCode(entry.errorCode)
                            var records = entry.records
                            do {
                                records = try Self.withoutDictionaries(entry.records)
                            } catch {
                                logger.warning("Kafka fetch of \(topic.topic)/\(entry.partition): a dictionary batch could not be re-compressed: \(error)")
                                code = .unknownServerError
                                records = ByteBuffer()
                            }
                            return KafkaFetch.PartitionAnswer(
                                index: entry.partition, errorCode: code.rawValue, highWatermark: entry.logEndOffset, logStartOffset: entry.logStartOffset,
                                records: records)
                        })
                })
            return Self.answer(header) { response.write(to: &$0, version: version) }
        }.flatMapErrorThrowing { error in
            let code = KafkaErrorCode((error as? MillraceError)?.code ?? .unexpected).rawValue
            let response = KafkaFetch.Response(
                topics: request.topics.map { topic in
                    KafkaTopic(name: topic.name, topic.entries.map { KafkaFetch.PartitionAnswer(index: $0.index, errorCode: code, highWatermark: -1) })
                })
            return Self.answer(header) { response.write(to: &$0, version: version) }
        }
    }

    /// Batches as read, except that one compressed with a topic's zstd dictionary is
    /// compressed again without it: a Kafka client cannot get the dictionary.
    static func withoutDictionaries(_ records: ByteBuffer) throws -> ByteBuffer {
        var changed: [(range: Range<Int>, bytes: [UInt8])] = []
        try records.withUnsafeReadableBytes { bytes in
            var index = 0
            while bytes.count - index > RecordBatchLayout.headerBytes {
                let length = Int(Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: index + RecordBatchLayout.batchLengthAt, as: Int32.self)))
                let total = length + RecordBatchLayout.lengthPrefixBytes
                guard length > 0, total <= bytes.count - index else { break }
                let codec = bytes[index + RecordBatchLayout.attributesAt + 1] & 0x7
                if codec == UInt8(CompressionCodec.zstd.rawValue),
                    let rebuilt = try RecordBatch.withoutDictionary(UnsafeRawBufferPointer(rebasing: bytes[index..<(index + total)]))
                {
                    changed.append((index..<(index + total), rebuilt))
                }
                index += total
            }
        }
        guard !changed.isEmpty else { return records }
        var rebuilt = ByteBuffer()
        var position = 0
        for change in changed {
            rebuilt.writeImmutableBuffer(records.getSlice(at: records.readerIndex + position, length: change.range.lowerBound - position) ?? ByteBuffer())
            rebuilt.writeBytes(change.bytes)
            position = change.range.upperBound
        }
        rebuilt.writeImmutableBuffer(records.getSlice(at: records.readerIndex + position, length: records.readableBytes - position) ?? ByteBuffer())
        return rebuilt
    }
}
