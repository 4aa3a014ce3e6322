/// Named limits, checked at the boundary where data enters. Units are in the names.
/// docs/PROTOCOL.md lists every one a peer meets on the wire; `DocTableTests` checks that
/// table against this file (a new limit goes there, or into its `internalLimits`).
public enum Limits {
    /// Largest protocol frame (after the size field): a full batch plus room for the request around it.
    public static let frameBytesMax = (1 << 20) + (64 << 10)
    /// Largest frame from a connection that has not logged in (a broker with `--auth
    /// required`): ApiVersions and the SASL login are a few hundred bytes.
    public static let frameBytesBeforeLogin = 16 << 10
    /// Largest response frame a client accepts; the broker keeps fetch responses within
    /// `fetchBytesMax` plus per-partition overhead.
    public static let responseFrameBytesMax = 64 << 20
    /// The most record bytes one fetch response carries, whatever the request asks.
    public static let fetchBytesMax = 32 << 20
    /// Longest a fetch waits for `min bytes` (a long poll): a longer `max wait ms` is answered
    /// by then with what there is. A peer cannot park a fetch for the 24 days an `i32` allows.
    public static let fetchWaitMsMax: Int32 = 60_000
    /// Requests a connection may have unanswered before the server stops reading from it.
    public static let inFlightRequestsMax = 256
    /// Longest protocol string.
    public static let stringBytesMax = Int(Int16.max)
    /// Longest file path in a request or answer (a backup's destination, the data directory).
    public static let pathBytesMax = 4_096
    /// Largest record batch accepted for append, header included.
    public static let batchBytesMax = 1 << 20
    /// Largest decompressed records section of one batch (a guard against decompression bombs).
    public static let decompressedBatchBytesMax = 16 << 20
    /// Most records in one batch.
    public static let recordsPerBatchMax = 65_536
    /// Longest record key.
    public static let keyBytesMax = 4_096
    /// Most headers on one record.
    public static let headersPerRecordMax = 64
    /// Largest schema document, in bytes of JSON.
    public static let schemaBytesMax = 64 << 10
    /// Deepest nesting of subschemas in one schema document.
    public static let schemaDepthMax = 32
    /// Most subschemas in one schema document (after `$ref`s are resolved).
    public static let schemaNodesMax = 4_096
    /// Most `required` names in one subschema (the validator tracks them in one 64-bit word).
    public static let schemaRequiredMax = 64
    /// Most subschemas one value can be checked against through `$ref`, `anyOf` and `oneOf`
    /// without moving into the data (each branch is a full check): bounds validation work.
    public static let schemaApplicatorFanOutMax = 1_024
    /// Steps one record's value may take to check against its schema (a node visited, an enum
    /// or property compared, a pattern state stepped per character): past it the record is
    /// invalid (rule `budget`). With answers remembered per (subschema, value) a 300-byte
    /// event takes tens to hundreds; this is about 40 ms of a validation lane (a 4,000-state
    /// pattern over 1 MB stopped at it in 0.05 s, measured end to end).
    public static let validationStepsPerValueMax = 1 << 20
    /// Steps all the records of one produce request may take together, over all its
    /// partitions and lanes: past it the rest are invalid (rule `budget`), so no request holds
    /// the validation lanes for long (about 0.3 s of one lane).
    public static let validationStepsPerRequestMax = 8 << 20
    /// Steps one compatibility check may take (a pair of subschemas compared, or a byte of an
    /// earlier version compiled for a transitive check): past it the registration is refused
    /// with a reason that names this limit. Runs on the schema registry's own thread, never
    /// the writer's.
    public static let schemaCompatibilityStepsMax = 1 << 18
    /// Schema versions one topic may have (each registration after it: `limit_reached`).
    public static let schemaVersionsPerTopicMax = 1_000
    /// Bytes of compiled earlier schema versions (those a record names by its header) held
    /// across the broker; each topic's latest version is held besides. A compiled version
    /// takes about 40 times its document's bytes (measured: 1.57 MB for a 40 KB document).
    public static let schemaCompiledCacheBytesMax = 64 << 20
    /// Longest `pattern`, in characters.
    public static let patternLengthMax = 1_024
    /// Most states a compiled `pattern` may have (repetition counts multiply them).
    public static let patternStatesMax = 4_096
    /// Deepest nesting of arrays and objects in a JSON record the broker parses.
    public static let jsonDepthMax = 64
    /// Longest topic name (Kafka's limit).
    public static let topicNameBytesMax = 249
    /// Most partitions in one topic.
    public static let partitionsPerTopicMax = 1_024
    /// Most partitions in one data directory (each is an LMDB named database).
    public static let partitionsMax = 8_192
    /// Appends and commits waiting for the writer before callers are made to wait.
    public static let pendingWritesMax = 8_192
    /// Offsets between a partition's time-index entries (at least; an entry is written only
    /// where the partition's highest timestamp rises).
    public static let timeIndexIntervalOffsets: Int64 = 16
    /// Longest consumer group name (as a topic name: a committed offset's storage key holds
    /// both and must fit LMDB's 511-byte key limit; see LimitsTests).
    public static let groupNameBytesMax = 249
    /// Longest consumer-group member id. The broker makes ids `GROUP-N-RANDOM` (a counter and
    /// 16 hex digits), so this leaves room for the longest group name (see LimitsTests).
    public static let memberIDBytesMax = 320
    /// Longest error message in a response; longer ones are cut at a character boundary.
    public static let errorMessageBytesMax = 4_096
    /// Longest JSON pointer, rule and message of a record's outcome — in a produce answer and
    /// in a parked record's error headers; longer ones are cut at a character boundary (a
    /// message can quote a value or an enum list of any length).
    public static let outcomePathBytesMax = 1_024
    public static let outcomeRuleBytesMax = 64
    public static let outcomeMessageBytesMax = 1_024
    /// Most bytes the headers parking adds to an invalid record (`millrace-error` and the
    /// rest, names and lengths included; LimitsTests checks the longest case fits). A record
    /// whose batch of its own had this much room under `batchBytesMax` always parks.
    public static let quarantineHeadersBytesMax = 4_096
    /// Most topics named in one request (Metadata, JoinGroup, Produce, Fetch, ...).
    public static let topicsPerRequestMax = 1_024
    /// Most (topic, partition) entries in one request, across its topics.
    public static let partitionsPerRequestMax = 8_192
    /// Longest metadata string stored with a committed offset.
    public static let offsetMetadataBytesMax = 4_096
    /// A group-commit transaction takes no more appends once it holds this many batch bytes,
    /// which bounds how long a small append can wait behind large ones.
    public static let groupCommitBytesMax = 4 << 20
    /// Request bytes one connection may have read and not yet answered before the broker
    /// stops reading from it (at least one whole frame).
    public static let connectionRequestBytesMax = 8 << 20
    /// Response bytes one connection may have waiting to be written before the broker stops
    /// reading from it; a fetch is sized to fit what is left.
    public static let connectionResponseBytesMax = 16 << 20
    /// The same, across all connections: past either, connections stop reading until bytes are released.
    public static let brokerRequestBytesMax = 64 << 20
    public static let brokerResponseBytesMax = 96 << 20
    /// Open client connections; more are closed as they arrive.
    public static let connectionsMax = 1_024
    /// Consumer groups the broker knows — with live members, with committed offsets, or both
    /// (a commit with generation -1 makes a group of offsets alone) — and members in one group.
    public static let groupsMax = 10_000
    public static let groupMembersMax = 1_000
    /// Most batches that one retention pass deletes from one partition (keeps transactions short).
    public static let retentionBatchesPerPassMax = 10_000
    /// Duplicate detection: the longest window a topic may remember keys for (30 days).
    public static let dedupWindowMsMax: Int64 = 30 * 24 * 3_600_000
    /// A dedup key spec (`header:NAME`, `json:/pointer`).
    public static let dedupKeySpecBytesMax = 256
    /// Topics with duplicate detection per broker: each holds a fixed in-memory filter.
    public static let dedupTopicsMax = 64
    /// A business key longer than this is not remembered: its record is appended unchecked.
    public static let dedupKeyBytesMax = 1_024
    /// Key index: JSON pointers indexed per topic (besides the record key).
    public static let indexFieldsMax = 8
    /// Key index: genealogy links declared per topic.
    public static let indexLinksMax = 4
    /// Key index: values indexed from one record (wildcard pointers can name many); past it
    /// the rest of that record's values are not indexed.
    public static let indexValuesPerRecordMax = 256
    /// Hits one trace page returns at most.
    public static let traceHitsPerPageMax = 1_000

