import Foundation
import Glibc
import Logging
import MillraceClient
import MillraceFormat
@testable import MillraceServer
import MillraceWire
import TestSupport
import Testing

@testable import MillraceStorage

/// Log lines a test reads back.
final class CapturedLog: Sendable {
    let lines = Locked<[String]>([])

    var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(log: self) }
    }

    func matching(_ text: String) -> [String] { lines.withLock { $0.filter { $0.contains(text) } } }

    struct CapturingHandler: LogHandler {
        let log: CapturedLog
        var logLevel: Logger.Level = .debug
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { log.lines.withLock { $0.append("\(event.level) \(event.message)") } }
    }
}

/// One HTTP request over a plain socket: the status code and the body.
func httpGet(port: Int, _ path: String, method: String = "GET") throws -> (status: Int, body: String) {
    try httpResponse(to: httpRequest(port: port, path, method: method))
}

/// Sends one request on a connection of its own; `httpResponse` reads the answer. Apart, so a
/// test reads only once the answer may come (a read gives up after 10 s without a byte).
func httpRequest(port: Int, _ path: String, method: String = "GET") throws -> TestClient {
    let client = try TestClient(port: port)
    try client.sendRaw(Array("\(method) \(path) HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".utf8))
    return client
}

func httpResponse(to client: TestClient) throws -> (status: Int, body: String) {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let got = buffer.withUnsafeMutableBytes { recv(client.descriptor, $0.baseAddress, $0.count, 0) }
        if got <= 0 { break }
        bytes += buffer[0..<got]
    }
    let text = String(decoding: bytes, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw MillraceError(.unexpected, "no HTTP response: \(text.prefix(200))") }
    let status = Int(text.split(separator: " ", maxSplits: 2).dropFirst().first ?? "") ?? 0
    return (status, String(text[split.upperBound...]))
}

/// A Prometheus text page read into `name{labels}` → value (labels as the page writes them,
/// sorted by name so a test can spell them).
func prometheusValues(_ page: String) -> [String: Double] {
    var values: [String: Double] = [:]
    for line in page.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        var name = String(line[..<space])
        if let open = name.firstIndex(of: "{"), name.hasSuffix("}") {
            let labels = name[name.index(after: open)..<name.index(before: name.endIndex)].split(separator: ",").sorted()
            name = String(name[..<open]) + "{" + labels.joined(separator: ",") + "}"
        }
        values[name] = value
    }
    return values
}

