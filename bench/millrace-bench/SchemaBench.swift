import ArgumentParser
import Foundation
import MillraceSchema

/// `millrace-bench schema`: one core parsing and validating production confirmations
/// (300–400 bytes) against the shipped example schema, against parsing alone in the same run.
struct SchemaBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "schema", abstract: "JSON parse and schema validation, one core.")

    @Option(help: "Distinct records (each is validated --rounds times).") var records = 100_000
    @Option(help: "Passes over the records per case.") var rounds = 5
    @Option(help: "The schema file.") var schema = "examples/production-confirmation.schema.json"
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() throws {
        guard let text = FileManager.default.contents(atPath: schema) else {
            throw ValidationError("cannot read \(schema); run from the project directory or pass --schema")
        }
        let compiled = try Schema(json: Array(text))
        var random = SystemRandomNumberGenerator()
        let valid = (0..<records).map { index in Self.confirmation(index, yield: Int.random(in: 0...999, using: &random)) }
        let invalid = (0..<records).map { index in Self.confirmation(index, yield: -Int.random(in: 1...999, using: &random)) }
        let bytes = valid.reduce(0) { $0 + $1.count }
        guard compiled.validate(json: valid[0]).isEmpty, !compiled.validate(json: invalid[0]).isEmpty else {
            throw ValidationError("the generated records do not behave as expected against \(schema)")
        }
        if json { print(Report.jsonLine(Report.conditions(extra: ["bench": "schema", "records": records, "rounds": rounds, "mean_record_bytes": bytes / records]))) }

        var tape = JSONTape()
        func measure(_ name: String, _ inputs: [[UInt8]], note: String, _ body: ([UInt8]) -> Bool) -> BenchResult {
            var passed = 0
            let started = monotonicSeconds()
            for _ in 0..<rounds { for record in inputs where body(record) { passed += 1 } }
            let seconds = monotonicSeconds() - started
            return BenchResult(
                name: name, records: inputs.count * rounds, bytes: bytes * rounds, seconds: seconds, fields: ["passed": passed],
                note: "\(note); \(passed) of \(inputs.count * rounds) passed")
        }
        let results = [
            measure("parse", valid, note: "scan to a tape only") { record in (try? tape.parse(record)) != nil },
            measure("parse+validate", valid, note: "valid confirmations, yes/no") { record in
                (try? tape.parse(record)) != nil && compiled.isValid(tape)
            },
            measure("parse+validate-report", valid, note: "valid confirmations, violations collected") { record in
                (try? tape.parse(record)) != nil && compiled.validate(tape).isEmpty
            },
            measure("invalid-report", invalid, note: "yield_qty < 0, violation messages built") { record in
                (try? tape.parse(record)) != nil && compiled.validate(tape).isEmpty
            },
        ]
        if json {
            for result in results { print(Report.jsonLine(result.json)) }
        } else {
            print("millrace-bench schema: \(records) distinct confirmations (mean \(bytes / records) B) x \(rounds) rounds, one thread")
            Report.printTable(results)
        }
    }

    /// A production confirmation like the ones `millrace generate` writes.
    static func confirmation(_ index: Int, yield: Int) -> [UInt8] {
        let hex = String(UInt64(index) &* 0x9E37_79B9_7F4A_7C15, radix: 16)
        let padded = String(repeating: "0", count: 16 - hex.count) + hex
        let id = "\(padded.prefix(8))-\(padded.dropFirst(8).prefix(4))-4\(padded.dropFirst(12).prefix(3))-8\(padded.prefix(3))-\(padded.suffix(12))"
        let order = String(100_000_000_000 + index % 9_000_000)
        let text = #"{"type":"production.confirmation","event_id":"\#(id)","ts":"2025-11-27T06:\#(String(format: "%02d", index / 60 % 60)):\#(String(format: "%02d", index % 60)).023Z","plant":"DE01","order_id":"\#(order)","operation":"00\#(index % 9 + 1)0","work_center":"WC-CNC-0\#(index % 8 + 1)","material":"MAT-1383-\#(index % 1000)","lot_id":"L2511\#(String(format: "%07d", index % 10_000_000))","serial":"SN-DE01-\#(String(format: "%08d", index))","yield_qty":\#(yield),"scrap_qty":\#(index % 3),"uom":"PC","start_ts":"2025-11-27T05:39:59.023Z","operator":"U1\#(String(format: "%04d", index % 10_000))","final":\#(index % 5 == 0)}"#
        return Array(text.utf8)
    }
}
