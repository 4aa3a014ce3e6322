import CLMDB
import MillraceFormat

/// A topic's trained zstd dictionary, as stored. `id` is the one zstd writes into every frame
/// compressed with it; `version` counts the topic's dictionaries from 1.
public struct StoredDictionary: Sendable, Equatable {
    public var topic: String
    public var id: UInt32
    public var version: Int32
    public var trainedAtMs: Int64
    /// Records it was trained on.
    public var samples: Int32
    public var bytes: [UInt8]

    static let encodingVersion: UInt8 = 1

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 17 + bytes.count)
        writer.writeInteger(Self.encodingVersion)
        writer.writeInteger(version)
        writer.writeInteger(trainedAtMs)
        writer.writeInteger(samples)
        return writer.bytes + bytes
    }

    init(topic: String, id: UInt32, version: Int32, trainedAtMs: Int64, samples: Int32, bytes: [UInt8]) {
        self.topic = topic
        self.id = id
        self.version = version
        self.trainedAtMs = trainedAtMs
        self.samples = samples
        self.bytes = bytes
    }

    init(topic: String, id: UInt32, decoding value: UnsafeRawBufferPointer) throws {
        var reader = ByteReader(value)
        let encoding: UInt8 = try reader.readInteger("dictionary record version")
        guard encoding == Self.encodingVersion else {
            throw MillraceError(.newerFormatVersion, "dictionary \(id) of \(topic) was written with record version \(encoding)")
        }
        self.topic = topic
        self.id = id
        version = try reader.readInteger("dictionary version")
        trainedAtMs = try reader.readInteger("dictionary training time")
        samples = try reader.readInteger("dictionary samples")
        bytes = Array(value[17...])
    }
}

/// What training a dictionary found: the dictionary, and the records section of a
/// one-record batch on average over the samples, without it and with it.
public struct DictionaryTraining: Sendable, Equatable {
    public var dictionary: StoredDictionary
    public var plainBytesPerRecord: Double
    public var zstdBytesPerRecord: Double
    public var dictionaryBytesPerRecord: Double
}

extension Keys {
    /// In the meta database: "dictionary" 0x00, topic id, dictionary id → the dictionary.
    static func dictionaryPrefix(_ topicID: UInt32) -> [UInt8] { topicMetaKey("dictionary", topicID) }

    static func dictionary(_ topicID: UInt32, _ id: UInt32) -> [UInt8] { dictionaryPrefix(topicID) + ByteWriter.bigEndian(id) }

    /// "dictionary-current" 0x00, topic id → the id producers are given.
    static func currentDictionary(_ topicID: UInt32) -> [UInt8] { topicMetaKey("dictionary-current", topicID) }

    private static func topicMetaKey(_ name: String, _ topicID: UInt32) -> [UInt8] {
        var writer = ByteWriter(capacity: name.utf8.count + 5)
        writer.writeBytes(Array(name.utf8))
        writer.writeInteger(UInt8(0))
        writer.writeInteger(topicID)
        return writer.bytes
    }
}

extension ByteWriter {
    static func bigEndian(_ value: UInt32) -> [UInt8] {
        var writer = ByteWriter(capacity: 4)
        writer.writeInteger(value)
        return writer.bytes
    }
}

extension Storage {
    /// Records a dictionary is trained on by default, and the most allowed.
    public static let dictionarySamplesDefault = 10_000
    public static let dictionarySamplesMax = 100_000
    /// A dictionary's size by default, and the range allowed.
    public static let dictionaryBytesDefault = 16 << 10
    public static let dictionaryBytesRange = 1_024...(256 << 10)
    /// Sample bytes a training reads at most, and the largest value taken as a sample
    /// (dictionaries are for small events): bounds the memory and time one request can ask
    /// for. zstd's trainer took ~2.3 s on 4 MiB of confirmations (any dictionary size up to
    /// 256 KiB) and 10.6 s on 16 MiB for no smaller output (`millrace-bench dictionary`);
    /// a client waits 30 s for an answer.
    public static let dictionarySampleBytesMax = 4 << 20
    public static let dictionarySampleValueBytesMax = 64 << 10

    /// Every dictionary of a topic, oldest first.
    public func dictionaries(topic: String) throws -> [StoredDictionary] {
        try withReadTransaction { txn, snapshot in
            guard let info = snapshot.topics[topic] else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
            return try Self.readDictionaries(txn, databases.meta, topic: info)
        }
    }

