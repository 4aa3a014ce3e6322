import MillraceFormat
import MillraceKafka
import MillraceSecurity
import MillraceStorage
import MillraceWire
import NIOCore

/// InitProducerId onto the broker's idempotent producers, and the topic admin APIs onto its
/// topics: the configs Kafka's admin tools set and read, as Millrace honours them.
extension KafkaService {
    func handleAdmin(_ api: KafkaApiKey, _ header: KafkaRequestHeader, body: inout ByteBuffer, peer: ConnectionPeer) throws -> EventLoopFuture<
        ConnectionAnswer
    > {
        let version = header.apiVersion
        let eventLoop = peer.eventLoop
        switch api {
        case .initProducerId:
            let request = try KafkaAdmin.InitProducerIdRequest(from: &body, version: version)
            guard request.transactionalID == nil else {
                let response = KafkaAdmin.InitProducerIdResponse(errorCode: KafkaErrorCode.transactionalIDAuthorizationFailed.rawValue, producerID: -1, producerEpoch: -1)
                return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version) })
            }
            let promise = eventLoop.makePromise(of: ConnectionAnswer.self)
            let principal = principal(peer)
            dispatcher.storage.initProducer(producerId: -1, epoch: -1) { [security = dispatcher.security] result in
                if case .success(let identity) = result { _ = security?.claimProducer(identity.producerId, by: principal) }
                let response =
                    switch result {
                    case .success(let identity): KafkaAdmin.InitProducerIdResponse(producerID: identity.producerId, producerEpoch: identity.epoch)
                    case .failure(let error): KafkaAdmin.InitProducerIdResponse(errorCode: KafkaErrorCode(error.code).rawValue, producerID: -1, producerEpoch: -1)
                    }
                promise.succeed(Self.answer(header) { response.write(to: &$0, version: version) })
            }
            return promise.futureResult
        case .createTopics:
            let request = try KafkaAdmin.CreateTopicsRequest(from: &body, version: version)
            let principal = principal(peer)
            let results = request.topics.map { topic in createTopic(topic, validateOnly: request.validateOnly, principal: principal, peer: peer.description, on: eventLoop) }
            return EventLoopFuture.whenAllComplete(results, on: eventLoop).map { outcomes in
                let response = KafkaAdmin.CreateTopicsResponse(
                    topics: outcomes.map { outcome in
                        switch outcome {
                        case .success(let result): result
                        case .failure(let error): KafkaAdmin.TopicResult(name: "", errorCode: KafkaErrorCode.unknownServerError.rawValue, errorMessage: "\(error)")
                        }
                    })
                return Self.answer(header) { response.write(to: &$0, version: version) }
            }
        case .deleteTopics:
            let request = try KafkaAdmin.DeleteTopicsRequest(from: &body, version: version)
            let results = request.names.map { name in
                dispatcher.handle(.deleteTopic(name: name), on: eventLoop, principal: principal(peer), peer: peer.description).map { _ in KafkaAdmin.TopicResult(name: name) }.flatMapErrorThrowing { error in
                    KafkaAdmin.TopicResult(name: name, errorCode: KafkaErrorCode((error as? MillraceError)?.code ?? .unexpected).rawValue)
                }
            }
            return EventLoopFuture.whenAllSucceed(results, on: eventLoop).map { topics in
                let response = KafkaAdmin.DeleteTopicsResponse(topics: topics)
                return Self.answer(header) { response.write(to: &$0, version: version) }
            }
        case .describeConfigs:
            let request = try KafkaAdmin.DescribeConfigsRequest(from: &body, version: version)
            let principal = principal(peer)
            let response = KafkaAdmin.DescribeConfigsResponse(
                results: request.resources.map { resource in
                    guard resource.type != KafkaAdmin.topicResource || allows(principal, .describe, .topic(resource.name), peer: peer, api: .describeConfigs) else {
                        return KafkaAdmin.ConfigResult(
                            errorCode: KafkaErrorCode.topicAuthorizationFailed.rawValue,
                            errorMessage: "principal \(principal.name) may not describe topic \(resource.name)", type: resource.type, name: resource.name, configs: [])
                    }
                    return describeConfigs(resource)
                })
            return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version) })
        default:
            throw MillraceError(.unexpected, "\(api) is not an admin API")
        }
    }

    /// The topic configs honoured at creation; any other is refused by name (INVALID_CONFIG),
    /// not ignored: a setting that silently does nothing is a surprise in a plant.
    static let creatableConfigs = ["retention.ms", "retention.bytes", "compression.type", "message.timestamp.type", "cleanup.policy", "max.message.bytes"]

    private func createTopic(_ topic: KafkaAdmin.NewTopic, validateOnly: Bool, principal: Principal, peer: String, on eventLoop: any EventLoop) -> EventLoopFuture<
        KafkaAdmin.TopicResult
    > {
        func refused(_ code: KafkaErrorCode, _ message: String) -> EventLoopFuture<KafkaAdmin.TopicResult> {
            eventLoop.makeSucceededFuture(KafkaAdmin.TopicResult(name: topic.name, errorCode: code.rawValue, errorMessage: message))
        }
        guard topic.replicationFactor == -1 || topic.replicationFactor == 1 else {
            return refused(.invalidReplicationFactor, "Millrace is one broker: replication factor 1 (or -1 for the default), not \(topic.replicationFactor)")
        }
        guard topic.assignmentCount == 0 else { return refused(.invalidRequest, "replica assignments are not taken: Millrace is one broker") }
        guard topic.partitions == -1 || topic.partitions > 0 else {
            return refused(.invalidPartitions, "a topic needs 1 or more partitions (or -1 for the default, 1), not \(topic.partitions)")
        }
        var create = CreateTopicRequest(name: topic.name, partitions: topic.partitions < 0 ? 1 : topic.partitions)
        for config in topic.configs {
            let value = config.value ?? ""
            switch config.name {
            case "retention.ms":
                guard let ms = Int64(value), ms >= -1 else { return refused(.invalidConfig, "retention.ms takes milliseconds or -1 (got \(value))") }
                create.retentionMs = ms
            case "retention.bytes":
                guard let bytes = Int64(value), bytes >= -1 else { return refused(.invalidConfig, "retention.bytes takes bytes or -1 (got \(value))") }
                create.retentionBytes = bytes
            case "compression.type":
                switch value {
                case "zstd": create.compression = CompressionCodec.zstd.rawValue
                case "uncompressed", "producer", "none": create.compression = CompressionCodec.none.rawValue
                default: return refused(.invalidConfig, "compression.type \(value) is not one Millrace stores; use zstd, uncompressed or producer")
                }
            case "message.timestamp.type":
                switch value {
                case "CreateTime": create.timestampType = TimestampType.create.rawValue
                case "LogAppendTime": create.timestampType = TimestampType.logAppend.rawValue
                default: return refused(.invalidConfig, "message.timestamp.type takes CreateTime or LogAppendTime (got \(value))")
                }
            case "cleanup.policy":
                guard value == "delete" else { return refused(.invalidConfig, "cleanup.policy \(value) is not served; Millrace topics are cleanup.policy=delete") }
            case "max.message.bytes":
                guard Int(value) == Limits.batchBytesMax else {
                    return refused(.invalidConfig, "max.message.bytes is \(Limits.batchBytesMax) on Millrace (a batch's limit) and cannot be set to \(value)")
                }
            default:
                return refused(
                    .invalidConfig, "config \(config.name) is not honoured by Millrace; these are: \(Self.creatableConfigs.joined(separator: ", ")) (docs/KAFKA.md)")
            }
        }
        guard dispatcher.allows(principal, .create, .topic(topic.name)) else {
            return refused(.topicAuthorizationFailed, "principal \(principal.name) may not create topic \(topic.name)")
        }
        guard !validateOnly else {
            if dispatcher.storage.topicInfo(topic.name) != nil { return refused(.topicAlreadyExists, "topic \(topic.name) exists") }
            return eventLoop.makeSucceededFuture(KafkaAdmin.TopicResult(name: topic.name))
        }
        return dispatcher.handle(.createTopic(create), on: eventLoop, principal: principal, peer: peer).map { _ in KafkaAdmin.TopicResult(name: topic.name) }.flatMapErrorThrowing { error in
            let error = error as? MillraceError ?? MillraceError(.unexpected, "\(error)")
            return KafkaAdmin.TopicResult(name: topic.name, errorCode: KafkaErrorCode(error.code).rawValue, errorMessage: error.message)
        }
    }

    /// A topic's configs as Kafka's admin tools read them; a broker's (there is one) as its defaults.
    private func describeConfigs(_ resource: KafkaAdmin.ConfigResource) -> KafkaAdmin.ConfigResult {
        var entries: [KafkaAdmin.ConfigEntry]
        switch resource.type {
        case KafkaAdmin.topicResource:
            guard let info = dispatcher.storage.topicInfo(resource.name) else {
                return KafkaAdmin.ConfigResult(
                    errorCode: KafkaErrorCode.unknownTopicOrPartition.rawValue, errorMessage: "topic \(resource.name) does not exist", type: resource.type,
                    name: resource.name, configs: [])
            }
            let config = info.config
            entries = [
                .init(name: "retention.ms", value: String(config.retentionMs ?? -1), isDefault: config.retentionMs == nil, type: 5),
                .init(name: "retention.bytes", value: String(config.retentionBytes ?? -1), isDefault: config.retentionBytes == nil, type: 5),
                .init(name: "cleanup.policy", value: "delete", isDefault: true, type: 7),
                .init(name: "max.message.bytes", value: String(Limits.batchBytesMax), isDefault: true, type: 3),
                .init(name: "compression.type", value: config.compression == .zstd ? "zstd" : "producer", isDefault: config.compression != .zstd),
                .init(
                    name: "message.timestamp.type", value: config.timestampType == .logAppend ? "LogAppendTime" : "CreateTime",
                    isDefault: config.timestampType == .create),
            ]
        case KafkaAdmin.brokerResource:
            entries = [
                .init(name: "log.retention.ms", value: "-1", isDefault: true, type: 5),
                .init(name: "message.max.bytes", value: String(Limits.batchBytesMax), isDefault: true, type: 3),
                .init(name: "auto.create.topics.enable", value: "false", isDefault: true, type: 1),
                .init(name: "num.partitions", value: "1", isDefault: true, type: 3),
            ]
        default:
            return KafkaAdmin.ConfigResult(
                errorCode: KafkaErrorCode.invalidRequest.rawValue, errorMessage: "resource type \(resource.type) has no configs on Millrace (topics: 2, brokers: 4)",
                type: resource.type, name: resource.name, configs: [])
        }
        if let keys = resource.keys { entries = entries.filter { keys.contains($0.name) } }
        return KafkaAdmin.ConfigResult(type: resource.type, name: resource.name, configs: entries)
    }
}
