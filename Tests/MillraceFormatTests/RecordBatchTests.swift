import MillraceFormat
import Testing
import TestSupport

/// Golden bytes written out field by field from Kafka's RecordBatch v2 specification; the CRC
/// was computed with an independent bitwise CRC-32C.
let goldenBatch = hexBytes(
    """
    00 00 00 00 00 00 00 00  -- baseOffset 0
    00 00 00 4d              -- batchLength 77
    ff ff ff ff              -- partitionLeaderEpoch -1
    02                       -- magic 2
    96 c2 ca 94              -- CRC-32C of attributes...end
    00 00                    -- attributes: no codec, CreateTime
    00 00 00 01              -- lastOffsetDelta 1
    00 00 01 8b cf e5 68 00  -- baseTimestamp 1700000000000
    00 00 01 8b cf e5 68 05  -- maxTimestamp 1700000000005
    ff ff ff ff ff ff ff ff  -- producerId -1
    ff ff                    -- producerEpoch -1
    ff ff ff ff              -- baseSequence -1
    00 00 00 02              -- record count 2
    10 00 00 00 02 6b 02 76 00
    24 00 0a 02 01 0a 68 65 6c 6c 6f 02 06 6c 6f 74 04 4c 31
    """.split(separator: "\n").map { $0.split(separator: "-").first ?? "" }.joined(separator: " "))

let goldenValue = RecordBatch(
    baseTimestamp: 1_700_000_000_000,
    records: [
        Record(offsetDelta: 0, key: Array("k".utf8), value: Array("v".utf8)),
        Record(
            timestampDelta: 5, offsetDelta: 1, key: nil, value: Array("hello".utf8),
            headers: [RecordHeader(key: "lot", value: Array("L1".utf8))]),
    ])

@Suite struct RecordBatchTests {
    @Test func encodesTheGoldenBytes() throws {
        #expect(goldenBatch.count == 89)
        #expect(try goldenValue.encoded() == goldenBatch)
    }

    @Test func decodesTheGoldenBytes() throws {
        let header = try RecordBatch.verify(goldenBatch, depth: .records)
        #expect(header.batchLength == 77)
        #expect(header.crc == 0x96C2_CA94)
        #expect(header.recordCount == 2)
        #expect(header.lastOffset == 1)
        #expect(try RecordBatch.decode(goldenBatch) == goldenValue)
    }

    @Test func roundTripOfGeneratedBatches() throws {
        var generator = SeededGenerator(seed: 2026)
        for round in 0..<300 {
            let batch = randomBatch(&generator, codec: round % 3 == 0 ? .zstd : .none)
            let bytes = try batch.encoded()
            #expect(try RecordBatch.decode(bytes) == batch, "round \(round)")
            #expect(try RecordBatch.verify(bytes, depth: .records).recordCount == Int32(batch.records.count))
        }
    }

    @Test func everyTruncationThrows() throws {
        var generator = SeededGenerator(seed: 5)
        let samples = [goldenBatch, try randomBatch(&generator, codec: .zstd).encoded()]
        for bytes in samples {
            for length in 0..<bytes.count {
                #expect(throws: MillraceError.self) { try RecordBatch.decode(Array(bytes[..<length])) }
            }
        }
    }

    @Test func everyBitFlipIsCaughtOrLandsOutsideTheCRC() throws {
        for bit in 0..<(goldenBatch.count * 8) {
            var bytes = goldenBatch
            bytes[bit / 8] ^= 1 << (bit % 8)
            let byte = bit / 8
            let outsideCRC = byte < RecordBatchLayout.batchLengthAt
                || (byte >= RecordBatchLayout.partitionLeaderEpochAt && byte < RecordBatchLayout.magicAt)
            if outsideCRC {
                // baseOffset and partitionLeaderEpoch are not covered: the broker rewrites them.
                #expect(try RecordBatch.decode(bytes).records == goldenValue.records)
            } else {
                #expect(throws: MillraceError.self, "bit \(bit)") { try RecordBatch.decode(bytes) }
            }
        }
    }

