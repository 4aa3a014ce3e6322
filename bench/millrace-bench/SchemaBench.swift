import MillraceFormat
import ArgumentParser
import CSimdjson
import Foundation
import MillraceClient
import MillraceSchema
import MillraceWire

/// `millrace-bench schema`: one core parsing and validating production confirmations
/// (300–400 bytes) against the shipped example schema, against parsing alone in the same run.
struct SchemaBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "schema", abstract: "JSON parse and schema validation, one core.")

    @Option(help: "Distinct records (each is validated --rounds times).") var records = 100_000
    @Option(help: "Passes over the records per case.") var rounds = 5
    @Option(help: "The schema file.") var schema = "examples/production-confirmation.schema.json"
    @Option(help: "Records per durable produce run against a release broker, with and without a schema (0: skip).") var produce = 400_000
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() async throws {
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
        let simdjson = millrace_simdjson_new()
        defer { millrace_simdjson_free(simdjson) }
        let results = [
            measure("parse", valid, note: "MillraceSchema scanner: a tape the validator walks") { record in (try? tape.parse(record)) != nil },
            measure("simdjson-parse", valid, note: "simdjson 3.0.1 DOM parse (libsimdjson-dev), unpadded input") { record in
                record.withUnsafeBufferPointer { millrace_simdjson_parse(simdjson, $0.baseAddress, $0.count) == 0 }
            },
            measure("simdjson-walk", valid, note: "simdjson parse + visit every value (what validation needs)") { record in
                record.withUnsafeBufferPointer { millrace_simdjson_walk(simdjson, $0.baseAddress, $0.count) > 0 }
            },
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
        var produced: [BenchResult] = []
        if produce > 0 { produced = try await produceRuns(text: Array(text), valid: valid) }
        if json {
            for result in results + produced { print(Report.jsonLine(result.json)) }
        } else {
            print("millrace-bench schema: \(records) distinct confirmations (mean \(bytes / records) B) x \(rounds) rounds, one thread")
            Report.printTable(results)
            if !produced.isEmpty {
                print()
                print("durable produce through a release `millrace serve` on loopback, one producer, key = order_id, 4 partitions; runs alternate")
                Report.printTable(produced)
                let plain = produced.filter { $0.name == "produce-no-schema" }.map(\.recordsPerSecond)
                let checked = produced.filter { $0.name == "produce-validated" }.map(\.recordsPerSecond)
                let pairs = zip(plain, checked).map { $0 > 0 ? $1 / $0 : 0 }
                print(
                    String(format: "validated / no schema: best of each %.2f; each pair ", (checked.max() ?? 0) / max(plain.max() ?? 1, 1))
                        + pairs.map { String(format: "%.2f", $0) }.joined(separator: ", "))
            }
        }
    }

    /// The same confirmations produced to a topic without a schema and to one with it,
    /// alternating, each run on a fresh topic.
    func produceRuns(text: [UInt8], valid: [[UInt8]]) async throws -> [BenchResult] {
        let directory = NSTemporaryDirectory() + "millrace-schema-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ServerProcess(directory: directory)
        defer { server.stop() }
        let client = MillraceClient(host: "127.0.0.1", port: server.port)
        var results: [BenchResult] = []
        for round in 0..<3 {
            for checked in [false, true] {
                let topic = "confirmations-\(checked ? "validated" : "plain")-\(round)"
                try await client.createTopic(CreateTopicRequest(name: topic, partitions: 4))
                if checked { _ = try await client.registerSchema(topic: topic, schema: text) }
                let producer = Producer(client: client)
                let failures = Locked(0)
                let serverCPU = server.cpuSeconds
                let started = monotonicSeconds()
                var bytes = 0
                for index in 0..<produce {
                    let value = valid[index % valid.count]
                    bytes += value.count
                    try await producer.send(topic: topic, key: Array("ORDER-\(index % 9_000)".utf8), value: value) { result in
                        if case .failure = result { failures.withLock { $0 += 1 } }
                    }
                }
                try await producer.flush()
                let seconds = monotonicSeconds() - started
                let serverMicros = (server.cpuSeconds - serverCPU) * 1e6 / Double(produce)
                let failed = failures.withLock { $0 }
                guard failed == 0 else { throw ValidationError("\(failed) records were not acknowledged in \(topic)") }
                results.append(
                    BenchResult(
                        name: checked ? "produce-validated" : "produce-no-schema", records: produce, bytes: bytes, seconds: seconds,
                        fields: ["server_cpu_us_per_record": serverMicros],
                        note: (checked ? "schema checked at the broker, every record" : "same records, topic without a schema")
                            + String(format: "; server CPU %.2f µs/record", serverMicros)))
            }
        }
        await client.close()
        return results
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
