import MillraceFormat
import NIOCore

/// BrokerStatus's answer: what `millrace status` and `millrace top` show. Counters are
/// totals since the broker started; `top` turns them into rates between two answers.
public struct BrokerStatusResponse: Equatable, Sendable {
    public var version: String
    public var startedAtMs: Int64
    public var nowMs: Int64
    public var dataDirectory: String
    public var dataFileBytes: Int64
    public var diskFreeBytes: Int64
    public var diskTotalBytes: Int64
    public var connections: Int32
    public var requestsInFlight: Int32
    /// Empty when ready; else why not ("disk full: …").
    public var notReady: [String]
    public var topics: [TopicStatus]
    public var groups: [GroupStatus]
    /// The protocols the broker listens for, each with its address and connections (v1).
    public var listeners: [ListenerStatus]
    /// Live Kafka groups' members: group, member id, client id and host (v1).
    public var kafkaMembers: [KafkaMemberStatus]
    /// v2: each owned topic's owner (topics without one are not listed).
    public var owners: [String: String] = [:]

    public init(
        version: String, startedAtMs: Int64, nowMs: Int64, dataDirectory: String, dataFileBytes: Int64, diskFreeBytes: Int64, diskTotalBytes: Int64,
        connections: Int32, requestsInFlight: Int32, notReady: [String], topics: [TopicStatus], groups: [GroupStatus], listeners: [ListenerStatus] = [],
        kafkaMembers: [KafkaMemberStatus] = []
    ) {
        self.version = version
        self.startedAtMs = startedAtMs
        self.nowMs = nowMs
        self.dataDirectory = dataDirectory
        self.dataFileBytes = dataFileBytes
        self.diskFreeBytes = diskFreeBytes
        self.diskTotalBytes = diskTotalBytes
        self.connections = connections
        self.requestsInFlight = requestsInFlight
        self.notReady = notReady
        self.topics = topics
        self.groups = groups
        self.listeners = listeners
        self.kafkaMembers = kafkaMembers
    }

    /// An answer with nothing in it, while the broker is stopping.
    public static let unavailable = BrokerStatusResponse(
        version: "", startedAtMs: 0, nowMs: 0, dataDirectory: "", dataFileBytes: 0, diskFreeBytes: 0, diskTotalBytes: 0, connections: 0,
        requestsInFlight: 0, notReady: ["the broker is stopping"], topics: [], groups: [])

    func write(to buffer: inout ByteBuffer, version apiVersion: Int16) {
        buffer.writeMillraceString(version)
        buffer.writeInteger(startedAtMs)
        buffer.writeInteger(nowMs)
        buffer.writeMillraceString(dataDirectory, maxBytes: Limits.pathBytesMax)
        buffer.writeInteger(dataFileBytes)
        buffer.writeInteger(diskFreeBytes)
        buffer.writeInteger(diskTotalBytes)
        buffer.writeInteger(connections)
        buffer.writeInteger(requestsInFlight)
        buffer.writeMillraceArray(notReady) { $0.writeMillraceString($1) }
        topics.write(to: &buffer)
        groups.write(to: &buffer)
        if apiVersion >= 1 {
            listeners.write(to: &buffer)
            kafkaMembers.write(to: &buffer)
        }
        if apiVersion >= 2 {
            buffer.writeMillraceArray(owners.sorted { $0.key < $1.key }) { buffer, owned in
                buffer.writeMillraceString(owned.key)
                buffer.writeMillraceString(owned.value)
            }
        }
    }

    init(from buffer: inout ByteBuffer, version apiVersion: Int16) throws {
        version = try buffer.readMillraceString("version")
        startedAtMs = try buffer.readMillraceInteger("started at")
        nowMs = try buffer.readMillraceInteger("now")
        dataDirectory = try buffer.readMillraceString("data directory", maxBytes: Limits.pathBytesMax)
        dataFileBytes = try buffer.readMillraceInteger("data file bytes")
        diskFreeBytes = try buffer.readMillraceInteger("disk free bytes")
        diskTotalBytes = try buffer.readMillraceInteger("disk total bytes")
        connections = try buffer.readMillraceInteger("connections")
        requestsInFlight = try buffer.readMillraceInteger("requests in flight")
        notReady = try buffer.readMillraceArray("reasons", minimumElementBytes: 2) { try $0.readMillraceString("reason") }
        topics = try [TopicStatus](from: &buffer, "topics")
        groups = try [GroupStatus](from: &buffer, "groups")
        listeners = apiVersion >= 1 ? try [ListenerStatus](from: &buffer, "listeners") : []
        kafkaMembers = apiVersion >= 1 ? try [KafkaMemberStatus](from: &buffer, "Kafka members") : []
        if apiVersion >= 2 {
            let pairs = try buffer.readMillraceArray("owners", minimumElementBytes: 4) { (try $0.readMillraceString("topic"), try $0.readMillraceString("owner")) }
            owners = Dictionary(pairs, uniquingKeysWith: { first, _ in first })
        }
    }
}

/// A live Kafka group's member in BrokerStatus (v1), as it named itself and where it connects from.
public struct KafkaMemberStatus: WireCodable {
    public var group: String
    public var memberID: String
    public var clientID: String
    public var host: String

    public init(group: String, memberID: String, clientID: String, host: String) {
        self.group = group
        self.memberID = memberID
        self.clientID = clientID
        self.host = host
    }

    public static var minimumBytes: Int { 8 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(group)
        buffer.writeMillraceString(memberID)
        buffer.writeMillraceString(clientID)
        buffer.writeMillraceString(host)
    }
    public init(from buffer: inout ByteBuffer) throws {
        group = try buffer.readMillraceString("group")
        memberID = try buffer.readMillraceString("member id")
        clientID = try buffer.readMillraceString("client id")
        host = try buffer.readMillraceString("client host")
    }
}

