import MillraceFormat
import MillraceStorage
import MillraceWire

/// Whether the broker should be sent traffic: storage open, the writer getting through its
/// work, the disk not full. `reasons` says what is wrong when it is not.
public struct Readiness: Sendable, Equatable {
    public var reasons: [String]
    public var ready: Bool { reasons.isEmpty }
}

extension MillraceServer {
    /// Ready unless the storage is read-only, the writer has had work waiting with none
    /// finished for `writerStallSeconds`, or the disk is full.
    public func readiness() -> Readiness {
        guard let health = storage.writerHealth else { return Readiness(reasons: ["storage is open read-only: nothing can be written"]) }
        var reasons: [String] = []
        if let full = health.diskFull { reasons.append("disk full: \(full.message)") }
        if health.queued > 0, health.millisecondsSinceProgress >= configuration.writerStallSeconds * 1_000 {
            reasons.append("the writer has finished nothing for \(health.millisecondsSinceProgress / 1_000) s with \(health.queued) operations waiting")
        }
        return Readiness(reasons: reasons)
    }

    /// Each topic with the records and bytes its partitions hold.
    private func topicSizes() -> [(info: TopicInfo, records: Int64, bytes: Int64, partitions: [PartitionSize])] {
        ((try? storage.listTopics()) ?? []).map { info in
            let partitions = (0..<info.partitionCount).compactMap { partition -> PartitionSize? in
                guard let offsets = try? storage.offsets(topic: info.name, partition: partition) else { return nil }
                return PartitionSize(partition: partition, records: offsets.recordCount, bytes: offsets.bytes)
            }
            return (info, partitions.reduce(0) { $0 + $1.records }, partitions.reduce(0) { $0 + $1.bytes }, partitions)
        }
    }

    /// What `millrace status` and `top` show.
    func brokerStatus() -> BrokerStatusResponse {
        let space = try? storage.space()
        let sizes = topicSizes()
        let topics = sizes.map { info, records, bytes, partitions -> TopicStatus in
            let totals = metrics.totals(info.name)
            return TopicStatus(
                name: info.name, partitions: info.partitionCount, records: records, bytes: bytes, producedRecords: totals.producedRecords,
                producedBytes: totals.producedBytes, fetchedRecords: totals.fetchedRecords, fetchedBytes: totals.fetchedBytes, partitionSizes: partitions)
        }
        var groups: [GroupStatus] = []
        if let dispatcher {
            let live = dispatcher.groups.liveGroups()
            for name in Set(live.keys).union((try? storage.groupsWithCommittedOffsets()) ?? []).sorted() {
                let rows = (try? dispatcher.describeGroup(name))?.offsets.flatMap(\.entries) ?? []
                groups.append(
                    GroupStatus(name: name, members: Int32(live[name] ?? 0), lag: rows.reduce(0) { $0 + $1.lag }, partitions: Int32(rows.count)))
            }
        }
        var status = BrokerStatusResponse(
            version: MillraceVersion.current, startedAtMs: startedAtMs, nowMs: configuration.clock.nowMilliseconds(), dataDirectory: storage.directory,
            dataFileBytes: space?.dataFileBytes ?? 0, diskFreeBytes: space?.diskFreeBytes ?? 0, diskTotalBytes: space?.diskTotalBytes ?? 0,
            connections: Int32(connectionCount), requestsInFlight: Int32(inFlightRequests), notReady: readiness().reasons, topics: topics.sorted { $0.name < $1.name },
            groups: groups, listeners: listenerStatus(),
            kafkaMembers: (dispatcher?.groups.kafkaMembers() ?? [:]).sorted { $0.key < $1.key }.flatMap { group, members in
                members.map { KafkaMemberStatus(group: group, memberID: $0.memberID, clientID: $0.clientID, host: $0.clientHost) }
            })
        for (info, _, _, _) in sizes { if let owner = info.config.owner { status.owners[info.name] = owner } }
        return status
    }

    /// Each listener bound: its protocol, address and open connections.
    func listenerStatus() -> [ListenerStatus] {
        Listener.allCases.compactMap { listener in
            boundAddress(listener).map {
                ListenerStatus(name: listener.rawValue, address: ConnectionHandler.describe($0), connections: Int32(connectionCount(listener)))
            }
        }
    }

