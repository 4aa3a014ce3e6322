import ArgumentParser
import Foundation
import Logging
import MillraceClient
import MillraceFormat
import MillraceSchema
import MillraceWire
import NIOCore

/// `--broker HOST:PORT`, shared by every command that talks to a running broker.
struct BrokerOptions: ParsableArguments {
    @Option(name: [.customShort("b"), .long], help: "The broker's address, HOST:PORT, or several comma-separated (default: $MILLRACE_BROKER, else 127.0.0.1:7450).")
    var broker: String?

    @Option(help: "Log in as this user (default: $MILLRACE_USER); the password comes from $MILLRACE_PASSWORD, else a prompt.")
    var user: String?
    @Flag(help: "Connect with TLS (default: $MILLRACE_TLS=1; implied by --ca, --cert).") var tls = false
    @Option(help: "The CA that signed the broker's certificate, PEM (default: $MILLRACE_TLS_CA, else the system's CAs).") var ca: String?
    @Option(help: "This client's certificate, PEM, for a broker that asks for one (default: $MILLRACE_TLS_CERT).") var cert: String?
    // Not --key: that is `produce`'s record key (docs/DECISIONS.md, "TLS on every listener").
    @Option(name: .customLong("tls-key"), help: "The private key of --cert, PEM (default: $MILLRACE_TLS_KEY).") var key: String?

    /// The address commands use: --broker, else $MILLRACE_BROKER, else 127.0.0.1:7450.
    var address: String { broker ?? ProcessInfo.processInfo.environment["MILLRACE_BROKER"] ?? "127.0.0.1:7450" }

    func client(requestTimeout: TimeAmount? = nil) throws -> MillraceClient {
        // HOST:PORT, or several separated by commas (tried in order).
        let brokers = address.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        for broker in brokers {
            guard let colon = broker.lastIndex(of: ":"), let port = Int(broker[broker.index(after: colon)...]), (1...65535).contains(port), colon != broker.startIndex
            else {
                // Name where the address came from: a flag the user did not pass confuses.
                let source = self.broker != nil ? "--broker" : "MILLRACE_BROKER"
                Output.standardError("error: \(source) takes HOST:PORT (or several, comma-separated), for example 127.0.0.1:7450 (got \(address))")
                throw ExitCode(2)
            }
        }
        var configuration = MillraceClient.Configuration()
        configuration.brokers = brokers
        configuration.logger = Logger(label: "millrace", factory: { _ in StandardErrorLogHandler() })
        if let requestTimeout { configuration.requestTimeout = requestTimeout }
        configuration.credentials = try credentials()
        configuration.tls = clientTLS()
        return MillraceClient(configuration: configuration)
    }

    /// --tls/--ca/--cert/--key, each else its MILLRACE_TLS* variable; nil: plain TCP.
    func clientTLS() -> ClientTLS? {
        let environment = ProcessInfo.processInfo.environment
        let ca = self.ca ?? environment["MILLRACE_TLS_CA"]
        let cert = self.cert ?? environment["MILLRACE_TLS_CERT"]
        let key = self.key ?? environment["MILLRACE_TLS_KEY"]
        let asked = tls || ["1", "true", "yes"].contains(environment["MILLRACE_TLS"]?.lowercased() ?? "")
        guard asked || ca != nil || cert != nil else { return nil }
        return ClientTLS(caFile: ca, certificateFile: cert, keyFile: key)
    }

    /// --user (or $MILLRACE_USER) with $MILLRACE_PASSWORD, or a password asked for on the terminal.
    func credentials() throws -> Credentials? {
        let environment = ProcessInfo.processInfo.environment
        guard let user = user ?? environment["MILLRACE_USER"], !user.isEmpty else { return nil }
        if let password = environment["MILLRACE_PASSWORD"] { return Credentials(user: user, password: password) }
        guard isatty(STDIN_FILENO) == 1 || isatty(STDERR_FILENO) == 1 else {
            throw CommandFailure(message: "error: no password for \(user): set MILLRACE_PASSWORD (there is no terminal to ask on)")
        }
        return Credentials(user: user, password: String(cString: getpass("Password for \(user): ")))
    }
}

