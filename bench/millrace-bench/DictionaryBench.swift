import ArgumentParser
import Foundation
import MillraceFormat

/// `millrace-bench dictionary`: how small confirmations from `millrace generate` are stored —
/// the records section of a one-record batch and the stored bytes per record of 100-record
/// batches, plain, with zstd, and with zstd and a dictionary trained on other events of the
/// same generator (trained on the first `--samples`, measured on the `--measure` after them).
struct DictionaryBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dictionary", abstract: "Small events stored small: zstd with trained dictionaries.")

    @Option(help: "Events to train on.") var samples = 10_000
    @Option(help: "Events to measure on (after the training ones).") var measure = 5_000
    @Option(help: "Dictionary sizes to try, in bytes, comma-separated.") var sizes = "16384,32768,65536"
    @Option(help: "zstd levels to try, comma-separated.") var levels = "3,9,15,19"
    @Flag(help: "Train with the slower, more thorough parameter search.") var thorough = false
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() throws {
        let events = try Self.confirmations(count: samples + measure)
        let training = Array(events.prefix(samples))
        let measured = Array(events.dropFirst(samples))
        let averageValue = Double(measured.reduce(0) { $0 + $1.count }) / Double(measured.count)
        var rows: [[String]] = []
        func add(_ name: String, dictionaryBytes: Int, level: Int32, dictionary: UInt32?) throws {
            var started = monotonicSeconds()
            let single = try Self.sectionBytes(measured, level: level, dictionary: dictionary)
            let singleMicros = (monotonicSeconds() - started) * 1e6 / Double(measured.count)
            started = monotonicSeconds()
            let hundred = try Self.storedBytesPerRecord(measured, perBatch: 100, level: level, dictionary: dictionary)
            let hundredMicros = (monotonicSeconds() - started) * 1e6 / Double(measured.count)
            if json {
                print(
                    Report.jsonLine([
                        "bench": "dictionary", "case": name, "dictionary_bytes": dictionaryBytes, "level": Int(level), "one_record_section_bytes": single,
                        "stored_bytes_per_record_b100": hundred, "value_bytes": averageValue, "one_record_encode_us": singleMicros,
                        "b100_encode_us_per_record": hundredMicros,
                    ]))
            }
            rows.append([
                name, dictionaryBytes > 0 ? "\(dictionaryBytes)" : "-", "\(level)", String(format: "%.1f", single), String(format: "%.1f", singleMicros),
                String(format: "%.1f", hundred), String(format: "%.2f", hundredMicros),
            ])
        }
        try add("zstd", dictionaryBytes: 0, level: 3, dictionary: nil)
        for size in sizes.split(separator: ",").compactMap({ Int($0) }) {
            let started = monotonicSeconds()
            let dictionary = try Zstd.trainDictionary(samples: training, capacity: size, thorough: thorough)
            FileHandle.standardError.write(Data(String(format: "  trained %d bytes in %.2f s\n", dictionary.count, monotonicSeconds() - started).utf8))
            let id = try ZstdDictionaries.shared.add(dictionary)
            for level in levels.split(separator: ",").compactMap({ Int32($0) }) {
                try add("zstd+dictionary", dictionaryBytes: dictionary.count, level: level, dictionary: id)
            }
        }
        if !json {
            print(
                "millrace-bench dictionary: production confirmations from `millrace generate` (\(String(format: "%.0f", averageValue)) B of JSON on average); trained on \(samples), measured on the next \(measure)"
            )
            print(
                "ONE-RECORD SECTION: a one-record batch's records section as stored (the 61-byte batch header comes on top; plain: \(String(format: "%.1f", try Self.sectionBytes(measured, level: 0, dictionary: nil, compress: false))) B)"
            )
            print("B100 STORED: bytes stored per record in batches of 100, batch header included")
            Report.printTable(["case", "dictionary", "level", "one-record section B", "encode µs", "b100 stored B/record", "encode µs/record"], rows)
        }
    }

    /// The records section of one-record batches, on average.
    static func sectionBytes(_ values: [[UInt8]], level: Int32, dictionary: UInt32?, compress: Bool = true) throws -> Double {
        var total = 0
        for value in values {
            let batch = RecordBatch(timestamp: 1_700_000_000_000, values: [value], codec: compress ? .zstd : .none)
            total += try batch.encoded(compressionLevel: level, dictionary: dictionary).count - RecordBatchLayout.recordsAt
        }
        return Double(total) / Double(values.count)
    }

    /// Whole stored batches of `perBatch` records, per record.
    static func storedBytesPerRecord(_ values: [[UInt8]], perBatch: Int, level: Int32, dictionary: UInt32?) throws -> Double {
        var total = 0
        for start in stride(from: 0, to: values.count, by: perBatch) {
            let batch = RecordBatch(timestamp: 1_700_000_000_000, values: Array(values[start..<min(values.count, start + perBatch)]), codec: .zstd)
            total += try batch.encoded(compressionLevel: level, dictionary: dictionary).count
        }
        return Double(total) / Double(values.count)
    }

    /// Production confirmations from the `millrace` binary beside this one.
    static func confirmations(count: Int) throws -> [[UInt8]] {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("millrace").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["generate", "--count", "\(count)", "--type", "production.confirmation", "--seed", "7"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return data.split(separator: UInt8(ascii: "\n")).map { Array($0) }
    }
}
