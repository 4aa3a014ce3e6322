import MillraceFormat
import ArgumentParser
import Foundation
import MillraceClient

/// One timed durable produce through the Millrace client to a release `millrace serve`: the
/// records each bench compares (with and without dedup, with and without an index), with
/// the server's and this process's CPU and the server's bytes written per record.
struct ProducePass {
    var seconds: Double
    var count: Int
    var bytes: Int
    /// Records the broker answered as duplicates (not an error here).
    var duplicates: Int
    var serverMicros: Double
    var clientMicros: Double
    var writtenPerRecord: Double
    var handedPerRecord: Double

    var recordsPerSecond: Double { Double(count) / seconds }

    func result(name: String, note: String) -> BenchResult {
        BenchResult(
            name: name, records: count, bytes: bytes, seconds: seconds,
            fields: [
                "server_cpu_us_per_record": serverMicros, "client_cpu_us_per_record": clientMicros, "disk_bytes_written_per_record": writtenPerRecord,
                "write_call_bytes_per_record": handedPerRecord, "duplicates": duplicates,
            ],
            note: note
                + String(
                    format: "; CPU µs/record: server %.2f, client %.2f; %.0f B written/record (%.0f B through write calls)", serverMicros, clientMicros,
                    writtenPerRecord, handedPerRecord))
    }

    /// Sends `count` records (`record(i)`, keyed by `key(i)`) to `topic` and waits for every
    /// acknowledgement; any failure but a duplicate stops the bench. Progress goes to stderr
    /// every million records of a run of two million or more when `progress`.
    static func run(
        client: MillraceClient, server: ServerProcess, topic: String, count: Int, progress: Bool, key: (Int) -> [UInt8]? = { _ in nil },
        record: (Int) -> [UInt8]
    ) async throws -> ProducePass {
        let producer = Producer(client: client)
        let failures = Locked<[String]>([])
        let duplicates = Locked(0)
        let cpu = server.cpuSeconds
        let clientCPU = ownCPUSeconds()
        let written = server.bytesWritten
        let handed = server.bytesHandedToWrite
        let started = monotonicSeconds()
        var bytes = 0
        for index in 0..<count {
            let value = record(index)
            bytes += value.count
            try await producer.send(topic: topic, key: key(index), value: value) { result in
                switch result {
                case .success: break
                case .failure(is RecordDuplicate): duplicates.withLock { $0 += 1 }
                case .failure(let error): failures.withLock { if $0.count < 3 { $0.append("\(error)") } }
                }
            }
            if progress, count >= 2_000_000, index % 1_000_000 == 999_999 {
                FileHandle.standardError.write(Data("  \(topic): \(index + 1) of \(count) sent\n".utf8))
            }
        }
        try await producer.flush()
        let seconds = monotonicSeconds() - started
        guard failures.withLock({ $0 }).isEmpty else { throw ValidationError("not acknowledged in \(topic): \(failures.withLock { $0 })") }
        return ProducePass(
            seconds: seconds, count: count, bytes: bytes, duplicates: duplicates.withLock { $0 },
            serverMicros: (server.cpuSeconds - cpu) * 1e6 / Double(count), clientMicros: (ownCPUSeconds() - clientCPU) * 1e6 / Double(count),
            writtenPerRecord: Double(server.bytesWritten - written) / Double(count),
            handedPerRecord: Double(server.bytesHandedToWrite - handed) / Double(count))
    }
}