    /// Corrupt records behind a valid CRC (as a buggy producer would send) must throw, never trap.
    @Test func mutatedRecordsWithAValidCRCNeverCrash() throws {
        var generator = SeededGenerator(seed: 99)
        var rejected = 0
        for _ in 0..<1_500 {
            var bytes = try randomBatch(&generator, codec: .none).encoded()
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let index = Int.random(in: RecordBatchLayout.recordsAt..<bytes.count, using: &generator)
                bytes[index] = UInt8.random(in: 0...255, using: &generator)
            }
            let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.attributesAt...])) }
            bytes.withUnsafeMutableBytes { $0.storeBytes(of: crc.bigEndian, toByteOffset: RecordBatchLayout.crcAt, as: UInt32.self) }
            do { _ = try RecordBatch.decode(bytes) } catch is MillraceError { rejected += 1 }
        }
        #expect(rejected > 100)  // most mutations land in values and stay valid
    }

    @Test func randomGarbageNeverCrashes() {
        var generator = SeededGenerator(seed: 3)
        for _ in 0..<5_000 {
            let length = Int.random(in: 0...200, using: &generator)
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = try? RecordBatch.decode(bytes)
        }
    }

    @Test func headerChecksNameTheProblem() throws {
        var wrongMagic = goldenBatch
        wrongMagic[RecordBatchLayout.magicAt] = 1
        #expect(throws: MillraceError(.corruptBatch, "magic byte is 1; only RecordBatch v2 (magic 2) is accepted")) {
            try RecordBatch.verify(wrongMagic)
        }
        var gzip = goldenValue
        gzip.attributes = RecordBatchAttributes(codec: .gzip)
        #expect(throws: MillraceError.self) { try gzip.encoded() }
        let empty = try RecordBatch(baseTimestamp: 0, records: []).encoded()
        #expect { try RecordBatch.verify(empty) } throws: { ($0 as? MillraceError)?.code == .invalidRecordCount }
        let bigKey = try RecordBatch(
            timestamp: 0, values: [[1]], keys: [[UInt8](repeating: 1, count: Limits.keyBytesMax + 1)]
        ).encoded()
        #expect { try RecordBatch.verify(bigKey, depth: .records) } throws: { ($0 as? MillraceError)?.code == .keyTooLarge }
    }

    @Test func patchingTheBaseOffsetKeepsTheCRC() throws {
        var bytes = goldenBatch
        bytes.withUnsafeMutableBytes { RecordBatch.patchBaseOffset(1234, in: $0) }
        let header = try RecordBatch.verify(bytes, depth: .records)
        #expect(header.baseOffset == 1234)
        #expect(header.lastOffset == 1235)
    }

    @Test func stampingLogAppendTimeRecomputesTheCRC() throws {
        var bytes = goldenBatch
        bytes.withUnsafeMutableBytes { RecordBatch.stampLogAppendTime(42, in: $0) }
        let header = try RecordBatch.verify(bytes, depth: .records)
        #expect(header.attributes.timestampType == .logAppend)
        #expect(header.maxTimestamp == 42)
        #expect(RecordBatch.recordTimestamp(header: header, timestampDelta: 5) == 42)
    }

    @Test func attributesBits() {
        let attributes = RecordBatchAttributes(codec: .zstd, timestampType: .logAppend, isTransactional: true, isControl: true)
        #expect(attributes.rawValue == 0b11_1100)
        #expect(attributes.codec == .zstd)
        #expect(attributes.timestampType == .logAppend)
        #expect(attributes.isTransactional && attributes.isControl)
        #expect(RecordBatchAttributes(rawValue: 7).codec == nil)
    }

    @Test func zstdBatchesCompressAndRejectBombs() throws {
        let values = (0..<1000).map { Array("{\"lot\":\"LOT-\($0 % 10)\",\"qty\":1}".utf8) }
        let plain = try RecordBatch(timestamp: 1, values: values).encoded()
        let compressed = try RecordBatch(timestamp: 1, values: values, codec: .zstd).encoded()
        #expect(compressed.count * 5 < plain.count)
        #expect(try RecordBatch.decode(compressed).records.count == 1000)
        let bomb = try Zstd.compress([UInt8](repeating: 0, count: 4 << 20))
        #expect { try bomb.withUnsafeBytes { try Zstd.decompress($0, maxBytes: 1 << 20) } } throws: {
            ($0 as? MillraceError)?.code == .batchTooLarge
        }
        let garbage: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 1, 2, 3, 4, 5]
        #expect(throws: MillraceError.self) { try garbage.withUnsafeBytes { try Zstd.decompress($0, maxBytes: 1 << 20) } }
    }
}

