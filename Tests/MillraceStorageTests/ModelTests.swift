import Foundation
import MillraceFormat
import Testing
import TestSupport

@testable import MillraceStorage

/// Seeded random operations against real LMDB, checked after every step against a simple
/// in-memory model. Replay a failure with MILLRACE_MODEL_SEED=<seed printed>; run longer
/// with MILLRACE_MODEL_OPS.
@Suite struct ModelTests {
    struct ModelBatch {
        var base: Int64
        var values: [String]
        var timestamps: [Int64]
        var bytes: Int64
        var maxTimestamp: Int64 { timestamps.max()! }
    }

    struct ModelPartition {
        var logStart: Int64 = 0
        var next: Int64 = 0
        var batches: [ModelBatch] = []
        var bytes: Int64 { batches.reduce(0) { $0 + $1.bytes } }

        func records(from offset: Int64) -> [(offset: Int64, value: String, timestamp: Int64)] {
            batches.flatMap { batch in
                batch.values.indices.map { (batch.base + Int64($0), batch.values[$0], batch.timestamps[$0]) }
            }.filter { $0.offset >= offset }
        }
    }

    struct Model {
        var configs: [String: TopicConfig]
        var partitions: [String: [ModelPartition]]
        var committed: [String: Int64] = [:]

        /// The retention rule written out again, independently of `RetentionPolicy`.
        mutating func applyRetention(now: Int64) {
            for (topic, config) in configs {
                for index in partitions[topic]!.indices {
                    var partition = partitions[topic]![index]
                    while let first = partition.batches.first {
                        let expired = config.retentionMs.map { first.maxTimestamp < now - $0 } ?? false
                        let oversize = config.retentionBytes.map { partition.bytes - first.bytes >= $0 } ?? false
                        guard expired || oversize else { break }
                        partition.batches.removeFirst()
                        partition.logStart = partition.batches.first?.base ?? partition.next
                    }
                    partitions[topic]![index] = partition
                }
            }
        }
    }