    /// A topic's dictionary by id; with id 0, the current one (the newest trained). Nil when
    /// there is none.
    public func dictionary(topic: String, id: UInt32) throws -> StoredDictionary? {
        try withReadTransaction { txn, snapshot in
            guard let info = snapshot.topics[topic] else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
            var wanted = id
            if wanted == 0 {
                guard let current = try txn.get(databases.meta, Keys.currentDictionary(info.id)) else { return nil }
                var reader = ByteReader(current)
                wanted = try reader.readInteger("current dictionary")
            }
            return try txn.get(databases.meta, Keys.dictionary(info.id, wanted)).map { try StoredDictionary(topic: topic, id: wanted, decoding: $0) }
        }
    }

    static func readDictionaries(_ txn: LMDBTransaction, _ meta: MDB_dbi, topic: TopicInfo) throws -> [StoredDictionary] {
        let prefix = Keys.dictionaryPrefix(topic.id)
        let cursor = try LMDBCursor(txn, meta)
        defer { cursor.close() }
        var found: [StoredDictionary] = []
        var entry = try cursor.get(MDB_SET_RANGE, key: prefix)
        while let current = entry, Keys.hasPrefix(current.key, prefix), current.key.count == prefix.count + 4 {
            var reader = ByteReader(UnsafeRawBufferPointer(rebasing: current.key[prefix.count...]))
            let id: UInt32 = try reader.readInteger("dictionary id")
            found.append(try StoredDictionary(topic: topic.name, id: id, decoding: current.value))
            entry = try cursor.get(MDB_NEXT)
        }
        return found.sorted { $0.version < $1.version }
    }

    /// Every topic's dictionaries into `ZstdDictionaries.shared`, so batches compressed with
    /// them decode in this process (before anything reads records).
    static func loadDictionaries(_ env: LMDBEnvironment, _ databases: SystemDatabases, _ catalog: CatalogSnapshot) throws {
        let txn = try LMDBTransaction.begin(env, readOnly: true)
        defer { txn.abort() }
        for topic in catalog.topics.values {
            for stored in try readDictionaries(txn, databases.meta, topic: topic) { try ZstdDictionaries.shared.add(stored.bytes) }
        }
    }

    /// Trains a dictionary on the newest `samples` records of `topic` (their values, taken
    /// evenly from its partitions), stores it as the topic's next version and makes it the
    /// one producers are given. Runs zstd's trainer on the calling thread (up to about two
    /// seconds, on `dictionarySampleBytesMax` of samples); `completion` runs once the
    /// dictionary is durable.
    public func trainDictionary(
        topic: String, samples: Int, bytes capacity: Int, completion: @escaping @Sendable (Result<DictionaryTraining, MillraceError>) -> Void
    ) {
        guard let writer else { return completion(.failure(MillraceError(.invalidRequest, "storage was opened read-only"))) }
        guard (1...Self.dictionarySamplesMax).contains(samples) else {
            return completion(.failure(MillraceError(.invalidConfig, "samples must be 1...\(Self.dictionarySamplesMax) records (got \(samples))")))
        }
        guard Self.dictionaryBytesRange.contains(capacity) else {
            return completion(
                .failure(MillraceError(.invalidConfig, "a dictionary must be \(Self.dictionaryBytesRange.lowerBound)...\(Self.dictionaryBytesRange.upperBound) bytes (got \(capacity))")))
        }
        let started = training.withLock { busy -> Bool in
            if busy { return false }
            busy = true
            return true
        }
        guard started else {
            return completion(.failure(MillraceError(.limitReached, "a dictionary is being trained already; retry when it is done")))
        }
        defer { training.withLock { $0 = false } }
        let values: [[UInt8]]
        let dictionary: [UInt8]
        do {
            values = try recentValues(topic: topic, count: samples)
            guard values.count >= 100 else {
                throw MillraceError(
                    .invalidRequest,
                    "topic \(topic) has \(values.count) recent records with a value of at most \(Self.dictionarySampleValueBytesMax >> 10) KiB; a dictionary needs at least 100 (more is better: thousands)"
                )
            }
            dictionary = try Zstd.trainDictionary(samples: values, capacity: capacity)
        } catch {
            return completion(.failure(error as? MillraceError ?? MillraceError(.unexpected, "\(error)")))
        }
        let measured = Self.measure(values.prefix(1_000), dictionary: dictionary)
        writer.submitNow(
            .storeDictionary(
                StoreDictionaryOperation(topic: topic, bytes: dictionary, samples: Int32(values.count)) { result in
                    completion(
                        result.map {
                            DictionaryTraining(dictionary: $0, plainBytesPerRecord: measured.plain, zstdBytesPerRecord: measured.zstd, dictionaryBytesPerRecord: measured.withDictionary)
                        })
                }))
    }