@Suite(.serialized, .stopsLiveServers) struct OperationsTests {
    /// A parked record sent again is answered with the place it was parked at (the topic's
    /// dedup key): `millrace_quarantined_records_total` counts it once, and the retry is a
    /// duplicate like the valid record's retry beside it.
    @Test func aParkedRecordsRetryIsCountedAsADuplicateNotParkedAgain() async throws {
        let metrics = BrokerMetrics()
        let live = try await LiveServer(configure: { $0.metrics = metrics }, storageOptions: { $0.events = metrics })
        defer { live.remove() }
        let httpPort = try await live.startHTTP()
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "checked", partitions: 1))
        _ = try await client.registerSchema(topic: "checked", schema: Array(#"{"type":"object","properties":{"qty":{"type":"number","minimum":0}}}"#.utf8))
        try await client.setSchemaPolicy(topic: "checked", onInvalid: .quarantine)
        try await client.setDedupPolicy(topic: "checked", key: "json:/id")
        await client.close()
        let wire = try TestClient(port: live.port)
        let records = batchBytes([#"{"id":1,"qty":-1}"#, #"{"id":2,"qty":1}"#])
        var answers: [[RecordOutcome]] = []
        for _ in 0..<2 {
            let response = try wire.call(
                .produce(ProduceRequest(timeoutMs: 5_000, topics: [TopicEntries(topic: "checked", [ProducePartition(partition: 0, records: records)])], version: 2)))
            guard case .produce(let topics) = response.body else { Issue.record("\(response)"); return }
            answers.append(topics.first?.entries.first?.outcomes ?? [])
        }
        #expect(answers[0].map(\.kind) == [.quarantined] && answers[0].map(\.offset) == [0])
        #expect(answers[1].map(\.kind) == [.quarantined, .duplicate] && answers[1].map(\.offset) == [0, 0])
        let values = prometheusValues(try httpGet(port: httpPort, "/metrics").body)
        #expect(values[#"millrace_quarantined_records_total{topic="checked"}"#] == 1)
        #expect(values[#"millrace_duplicates_total{topic="checked"}"#] == 2)
        #expect(values[#"millrace_produced_records_total{topic="checked"}"#] == 1)
        await live.stop()
    }

    /// A known workload, then `/metrics`: every counter it moved has exactly the value the
    /// workload makes, gauges read the state, and labels are topics, groups and APIs.
    @Test func metricsCountAKnownWorkloadExactly() async throws {
        let metrics = BrokerMetrics()
        let live = try await LiveServer(configure: { $0.metrics = metrics }, storageOptions: { $0.events = metrics })
        defer { live.remove() }
        let port = live.port
        let httpPort = try await live.startHTTP()

        let client = MillraceClient(host: "127.0.0.1", port: port)
        try await client.createTopic(CreateTopicRequest(name: "plain", partitions: 2))
        try await client.createTopic(CreateTopicRequest(name: "checked", partitions: 1))
        _ = try await client.registerSchema(topic: "checked", schema: Array(#"{"type":"object","properties":{"qty":{"type":"number","minimum":0}}}"#.utf8))
        try await client.setSchemaPolicy(topic: "checked", onInvalid: .quarantine)
        try await client.setDedupPolicy(topic: "checked", key: "json:/id")
        await client.close()

        let wire = try TestClient(port: port)
        func produce(_ topic: String, _ partition: Int32, _ values: [String]) throws -> (bytes: Int, result: ProducePartitionResult?) {
            let records = batchBytes(values)
            let response = try wire.call(
                .produce(ProduceRequest(timeoutMs: 5_000, topics: [TopicEntries(topic: topic, [ProducePartition(partition: partition, records: records)])], version: 2)))
            guard case .produce(let topics) = response.body else { return (records.count, nil) }
            return (records.count, topics.first?.entries.first)
        }
        // plain: 3 + 4 records on partition 0, 5 on partition 1.
        let plainBytes = try [produce("plain", 0, ["a", "b", "c"]), produce("plain", 0, ["d", "e", "f", "g"]), produce("plain", 1, ["h", "i", "j", "k", "l"])]
            .map(\.bytes).reduce(0, +)
        // checked: two good, one breaking the schema (quarantined), one repeating an id (duplicate).
        let checked = try produce("checked", 0, [#"{"id":1,"qty":1}"#, #"{"id":2,"qty":2}"#, #"{"id":3,"qty":-1}"#, #"{"id":1,"qty":1}"#])
        #expect(checked.result?.outcomes.map(\.kind) == [.quarantined, .duplicate])
        // Fetch all of plain's partition 0 (7 records), and a group commits 5 of them.
        let fetched = try wire.call(
            .fetch(FetchRequest(maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, topics: [TopicEntries(topic: "plain", [FetchPartition(partition: 0, offset: 0, maxBytes: 1 << 20)])])))
        guard case .fetch(let fetchedTopics) = fetched.body else { Issue.record("\(fetched)"); return }
        let fetchedBytes = fetchedTopics[0].entries[0].records.readableBytes
        _ = try wire.call(.offsetCommit(OffsetCommitRequest(group: "erp", topics: [TopicEntries(topic: "plain", [OffsetEntry(partition: 0, offset: 5)])])))
        _ = try wire.call(.describeTopic(name: "nope"))  // an error: counted by code

        let page = try httpGet(port: httpPort, "/metrics")
        #expect(page.status == 200)
        let values = prometheusValues(page.body)
        let expected: [String: Double] = [
            #"millrace_produced_records_total{topic="plain"}"#: 12,
            #"millrace_produced_bytes_total{topic="plain"}"#: Double(plainBytes),
            #"millrace_produced_records_total{topic="checked"}"#: 2,
            #"millrace_produced_bytes_total{topic="checked"}"#: Double(checked.bytes),
            #"millrace_quarantined_records_total{topic="checked"}"#: 1,
            #"millrace_duplicates_total{topic="checked"}"#: 1,
            #"millrace_schema_rejected_records_total{topic="checked"}"#: 0,
            #"millrace_fetched_records_total{topic="plain"}"#: 7,
            #"millrace_fetched_bytes_total{topic="plain"}"#: Double(fetchedBytes),
            #"millrace_requests_total{api="produce"}"#: 4,
            #"millrace_requests_total{api="fetch"}"#: 1,
            #"millrace_requests_total{api="offset_commit"}"#: 1,
            #"millrace_request_duration_seconds_count{api="produce"}"#: 4,
            #"millrace_request_errors_total{api="describe_topic",code="unknown_topic"}"#: 1,
            #"millrace_topic_records{topic="plain"}"#: 12,
            #"millrace_topic_partitions{topic="plain"}"#: 2,
            #"millrace_group_committed_offset{group="erp",partition="0",topic="plain"}"#: 5,
            #"millrace_group_lag_records{group="erp",partition="0",topic="plain"}"#: 2,
            #"millrace_group_lag_records{group="erp",partition="1",topic="plain"}"#: 5,
            #"millrace_group_members{group="erp"}"#: 0,
            #"millrace_dedup_keys{topic="checked"}"#: 2,
            "millrace_connections_open": 1,
            "millrace_ready": 1,
            "millrace_protocol_errors_total": 0,
        ]
        for (name, value) in expected.sorted(by: { $0.key < $1.key }) {
            #expect(values[name] == value, "\(name): \(values[name].map { "\($0)" } ?? "missing")")
        }
        // Storage's own: commits and syncs counted, the file and disk measured.
        #expect((values["millrace_commit_seconds_count"] ?? 0) >= 5)
        #expect((values["millrace_data_file_bytes"] ?? 0) > 0 && (values["millrace_disk_free_bytes"] ?? 0) > 0)
        #expect((values["millrace_lmdb_pages_used"] ?? 0) > 0 && values["millrace_lmdb_map_size_bytes"] != nil)
        // Every name follows Prometheus's conventions.
        for line in page.body.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            let (name, type) = (parts[2], parts[3])
            #expect(name.hasPrefix("millrace_"), "\(name)")
            if type == "counter" { #expect(name.hasSuffix("_total"), "\(name)") }
        }
        // The dashboard and alert rules in deploy/ read only metrics the broker has.
        let families = Set(page.body.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) })
        let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy")
        let dashboardData = try Data(contentsOf: deploy.appendingPathComponent("grafana-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: dashboardData) as? [String: Any])
        #expect((dashboard["panels"] as? [[String: Any]])?.isEmpty == false)
        for file in ["grafana-dashboard.json", "prometheus-alerts.yml"] {
            let text = try String(contentsOf: deploy.appendingPathComponent(file), encoding: .utf8)
            let names = text.matches(of: /millrace_[a-z_]+/).map { String($0.output) }
            #expect(!names.isEmpty)
            for name in Set(names) {
                let family = name.replacing(/_(bucket|sum|count)$/, with: "")
                #expect(families.contains(family), "\(file) reads \(name), which /metrics does not have")
            }
        }
        // Producing to topics that do not exist makes no series: a peer cannot grow the registry.
        for ghost in 0..<50 {
            #expect(try produce("ghost-\(ghost)", 0, ["x"]).result?.errorCode == .unknownTopic)
        }
        #expect(!metrics.countedTopics.contains { $0.hasPrefix("ghost-") }, "\(metrics.countedTopics.sorted())")
        // Deleting a topic drops its series.
        try await MillraceClient(host: "127.0.0.1", port: port).deleteTopic("plain")
        let after = prometheusValues(try httpGet(port: httpPort, "/metrics").body)
        #expect(!after.keys.contains { $0.contains(#"topic="plain""#) })
        #expect(!after.keys.contains { $0.contains(#"topic="ghost-"#) })

        #expect(try httpGet(port: httpPort, "/healthz").status == 200)
        #expect(try httpGet(port: httpPort, "/nothing").status == 404)
        #expect(try httpGet(port: httpPort, "/metrics", method: "DELETE").status == 405)
        await live.stop()
    }

    /// `/readyz` is 503 with the reason while the disk is full, and 200 again once a write
    /// gets through.
    @Test func readyGoesUnavailableOnAFullDiskAndBack() async throws {
        let clock = ManualClock()
        let live = try await LiveServer(clock: clock, storageOptions: { $0.clock = clock })
        defer { live.remove() }
        let httpPort = try await live.startHTTP()
        let storage = live.storage
        _ = try await storage.createTopic("t", partitions: 1)
        #expect(try httpGet(port: httpPort, "/readyz").status == 200)

        try #require(storage.writerForTesting).failNextCommitForTesting(errno: ENOSPC)
        await #expect(throws: MillraceError.self) { _ = try await storage.append(topic: "t", partition: 0, batch: batchBytes(["a"])) }
        let full = try httpGet(port: httpPort, "/readyz")
        #expect(full.status == 503 && full.body.contains("disk full"), "\(full)")
        #expect(prometheusValues(try httpGet(port: httpPort, "/metrics").body)["millrace_ready"] == 0)
        #expect(try httpGet(port: httpPort, "/healthz").status == 200)

        clock.advance(by: .seconds(1))
        _ = try await storage.append(topic: "t", partition: 0, batch: batchBytes(["b"]))
        #expect(try httpGet(port: httpPort, "/readyz").status == 200)
        await live.stop()
    }

    /// A rebalance is logged once, when it happens; a connection sending garbage is logged
    /// once, with its address; a second one in the same second is held back and counted.
    @Test func rebalancesAndGarbageAreLoggedOnce() async throws {
        let log = CapturedLog()
        let clock = ManualClock()
        let live = try await LiveServer(clock: clock, configure: { _ in }, logger: log.logger)
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await client.createTopic(CreateTopicRequest(name: "orders", partitions: 2))
        let wire = try TestClient(port: live.port)
        let first = try wire.call(.joinGroup(JoinGroupRequest(group: "erp", sessionTimeoutMs: 10_000, topics: ["orders"])))
        clock.advance(by: .seconds(2))
        let second = try wire.call(.joinGroup(JoinGroupRequest(group: "erp", sessionTimeoutMs: 10_000, topics: ["orders"])))
        guard case .joinGroup(let a) = first.body, case .joinGroup(let b) = second.body else { Issue.record("\(first) \(second)"); return }
        #expect(log.matching("group erp: member \(a.memberID) joined").count == 1, "\(log.matching("group erp"))")
        #expect(log.matching("rebalanced to generation \(b.generation) with 2 members").count == 1, "\(log.matching("group erp"))")
        // The first member stops heartbeating; the second goes on. One line for the expiry.
        clock.advance(by: .seconds(6))
        _ = try wire.call(.heartbeat(GroupMemberRequest(group: "erp", memberID: b.memberID, generation: b.generation)))
        clock.advance(by: .seconds(5))
        live.server.tick()
        live.server.tick()
        #expect(log.matching("member \(a.memberID)'s session expired; rebalanced").count == 1, "\(log.matching("group erp"))")

        for _ in 0..<2 {
            let garbage = try TestClient(port: live.port)
            try garbage.sendRaw(Array("GET / HTTP/1.1\r\nHost: broker\r\n\r\n".utf8))
            #expect(garbage.isClosedByServer())
        }
        #expect(log.matching("protocol error from 127.0.0.1:").count == 1, "\(log.lines.withLock { $0 })")
        clock.advance(by: .seconds(2))
        let third = try TestClient(port: live.port)
        try third.sendRaw([0, 0, 0, 3, 1, 2, 3])
        #expect(third.isClosedByServer())
        let lines = log.matching("protocol error from 127.0.0.1:")
        #expect(lines.count == 2 && lines[1].contains("1 more like it"), "\(lines)")
        await client.close()
        await live.stop()
    }
}
