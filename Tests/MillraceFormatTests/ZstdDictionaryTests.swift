import Dispatch
import MillraceFormat
import Synchronization
import Testing

/// zstd with trained dictionaries: the frame carries the dictionary's id, a frame naming one
/// this process does not hold is refused with a clear error, and bad input never traps.
@Suite struct ZstdDictionaryTests {
    /// Small JSON events alike in shape, different in values (seeded, so the same each run).
    static func events(_ count: Int, seed: UInt64) -> [[UInt8]] {
        var state = seed
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        return (0..<count).map { index in
            let lot = String(next() % 100_000)
            let line =
                #"{"type":"production.confirmation","event_id":"E-\#(next())-\#(index)","plant":"DE0\#(next() % 4)","order_id":"0001\#(next() % 1_000_000)","#
                + #""lot_id":"L\#(lot)","yield_qty":\#(next() % 500),"uom":"PC","final":\#(next() % 2 == 0)}"#
            return Array(line.utf8)
        }
    }

    @Test func framesCarryTheIdAndRoundTrip() throws {
        let dictionary = try Zstd.trainDictionary(samples: Self.events(2_000, seed: 1), capacity: 8_192)
        let id = try ZstdDictionaries.shared.add(dictionary)
        #expect(try ZstdDictionaries.shared.add(dictionary) == id)  // again: the same
        for event in Self.events(50, seed: 2) {
            let plain = try Zstd.compress(event)
            let small = try Zstd.compress(event, dictionary: id)
            #expect(small.count < plain.count)
            #expect(small.withUnsafeBytes { Zstd.dictionaryID(ofFrame: $0) } == id)
            #expect(plain.withUnsafeBytes { Zstd.dictionaryID(ofFrame: $0) } == 0)
            #expect(try small.withUnsafeBytes { try Zstd.decompress($0, maxBytes: 1 << 20) } == event)
        }
        // A batch compressed with it verifies and decodes.
        let batch = try RecordBatch(timestamp: 1_700_000_000_000, values: Self.events(3, seed: 3), codec: .zstd).encoded(dictionary: id)
        #expect(try RecordBatch.verify(batch, depth: .records).recordCount == 3)
        #expect(try RecordBatch.decode(batch).records.map(\.value) == Self.events(3, seed: 3).map { $0 })
    }

    /// libzstd before 1.5.6 trains through a process-wide pointer (its sort comparator's
    /// context), so two trainings at once — two topics trained together on one broker, or
    /// tests in parallel — could crash the process. Trainings are one at a time now: eight
    /// threads training different samples, three rounds, each gets the dictionary its samples
    /// make alone.
    @Test func trainingsAtOnceAreSafe() throws {
        let samples = (0..<8).map { Self.events(400 + 50 * $0, seed: 100 + UInt64($0)) }
        let alone = try samples.map { try Zstd.trainDictionary(samples: $0, capacity: 2_048) }
        let made = Mutex([[UInt8]?](repeating: nil, count: 8))
        for _ in 0..<3 {
            DispatchQueue.concurrentPerform(iterations: 8) { index in
                let dictionary = try? Zstd.trainDictionary(samples: samples[index], capacity: 2_048)
                made.withLock { $0[index] = dictionary }
            }
            let differing = made.withLock { made in (0..<8).filter { made[$0] != alone[$0] } }
            #expect(differing.isEmpty, "trainings \(differing) made another dictionary than alone")
        }
    }

    @Test func aFrameNamingAnUnknownDictionaryIsRefused() throws {
        let dictionary = try Zstd.trainDictionary(samples: Self.events(2_000, seed: 4), capacity: 8_192)
        let id = try ZstdDictionaries.shared.add(dictionary)
        var frame = try Zstd.compress(Self.events(1, seed: 5)[0], dictionary: id)
        // Frame header: magic (4), descriptor (1), then, in a single-segment frame with a
        // 4-byte dictionary id field, the id.
        let descriptor = frame[4]
        #expect(descriptor & 3 == 3 && descriptor & 0x20 != 0)
        let other = id &+ 1
        frame.replaceSubrange(5..<9, with: withUnsafeBytes(of: other.littleEndian, Array.init))
        #expect(!ZstdDictionaries.shared.contains(other))
        #expect { try frame.withUnsafeBytes { try Zstd.decompress($0, maxBytes: 1 << 20) } } throws: {
            ($0 as? MillraceError)?.code == .unknownDictionary
        }
        #expect(throws: MillraceError.self) { try Zstd.compress([1, 2, 3], dictionary: other) }
    }

    @Test func badTrainingInputIsAnErrorNotATrap() throws {
        #expect(throws: MillraceError.self) { try Zstd.trainDictionary(samples: [], capacity: 8_192) }
        #expect(throws: MillraceError.self) { try ZstdDictionaries.shared.add(Array(repeating: 7, count: 300)) }
        #expect(throws: MillraceError.self) { try ZstdDictionaries.shared.add([]) }
    }
}