    // HTTP listener and groups (issue 22)
    /// Operations HTTP connections open at once. At the cap a new connection replaces the one
    /// that has gone longest without a request or a response written, so idle and hostile
    /// connections cannot keep a liveness probe out.
    public static let httpConnectionsMax = 64
    /// Response bytes one HTTP connection may have unwritten before its next request is held
    /// (the socket is not read meanwhile): a peer that pipelines requests and never reads costs
    /// this, not a response per request.
    public static let httpConnectionResponseBytesMax = 256 << 10

    // Trace (issue 22)

    /// Index entries one trace page reads at most (then it ends, with a cursor, even short of
    /// its hits): entries of other topics and of removed records cost a page too.
    public static let traceEntriesPerPageMax = 64 * traceHitsPerPageMax
    /// Index entries one genealogy walk reads at most, over all its nodes; there it stops and
    /// says so (a value in a million records would otherwise be read whole for one edge).
    /// Each entry may mean reading and parsing its record: ~5–12 µs, so ~1–2.4 s at most.
    public static let walkIndexEntriesMax = 200_000

    // Producers (issue 22)
    /// Producer ids given out and not yet used for a batch: past this many, the oldest such
    /// id is forgotten as a new one is given out (its producer, if it ever writes, is told
    /// `unknown_producer_id` and asks again). Bounds what a flood of InitProducer can hold.
    public static let producerIdsUnusedMax = 65_536
    /// An id given out and never used for a batch is forgotten after this long (an id that
    /// wrote is kept for the broker's producer idle time, 7 days by default).
    public static let producerUnusedIdleMs: Int64 = 10 * 60_000
    /// A producer's last-write time is stored again only once it has moved by this much
    /// (or by a sixteenth of the idle time, if less): idle expiry is that coarse, and a busy
    /// producer does not rewrite its record and expiry entry on every batch.
    public static let producerActivityStepMs: Int64 = 60_000
    /// Most producer ids one expiry pass forgets (the pass reads the expiry index in order
    /// and stops at the first id still in use, so it reads about as many as it forgets).
    public static let producerExpiryPerPassMax = 4_096
    /// Most unused ids a new id's transaction forgets to get back under `producerIdsUnusedMax`.
    public static let producerEvictionsPerInitMax = 16
}
