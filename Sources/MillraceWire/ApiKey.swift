/// Every API of the native protocol, with its key as sent on the wire. docs/PROTOCOL.md
/// mirrors this list and each API's versions (`DocTableTests` checks it).
public enum ApiKey: Int16, CaseIterable, Sendable {
    /// Which APIs and versions the server speaks.
    case apiVersions = 0
    /// The broker's address and each topic's partition count.
    case metadata = 1
    case createTopic = 2
    case deleteTopic = 3
    /// A topic's configuration and each partition's offsets and size.
    case describeTopic = 4
    case listTopics = 5
    /// Append record batches; answered once they are durable.
    case produce = 6
    /// Read record batches, optionally waiting for data (long poll).
    case fetch = 7
    /// Earliest, latest, or first-at-or-after-a-time offsets.
    case listOffsets = 8
    /// Join a consumer group; answered with the member id, generation and assignment.
    case joinGroup = 9
    /// Keep a group membership alive; answered with a new assignment after a rebalance.
    case heartbeat = 10
    case leaveGroup = 11
    /// Commit consumed offsets, fenced by the member's generation.
    case offsetCommit = 12
    case offsetFetch = 13
    /// A group's state, members, assignment, and per partition: committed offset, log end, lag.
    case describeGroup = 14
    /// Groups with live members or committed offsets.
    case listGroups = 15
    /// Delete an idle group's committed offsets.
    case deleteGroup = 16
    /// Register a topic's next schema version (or, as a dry run, only check it).
    case registerSchema = 17
    /// One schema version's document.
    case getSchema = 18
    /// A topic's schema versions and its schema policies.
    case listSchemas = 19
    /// Change a topic's compatibility mode and what happens to invalid records.
    case setSchemaPolicy = 20
    /// An idempotent producer's id and epoch (a new id, or the next epoch of one).
    case initProducer = 21
    /// Turn a topic's business-key duplicate detection on (key and window) or off.
    case setDedupPolicy = 22
    /// Whether a topic holds a business key, and where its first record is.
    case dedupCheck = 23
    /// A topic's duplicate detection: policy, keys held, duplicates caught.
    case dedupStatus = 24
    /// Set what a topic indexes for traces (record key, JSON fields, genealogy links).
    case setIndexPolicy = 25
    /// A topic's index policy and the index's size.
    case indexStatus = 26
    /// Every record holding a value in its indexed fields, across topics, a page at a time.
    case trace = 27
    /// A genealogy walk from a value along the topics' links: where-used (down) or where-from (up).
    case walk = 28
    /// One step of indexing a partition's records appended before its topic's index policy.
    case indexRebuild = 29
    /// What `millrace status` and `top` show: version, uptime, disk, connections, topics' sizes
    /// and traffic, groups' lag.
    case brokerStatus = 30
    /// A consistent copy of the data file, made by the broker while it runs (loopback peers only).
    case backup = 31
    /// Change a topic's retention or the compression producers are asked to use.
    case alterTopic = 32
    /// Train a zstd dictionary on a topic's newest records; producers are given it from then on.
    case trainDictionary = 33
    /// One of a topic's zstd dictionaries by id (0: the current one), to compress or decode with.
    case getDictionary = 34
    /// One SASL step (SCRAM-SHA-256/512): the login a broker with `--auth` asks for first.
    case authenticate = 35
    /// Who this connection acts as: principal, roles, scope, how it logged in.
    case whoAmI = 36
    /// Users (without stored keys), roles and ACL entries.
    case describeSecurity = 37
    /// One change to users, roles or ACL entries (cluster admin).
    case alterSecurity = 38

    /// Versions this build speaks. Produce 1 answers with a per-record outcome; 2 adds a
    /// duplicate's original partition to it. BrokerStatus 1 adds the listeners, 2 the topics'
    /// owners; DescribeGroup 1 the group's protocol and a Kafka group's members' client ids and
    /// hosts; DescribeTopic 1 and AlterTopic 1 the topic's owner.
    public var versions: ClosedRange<Int16> {
        switch self {
        case .produce: 0...2
        case .describeGroup, .describeTopic, .alterTopic: 0...1
        case .brokerStatus: 0...2
        default: 0...0
        }
    }
}