/// A listener in BrokerStatus (v1): `native` or `kafka`, where it listens, its connections.
public struct ListenerStatus: WireCodable {
    public var name: String
    public var address: String
    public var connections: Int32

    public init(name: String, address: String, connections: Int32) {
        self.name = name
        self.address = address
        self.connections = connections
    }

    public static var minimumBytes: Int { 8 }
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(name)
        buffer.writeMillraceString(address)
        buffer.writeInteger(connections)
    }
    public init(from buffer: inout ByteBuffer) throws {
        name = try buffer.readMillraceString("listener")
        address = try buffer.readMillraceString("listener address")
        connections = try buffer.readMillraceInteger("listener connections")
    }
}

/// A topic in BrokerStatus: its size now, and records and bytes in and out since the start.
public struct TopicStatus: WireCodable {
    public var name: String
    public var partitions: Int32
    public var records: Int64
    public var bytes: Int64
    public var producedRecords: Int64
    public var producedBytes: Int64
    public var fetchedRecords: Int64
    public var fetchedBytes: Int64
    /// Each partition's records and bytes held.
    public var partitionSizes: [PartitionSize]

    public init(
        name: String, partitions: Int32, records: Int64, bytes: Int64, producedRecords: Int64, producedBytes: Int64, fetchedRecords: Int64,
        fetchedBytes: Int64, partitionSizes: [PartitionSize] = []
    ) {
        self.partitionSizes = partitionSizes
        self.name = name
        self.partitions = partitions
        self.records = records
        self.bytes = bytes
        self.producedRecords = producedRecords
        self.producedBytes = producedBytes
        self.fetchedRecords = fetchedRecords
        self.fetchedBytes = fetchedBytes
    }

    public static var minimumBytes: Int { 2 + 4 + 6 * 8 + 4 }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(name)
        buffer.writeInteger(partitions)
        for value in [records, bytes, producedRecords, producedBytes, fetchedRecords, fetchedBytes] { buffer.writeInteger(value) }
        partitionSizes.write(to: &buffer)
    }

    public init(from buffer: inout ByteBuffer) throws {
        name = try buffer.readMillraceString("topic")
        partitions = try buffer.readMillraceInteger("partitions")
        records = try buffer.readMillraceInteger("records")
        bytes = try buffer.readMillraceInteger("bytes")
        producedRecords = try buffer.readMillraceInteger("produced records")
        producedBytes = try buffer.readMillraceInteger("produced bytes")
        fetchedRecords = try buffer.readMillraceInteger("fetched records")
        fetchedBytes = try buffer.readMillraceInteger("fetched bytes")
        partitionSizes = try [PartitionSize](from: &buffer, "partition sizes")
    }
}

/// One partition's size in BrokerStatus.
public struct PartitionSize: WireCodable {
    public var partition: Int32
    public var records: Int64
    public var bytes: Int64

    public init(partition: Int32, records: Int64, bytes: Int64) {
        self.partition = partition
        self.records = records
        self.bytes = bytes
    }

    public static var minimumBytes: Int { 20 }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(partition)
        buffer.writeInteger(records)
        buffer.writeInteger(bytes)
    }

    public init(from buffer: inout ByteBuffer) throws {
        partition = try buffer.readMillraceInteger("partition")
        records = try buffer.readMillraceInteger("records")
        bytes = try buffer.readMillraceInteger("bytes")
    }
}

/// A consumer group in BrokerStatus: live members and its lag over every partition it reads
/// or has committed to.
public struct GroupStatus: WireCodable {
    public var name: String
    public var members: Int32
    public var lag: Int64
    public var partitions: Int32

    public init(name: String, members: Int32, lag: Int64, partitions: Int32) {
        self.name = name
        self.members = members
        self.lag = lag
        self.partitions = partitions
    }

    public static var minimumBytes: Int { 2 + 4 + 8 + 4 }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(name)
        buffer.writeInteger(members)
        buffer.writeInteger(lag)
        buffer.writeInteger(partitions)
    }

    public init(from buffer: inout ByteBuffer) throws {
        name = try buffer.readMillraceString("group")
        members = try buffer.readMillraceInteger("members")
        lag = try buffer.readMillraceInteger("lag")
        partitions = try buffer.readMillraceInteger("partitions")
    }
}

/// Backup: a consistent copy of the data file, made by the broker while it runs, written to
/// `destination` (a directory on the broker's machine that must not exist yet).
public struct BackupRequest: Equatable, Sendable {
    public var destination: String
    /// Leave out freed pages and renumber the rest (smaller, slower; LMDB's MDB_CP_COMPACT).
    public var compact: Bool

    public init(destination: String, compact: Bool = true) {
        self.destination = destination
        self.compact = compact
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(destination, maxBytes: Limits.pathBytesMax)
        buffer.writeInteger(Int8(compact ? 1 : 0))
    }

    init(from buffer: inout ByteBuffer) throws {
        destination = try buffer.readMillraceString("destination", maxBytes: Limits.pathBytesMax)
        compact = try buffer.readMillraceInteger("compact", as: Int8.self) != 0
    }
}

public struct BackupResponse: Equatable, Sendable {
    public var bytes: Int64
    public var milliseconds: Int64

    public init(bytes: Int64, milliseconds: Int64) {
        self.bytes = bytes
        self.milliseconds = milliseconds
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(bytes)
        buffer.writeInteger(milliseconds)
    }

    init(from buffer: inout ByteBuffer) throws {
        bytes = try buffer.readMillraceInteger("bytes")
        milliseconds = try buffer.readMillraceInteger("milliseconds")
    }
}
