import MillraceFormat
import MillraceWire

extension MillraceClient {
    /// What `millrace status` and `millrace top` show: the broker's version and uptime, its
    /// disk, connections, readiness, each topic's size and traffic since it started, and each
    /// group's lag. Counters are totals; two answers a while apart give rates.
    public struct BrokerStatus: Sendable, Equatable {
        /// One partition's records and bytes held.
        public struct PartitionSize: Sendable, Equatable {
            /// The partition number.
            public var partition: Int32
            /// Records held.
            public var records: Int64
            /// Bytes held.
            public var bytes: Int64
        }

        /// A topic: its size now and its traffic since the broker started.
        public struct Topic: Sendable, Equatable {
            /// Its name.
            public var name: String
            /// Its partition count.
            public var partitions: Int32
            /// Held now.
            public var records: Int64
            /// Bytes held.
            public var bytes: Int64
            /// Since the broker started.
            public var producedRecords: Int64
            /// Bytes appended since the broker started.
            public var producedBytes: Int64
            /// Records sent to consumers since the broker started.
            public var fetchedRecords: Int64
            /// Bytes sent to consumers since the broker started.
            public var fetchedBytes: Int64
            /// Each partition's records and bytes.
            public var partitionSizes: [PartitionSize]
        }

        /// A consumer group: live members and lag.
        public struct Group: Sendable, Equatable {
            /// Its name.
            public var name: String
            /// Live members.
            public var members: Int32
            /// Summed over every partition the group reads or has committed to.
            public var lag: Int64
            /// Its partition count.
            public var partitions: Int32
        }

        /// A listener: the protocol it speaks, where, and its connections.
        public struct Listener: Sendable, Equatable {
            /// `native` or `kafka`.
            public var name: String
            /// Where it listens, HOST:PORT.
            public var address: String
            /// Connections open on it.
            public var connections: Int32
        }

        /// A live Kafka group's member: as it named itself, and where it connects from.
        public struct KafkaMember: Sendable, Equatable {
            /// Its group.
            public var group: String
            /// The member id the broker gave it.
            public var memberID: String
            /// The client id it sent.
            public var clientID: String
            /// Its host, `/192.0.2.7`.
            public var host: String
        }

        /// The broker's version.
        public var version: String
        /// When the broker started, milliseconds since 1970.
        public var startedAtMs: Int64
        /// The broker's clock when it answered.
        public var nowMs: Int64
        /// The data directory on the broker's machine.
        public var dataDirectory: String
        /// The size of the data file.
        public var dataFileBytes: Int64
        /// Free bytes on the disk under the data directory.
        public var diskFreeBytes: Int64
        /// The size of that disk.
        public var diskTotalBytes: Int64
        /// Connections open.
        public var connections: Int32
        /// Requests read and not yet answered.
        public var requestsInFlight: Int32
        /// Empty when the broker is ready; else why not.
        public var notReady: [String]
        /// Every topic, by name.
        public var topics: [Topic]
        /// Every group with live members or committed offsets.
        public var groups: [Group]
        /// Every listener (empty from a broker older than BrokerStatus v1).
        public var listeners: [Listener] = []
        /// Live Kafka groups' members (empty from a broker older than BrokerStatus v1).
        public var kafkaMembers: [KafkaMember] = []
        /// Each owned topic's owner (empty from a broker older than BrokerStatus v2).
        public var owners: [String: String] = [:]
    }

    /// A backup the broker made: its size and how long it took.
    public struct Backup: Sendable, Equatable {
        /// Bytes held.
        public var bytes: Int64
        /// How long the copy took.
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
            groups: status.groups.map { BrokerStatus.Group(name: $0.name, members: $0.members, lag: $0.lag, partitions: $0.partitions) },
            listeners: status.listeners.map { BrokerStatus.Listener(name: $0.name, address: $0.address, connections: $0.connections) },
            kafkaMembers: status.kafkaMembers.map { BrokerStatus.KafkaMember(group: $0.group, memberID: $0.memberID, clientID: $0.clientID, host: $0.host) },
            owners: status.owners)
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