    @Test func randomOperationsMatchTheModel() async throws {
        let seed = ProcessInfo.processInfo.environment["MILLRACE_MODEL_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64(UInt32.max))
        let operations = ProcessInfo.processInfo.environment["MILLRACE_MODEL_OPS"].flatMap(Int.init) ?? 2_000
        print("model test seed: \(seed) (MILLRACE_MODEL_SEED=\(seed) replays it), \(operations) operations")
        var random = SeededGenerator(seed: seed)
        let clock = TestClock(1_000_000)
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        var storage = try Storage.open(directory: directory.path, options: testOptions(clock: clock))
        defer { storage.close() }

        let configs = [
            "sized": TopicConfig(retentionBytes: 6_000),
            "timed": TopicConfig(retentionMs: 20_000),
            "kept": TopicConfig(),
        ]
        var model = Model(configs: configs, partitions: [:])
        for (name, config) in configs.sorted(by: { $0.key < $1.key }) {
            let count = Int32(random.next(in: 1...3))
            _ = try await storage.createTopic(name, partitions: count, config: config)
            model.partitions[name] = Array(repeating: ModelPartition(), count: Int(count))
        }
        let topics = configs.keys.sorted()
        let groups = ["erp", "quality", "lake"]

        for step in 0..<operations {
            let context = "seed \(seed) step \(step)"
            let topic = topics[random.next(in: 0...topics.count - 1)]
            let partition = Int32(random.next(in: 0...model.partitions[topic]!.count - 1))
            let state = model.partitions[topic]![Int(partition)]
            switch random.next(in: 0...99) {
            case 0..<40:  // append one or several batches concurrently
                let batches = (0..<random.next(in: 1...3)).map { _ -> (values: [String], timestamps: [Int64], bytes: [UInt8]) in
                    let count = random.next(in: 1...12)
                    let values = (0..<count).map { _ in "v\(random.next(in: 0...999_999))" + String(repeating: "x", count: random.next(in: 0...120)) }
                    let base = clock.nowMilliseconds() - Int64(random.next(in: 0...3_000))
                    let deltas = (0..<count).map { _ in Int64(random.next(in: 0...500)) }
                    let records = values.enumerated().map { Record(timestampDelta: deltas[$0], offsetDelta: Int32($0), value: Array($1.utf8)) }
                    let bytes = try! RecordBatch(baseTimestamp: base, records: records).encoded()
                    return (values, deltas.map { base + $0 }, bytes)
                }
                let current = storage
                let placed = try await withThrowingTaskGroup(of: (Int, AppendResult).self) { group in
                    for (index, batch) in batches.enumerated() {
                        let bytes = batch.bytes
                        group.addTask { (index, try await current.append(topic: topic, partition: partition, batch: bytes)) }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }.sorted { $0.1.baseOffset < $1.1.baseOffset }
                }
                for (index, result) in placed {
                    var partitionModel = model.partitions[topic]![Int(partition)]
                    #expect(result.baseOffset == partitionModel.next, "\(context)")
                    let batch = batches[index]
                    partitionModel.batches.append(
                        ModelBatch(base: result.baseOffset, values: batch.values, timestamps: batch.timestamps, bytes: Int64(batch.bytes.count)))
                    partitionModel.next += Int64(batch.values.count)
                    model.partitions[topic]![Int(partition)] = partitionModel
                }
            case 40..<65:  // read from a random offset near the log
                let offset = Int64(random.next(in: Int(state.logStart) - 2...Int(state.next) + 2))
                let maxBytes = random.next(in: 1...8_000)
                if offset < state.logStart || offset > state.next {
                    #expect(await errorCode { _ = try storage.read(topic: topic, partition: partition, from: offset, maxBytes: maxBytes) } == .offsetOutOfRange, "\(context)")
                } else {
                    let result = try storage.read(topic: topic, partition: partition, from: offset, maxBytes: maxBytes)
                    let got = try values(in: result, from: offset)
                    let expected = state.records(from: offset).prefix(got.count).map(\.value)
                    #expect(got == Array(expected), "\(context)")
                    #expect(result.nextReadOffset == offset + Int64(got.count), "\(context)")
                    #expect(offset == state.next || !got.isEmpty, "\(context): a read inside the log returned nothing")
                    #expect(result.logStartOffset == state.logStart && result.nextOffset == state.next, "\(context)")
                }
            case 65..<78:  // commit an offset, sometimes past the end
                let group = groups[random.next(in: 0...2)]
                let offset = Int64(random.next(in: 0...Int(state.next) + 1))
                let commit = OffsetCommit(group: group, topic: topic, partition: partition, offset: offset)
                if offset > state.next {
                    #expect(await errorCode { try await storage.commitOffsets([commit]) } == .offsetOutOfRange, "\(context)")
                } else {
                    try await storage.commitOffsets([commit])
                    model.committed["\(group)/\(topic)/\(partition)"] = offset
                }
            case 78..<86:  // look up by time
                let target = clock.nowMilliseconds() - Int64(random.next(in: 0...40_000))
                let expected = state.records(from: state.logStart).first { $0.timestamp >= target }
                let answer = try storage.offset(forTimestamp: target, topic: topic, partition: partition)
                #expect(answer == TimestampLookup(offset: expected?.offset ?? state.next, timestamp: expected?.timestamp), "\(context) T=\(target)")
            case 86..<95:  // time passes; retention runs
                clock.advance(by: Int64(random.next(in: 100...4_000)))
                _ = try await storage.enforceRetention()
                model.applyRetention(now: clock.nowMilliseconds())
            case 95..<98:  // restart
                storage.close()
                storage = try Storage.open(directory: directory.path, options: testOptions(clock: clock))
            default:  // the whole picture
                try checkEverything(storage, model, context)
            }
        }
        try checkEverything(storage, model, "seed \(seed) end")
    }

    func checkEverything(_ storage: Storage, _ model: Model, _ context: String) throws {
        for (topic, partitions) in model.partitions {
            for (index, expected) in partitions.enumerated() {
                let offsets = try storage.offsets(topic: topic, partition: Int32(index))
                #expect(offsets.logStartOffset == expected.logStart && offsets.nextOffset == expected.next, "\(context) \(topic)/\(index)")
                #expect(offsets.bytes == expected.bytes && offsets.batchCount == Int64(expected.batches.count), "\(context) \(topic)/\(index)")
                let all = try storage.read(topic: topic, partition: Int32(index), from: expected.logStart, maxBytes: .max)
                #expect(try values(in: all) == expected.records(from: expected.logStart).map(\.value), "\(context) \(topic)/\(index)")
            }
        }
        for (key, offset) in model.committed {
            let parts = key.split(separator: "/")
            let stored = try storage.committedOffset(group: String(parts[0]), topic: String(parts[1]), partition: Int32(parts[2])!)
            #expect(stored?.offset == offset, "\(context) \(key)")
        }
        #expect(try storage.verify().problems.isEmpty, "\(context)")
    }
}