/// Runs `body` with a client, closing it after; an operating error becomes one line on
/// stderr and exit code 1.
func withClient<T>(_ options: BrokerOptions, _ body: (MillraceClient) async throws -> T) async throws -> T {
    let client = try options.client()
    do {
        let result = try await body(client)
        await client.close()
        return result
    } catch let error as MillraceError {
        await client.close()
        Output.standardError("error: \(error.message)")
        throw ExitCode(1)
    }
}

struct TopicCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topic", abstract: "Create, list, describe and delete topics on a running broker.",
        subcommands: [Create.self, Alter.self, List.self, Describe.self, Delete.self, TrainDictionary.self])

    /// `--compatibility NAME`, or exit 2 naming the choices.
    static func compatibility(_ name: String) throws -> SchemaCompatibility {
        guard let mode = SchemaCompatibility(name: name) else {
            Output.standardError("error: --compatibility takes \(SchemaCompatibility.allCases.map(\.description).joined(separator: ", ")) (got \(name))")
            throw ExitCode(2)
        }
        return mode
    }

    /// `--on-invalid NAME`, or exit 2 naming the choices.
    static func invalidRecordPolicy(_ name: String) throws -> InvalidRecordPolicy {
        guard let policy = InvalidRecordPolicy(name: name) else {
            Output.standardError("error: --on-invalid takes reject or quarantine (got \(name))")
            throw ExitCode(2)
        }
        return policy
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a topic.", discussion: Help.exampleLines("millrace topic create confirmations -p 3 --retention 7d", "millrace topic create checked --schema confirmation.schema.json --on-invalid quarantine", "millrace topic create genealogy --index /parent_lot --link /parent_lot:/child_lot --if-not-exists --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic name: letters, digits, '.', '_' and '-'.") var name: String
        @Option(name: [.customShort("p"), .long], parsing: .unconditional, help: "Number of partitions.") var partitions: Int32 = 1
        @Option(parsing: .unconditional, help: "Delete batches older than this, e.g. 7d, 12h, 90m (default: keep forever).") var retention: String?
        @Option(parsing: .unconditional, help: .hidden) var retentionMs: Int64?  // the older form of --retention
        @Option(parsing: .unconditional, help: "Per partition, delete the oldest batches beyond this many bytes (default: no limit).") var retentionBytes: Int64?
        @Option(help: "Compression producers should use: none or zstd.") var compression = "none"
        @Option(help: "Timestamps from the producer (create) or the broker (log-append).") var timestamp = "create"
        @Option(help: "Register this JSON Schema file as version 1: the broker then checks every record.") var schema: String?
        @Option(help: "How new schema versions must relate to earlier ones: none, backward, forward, full, or their -transitive forms.")
        var compatibility = "backward"
        @Option(help: "What happens to records that break the schema: reject (the partition's batch is refused) or quarantine (parked in TOPIC.quarantine).")
        var onInvalid = "reject"
        @Option(help: "Catch duplicates by this business key: key (the record key), header:NAME, or json:/pointer (e.g. json:/event_id).")
        var dedupKey: String?
        @Option(help: "With --dedup-key: how long a key is remembered, e.g. 90s, 30m, 24h, 7d (at most 30d).") var dedupWindow = "24h"
        @OptionGroup var index: IndexOptions
        @Option(help: "The one principal (the system of record) allowed to produce to the topic; others are refused with not_owner.") var owner: String?
        @Flag(help: "Succeed without changing anything when the topic exists. With --schema, the existing topic must hold that schema (other settings are not compared).") var ifNotExists = false
        @Flag(help: "Print one JSON object instead of sentences.") var json = false

        func run() async throws {
            let mode = try TopicCommand.compatibility(compatibility)
            let policy = try TopicCommand.invalidRecordPolicy(onInvalid)
            let dedupWindowMs = try DedupCommand.parse(key: dedupKey, window: dedupWindow)
            let indexPolicy = try index.policy()
            let document = try schema.map(SchemaCommand.read)
            if let document, let schema { try SchemaCommand.compile(document, file: schema, nothingDone: "nothing was created") }
            guard (1...Int32(Limits.partitionsPerTopicMax)).contains(partitions) else {
                Output.standardError("error: --partitions takes 1...\(Limits.partitionsPerTopicMax) (got \(partitions))")
                throw ExitCode(2)
            }
            var retentionMs = self.retentionMs
            if let retention {
                guard retentionMs == nil else {
                    Output.standardError("error: give --retention or --retention-ms, not both")
                    throw ExitCode(2)
                }
                guard let parsed = Durations.parse(retention), parsed > 0 else {
                    Output.standardError("error: --retention takes a duration such as 7d, 12h or 90m (got \(retention))")
                    throw ExitCode(2)
                }
                retentionMs = parsed
            }
            for (flag, value) in [("--retention-ms", retentionMs), ("--retention-bytes", retentionBytes)] {
                if let value, value < 0 {
                    Output.standardError("error: \(flag) takes 0 or more; leave it out to keep everything (got \(value))")
                    throw ExitCode(2)
                }
            }
            guard let codec = CompressionCodec.allCases.first(where: { $0.description == compression }), codec.isSupported else {
                Output.standardError("error: --compression takes none or zstd (got \(compression))")
                throw ExitCode(2)
            }
            guard timestamp == "create" || timestamp == "log-append" else {
                Output.standardError("error: --timestamp takes create or log-append (got \(timestamp))")
                throw ExitCode(2)
            }
            // The client's one path: everything checked first, then created, policies set and
            // the schema registered before dedup and index; with --if-not-exists and a schema,
            // an existing topic must hold that schema.
            let config = MillraceClient.TopicConfig(
                partitions: partitions, retention: retentionMs.map { .milliseconds($0) }, retentionBytes: retentionBytes,
                compression: codec == .zstd ? .zstd : .none, timestamps: timestamp == "create" ? .create : .logAppend, schema: document,
                compatibility: mode, onInvalid: policy, dedupKey: dedupKey, dedupWindow: .milliseconds(dedupWindowMs), index: indexPolicy, owner: owner)
            let (name, ifNotExists) = (self.name, self.ifNotExists)
            let outcome = try await withClient(broker) { client -> (created: Bool, version: Int32?) in
                let created = try await client.createTopic(name, config, ifNotExists: ifNotExists)
                guard created, document != nil else { return (created, nil) }
                return (true, try await client.listSchemas(topic: name).versions.map(\.version).max())
            }
            let version = outcome.version
            if json {
                var object: [String: Any] = ["topic": name, "created": outcome.created]
                if outcome.created {
                    object["partitions"] = Int(partitions)
                    object["retention_ms"] = retentionMs.map { $0 as Any } ?? NSNull()
                    object["schema_version"] = version.map { Int($0) as Any } ?? NSNull()
                    object["owner"] = owner.map { $0 as Any } ?? NSNull()
                }
                print(Output.json(object))
                return
            }
            guard outcome.created else {
                print("topic \(name) exists; nothing changed (--if-not-exists)")
                return
            }
            print("created topic \(name) with \(partitions) partition\(partitions == 1 ? "" : "s")")
            if let owner { print("only \(owner) may produce to it (its owner)") }
            if let dedupKey { print("duplicates by \(dedupKey) are caught for \(Durations.describe(dedupWindowMs))") }
            if let indexPolicy { print("records are indexed by \(IndexOptions.describe(indexPolicy)) for `millrace trace`") }
            if let version, let schema { print("registered \(schema) as schema version \(version); invalid records: \(policy)") }
            if policy == .quarantine && schema == nil {
                print("no schema yet, so nothing is checked or parked; register one with `millrace schema register \(name) FILE`")
            }
        }
    }

    struct Alter: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a topic's retention, size limit, compression or schema policies.",
            discussion: """
                Settings not named stay as they are. Retention applies at the broker's next retention pass (every minute); batches already stored keep their compression.

                Examples:
                  millrace topic alter confirmations --retention 30d
                  millrace topic alter confirmations --retention forever --retention-bytes 10737418240
                  millrace topic alter checked --on-invalid quarantine --compression zstd --json
                """)
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic name.") var name: String
        @Option(parsing: .unconditional, help: "Delete batches older than this (7d, 12h, 90m), or forever.") var retention: String?
        @Option(parsing: .unconditional, help: "Per partition, delete the oldest batches beyond this many bytes, or none.") var retentionBytes: String?
        @Option(help: "Compression producers should use: none or zstd.") var compression: String?
        @Option(help: "How new schema versions must relate to earlier ones: none, backward, forward, full, or their -transitive forms.")
        var compatibility: String?
        @Option(help: "What happens to records that break the schema: reject or quarantine.") var onInvalid: String?
        @Option(help: "The one principal allowed to produce to the topic from now on, or none.") var owner: String?
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            var changes: [String] = []
            var object: [String: Any] = ["topic": name]
            var retentionSetting: MillraceClient.Retention?
            if let retention {
                if retention == "forever" {
                    retentionSetting = .forever
                } else if let ms = Durations.parse(retention), ms > 0 {
                    retentionSetting = .after(.milliseconds(ms))
                } else {
                    Output.standardError("error: --retention takes a duration such as 7d, 12h or 90m, or forever (got \(retention))")
                    throw ExitCode(2)
                }
                changes.append("retention \(retention == "forever" ? "forever" : Durations.describe(Durations.parse(retention) ?? 0))")
                object["retention"] = retention
            }
            var bytesSetting: Int64??
            if let retentionBytes {
                if retentionBytes == "none" {
                    bytesSetting = .some(nil)
                } else if let bytes = Int64(retentionBytes), bytes >= 0 {
                    bytesSetting = .some(bytes)
                } else {
                    Output.standardError("error: --retention-bytes takes a number of bytes, 0 or more, or none (got \(retentionBytes))")
                    throw ExitCode(2)
                }
                changes.append("size limit \(retentionBytes == "none" ? "none" : Output.bytes(Int64(retentionBytes) ?? 0) + " per partition")")
                object["retention_bytes"] = retentionBytes
            }
            var codec: MillraceClient.TopicConfig.Compression?
            if let compression {
                guard let chosen = MillraceClient.TopicConfig.Compression(rawValue: compression) else {
                    Output.standardError("error: --compression takes none or zstd (got \(compression))")
                    throw ExitCode(2)
                }
                codec = chosen
                changes.append("compression \(compression)")
                object["compression"] = compression
            }
            let mode = try compatibility.map(TopicCommand.compatibility)
            if let compatibility {
                changes.append("compatibility \(compatibility)")
                object["compatibility"] = compatibility
            }
            let policy = try onInvalid.map(TopicCommand.invalidRecordPolicy)
            if let onInvalid {
                changes.append("invalid records \(onInvalid)")
                object["on_invalid"] = onInvalid
            }
            let ownerSetting: String?? = owner.map { $0 == "none" ? nil : $0 }
            if let owner {
                changes.append(owner == "none" ? "no owner" : "owner \(owner)")
                object["owner"] = owner == "none" ? NSNull() : owner
            }
            guard !changes.isEmpty else {
                Output.standardError("error: name something to change: --retention, --retention-bytes, --compression, --compatibility, --on-invalid or --owner")
                throw ExitCode(2)
            }
            let (name, retentionValue, bytesValue, codecValue, modeValue, policyValue) = (name, retentionSetting, bytesSetting, codec, mode, policy)
            let schemaless = try await withClient(broker) { client -> Bool in
                try await client.alterTopic(
                    name, retention: retentionValue, retentionBytes: bytesValue, compression: codecValue, compatibility: modeValue, onInvalid: policyValue,
                    owner: ownerSetting)
                guard policyValue == .quarantine else { return false }
                return try await client.listSchemas(topic: name).versions.isEmpty
            }
            if json {
                print(Output.json(object))
            } else {
                print("altered topic \(name): \(changes.joined(separator: ", "))")
                if schemaless {
                    print("no schema yet, so nothing is checked or parked; register one with `millrace schema register \(name) FILE`")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List topics.", discussion: Help.exampleLines("millrace topic list", "millrace topic list --json -b broker-1:7450"))
        @OptionGroup var broker: BrokerOptions
        @Flag(help: "Print JSON instead of a table.") var json = false

        func run() async throws {
            let topics = try await withClient(broker) { try await $0.listTopics() }
            if json {
                print(Output.json(["topics": topics.map { ["name": $0.name, "partitions": Int($0.partitionCount)] as [String: Any] }]))
            } else if topics.isEmpty {
                print("no topics; create one with `millrace topic create NAME`")
            } else {
                print(Output.table(["TOPIC", "PARTITIONS"], topics.map { [$0.name, "\($0.partitionCount)"] }, rightAligned: [1]))
            }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a topic's settings and each partition's offsets and size.", discussion: Help.exampleLines("millrace topic describe confirmations", "millrace topic describe confirmations --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic name.") var name: String
        @Flag(help: "Print JSON instead of a table.") var json = false

        func run() async throws {
            let name = self.name
            typealias Described = (MillraceClient.TopicDescription, MillraceClient.DedupStatus?, MillraceClient.IndexStatus?, MillraceClient.TopicDictionary?)
            let (topic, dedup, index, dictionary) = try await withClient(broker) { client -> Described in
                let topic = try await client.describeTopic(name)
                var dedup: MillraceClient.DedupStatus?
                var index: MillraceClient.IndexStatus?
                var dictionary: MillraceClient.TopicDictionary?
                do {
                    let status = try await client.dedupStatus(topic: name)
                    dedup = status.key.isEmpty ? nil : status
                    let indexed = try await client.indexStatus(topic: name)
                    index = indexed.policy.isEmpty ? nil : indexed
                    dictionary = try await client.currentDictionary(name)
                } catch let error as MillraceError where error.code == .unknownApi {
                    // A broker from before duplicate detection, the key index or dictionaries.
                }
                return (topic, dedup, index, dictionary)
            }
            let records = topic.partitions.reduce(Int64(0)) { $0 + $1.logEndOffset - $1.logStartOffset }
            let bytes = topic.partitions.reduce(Int64(0)) { $0 + $1.bytes }
            let bytesPerRecord = records > 0 ? (Double(bytes) / Double(records) * 10).rounded() / 10 : nil
            let codec = topic.compression.rawValue
            let stamp = topic.timestamps == .logAppend ? "log-append" : "create"
            let retentionMs = topic.retention.map(MillraceClient.milliseconds) ?? -1
            let retentionBytes = topic.retentionBytes ?? -1
            if json {
                print(
                    Output.json([
                        "name": topic.name, "retention_ms": retentionMs, "retention_bytes": retentionBytes, "compression": codec, "owner": topic.owner as Any,
                        "timestamp": stamp,
                        "dedup": dedup.map {
                            [
                                "key": $0.key, "window_ms": $0.windowMs, "keys_held": $0.keysHeld, "runs": Int($0.runs),
                                "oldest_key": $0.oldestKeyMs >= 0 ? JSONText.isoTime(milliseconds: $0.oldestKeyMs) : nil as Any?,
                                "duplicates_total": $0.duplicatesTotal, "duplicates_last_5_min": Int($0.duplicatesRecent),
                            ] as [String: Any?]
                        } as Any,
                        "index": index.map(IndexOptions.object) as Any,
                        "stored_bytes_per_record": bytesPerRecord as Any,
                        "dictionary": dictionary.map {
                            ["id": Int($0.id), "version": Int($0.version), "bytes": $0.bytes, "samples": Int($0.samples), "trained": JSONText.isoTime(milliseconds: $0.trainedAtMs)]
                                as [String: Any]
                        } as Any,
                        "partitions": topic.partitions.map {
                            ["partition": Int($0.partition), "earliest": $0.logStartOffset, "latest": $0.logEndOffset, "bytes": $0.bytes, "batches": $0.batches]
                                as [String: Any]
                        },
                    ]))
                return
            }
            let retention = [
                retentionMs >= 0 ? Durations.describe(retentionMs) : nil,
                retentionBytes >= 0 ? Output.bytes(retentionBytes) + " per partition" : nil,
            ].compactMap { $0 }
            print("topic \(topic.name): \(topic.partitions.count) partition\(topic.partitions.count == 1 ? "" : "s"), retention \(retention.isEmpty ? "forever" : retention.joined(separator: " or ")), compression \(codec), timestamps \(stamp)")
            if let owner = topic.owner { print("owner \(owner): only it may produce to the topic") }
            if let dedup {
                let nowMs = Int64(Date().timeIntervalSince1970 * 1_000)
                let oldest =
                    dedup.oldestKeyMs >= 0
                    ? ", the oldest \(Durations.age(nowMs - dedup.oldestKeyMs)) old (first seen \(JSONText.isoTime(milliseconds: dedup.oldestKeyMs)))" : ""
                print(
                    "dedup: by \(dedup.key) for \(Durations.describe(dedup.windowMs)); \(Output.count(dedup.keysHeld)) keys held\(oldest); \(Output.count(dedup.duplicatesTotal)) duplicates caught, \(Output.count(Int64(dedup.duplicatesRecent))) in the last 5 minutes"
                )
            }
            if let index { print("index: \(IndexOptions.line(index))") }
            if let bytesPerRecord {
                print("stored: \(Output.count(records)) records in \(Output.bytes(bytes)), \(String(format: "%.1f", bytesPerRecord)) bytes per record (batch headers included)")
            }
            if let dictionary {
                print(
                    "dictionary: zstd dictionary \(dictionary.id) (version \(dictionary.version), \(Output.bytes(Int64(dictionary.bytes)))), trained \(JSONText.isoTime(milliseconds: dictionary.trainedAtMs)) on \(Output.count(Int64(dictionary.samples))) records"
                )
            }
            print(
                Output.table(
                    ["PARTITION", "EARLIEST", "LATEST", "RECORDS", "BYTES"],
                    topic.partitions.map {
                        ["\($0.partition)", Output.count($0.logStartOffset), Output.count($0.logEndOffset), Output.count($0.logEndOffset - $0.logStartOffset), Output.bytes($0.bytes)]
                    }, rightAligned: [0, 1, 2, 3, 4]))
        }
    }

    struct TrainDictionary: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "train-dictionary",
            abstract: "Train a zstd dictionary on a topic's newest records; producers compress with it from then on.",
            discussion: """
                Small events compress poorly alone: a dictionary trained on the topic's own records gives zstd \
                what they have in common. The topic must use zstd compression (`topic alter T --compression zstd`); \
                producers pick the dictionary up when they first send to the topic, consumers fetch it as they meet \
                it, and every earlier dictionary is kept so older records still decode. Train again when the \
                events' shape changes.
                """ + "\n\n" + Help.exampleLines("millrace topic train-dictionary confirmations", "millrace topic train-dictionary confirmations --samples 5000 --max-bytes 32768 --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic name.") var name: String
        @Option(help: "Newest records to train on (spread over the partitions; at least 100; the broker reads at most 4 MiB of values).")
        var samples = 10_000
        @Option(help: "The dictionary's size at most, in bytes.") var maxBytes = 16 << 10
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            let (name, samples, maxBytes) = (self.name, self.samples, self.maxBytes)
            let trained = try await withClient(broker) { try await $0.trainDictionary(name, samples: samples, maxBytes: maxBytes) }
            let dictionary = trained.dictionary
            if json {
                print(
                    Output.json([
                        "topic": name, "id": Int(dictionary.id), "version": Int(dictionary.version), "bytes": dictionary.bytes, "samples": Int(dictionary.samples),
                        "one_record_batch_bytes": ["plain": trained.plainBytesPerRecord, "zstd": trained.zstdBytesPerRecord, "zstd_with_dictionary": trained.dictionaryBytesPerRecord],
                    ]))
                return
            }
            print(
                "trained zstd dictionary \(dictionary.id) (version \(dictionary.version), \(Output.bytes(Int64(dictionary.bytes)))) for \(name) on \(Output.count(Int64(dictionary.samples))) records"
            )
            print(
                String(
                    format: "a one-record batch's records: %.0f bytes plain, %.0f with zstd, %.0f with zstd and this dictionary", trained.plainBytesPerRecord,
                    trained.zstdBytesPerRecord, trained.dictionaryBytesPerRecord))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a topic and everything in it, with its quarantine (TOPIC.quarantine) if it has one.",
            discussion: Help.exampleLines("millrace topic delete scratch", "millrace topic delete scratch --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic name.") var name: String
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            let (name, quarantine) = (self.name, self.name + ".quarantine")
            // A quarantine is no use without its topic (re-drive has nowhere to put records back).
            let quarantineDeleted = try await withClient(broker) { client -> Bool in
                try await client.deleteTopic(name)
                do {
                    try await client.deleteTopic(quarantine)
                    return true
                } catch let error as MillraceError where error.code == .unknownTopic {
                    return false
                }
            }
            if json {
                var object: [String: Any] = ["topic": name, "deleted": true]
                if quarantineDeleted { object["quarantine_deleted"] = quarantine }
                print(Output.json(object))
            } else {
                print(quarantineDeleted ? "deleted topic \(name) and its quarantine \(quarantine)" : "deleted topic \(name)")
            }
        }
    }
}