    public func trainDictionary(topic: String, samples: Int = dictionarySamplesDefault, bytes: Int = dictionaryBytesDefault) async throws -> DictionaryTraining {
        try await withCheckedThrowingContinuation { continuation in
            trainDictionary(topic: topic, samples: samples, bytes: bytes) { continuation.resume(with: $0) }
        }
    }

    /// The values of the newest `count` records of a topic, evenly from its partitions as far
    /// as they hold records (a small partition's share goes to the others); values over
    /// `dictionarySampleValueBytesMax` are left out, and reading stops at
    /// `dictionarySampleBytesMax` in all.
    func recentValues(topic: String, count: Int) throws -> [[UInt8]] {
        guard let info = topicInfo(topic) else { throw MillraceError(.unknownTopic, "topic \"\(topic)\" does not exist") }
        let held = try (0..<info.partitionCount).map { try offsets(topic: topic, partition: $0) }.sorted {
            $0.nextOffset - $0.logStartOffset < $1.nextOffset - $1.logStartOffset
        }
        var values: [[UInt8]] = []
        var total = 0
        for (index, offsets) in held.enumerated() where total < Self.dictionarySampleBytesMax {
            let share = max(1, (count - values.count) / (held.count - index))
            let partition = offsets.partition
            let start = max(offsets.logStartOffset, offsets.nextOffset - Int64(share))
            guard start < offsets.nextOffset else { continue }
            try forEachBatch(topic: topic, partition: partition, from: start) { header, batch in
                try RecordBatch.forEachRecord(in: batch, header: header) { record, _ in
                    guard header.baseOffset + Int64(record.offsetDelta) >= start, let value = record.value, !value.isEmpty,
                        value.count <= Self.dictionarySampleValueBytesMax, total + value.count <= Self.dictionarySampleBytesMax
                    else { return }
                    values.append(Array(value))
                    total += value.count
                }
                return total < Self.dictionarySampleBytesMax
            }
        }
        return values
    }

    /// The records section of one-record batches, per record on average: plain, zstd, and
    /// zstd with `dictionary`.
    static func measure(_ values: ArraySlice<[UInt8]>, dictionary: [UInt8]) -> (plain: Double, zstd: Double, withDictionary: Double) {
        guard !values.isEmpty, let id = try? ZstdDictionaries.shared.add(dictionary) else { return (0, 0, 0) }
        var (plain, zstd, withDictionary) = (0, 0, 0)
        for value in values {
            guard let section = try? RecordBatch(timestamp: 0, values: [value]).encoded()[RecordBatchLayout.recordsAt...] else { continue }
            plain += section.count
            zstd += (try? Zstd.compress(Array(section)).count) ?? 0
            withDictionary += (try? Zstd.compress(Array(section), dictionary: id).count) ?? 0
        }
        let count = Double(values.count)
        return (Double(plain) / count, Double(zstd) / count, Double(withDictionary) / count)
    }
}

extension Writer {
    func storeDictionary(_ op: StoreDictionaryOperation) -> Result<StoredDictionary, MillraceError> {
        guard let info = catalog.withLock({ $0.topics[op.topic] }) else {
            return .failure(MillraceError(.unknownTopic, "topic \"\(op.topic)\" does not exist"))
        }
        let id: UInt32
        do {
            id = try ZstdDictionaries.shared.add(op.bytes)
        } catch {
            return .failure(error as? MillraceError ?? MillraceError(.unexpected, "\(error)"))
        }
        return withTransaction { context -> StoredDictionary in
            let existing = try Storage.readDictionaries(context.txn, databases.meta, topic: info)
            if let same = existing.first(where: { $0.id == id }) {
                try context.txn.put(databases.meta, Keys.currentDictionary(info.id), ByteWriter.bigEndian(id))
                return same
            }
            let stored = StoredDictionary(
                topic: op.topic, id: id, version: (existing.last?.version ?? 0) + 1, trainedAtMs: context.nowMs, samples: op.samples, bytes: op.bytes)
            try context.txn.put(databases.meta, Keys.dictionary(info.id, id), stored.encoded())
            try context.txn.put(databases.meta, Keys.currentDictionary(info.id), ByteWriter.bigEndian(id))
            return stored
        }
    }
}

struct StoreDictionaryOperation {
    var topic: String
    var bytes: [UInt8]
    var samples: Int32
    var completion: @Sendable (Result<StoredDictionary, MillraceError>) -> Void
}
