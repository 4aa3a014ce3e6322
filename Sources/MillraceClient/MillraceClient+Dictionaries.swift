import MillraceFormat
import MillraceWire

extension MillraceClient {
    /// A topic's trained zstd dictionary.
    public struct TopicDictionary: Sendable, Equatable {
        /// The id zstd writes into every frame compressed with it.
        public var id: UInt32
        /// The topic's dictionaries are numbered from 1.
        public var version: Int32
        public var trainedAtMs: Int64
        /// Records it was trained on.
        public var samples: Int32
        /// Its size in bytes.
        public var bytes: Int
    }

    /// What training made, and what it saves: the records section of a one-record batch on
    /// the samples, per record on average — plain, with zstd alone, and with the dictionary.
    public struct DictionaryTraining: Sendable, Equatable {
        public var dictionary: TopicDictionary
        public var plainBytesPerRecord: Double
        public var zstdBytesPerRecord: Double
        public var dictionaryBytesPerRecord: Double
    }

    /// Trains a zstd dictionary on `topic`'s newest `samples` records and makes it the one
    /// producers are given (a topic compressed with zstd; producers pick it up when they
    /// first send to the topic). Every earlier dictionary stays, so records compressed with
    /// one still decode.
    public func trainDictionary(_ topic: String, samples: Int = 10_000, maxBytes: Int = 16 << 10) async throws -> DictionaryTraining {
        let request = TrainDictionaryRequest(topic: topic, samples: Int32(clamping: samples), bytes: Int32(clamping: maxBytes))
        guard case .trainDictionary(let trained) = try await send(.trainDictionary(request)) else { throw Self.unexpectedBody }
        try ZstdDictionaries.shared.add(trained.dictionary.bytes)
        return DictionaryTraining(
            dictionary: Self.dictionary(trained.dictionary), plainBytesPerRecord: Double(trained.plainCentibytes) / 100,
            zstdBytesPerRecord: Double(trained.zstdCentibytes) / 100, dictionaryBytesPerRecord: Double(trained.dictionaryCentibytes) / 100)
    }

    /// The topic's current dictionary (nil when it has none), loaded for compressing and decoding.
    public func currentDictionary(_ topic: String) async throws -> TopicDictionary? {
        try await loadDictionary(topic: topic, id: 0)
    }

    /// Fetches a dictionary (id 0: the topic's current one) into `ZstdDictionaries.shared`;
    /// nil when the topic has no such dictionary, or the broker predates dictionaries.
    @discardableResult
    package func loadDictionary(topic: String, id: UInt32) async throws -> TopicDictionary? {
        do {
            guard case .getDictionary(let found) = try await send(.getDictionary(topic: topic, id: id)) else { throw Self.unexpectedBody }
            let loaded = try ZstdDictionaries.shared.add(found.bytes)
            guard loaded == found.id else {
                throw MillraceError(.notABroker, "the broker sent dictionary \(found.id) whose bytes are dictionary \(loaded)")
            }
            return Self.dictionary(found)
        } catch let error as MillraceError where error.code == .unknownDictionary || error.code == .unknownApi {
            return nil  // none, or a broker from before dictionaries (which has none)
        }
    }

    static func dictionary(_ wire: DictionaryResponse) -> TopicDictionary {
        TopicDictionary(id: wire.id, version: wire.version, trainedAtMs: wire.trainedAtMs, samples: wire.samples, bytes: wire.bytes.count)
    }
}
