import CoreMetrics
import MillraceFormat
import MillraceKafka
import MillraceStorage
import MillraceWire
import Prometheus

/// The broker's metrics, made through swift-metrics into a Prometheus registry of this broker's
/// own (several brokers in one process, as in the tests, count apart). Counters and
/// histograms are updated as things happen — per request or per partition append, never per
/// record; gauges (memory, connections, disk, groups' lag) are read when `/metrics` is
/// scraped and written beside the registry (`PrometheusText`), never registered in it. Labels are APIs, error codes, topics and groups: never keys or connections.
/// docs/OPERATIONS.md, "Monitoring", lists every metric.
public final class BrokerMetrics: StorageEvents, Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory

    private struct Request {
        let count: CoreMetrics.Counter
        let latency: CoreMetrics.Timer
    }

    /// Per topic; dropped when the topic is.
    struct TopicCounters {
        let producedRecords: CoreMetrics.Counter
        let producedBytes: CoreMetrics.Counter
        let fetchedRecords: CoreMetrics.Counter
        let fetchedBytes: CoreMetrics.Counter
        let rejected: CoreMetrics.Counter
        let quarantined: CoreMetrics.Counter
        let duplicates: CoreMetrics.Counter
        let indexEntries: CoreMetrics.Counter

        var all: [CoreMetrics.Counter] {
            [producedRecords, producedBytes, fetchedRecords, fetchedBytes, rejected, quarantined, duplicates, indexEntries]
        }
    }

    private let requests: [Int16: Request]
    /// Requests on the Kafka listener, by Kafka API.
    private let kafkaRequests: [KafkaApiKey: Request]
    private let errors = Locked<[String: CoreMetrics.Counter]>([:])
    private let topics = Locked<[String: TopicCounters]>([:])
    private let indexSeen = Locked<[String: UInt64]>([:])
    /// The same counts as the topic counters, readable (for BrokerStatus).
    private let totals = Locked<[String: TopicTotals]>([:])

    struct TopicTotals {
        var producedRecords: Int64 = 0
        var producedBytes: Int64 = 0
        var fetchedRecords: Int64 = 0
        var fetchedBytes: Int64 = 0
    }

    let produceAck: CoreMetrics.Timer
    let commit: CoreMetrics.Timer
    let fsync: CoreMetrics.Timer
    let writesPerTransaction: CoreMetrics.Recorder
    let retentionRuns: CoreMetrics.Counter
    let retentionBatches: CoreMetrics.Counter
    let connectionsAccepted: CoreMetrics.Counter
    let connectionsRefused: CoreMetrics.Counter
    let protocolErrors: CoreMetrics.Counter
    let diskFullEvents: CoreMetrics.Counter
    /// Told of slow syncs and a full disk, for the log.
    let onSlowSync: @Sendable (Double) -> Void
    let onDiskFull: @Sendable (MillraceError?) -> Void
    let onRetention: @Sendable (RetentionReport, Double) -> Void

    static let latencyBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2_500), .seconds(5), .seconds(10),
    ]
    /// A sync this slow is logged (once per sync; a slow disk logs as often as it is slow,
    /// at most once a second).
    static let slowSyncSeconds = 1.0

    public init(
        onSlowSync: @escaping @Sendable (Double) -> Void = { _ in }, onDiskFull: @escaping @Sendable (MillraceError?) -> Void = { _ in },
        onRetention: @escaping @Sendable (RetentionReport, Double) -> Void = { _, _ in }
    ) {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.latencyBuckets
        factory.valueHistogramBuckets["millrace_writer_transaction_writes"] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
        self.registry = registry
        self.factory = factory
        var requests: [Int16: Request] = [:]
        for api in ApiKey.allCases {
            let labels = [("api", api.metricName)]
            requests[api.rawValue] = Request(
                count: Counter(label: "millrace_requests_total", dimensions: labels, factory: factory),
                latency: Timer(label: "millrace_request_duration_seconds", dimensions: labels, factory: factory))
        }
        self.requests = requests
        var kafkaRequests: [KafkaApiKey: Request] = [:]
        for api in KafkaApiKey.allCases {
            let labels = [("api", api.metricName)]
            kafkaRequests[api] = Request(
                count: Counter(label: "millrace_kafka_requests_total", dimensions: labels, factory: factory),
                latency: Timer(label: "millrace_kafka_request_duration_seconds", dimensions: labels, factory: factory))
        }
        self.kafkaRequests = kafkaRequests
        produceAck = Timer(label: "millrace_produce_ack_seconds", factory: factory)
        commit = Timer(label: "millrace_commit_seconds", factory: factory)
        fsync = Timer(label: "millrace_fsync_seconds", factory: factory)
        writesPerTransaction = Recorder(label: "millrace_writer_transaction_writes", factory: factory)
        retentionRuns = Counter(label: "millrace_retention_runs_total", factory: factory)
        retentionBatches = Counter(label: "millrace_retention_batches_deleted_total", factory: factory)
        connectionsAccepted = Counter(label: "millrace_connections_accepted_total", factory: factory)
        connectionsRefused = Counter(label: "millrace_connections_refused_total", factory: factory)
        protocolErrors = Counter(label: "millrace_protocol_errors_total", factory: factory)
        diskFullEvents = Counter(label: "millrace_disk_full_events_total", factory: factory)
        self.onSlowSync = onSlowSync
        self.onDiskFull = onDiskFull
        self.onRetention = onRetention
    }

    // MARK: As things happen

    /// A request answered: its API, how long it took from dispatch to answer, and its error.
    func requestAnswered(_ api: Int16, nanoseconds: UInt64, error: ErrorCode) {
        guard let request = requests[api] else { return }
        request.count.increment()
        request.latency.recordNanoseconds(Int64(clamping: nanoseconds))
        guard error != .none else { return }
        let key = "\(api)/\(error.rawValue)"
        let counter = errors.withLock { errors -> CoreMetrics.Counter in
            if let known = errors[key] { return known }
            let name = ApiKey(rawValue: api)?.metricName ?? "\(api)"
            let made = Counter(label: "millrace_request_errors_total", dimensions: [("api", name), ("code", error.description)], factory: factory)
            errors[key] = made
            return made
        }
        counter.increment()
    }

    /// A request on the Kafka listener answered (its errors, per partition, are in the answer).
    func kafkaRequestAnswered(_ api: KafkaApiKey, nanoseconds: UInt64) {
        guard let request = kafkaRequests[api] else { return }
        request.count.increment()
        request.latency.recordNanoseconds(Int64(clamping: nanoseconds))
    }

    func topic(_ name: String) -> TopicCounters {
        if let known = topics.withLock({ $0[name] }) { return known }
        let labels = [("topic", name)]
        let made = TopicCounters(
            producedRecords: Counter(label: "millrace_produced_records_total", dimensions: labels, factory: factory),
            producedBytes: Counter(label: "millrace_produced_bytes_total", dimensions: labels, factory: factory),
            fetchedRecords: Counter(label: "millrace_fetched_records_total", dimensions: labels, factory: factory),
            fetchedBytes: Counter(label: "millrace_fetched_bytes_total", dimensions: labels, factory: factory),
            rejected: Counter(label: "millrace_schema_rejected_records_total", dimensions: labels, factory: factory),
            quarantined: Counter(label: "millrace_quarantined_records_total", dimensions: labels, factory: factory),
            duplicates: Counter(label: "millrace_duplicates_total", dimensions: labels, factory: factory),
            indexEntries: Counter(label: "millrace_index_entries_total", dimensions: labels, factory: factory))
        return topics.withLock { topics in
            if let raced = topics[name] { return raced }
            topics[name] = made
            return made
        }
    }

    /// A partition's produce answered: records appended and their bytes as sent, and the
    /// records refused by the schema, quarantined, or caught as duplicates.
    /// Nothing counted makes no series: a peer naming topics that do not exist must not grow
    /// the registry.
    func produced(topic: String, records: Int, bytes: Int, rejected: Int, quarantined: Int, duplicates: Int) {
        guard records > 0 || rejected > 0 || quarantined > 0 || duplicates > 0 else { return }
        let counters = self.topic(topic)
        if records > 0 {
            counters.producedRecords.increment(by: records)
            counters.producedBytes.increment(by: bytes)
            totals.withLock {
                $0[topic, default: TopicTotals()].producedRecords += Int64(records)
                $0[topic, default: TopicTotals()].producedBytes += Int64(bytes)
            }
        }
        if rejected > 0 { counters.rejected.increment(by: rejected) }
        if quarantined > 0 { counters.quarantined.increment(by: quarantined) }
        if duplicates > 0 { counters.duplicates.increment(by: duplicates) }
    }

    func fetched(topic: String, records: Int, bytes: Int) {
        guard records > 0 else { return }
        let counters = self.topic(topic)
        counters.fetchedRecords.increment(by: records)
        counters.fetchedBytes.increment(by: bytes)
        totals.withLock {
            $0[topic, default: TopicTotals()].fetchedRecords += Int64(records)
            $0[topic, default: TopicTotals()].fetchedBytes += Int64(bytes)
        }
    }

    func totals(_ topic: String) -> TopicTotals { totals.withLock { $0[topic] ?? TopicTotals() } }

    /// Index entries written for a topic, as storage counts them: the counter moves on by
    /// what was written since the last scrape.
    func indexEntriesWritten(topic: String, total: UInt64) {
        let counters = self.topic(topic)
        let added = indexSeen.withLock { seen -> UInt64 in
            let before = seen[topic] ?? 0
            seen[topic] = total
            return total > before ? total - before : 0
        }
        if added > 0 { counters.indexEntries.increment(by: Int(clamping: added)) }
    }

    // MARK: StorageEvents (on storage's threads)

    public func committed(writes: Int, commitSeconds: Double) {
        writesPerTransaction.record(writes)
        commit.recordNanoseconds(Int64(commitSeconds * 1e9))
    }

    public func synced(seconds: Double) {
        fsync.recordNanoseconds(Int64(seconds * 1e9))
        if seconds >= Self.slowSyncSeconds { onSlowSync(seconds) }
    }

    public func retentionRan(_ report: RetentionReport, seconds: Double) {
        retentionRuns.increment()
        if report.batchesDeleted > 0 { retentionBatches.increment(by: report.batchesDeleted) }
        onRetention(report, seconds)
    }

    public func diskFull(_ error: MillraceError?) {
        if error != nil { diskFullEvents.increment() }
        onDiskFull(error)
    }

    // MARK: At scrape time

    /// Drops the counters of topics that no longer exist.
    func keepTopics(_ names: Set<String>) {
        let gone = topics.withLock { topics -> [TopicCounters] in
            let gone = topics.filter { !names.contains($0.key) }
            for name in gone.keys { topics[name] = nil }
            indexSeen.withLock { seen in for name in gone.keys { seen[name] = nil } }
            totals.withLock { totals in for name in gone.keys { totals[name] = nil } }
            return Array(gone.values)
        }
        for counters in gone { for counter in counters.all { counter.destroy() } }
    }

    /// The topics that have counters now (until the next scrape prunes the deleted ones).
    var countedTopics: Set<String> { topics.withLock { Set($0.keys) } }

    /// The registry (counters and histograms) in Prometheus's text format.
    func emit() -> [UInt8] { registry.emitToBuffer() }
}

/// A case name as a metric label: `offsetCommit` → `offset_commit`.
func snakeCased(_ name: String) -> String {
    var snake = ""
    for character in name {
        if character.isUppercase {
            snake += "_" + character.lowercased()
        } else {
            snake.append(character)
        }
    }
    return snake
}

extension ApiKey {
    /// The API's name as a metric label: `produce`, `offset_commit`.
    var metricName: String { snakeCased("\(self)") }
}

extension KafkaApiKey {
    /// The Kafka API's name as a metric label: `produce`, `find_coordinator`.
    var metricName: String { snakeCased("\(self)") }
}