    /// The registry (counters and histograms, moved as things happen) and the gauges read now
    /// (connections, memory, the writer, the disk, topics' sizes, groups' lag), in Prometheus's
    /// text format. Linear in the series: one read of each partition's offsets and one pass
    /// over the committed offsets, whatever the number of groups. Runs off the event loops
    /// (the HTTP listener calls it on a thread of its own).
    public func scrapeMetrics() -> [UInt8] {
        var page = PrometheusText()
        page.gaugeFamily("millrace_build_info")
        page.sample("millrace_build_info", [("version", MillraceVersion.current)], 1)
        page.gauge("millrace_uptime_seconds", Double(configuration.clock.nowMilliseconds() - startedAtMs) / 1_000)
        page.gauge("millrace_ready", readiness().ready ? 1 : 0)
        page.gauge("millrace_connections_open", Double(connectionCount))
        page.gaugeFamily("millrace_listener_connections_open")
        for listener in listenerStatus() {
            page.sample("millrace_listener_connections_open", [("listener", listener.name), ("address", listener.address)], Double(listener.connections))
        }
        page.gauge("millrace_requests_in_flight", Double(inFlightRequests))
        page.gauge("millrace_memory_request_bytes", Double(memory.requestBytes))
        page.gauge("millrace_memory_response_bytes", Double(memory.responseBytes))
        page.gauge("millrace_memory_request_limit_bytes", Double(memory.budget.limits.requestBytesMax))
        page.gauge("millrace_memory_response_limit_bytes", Double(memory.budget.limits.responseBytesMax))
        if let health = storage.writerHealth { page.gauge("millrace_writer_queue_depth", Double(health.queued)) }
        if let space = try? storage.space() {
            page.gauge("millrace_lmdb_map_size_bytes", Double(space.mapSizeBytes))
            page.gauge("millrace_lmdb_page_size_bytes", Double(space.pageBytes))
            page.gauge("millrace_lmdb_pages_used", Double(space.pagesUsed))
            page.gauge("millrace_lmdb_pages_free", Double(space.pagesFree))
            page.gauge("millrace_data_file_bytes", Double(space.dataFileBytes))
            page.gauge("millrace_disk_free_bytes", Double(space.diskFreeBytes))
            page.gauge("millrace_disk_total_bytes", Double(space.diskTotalBytes))
        }
        let topics = partitionOffsets()
        writeTopicGauges(topics, into: &page)
        if let dispatcher { writeGroupGauges(dispatcher.groups, topics: topics, into: &page) }
        return metrics.emit() + page.bytes
    }

    /// Each topic with its partitions' offsets (a partition that cannot be read is left out).
    private func partitionOffsets() -> [(info: TopicInfo, partitions: [Int32: PartitionOffsets])] {
        ((try? storage.listTopics()) ?? []).map { info in
            var partitions: [Int32: PartitionOffsets] = [:]
            for partition in 0..<info.partitionCount {
                partitions[partition] = try? storage.offsets(topic: info.name, partition: partition)
            }
            return (info, partitions)
        }
    }

    private func writeTopicGauges(_ topics: [(info: TopicInfo, partitions: [Int32: PartitionOffsets])], into page: inout PrometheusText) {
        let names = ["millrace_topic_partitions", "millrace_topic_records", "millrace_topic_bytes"]
        for (family, name) in names.enumerated() {
            page.gaugeFamily(name)
            for (info, partitions) in topics {
                let value: Double
                switch family {
                case 0: value = Double(info.partitionCount)
                case 1: value = Double(partitions.values.reduce(0) { $0 + $1.recordCount })
                default: value = Double(partitions.values.reduce(0) { $0 + $1.bytes })
                }
                page.sample(name, [("topic", info.name)], value)
            }
        }
        page.gaugeFamily("millrace_dedup_keys")
        for (info, _) in topics {
            if let dedup = storage.dedupStatus(topic: info.name) { page.sample("millrace_dedup_keys", [("topic", info.name)], Double(dedup.keysHeld)) }
            if let index = try? storage.indexStatus(topic: info.name) { metrics.indexEntriesWritten(topic: info.name, total: index.entriesWritten) }
        }
        metrics.keepTopics(Set(topics.map(\.info.name)))
    }

    /// Per group its live members, and per partition it reads or has committed to (as
    /// `describeGroup` shows them) the committed offset and the lag.
    private func writeGroupGauges(
        _ coordinator: GroupCoordinator, topics: [(info: TopicInfo, partitions: [Int32: PartitionOffsets])], into page: inout PrometheusText
    ) {
        let live = coordinator.snapshots()
        let members = coordinator.liveGroups()
        var committed: [String: [TopicPartition: Int64]] = [:]
        for offset in (try? storage.allCommittedOffsets()) ?? [] {
            committed[offset.group, default: [:]][TopicPartition(topic: offset.topic, partition: offset.partition)] = offset.offset
        }
        let offsets = Dictionary(topics.map { ($0.info.name, $0.partitions) }, uniquingKeysWith: { first, _ in first })
        let counts = Dictionary(topics.map { ($0.info.name, $0.info.partitionCount) }, uniquingKeysWith: { first, _ in first })
        let names = Set(live.keys).union(committed.keys).sorted()
        page.gaugeFamily("millrace_group_members")
        for name in names { page.sample("millrace_group_members", [("group", name)], Double(members[name] ?? 0)) }

        var rows: [(labels: [(String, String)], committed: Int64, lag: Int64)] = []
        for name in names {
            let done = committed[name] ?? [:]
            var all = Set(done.keys)
            for owned in (live[name]?.assignment ?? [:]).values { all.formUnion(owned) }
            for topic in (live[name]?.topics ?? []).union(done.keys.map(\.topic)) {
                for partition in 0..<(counts[topic] ?? 0) { all.insert(TopicPartition(topic: topic, partition: partition)) }
            }
            for partition in all.sorted(by: { ($0.topic, $0.partition) < ($1.topic, $1.partition) }) {
                guard let log = offsets[partition.topic]?[partition.partition] else { continue }
                let offset = done[partition] ?? -1
                let lag = offset >= 0 ? max(0, log.nextOffset - offset) : log.nextOffset - log.logStartOffset
                rows.append(([("group", name), ("topic", partition.topic), ("partition", "\(partition.partition)")], offset, lag))
            }
        }
        page.gaugeFamily("millrace_group_committed_offset")
        for row in rows where row.committed >= 0 { page.sample("millrace_group_committed_offset", row.labels, Double(row.committed)) }
        page.gaugeFamily("millrace_group_lag_records")
        for row in rows { page.sample("millrace_group_lag_records", row.labels, Double(row.lag)) }
    }
}
