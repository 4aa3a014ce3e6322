import Foundation
import MillraceFormat
import MillraceStorage
import TestSupport
import Testing

/// Trained zstd dictionaries from the command line: producers in other processes compress
/// with the topic's dictionary once trained, consumers in other processes fetch the ones
/// they meet, and every record reads back as produced.
@Suite(.serialized) struct DictionaryCLITests {
    let cli = CLITests()

    /// The dictionary id each stored batch's zstd frame carries, in offset order.
    func frameDictionaries(_ storage: Storage, topic: String, partitions: Int32) throws -> [(offset: Int64, id: UInt32)] {
        var found: [(Int64, UInt32)] = []
        for partition in 0..<partitions {
            try storage.forEachBatch(topic: topic, partition: partition, from: 0) { header, batch in
                found.append((header.baseOffset, Zstd.dictionaryID(ofFrame: UnsafeRawBufferPointer(rebasing: batch[RecordBatchLayout.recordsAt...]))))
                return true
            }
        }
        return found
    }

    @Test func producersCompressWithTheTrainedDictionaryAndConsumersFetchIt() async throws {
        try await withTestBroker { broker, storage in
            func run(_ arguments: [String], input: String? = nil) throws -> String {
                let result = try cli.millrace(arguments + ["-b", broker], input: input)
                #expect(result.status == 0, "\(arguments): \(result.stderr)")
                return result.stdout
            }
            let generated = try cli.millrace(["generate", "--count", "3000", "--type", "production.confirmation", "--seed", "3"])
            let lines = generated.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 3_000)
            _ = try run(["topic", "create", "conf", "-p", "1", "--compression", "zstd"])

            // Too few records to train on: a clear refusal, nothing stored.
            _ = try run(["produce", "conf"], input: lines[0..<50].joined(separator: "\n") + "\n")
            let early = try cli.millrace(["topic", "train-dictionary", "conf", "-b", broker])
            #expect(early.status != 0 && early.stderr.contains("needs at least 100"), "\(early.stderr)")
            let unknown = try cli.millrace(["topic", "train-dictionary", "nope", "-b", broker])
            #expect(unknown.status != 0 && unknown.stderr.contains("does not exist"), "\(unknown.stderr)")

            _ = try run(["produce", "conf"], input: lines[50..<2_000].joined(separator: "\n") + "\n")
            let trained = try JSONSerialization.jsonObject(with: Data(run(["topic", "train-dictionary", "conf", "--json"]).utf8)) as! [String: Any]
            let id = UInt32(trained["id"] as! Int)
            let sizes = trained["one_record_batch_bytes"] as! [String: Double]
            #expect(trained["version"] as? Int == 1 && trained["samples"] as? Int == 2_000)
            #expect(sizes["zstd_with_dictionary"]! < sizes["zstd"]! / 2, "\(sizes)")
            #expect(try run(["topic", "describe", "conf"]).contains("dictionary: zstd dictionary \(id) (version 1, "))

            // A new producer process picks the dictionary up; batches before it have none.
            _ = try run(["produce", "conf"], input: lines[2_000...].joined(separator: "\n") + "\n")
            let frames = try frameDictionaries(storage, topic: "conf", partitions: 1)
            #expect(frames.allSatisfy { $0.offset < 2_000 ? $0.id == 0 : $0.id == id }, "\(frames)")
            #expect(frames.contains { $0.id == id })

            // Trained again: version 2; a consumer process meets both and fetches both.
            let again = try JSONSerialization.jsonObject(with: Data(run(["topic", "train-dictionary", "conf", "--json"]).utf8)) as! [String: Any]
            #expect(again["version"] as? Int == 2 && UInt32(again["id"] as! Int) != id)
            _ = try run(["produce", "conf"], input: lines[0..<10].joined(separator: "\n") + "\n")
            let consumed = try run(["consume", "conf", "--format", "value"]).split(separator: "\n").map(String.init)
            #expect(consumed == lines + lines[0..<10])
            #expect(try frameDictionaries(storage, topic: "conf", partitions: 1).last?.id == UInt32(again["id"] as! Int))
        }
    }
}
