import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import NIOCore

/// `millrace-bench flood`: clients that pipeline maximum-size fetches and never read their
/// answers, against a release `millrace serve` with default limits. Reports the server's peak
/// anonymous memory, and what a well-behaved consumer gets meanwhile, against the same
/// consumer with no flood in the same run.
struct FloodBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "flood", abstract: "Fetch flood: memory bound and service to others.")

    @Option(help: "Flooding connections.") var flooders = 16
    @Option(help: "Fetch requests each flooder pipelines.") var requests = 100_000
    @Option(help: "Records in the topic (256-byte values).") var records = 400_000
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() async throws {
        let directory = NSTemporaryDirectory() + "millrace-flood-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ServerProcess(directory: directory)
        defer { server.stop() }
        let port = server.port
        if json { print(Report.jsonLine(Report.conditions(extra: ["bench": "flood", "flooders": flooders, "requests": requests, "records": records]))) }
        let admin = MillraceClient(host: "127.0.0.1", port: port)
        try await admin.createTopic(CreateTopicRequest(name: "big", partitions: 4))
        let producer = Producer(client: admin)
        let value = [UInt8](repeating: 0x66, count: 256)
        for _ in 0..<records { try await producer.send(topic: "big", value: value) { _ in } }
        try await producer.flush()

        let baseline = try await consumeAll(port: port)
        let monitor = RSSMonitor(pid: server.process.processIdentifier)
        monitor.start()
        try await Task.sleep(nanoseconds: 200_000_000)  // a few samples before the flood
        let idle = monitor.peak

        var frames = ByteBuffer()
        let everything = FetchRequest(
            maxWaitMs: 0, minBytes: 0, maxBytes: Int32(Limits.fetchBytesMax),
            topics: [TopicEntries(topic: "big", (0..<4).map { FetchPartition(partition: $0, offset: 0, maxBytes: Int32(Limits.fetchBytesMax)) })])
        for index in 0..<requests { RequestCodec.encode(.fetch(everything), correlationID: Int32(truncatingIfNeeded: index), into: &frames) }
        let stream = Array(frames.readableBytesView)
        var sockets: [Int32] = []
        var senders: [Thread] = []
        for _ in 0..<flooders {
            let descriptor = try Self.connect(port: port)
            sockets.append(descriptor)
            let sender = Thread {
                var sent = 0
                while sent < stream.count {
                    let written = stream[sent...].withUnsafeBytes { send(descriptor, $0.baseAddress, min($0.count, 1 << 16), Int32(MSG_NOSIGNAL)) }
                    if written <= 0 { break }
                    sent += written
                }
            }
            sender.start()
            senders.append(sender)
        }
        try await Task.sleep(nanoseconds: 3_000_000_000)  // let the flood reach the broker's limits
        let flooded = try await consumeAll(port: port)
        try await Task.sleep(nanoseconds: 1_000_000_000)
        monitor.stop()
        let peak = monitor.peak
        for descriptor in sockets { shutdown(descriptor, Int32(SHUT_RDWR)); close(descriptor) }
        await admin.close()

        let results = [
            BenchResult(name: "consume-no-flood", records: baseline.records, bytes: baseline.records * 256, seconds: baseline.seconds,
                        note: "a consumer reads the topic from earliest, nothing else running"),
            BenchResult(name: "consume-during-flood", records: flooded.records, bytes: flooded.records * 256, seconds: flooded.seconds,
                        fields: ["flooders": flooders],
                        note: "the same, while \(flooders) connections pipeline \(requests) fetches of 32 MiB each and read nothing"),
            BenchResult(name: "server-anon-rss-flood", records: 0, bytes: 0, seconds: 1,
                        fields: ["idle_anon_mb": idle.anonymous >> 20, "peak_anon_mb": peak.anonymous >> 20, "peak_file_mb": peak.file >> 20],
                        note: "server anonymous memory: \(idle.anonymous >> 20) MB before the flood, peak \(peak.anonymous >> 20) MB during it (target ≤ 300 MB); file-backed (LMDB map) \(peak.file >> 20) MB"),
        ]
        if json {
            for result in results { print(Report.jsonLine(result.json)) }
        } else {
            print("millrace-bench flood: \(records) records of 256 B; \(flooders) flooders; server and clients share this machine's \(ProcessInfo.processInfo.activeProcessorCount) cores; default limits")
            Report.printTable(results)
        }
    }

    func consumeAll(port: Int) async throws -> (records: Int, seconds: Double) {
        let client = MillraceClient(host: "127.0.0.1", port: port)
        let started = monotonicSeconds()
        var count = 0
        for try await _ in Consumer(client: client, topic: "big", from: .earliest, stopAtEnd: true) { count += 1 }
        let seconds = monotonicSeconds() - started
        await client.close()
        return (count, seconds)
    }

    static func connect(port: Int) throws -> Int32 {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var receive = Int32(4096)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &receive, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw MillraceError(.networkError, "connect failed: \(errno)") }
        return descriptor
    }
}
