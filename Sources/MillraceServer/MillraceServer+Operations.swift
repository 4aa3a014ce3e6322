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
        let topics = topicSizes().map { info, records, bytes, partitions -> TopicStatus in
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
        return BrokerStatusResponse(
            version: MillraceVersion.current, startedAtMs: startedAtMs, nowMs: configuration.clock.nowMilliseconds(), dataDirectory: storage.directory,
            dataFileBytes: space?.dataFileBytes ?? 0, diskFreeBytes: space?.diskFreeBytes ?? 0, diskTotalBytes: space?.diskTotalBytes ?? 0,
            connections: Int32(connectionCount), requestsInFlight: Int32(inFlightRequests), notReady: readiness().reasons, topics: topics.sorted { $0.name < $1.name },
            groups: groups)
    }

    /// Reads what gauges show (connections, memory, the writer, the disk, topics' sizes,
    /// groups' lag), then the whole registry in Prometheus's text format.
    public func scrapeMetrics() -> [UInt8] {
        var gauges: [(name: String, labels: [(String, String)], value: Double)] = []
        func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) { gauges.append((name, labels, value)) }
        func gauge(_ name: String, _ value: Double) { gauges.append((name, [], value)) }

        gauge("millrace_build_info", [("version", MillraceVersion.current)], 1)
        gauge("millrace_uptime_seconds", Double(configuration.clock.nowMilliseconds() - startedAtMs) / 1_000)
        let readiness = readiness()
        gauge("millrace_ready", readiness.ready ? 1 : 0)
        gauge("millrace_connections_open", Double(connectionCount))
        gauge("millrace_requests_in_flight", Double(inFlightRequests))
        gauge("millrace_memory_request_bytes", Double(memory.requestBytes))
        gauge("millrace_memory_response_bytes", Double(memory.responseBytes))
        gauge("millrace_memory_request_limit_bytes", Double(memory.budget.limits.requestBytesMax))
        gauge("millrace_memory_response_limit_bytes", Double(memory.budget.limits.responseBytesMax))
        if let health = storage.writerHealth { gauge("millrace_writer_queue_depth", Double(health.queued)) }
        if let space = try? storage.space() {
            gauge("millrace_lmdb_map_size_bytes", Double(space.mapSizeBytes))
            gauge("millrace_lmdb_page_size_bytes", Double(space.pageBytes))
            gauge("millrace_lmdb_pages_used", Double(space.pagesUsed))
            gauge("millrace_lmdb_pages_free", Double(space.pagesFree))
            gauge("millrace_data_file_bytes", Double(space.dataFileBytes))
            gauge("millrace_disk_free_bytes", Double(space.diskFreeBytes))
            gauge("millrace_disk_total_bytes", Double(space.diskTotalBytes))
        }
        let topics = topicSizes()
        for (info, records, bytes, _) in topics {
            let labels = [("topic", info.name)]
            gauge("millrace_topic_partitions", labels, Double(info.partitionCount))
            gauge("millrace_topic_records", labels, Double(records))
            gauge("millrace_topic_bytes", labels, Double(bytes))
            if let dedup = storage.dedupStatus(topic: info.name) { gauge("millrace_dedup_keys", labels, Double(dedup.keysHeld)) }
            if let index = try? storage.indexStatus(topic: info.name) { metrics.indexEntriesWritten(topic: info.name, total: index.entriesWritten) }
        }
        metrics.keepTopics(Set(topics.map(\.info.name)))
        if let dispatcher = dispatcher {
            let live = dispatcher.groups.liveGroups()
            let names = Set(live.keys).union((try? storage.groupsWithCommittedOffsets()) ?? [])
            for name in names.sorted() {
                gauge("millrace_group_members", [("group", name)], Double(live[name] ?? 0))
                guard let described = try? dispatcher.describeGroup(name) else { continue }
                for topic in described.offsets {
                    for row in topic.entries {
                        let labels = [("group", name), ("topic", topic.topic), ("partition", "\(row.partition)")]
                        if row.committedOffset >= 0 { gauge("millrace_group_committed_offset", labels, Double(row.committedOffset)) }
                        gauge("millrace_group_lag_records", labels, Double(row.lag))
                    }
                }
            }
        }
        metrics.setGauges(gauges)
        return metrics.emit()
    }
}
