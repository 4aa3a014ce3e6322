import MillraceFormat
import MillraceWire

extension MillraceClient {
    /// What `millrace status` and `millrace top` show: the broker's version and uptime, its
    /// disk, connections, readiness, each topic's size and traffic since it started, and each
    /// group's lag. Counters are totals; two answers a while apart give rates.
    public struct BrokerStatus: Sendable, Equatable {
        public struct PartitionSize: Sendable, Equatable {
            public var partition: Int32
            public var records: Int64
            public var bytes: Int64
        }

        public struct Topic: Sendable, Equatable {
            public var name: String
            public var partitions: Int32
            /// Held now.
            public var records: Int64
            public var bytes: Int64
            /// Since the broker started.
            public var producedRecords: Int64
            public var producedBytes: Int64
            public var fetchedRecords: Int64
            public var fetchedBytes: Int64
            public var partitionSizes: [PartitionSize]
        }

        public struct Group: Sendable, Equatable {
            public var name: String
            /// Live members.
            public var members: Int32
            /// Summed over every partition the group reads or has committed to.
            public var lag: Int64
            public var partitions: Int32
        }

        public var version: String
        public var startedAtMs: Int64
        /// The broker's clock when it answered.
        public var nowMs: Int64
        public var dataDirectory: String
        public var dataFileBytes: Int64
        public var diskFreeBytes: Int64
        public var diskTotalBytes: Int64
        public var connections: Int32
        public var requestsInFlight: Int32
        /// Empty when the broker is ready; else why not.
        public var notReady: [String]
        public var topics: [Topic]
        public var groups: [Group]
    }

    /// A backup the broker made: its size and how long it took.
    public struct Backup: Sendable, Equatable {
        public var bytes: Int64
        public var milliseconds: Int64
    }

    /// Version, uptime, disk, connections, each topic's size and traffic since the start, and
    /// each group's lag (BrokerStatus, API 30).
    public func brokerStatus() async throws -> BrokerStatus {
        guard case .brokerStatus(let status) = try await send(.brokerStatus) else { throw Self.unexpectedBody }
        return BrokerStatus(
            version: status.version, startedAtMs: status.startedAtMs, nowMs: status.nowMs, dataDirectory: status.dataDirectory,
            dataFileBytes: status.dataFileBytes, diskFreeBytes: status.diskFreeBytes, diskTotalBytes: status.diskTotalBytes,
            connections: status.connections, requestsInFlight: status.requestsInFlight, notReady: status.notReady,
            topics: status.topics.map { topic in
                BrokerStatus.Topic(
                    name: topic.name, partitions: topic.partitions, records: topic.records, bytes: topic.bytes, producedRecords: topic.producedRecords,
                    producedBytes: topic.producedBytes, fetchedRecords: topic.fetchedRecords, fetchedBytes: topic.fetchedBytes,
                    partitionSizes: topic.partitionSizes.map { BrokerStatus.PartitionSize(partition: $0.partition, records: $0.records, bytes: $0.bytes) })
            },
            groups: status.groups.map { BrokerStatus.Group(name: $0.name, members: $0.members, lag: $0.lag, partitions: $0.partitions) })
    }

    /// Has the broker copy its data file, consistently, into `destination` on its own
    /// machine (a new directory), while it goes on serving (Backup, API 31). Not retried:
    /// a copy that was made and whose answer was lost would refuse a second go (the
    /// directory exists). Give the client a request timeout long enough for the copy.
    public func backup(to destination: String, compact: Bool = true) async throws -> Backup {
        guard case .backup(let made) = try await request(.backup(BackupRequest(destination: destination, compact: compact))).get() else {
            throw Self.unexpectedBody
        }
        return Backup(bytes: made.bytes, milliseconds: made.milliseconds)
    }
}
