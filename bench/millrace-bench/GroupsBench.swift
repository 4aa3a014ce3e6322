import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire

/// `millrace-bench groups`: 4 group members drain a topic committing every 1,000 records;
/// then the time for a group to hand a killed member's partitions to the others.
struct GroupsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "groups", abstract: "Consumer-group benchmark over loopback.")

    @Option(help: "Records to drain (256-byte values).") var records = 2_000_000
    @Option(help: "Session timeout of the rebalance case, in ms.") var sessionTimeoutMs: Int32 = 3_000
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func run() async throws {
        let directory = NSTemporaryDirectory() + "millrace-groups-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ServerProcess(directory: directory)
        defer { server.stop() }
        let port = server.port
        let admin = MillraceClient(host: "127.0.0.1", port: port)
        try await admin.createTopic(CreateTopicRequest(name: "events", partitions: 8))
        let producer = Producer(client: admin)
        let value = [UInt8](repeating: 0x63, count: 256)
        for _ in 0..<records { try await producer.send(topic: "events", value: value) { _ in } }
        try await producer.flush()
        if json { print(Report.jsonLine(Report.conditions(extra: ["bench": "groups", "records": records, "partitions": 8]))) }

        // Drain with 4 members, committing in the background (every 5 s, and at the end).
        let consumed = Locked(0)
        let start = monotonicSeconds()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let client = MillraceClient(host: "127.0.0.1", port: port)
                    var configuration = GroupConsumer.Configuration()
                    configuration.stopAtEnd = true
                    let consumer = GroupConsumer(client: client, group: "drain", topic: "events", configuration: configuration)
                    var count = 0
                    for try await _ in consumer { count += 1 }
                    await consumer.close()
                    await client.close()
                    consumed.withLock { $0 += count }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = monotonicSeconds() - start
        let total = consumed.withLock { $0 }
        let described = try await admin.describeGroup("drain")
        let lag = described.offsets.flatMap(\.entries).reduce(Int64(0)) { $0 + $1.lag }
        let drain = BenchResult(
            name: "group-drain-x4", records: total, bytes: total * 256, seconds: elapsed,
            fields: ["msgs_per_s": (Double(total) / elapsed).rounded(), "members": 4, "lag_after": lag],
            note: "4 members, 8 partitions, background commits; \(total) records read (≥ \(records): members that join late re-read uncommitted records), lag after: \(lag)")

        // Rebalance: 3 members following; one is killed (stops without leaving).
        let rebalance = try await rebalanceCase(port: port, admin: admin)
        await admin.close()
        let results = [drain, rebalance]
        if json {
            for result in results { print(Report.jsonLine(result.json)) }
        } else {
            print("millrace-bench groups: \(records) records of 256 B; server and consumers share this machine's \(ProcessInfo.processInfo.activeProcessorCount) cores")
            Report.printTable(results)
        }
    }

    func rebalanceCase(port: Int, admin: MillraceClient) async throws -> BenchResult {
        let session = sessionTimeoutMs
        var configuration = GroupConsumer.Configuration()
        configuration.resetPolicy = .latest
        configuration.sessionTimeoutMs = session
        let members = (0..<2).map { _ -> (MillraceClient, GroupConsumer) in
            let client = MillraceClient(host: "127.0.0.1", port: port)
            return (client, GroupConsumer(client: client, group: "follow", topic: "events", configuration: configuration))
        }
        let tasks = members.map { _, consumer in
            Task {
                do {
                    for try await _ in consumer {}
                } catch {}
            }
        }
        // The third member is a `millrace consume --group --follow` process, killed with
        // SIGKILL: no leave, no more heartbeats.
        let victim = Process()
        victim.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("millrace")
        victim.arguments = ["consume", "events", "--group", "follow", "--from", "latest", "--follow", "--session-timeout", "\(session)ms", "--broker", "127.0.0.1:\(port)"]
        victim.standardOutput = FileHandle.nullDevice
        try victim.run()
        // Wait until all three are in one stable generation.
        var settled: DescribeGroupResponse?
        let settleDeadline = monotonicSeconds() + 30
        while (settled?.members.count ?? 0) < 3 && monotonicSeconds() < settleDeadline {
            try await Task.sleep(nanoseconds: 50_000_000)
            settled = try? await admin.describeGroup("follow")
        }
        let generation = settled?.generation ?? 0
        var described: DescribeGroupResponse
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        let killedAt = monotonicSeconds()
        var handedOver = 0.0
        while monotonicSeconds() - killedAt < Double(session) / 1000 * 4 {
            described = try await admin.describeGroup("follow")
            if described.members.count == 2 && described.generation > generation {
                handedOver = monotonicSeconds() - killedAt
                break
            }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        for (client, consumer) in members {
            await consumer.close()
            await client.close()
        }
        return BenchResult(
            name: "group-rebalance-after-kill", records: 0, bytes: 0, seconds: max(handedOver, 0.000_001),
            fields: ["rebalance_ms": (handedOver * 1000).rounded(), "session_timeout_ms": Int(session)],
            note: handedOver > 0
                ? String(format: "killed member's partitions reassigned %.0f ms after the kill (session timeout %d ms)", handedOver * 1000, session)
                : "not reassigned within 4 session timeouts")
    }
}