func randomBatch(_ generator: inout SeededGenerator, codec: CompressionCodec) -> RecordBatch {
    let count = Int.random(in: 1...40, using: &generator)
    func bytes(_ maxCount: Int) -> [UInt8] {
        (0..<Int.random(in: 0...maxCount, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
    var records: [Record] = []
    for index in 0..<count {
        let key: [UInt8]? = Bool.random(using: &generator) ? bytes(24) : nil
        let value: [UInt8]? = Int.random(in: 0..<10, using: &generator) == 0 ? nil : bytes(300)
        let headers = (0..<Int.random(in: 0...3, using: &generator)).map { index in
            RecordHeader(key: "h\(index)", value: Bool.random(using: &generator) ? bytes(8) : nil)
        }
        records.append(
            Record(
                timestampDelta: Int64.random(in: 0...100_000, using: &generator), offsetDelta: Int32(index), key: key, value: value,
                headers: headers))
    }
    return RecordBatch(
        attributes: RecordBatchAttributes(codec: codec), baseTimestamp: Int64.random(in: 0...1 << 42, using: &generator),
        producerId: Int64.random(in: -1...1000, using: &generator), producerEpoch: 0,
        baseSequence: Int32.random(in: -1...1000, using: &generator), records: records)
}

/// Taking records out of a batch without decoding it gives what decoding, filtering and
/// encoding would: every mask, plain and compressed, with keys, headers and large deltas.
@Suite struct RecordBatchKeepingTests {
    @Test func keepingMatchesDecodeFilterEncode() throws {
        var generator = SeededGenerator(seed: 7)
        for codec in [CompressionCodec.none, .zstd] {
            for count in [1, 2, 3, 70, 200] {
                let records = (0..<count).map { index in
                    Record(
                        timestampDelta: Int64(index * 1_000_003), offsetDelta: Int32(index), key: index % 3 == 0 ? nil : Array("k\(index)".utf8),
                        value: Array(String(repeating: "v", count: index % 50).utf8), headers: index % 4 == 0 ? [RecordHeader(key: "h", value: [1, 2])] : [])
                }
                let batch = RecordBatch(attributes: .init(codec: codec), baseTimestamp: 1_700_000_000_000, records: records)
                var original = batch
                original.producerId = 9
                original.baseSequence = 4
                let bytes = try original.encoded()
                for _ in 0..<20 {
                    let keep = (0..<count).map { _ in Bool.random(using: &generator) }
                    let kept = try RecordBatch.keeping(keep, of: bytes)
                    let expected = records.enumerated().filter { keep[$0.offset] }.map(\.element)
                    guard let kept else {
                        #expect(expected.isEmpty)
                        continue
                    }
                    _ = try kept.withUnsafeBytes { try RecordBatch.verify($0, depth: .records) }
                    let decoded = try RecordBatch.decode(kept)
                    #expect(decoded.records.map(\.value) == expected.map(\.value) && decoded.records.map(\.key) == expected.map(\.key))
                    #expect(decoded.records.map(\.headers) == expected.map(\.headers))
                    #expect(decoded.records.map(\.timestampDelta) == expected.map(\.timestampDelta))
                    #expect(decoded.records.map(\.offsetDelta) == (0..<expected.count).map { Int32($0) })
                    #expect(decoded.producerId == 9 && decoded.baseSequence == 4)
                }
            }
        }
        #expect(try RecordBatch.keeping([false], of: RecordBatch(timestamp: 1, values: [[1]]).encoded()) == nil)
        #expect(throws: MillraceError.self) { try RecordBatch.keeping([true, true], of: RecordBatch(timestamp: 1, values: [[1]]).encoded()) }
    }

    /// Reading only some records steps over the others by their lengths and gives exactly
    /// those asked for.
    @Test func aRangeOfRecordsIsReadWithoutTheOthers() throws {
        let values = (0..<300).map { Array(String(repeating: "v\($0)", count: 1 + $0 % 70).utf8) }
        // Every tenth record has no key.
        let bytes = try RecordBatch(timestamp: 5, values: values, keys: values.indices.map { $0 % 10 == 0 ? nil : Array("k\($0)".utf8) }).encoded()
        try bytes.withUnsafeBytes { raw in
            let header = try RecordBatch.verify(raw)
            for range in [Int32(7)...7, 0...0, 250...299, 120...130, 299...400] {
                var seen: [Int32] = []
                try RecordBatch.forEachRecord(in: raw, header: header, deltas: range) { view, _ in
                    seen.append(view.offsetDelta)
                    #expect(view.value.map { Array($0) } == values[Int(view.offsetDelta)])
                    #expect(view.key.map { Array($0) } == (view.offsetDelta % 10 == 0 ? nil : Array("k\(view.offsetDelta)".utf8)))
                }
                #expect(seen == Array(range.clamped(to: 0...299)), "\(range)")
            }
            var none = 0
            try RecordBatch.forEachRecord(in: raw, header: header, deltas: 300...310) { _, _ in none += 1 }
            #expect(none == 0)
            // Where each record starts, and reading one there (a wrong place or delta gives nil).
            let starts = try #require(RecordBatch.recordPositions(raw, header: header))
            #expect(starts.count == 300)
            for delta in [0, 1, 150, 299] {
                let view = try #require(RecordBatch.record(at: starts[delta], delta: Int32(delta), in: raw, header: header))
                #expect(view.value.map { Array($0) } == values[delta])
            }
            #expect(RecordBatch.record(at: starts[5], delta: 6, in: raw, header: header) == nil)
            #expect(RecordBatch.record(at: starts[5] + 1, delta: 5, in: raw, header: header) == nil)
            #expect(RecordBatch.record(at: raw.count + 3, delta: 5, in: raw, header: header) == nil)
        }
        // A length that runs past the batch is refused, not followed.
        var broken = bytes
        broken[RecordBatchLayout.recordsAt] = 0xFE
        broken[RecordBatchLayout.recordsAt + 1] = 0x7F
        try broken.withUnsafeBytes { raw in
            let header = try RecordBatchHeader(parsing: raw)
            #expect(throws: MillraceError.self) { try RecordBatch.forEachRecord(in: raw, header: header, deltas: 5...5) { _, _ in } }
        }
    }
}


/// A `CheckedBatch` is what storage appends without checking again: its checks must refuse
/// exactly what `RecordBatch.verify(depth: .records)` refuses, whether or not it reads the
/// records on the way.
@Suite struct CheckedBatchTests {
    @Test func acceptsExactlyWhatAFullVerifyAccepts() throws {
        var generator = SeededGenerator(seed: 24)
        var (accepted, refused) = (0, 0)
        for round in 0..<1_500 {
            var bytes = try randomBatch(&generator, codec: round % 3 == 0 ? .zstd : .none).encoded()
            if round % 5 != 0 {
                for _ in 0..<Int.random(in: 1...3, using: &generator) {
                    let index = Int.random(in: RecordBatchLayout.recordsAt..<bytes.count, using: &generator)
                    bytes[index] = UInt8.random(in: 0...255, using: &generator)
                }
                let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.attributesAt...])) }
                bytes.withUnsafeMutableBytes { $0.storeBytes(of: crc.bigEndian, toByteOffset: RecordBatchLayout.crcAt, as: UInt32.self) }
            }
            let verified = try? RecordBatch.verify(bytes, depth: .records)
            var seen = 0
            let checked = try? CheckedBatch(checking: bytes, decodeHeaders: true) { _, _ in seen += 1 }
            let plain = try? CheckedBatch(checking: bytes)
            #expect((verified == nil) == (checked == nil) && (verified == nil) == (plain == nil), "round \(round)")
            if let checked, let verified {
                #expect(checked.header == verified && seen == Int(verified.recordCount) && checked.bytes == bytes)
                accepted += 1
            } else {
                refused += 1
            }
        }
        #expect(accepted > 100 && refused > 100)
    }

    @Test func aBadBatchAmongSeveralIsNamedAndFailsThemAll() throws {
        let good = try goldenValue.encoded()
        var bad = good
        bad[bad.count - 1] ^= 0xFF
        guard case .failure(let error) = CheckedBatch.checkAll([good, bad, good]) else {
            Issue.record("a corrupt batch was accepted")
            return
        }
        #expect(error.code == .corruptBatch)
        #expect(error.message.hasPrefix("batch 2 of 3: CRC-32C mismatch"))
        #expect(error.message.hasSuffix("none of the 3 was appended"))
        #expect(throws: MillraceError.self) { try CheckedBatch.checkAll([]).get() }
        let oversized = [UInt8](repeating: 0, count: Limits.batchBytesMax + 1)
        #expect { try CheckedBatch(checking: oversized) } throws: { ($0 as? MillraceError)?.code == .batchTooLarge }
    }
}
