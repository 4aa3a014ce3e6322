import Foundation
import MillraceFormat
import Testing

@testable import MillraceStorage

/// Trained dictionaries in storage: versions, the current one, reopening, deletion with the
/// topic, and the bounds one training request may not pass.
@Suite(.serialized) struct DictionaryStorageTests {
    /// JSON events alike in shape, different in values.
    static func events(_ count: Int, from first: Int = 0) -> [String] {
        (first..<(first + count)).map { index in
            #"{"type":"production.confirmation","event_id":"E-\#(index * 7919 % 100_003)","plant":"DE0\#(index % 4)","lot_id":"L\#(index * 31 % 9_973)","yield_qty":\#(index % 500),"uom":"PC"}"#
        }
    }

    func fill(_ storage: Storage, _ topic: String, _ values: [String], partitions: Int32 = 2) async throws {
        _ = try await storage.createTopic(topic, partitions: partitions)
        for (index, start) in stride(from: 0, to: values.count, by: 50).enumerated() {
            _ = try await storage.append(topic: topic, partition: Int32(index) % partitions, batch: batch(Array(values[start..<min(values.count, start + 50)])))
        }
    }

    @Test func versionsTheCurrentOneAndAReopen() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        var first: StoredDictionary?
        do {
            let storage = try Storage.open(directory: directory.path, options: testOptions())
            defer { storage.close() }
            try await fill(storage, "conf", Self.events(600))
            #expect(try storage.dictionary(topic: "conf", id: 0) == nil)
            let trained = try await storage.trainDictionary(topic: "conf", samples: 400, bytes: 4_096)
            first = trained.dictionary
            #expect(trained.dictionary.version == 1 && trained.dictionary.samples == 400)
            #expect(trained.dictionaryBytesPerRecord < trained.zstdBytesPerRecord && trained.dictionaryBytesPerRecord < trained.plainBytesPerRecord)
            #expect(ZstdDictionaries.shared.bytes(of: trained.dictionary.id) == trained.dictionary.bytes)
            let again = try await storage.trainDictionary(topic: "conf", samples: 600, bytes: 4_096)
            #expect(again.dictionary.version == 2 && again.dictionary.id != trained.dictionary.id)
            #expect(try storage.dictionary(topic: "conf", id: 0) == again.dictionary)
            #expect(try storage.dictionaries(topic: "conf").map(\.version) == [1, 2])
        }
        // Reopened: every version is there, and the current one is still the newest.
        let storage = try Storage.open(directory: directory.path, options: testOptions())
        defer { storage.close() }
        let stored = try storage.dictionaries(topic: "conf")
        #expect(stored.count == 2 && stored.first == first)
        #expect(try storage.dictionary(topic: "conf", id: 0)?.version == 2)
        #expect(try storage.dictionary(topic: "conf", id: first!.id) == first)
        #expect(try storage.dictionary(topic: "conf", id: 12_345) == nil)
        // They go with the topic: a topic made again under the name has none.
        try await storage.deleteTopic("conf")
        _ = try await storage.createTopic("conf", partitions: 1)
        #expect(try storage.dictionary(topic: "conf", id: 0) == nil && storage.dictionaries(topic: "conf").isEmpty)
        #expect(await errorCode { _ = try storage.dictionaries(topic: "nope") } == .unknownTopic)
    }

    @Test func aBatchNamingADictionaryTheBrokerLacksIsRefused() async throws {
        try await withStorage { storage, _ in
            try await fill(storage, "conf", Self.events(300))
            let trained = try await storage.trainDictionary(topic: "conf", samples: 300, bytes: 2_048)
            let values = Self.events(3, from: 1_000).map { Array($0.utf8) }
            var bytes = try RecordBatch(timestamp: 1_700_000_000_000, values: values, codec: .zstd).encoded(dictionary: trained.dictionary.id)
            // With the dictionary the topic has: stored, and read back as sent.
            let placed = try await storage.append(topic: "conf", partition: 0, batch: bytes)
            let read = try storage.read(topic: "conf", partition: 0, from: placed.baseOffset, maxBytes: 1 << 20)
            #expect(try RecordBatch.decode(read.bytes).records.map(\.value) == values)
            // The frame's dictionary id (after magic and descriptor) changed to one nobody
            // holds, the CRC made right again: refused with unknown_dictionary, nothing stored.
            let frame = RecordBatchLayout.recordsAt
            let other = trained.dictionary.id &+ 1
            bytes.replaceSubrange((frame + 5)..<(frame + 9), with: withUnsafeBytes(of: other.littleEndian, Array.init))
            let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.attributesAt...])) }
            bytes.replaceSubrange(RecordBatchLayout.crcAt..<(RecordBatchLayout.crcAt + 4), with: withUnsafeBytes(of: crc.bigEndian, Array.init))
            let before = try storage.offsets(topic: "conf", partition: 0).nextOffset
            #expect(await errorCode { _ = try await storage.append(topic: "conf", partition: 0, batch: bytes) } == .unknownDictionary)
            #expect(try storage.offsets(topic: "conf", partition: 0).nextOffset == before)
        }
    }

    /// Issue 22: a batch compressed with another topic's dictionary was acknowledged, and then
    /// unreadable to the topic's consumers (and to the broker, once the other topic was gone).
    @Test func aBatchCompressedWithAnotherTopicsDictionaryIsRefused() async throws {
        try await withStorage { storage, _ in
            try await fill(storage, "conf", Self.events(300))
            try await fill(storage, "other", Self.events(300, from: 5_000))
            let own = try await storage.trainDictionary(topic: "conf", samples: 300, bytes: 2_048).dictionary
            let foreign = try await storage.trainDictionary(topic: "other", samples: 300, bytes: 2_048).dictionary
            #expect(own.id != foreign.id && ZstdDictionaries.shared.contains(foreign.id))
            let values = Self.events(3, from: 1_000).map { Array($0.utf8) }
            let before = try storage.offsets(topic: "conf", partition: 0).nextOffset
            let stranger = try RecordBatch(timestamp: 1_700_000_000_000, values: values, codec: .zstd).encoded(dictionary: foreign.id)
            #expect(await errorCode { _ = try await storage.append(topic: "conf", partition: 0, batch: stranger) } == .unknownDictionary)
            #expect(try storage.offsets(topic: "conf", partition: 0).nextOffset == before)
            // Its own dictionary, and none, are stored as ever; everything stored reads back.
            let mine = try RecordBatch(timestamp: 1_700_000_000_000, values: values, codec: .zstd).encoded(dictionary: own.id)
            _ = try await storage.append(topic: "conf", partition: 0, batch: mine)
            _ = try await storage.append(topic: "conf", partition: 0, batch: try RecordBatch(timestamp: 1_700_000_000_000, values: values, codec: .zstd).encoded())
            // Two frames, the second with the other topic's dictionary (a reader would attach the
            // first frame's to both): refused too, whatever the first frame names.
            let plain = try RecordBatch(timestamp: 1_700_000_000_000, values: values).encoded()
            let section = Array(plain[RecordBatchLayout.recordsAt...])
            let half = section.count / 2
            for first in [own.id, nil] as [UInt32?] {
                let frames = try Zstd.compress(Array(section[..<half]), dictionary: first) + Zstd.compress(Array(section[half...]), dictionary: foreign.id)
                let mixed = Self.zstdBatch(header: Array(plain[..<RecordBatchLayout.recordsAt]), section: frames)
                let refused = await errorCode { _ = try await storage.append(topic: "conf", partition: 0, batch: mixed) }
                #expect(refused == .unknownDictionary || refused == .corruptBatch, "first frame \(String(describing: first)): \(String(describing: refused))")
            }
            let after = try storage.offsets(topic: "conf", partition: 0).nextOffset
            try await storage.deleteTopic("other")
            #expect(try storage.verify().problems.isEmpty)
            #expect(try storage.offsets(topic: "conf", partition: 0).nextOffset == after)
        }
    }

    /// A batch of `header` (an uncompressed batch's) with `section` as its zstd records.
    static func zstdBatch(header: [UInt8], section: [UInt8]) -> [UInt8] {
        var bytes = header + section
        var attributes = Int16(bytes[RecordBatchLayout.attributesAt]) << 8 | Int16(bytes[RecordBatchLayout.attributesAt + 1])
        attributes |= 4
        bytes[RecordBatchLayout.attributesAt] = UInt8(truncatingIfNeeded: attributes >> 8)
        bytes[RecordBatchLayout.attributesAt + 1] = UInt8(truncatingIfNeeded: attributes)
        let length = UInt32(bytes.count - RecordBatchLayout.lengthPrefixBytes)
        for position in 0..<4 { bytes[RecordBatchLayout.batchLengthAt + position] = UInt8(truncatingIfNeeded: length >> (24 - 8 * UInt32(position))) }
        let crc = bytes.withUnsafeBytes { raw in CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[RecordBatchLayout.attributesAt...])) }
        for position in 0..<4 { bytes[RecordBatchLayout.crcAt + position] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * UInt32(position))) }
        return bytes
    }

    @Test func aTrainingStaysWithinItsBounds() async throws {
        try await withStorage { storage, _ in
            try await fill(storage, "conf", Self.events(300))
            #expect(await errorCode { _ = try await storage.trainDictionary(topic: "conf", samples: 0) } == .invalidConfig)
            #expect(await errorCode { _ = try await storage.trainDictionary(topic: "conf", samples: 1_000_000) } == .invalidConfig)
            #expect(await errorCode { _ = try await storage.trainDictionary(topic: "conf", bytes: 100) } == .invalidConfig)
            #expect(await errorCode { _ = try await storage.trainDictionary(topic: "nope") } == .unknownTopic)
            // One at a time: a second request while one runs is refused, and may be retried.
            storage.training.withLock { $0 = true }
            #expect(await errorCode { _ = try await storage.trainDictionary(topic: "conf") } == .limitReached)
            storage.training.withLock { $0 = false }
            #expect(try await storage.trainDictionary(topic: "conf", samples: 300, bytes: 2_048).dictionary.version == 1)
            // Values over the sample size limit are not samples: too few remain.
            let large = String(repeating: "x", count: Storage.dictionarySampleValueBytesMax + 1)
            _ = try await storage.createTopic("blobs", partitions: 1)
            for _ in 0..<120 { _ = try await storage.append(topic: "blobs", partition: 0, batch: batch([large])) }
            #expect(await errorCode { _ = try await storage.trainDictionary(topic: "blobs") } == .invalidRequest)
            #expect(try storage.recentValues(topic: "blobs", count: 100).isEmpty)
            // Sampling stops at the byte bound: the values read stay within it.
            let big = String(repeating: "y", count: 60 << 10)
            _ = try await storage.createTopic("big", partitions: 1)
            for _ in 0..<300 { _ = try await storage.append(topic: "big", partition: 0, batch: batch([big])) }
            let read = try storage.recentValues(topic: "big", count: 300)
            #expect(read.count == Storage.dictionarySampleBytesMax / (60 << 10))
            #expect(read.reduce(0) { $0 + $1.count } <= Storage.dictionarySampleBytesMax)
        }
    }
}
