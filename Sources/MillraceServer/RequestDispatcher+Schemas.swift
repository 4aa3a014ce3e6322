import Dispatch
import MillraceFormat
import MillraceSchema
import MillraceStorage
import MillraceWire
import NIOCore

/// Schema policies, and the quarantine the produce path parks invalid records in.
extension RequestDispatcher {
    func alterTopic(_ alter: AlterTopicRequest, on eventLoop: any EventLoop) -> EventLoopFuture<ResponseBody> {
        func setting(_ value: Int64, _ name: String) throws -> Int64?? {
            switch value {
            case AlterTopicRequest.unchanged: return nil
            case -1: return .some(nil)
            case 0...: return .some(value)
            default: throw MillraceError(.invalidConfig, "\(name) takes -2 (unchanged), -1 (none) or 0 or more (got \(value))")
            }
        }
        var compression: CompressionCodec?
        do {
            let retentionMs = try setting(alter.retentionMs, "retention ms")
            let retentionBytes = try setting(alter.retentionBytes, "retention bytes")
            if alter.compression >= 0 {
                guard let codec = CompressionCodec(rawValue: alter.compression), codec.isSupported else {
                    throw MillraceError(.invalidConfig, "compression \(alter.compression) is not one this broker stores; use 0 (none) or 4 (zstd)")
                }
                compression = codec
            }
            let promise = eventLoop.makePromise(of: ResponseBody.self)
            // nil: keep; "": no owner from now on; a name: that owner.
            let owner: String?? = alter.owner.map { name -> String? in name.isEmpty ? nil : name }
            storage.alterTopic(topic: alter.topic, retentionMs: retentionMs, retentionBytes: retentionBytes, compression: compression, owner: owner) { result in
                promise.completeWith(result.map { _ in .alterTopic }.mapError { $0 as any Error })
            }
            return promise.futureResult
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
    }

    func setSchemaPolicy(_ policy: SchemaPolicyRequest, on eventLoop: any EventLoop) -> EventLoopFuture<ResponseBody> {
        var compatibility: SchemaCompatibility?
        var onInvalid: InvalidRecordPolicy?
        if policy.compatibility >= 0 {
            guard let mode = SchemaCompatibility(rawValue: UInt8(policy.compatibility)) else {
                return eventLoop.makeFailedFuture(MillraceError(.invalidConfig, "compatibility \(policy.compatibility) is unknown; use 0...6 (none ... full-transitive)"))
            }
            compatibility = mode
        }
        if policy.onInvalid >= 0 {
            guard let chosen = InvalidRecordPolicy(rawValue: UInt8(policy.onInvalid)) else {
                return eventLoop.makeFailedFuture(MillraceError(.invalidConfig, "on-invalid \(policy.onInvalid) is unknown; use 0 (reject) or 1 (quarantine)"))
            }
            onInvalid = chosen
            if chosen == .quarantine, policy.topic.utf8.count + Self.quarantineSuffix.utf8.count > Limits.topicNameBytesMax {
                return eventLoop.makeFailedFuture(
                    MillraceError(
                        .invalidConfig,
                        "topic \(policy.topic) is too long a name for a quarantine topic (\(policy.topic)\(Self.quarantineSuffix) would pass \(Limits.topicNameBytesMax) bytes)"))
            }
        }
        let promise = eventLoop.makePromise(of: ResponseBody.self)
        storage.setSchemaPolicy(topic: policy.topic, compatibility: compatibility, onInvalid: onInvalid) { [self] result in
            switch result {
            case .success(let info) where info.config.onInvalid == .quarantine:
                // The quarantine topic exists from the moment the policy says so.
                ensureQuarantine(for: info) { created in
                    promise.completeWith(created.map { .setSchemaPolicy }.mapError { $0 as any Error })
                }
            case .success:
                promise.succeed(.setSchemaPolicy)
            case .failure(let error):
                promise.fail(error)
            }
        }
        return promise.futureResult
    }

    static let quarantineSuffix = ".quarantine"

    /// Creates `<topic>.quarantine` (one partition, the topic's compression) unless it exists.
    func ensureQuarantine(for info: TopicInfo, completion: @escaping @Sendable (Result<Void, MillraceError>) -> Void) {
        let name = info.name + Self.quarantineSuffix
        guard storage.topicInfo(name) == nil else { return completion(.success(())) }
        storage.createTopic(name, partitions: 1, config: TopicConfig(compression: info.config.compression)) { result in
            switch result {
            case .success: completion(.success(()))
            case .failure(let error) where error.code == .topicAlreadyExists: completion(.success(()))
            case .failure(let error): completion(.failure(error))
            }
        }
    }

    /// Trains on a thread of its own (zstd's trainer takes up to a second on many samples);
    /// answered once the dictionary is durable.
    func trainDictionary(_ request: TrainDictionaryRequest, on eventLoop: any EventLoop) -> EventLoopFuture<ResponseBody> {
        let promise = eventLoop.makePromise(of: ResponseBody.self)
        let (storage, logger) = (self.storage, self.logger)
        DispatchQueue.global().async {
            storage.trainDictionary(topic: request.topic, samples: Int(request.samples), bytes: Int(request.bytes)) { result in
                switch result {
                case .success(let training):
                    let dictionary = training.dictionary
                    logger.info(
                        "trained zstd dictionary \(dictionary.id) (version \(dictionary.version), \(dictionary.bytes.count) bytes) for \(request.topic) on \(dictionary.samples) records: a one-record batch's records \(Int(training.zstdBytesPerRecord)) → \(Int(training.dictionaryBytesPerRecord)) bytes")
                    promise.succeed(
                        .trainDictionary(
                            DictionaryTrainingResponse(
                                dictionary: Self.wire(dictionary), plainCentibytes: Int32(training.plainBytesPerRecord * 100),
                                zstdCentibytes: Int32(training.zstdBytesPerRecord * 100), dictionaryCentibytes: Int32(training.dictionaryBytesPerRecord * 100))))
                case .failure(let error):
                    promise.fail(error)
                }
            }
        }
        return promise.futureResult
    }

    static func wire(_ stored: StoredDictionary) -> DictionaryResponse {
        DictionaryResponse(id: stored.id, version: stored.version, trainedAtMs: stored.trainedAtMs, samples: stored.samples, bytes: stored.bytes)
    }
}
