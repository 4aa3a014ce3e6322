import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import NIOCore

/// `millrace-bench longpoll`: the produce rate with many long-poll fetches parked on the
/// topic's partitions, against the same produce with none, on a release `millrace serve`.
/// The parked fetches ask for more bytes than the run produces into their partitions, so they
/// stay parked the whole time and every commit wakes the ones on partitions it moved.
struct LongPollBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "longpoll", abstract: "Produce rate with parked long-poll fetches against none.")

    @Option(help: "Partitions of the topic.") var partitions = 100
    @Option(help: "Parked fetches (one connection each).") var parked = 1_000
    @Option(help: "Partitions each parked fetch names.") var partitionsPerFetch = 10
    @Option(help: "Records produced in each case (256-byte values, spread over the partitions).") var records = 100_000
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() async throws {
        let directory = NSTemporaryDirectory() + "millrace-longpoll-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ServerProcess(directory: directory)
        defer { server.stop() }
        let port = server.port
        if json {
            print(
                Report.jsonLine(
                    Report.conditions(extra: [
                        "bench": "longpoll", "partitions": partitions, "parked": parked, "partitions_per_fetch": partitionsPerFetch, "records": records,
                    ])))
        }
        let admin = MillraceClient(host: "127.0.0.1", port: port)
        try await admin.createTopic(CreateTopicRequest(name: "lp", partitions: Int32(partitions)))
        let none = try await produce(port: port)

        // Each fetch waits from the log end for far more bytes than the run brings it.
        var ends: [Int32: Int64] = [:]
        for entry in try await admin.listOffsets("lp", partitions: (0..<Int32(partitions)).map { $0 }, timestamp: ListOffsetsPartition.latest) {
            ends[entry.partition] = entry.offset
        }
        var sockets: [Int32] = []
        for index in 0..<parked {
            let named = (0..<partitionsPerFetch).map { Int32((index * partitionsPerFetch + $0) % partitions) }
            let request = FetchRequest(
                maxWaitMs: Limits.fetchWaitMsMax, minBytes: Int32(Limits.fetchBytesMax), maxBytes: Int32(Limits.fetchBytesMax),
                topics: [TopicEntries(topic: "lp", named.map { FetchPartition(partition: $0, offset: ends[$0] ?? 0, maxBytes: 1 << 20) })])
            var frame = ByteBuffer()
            RequestCodec.encode(.fetch(request), correlationID: 1, into: &frame)
            let descriptor = try FloodBench.connect(port: port)
            let bytes = Array(frame.readableBytesView)
            _ = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            sockets.append(descriptor)
        }
        try await Task.sleep(nanoseconds: 1_000_000_000)  // let the broker park them
        let withParked = try await produce(port: port)
        for descriptor in sockets { close(descriptor) }
        await admin.close()

        let results = [
            BenchResult(name: "produce-no-parked", records: records, bytes: records * 256, seconds: none, note: "nothing waiting"),
            BenchResult(
                name: "produce-with-parked", records: records, bytes: records * 256, seconds: withParked, fields: ["parked": parked],
                note: "\(parked) fetches parked, each on \(partitionsPerFetch) of the \(partitions) partitions"),
        ]
        if json {
            for result in results { print(Report.jsonLine(result.json)) }
        } else {
            print(
                "millrace-bench longpoll: \(records) records of 256 B over \(partitions) partitions, one producer; server and client share this machine's \(ProcessInfo.processInfo.activeProcessorCount) cores"
            )
            Report.printTable(results)
        }
    }

    /// Seconds to produce `records` 256-byte records, round-robin over the partitions, acknowledged.
    func produce(port: Int) async throws -> Double {
        let client = MillraceClient(host: "127.0.0.1", port: port)
        let producer = Producer(client: client)
        let value = [UInt8](repeating: 0x61, count: 256)
        let started = monotonicSeconds()
        for index in 0..<records { try await producer.send(topic: "lp", partition: Int32(index % partitions), value: value) { _ in } }
        try await producer.flush()
        let seconds = monotonicSeconds() - started
        await client.close()
        return seconds
    }
}
