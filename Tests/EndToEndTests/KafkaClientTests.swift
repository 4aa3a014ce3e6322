import Foundation
import Glibc
import MillraceClient
import MillraceFormat
import MillraceServer
import MillraceStorage
import TestSupport
import Testing

/// Real Kafka clients against the broker's Kafka listener: kcat, confluent-kafka (librdkafka)
/// and kafka-python (its own protocol code), run as child processes (the Python ones through
/// the scripts in Tests/KafkaClients, which print JSON lines). Each test checks what the
/// clients read and commit against what the native client reads and commits: contents,
/// offsets and counts, never timings. A missing client fails the test, saying to run
/// scripts/install-deps: a suite that skips what it cannot run is a suite that can pass with
/// the listener broken.
///
/// Serialized: every test starts its own broker, but librdkafka's threads and the Python
/// interpreters are heavy for a two-core runner beside the rest of the suite.
@Suite(.serialized, .stopsLiveServers, .timeLimit(.minutes(5))) struct KafkaClientTests {
    // MARK: kcat

    /// kcat lists the topic; produces keyed records with headers, zstd-compressed; reads back
    /// its own records and the native producer's with keys, headers and values at the offsets
    /// each was given; and the native consumer reads kcat's at those offsets too.
    @Test func kcatListsProducesAndConsumesBesideTheNativeClient() async throws {
        let kcat = try Self.tool("kcat")
        let (live, bootstrap) = try await Self.broker()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        _ = try await client.createTopic("lots", MillraceClient.TopicConfig(partitions: 3))

        let listing = try await Self.run(kcat, ["-b", bootstrap, "-L", "-J", "-t", "lots"])
        let metadata = try JSONDecoder().decode(KcatMetadata.self, from: Data(listing.utf8))
        #expect(metadata.brokers.map(\.name) == [bootstrap])
        #expect(metadata.topics.map(\.topic) == ["lots"])
        #expect(metadata.topics.first?.partitions.map(\.partition).sorted() == [0, 1, 2])
        #expect(metadata.topics.first?.partitions.allSatisfy { $0.leader == 0 } == true, "\(listing)")

        // kcat first, into an empty partition: its records are offsets 0..<20 there. The
        // values compress well even one to a batch: librdkafka sends a batch uncompressed
        // when zstd would not make it smaller.
        let note = String(repeating: "checked ", count: 16)
        let lots = (0..<20).map { (key: "LOT-\($0)", value: "{\"lot\":\"LOT-\($0)\",\"seq\":\($0),\"note\":\"\(note)\"}") }
        _ = try await Self.run(
            kcat, ["-b", bootstrap, "-P", "-t", "lots", "-p", "1", "-K:", "-H", "source=kcat", "-H", "plant=P7", "-z", "zstd"],
            input: lots.map { "\($0.key):\($0.value)\n" }.joined())
        var expected = lots.enumerated().map { index, lot in
            Seen(partition: 1, offset: Int64(index), key: lot.key, value: lot.value, headers: [["source", "kcat"], ["plant", "P7"]])
        }

        // Then the native producer (zstd too) into the same partition.
        var configuration = Producer.Configuration()
        configuration.compression = .zstd
        let producer = Producer(client: client, configuration: configuration)
        var handles: [DeliveryHandle] = []
        for index in 0..<10 {
            handles.append(
                try await producer.send(
                    ProducerRecord(
                        topic: "lots", partition: 1, key: "NATIVE-\(index)", value: "native-\(index)",
                        headers: [RecordHeader(key: "source", value: Array("native".utf8))])))
        }
        for (index, handle) in handles.enumerated() {
            let delivery = try await handle.delivery()
            #expect(delivery.outcome == .appended && delivery.partition == 1)
            expected.append(Seen(partition: 1, offset: delivery.offset, key: "NATIVE-\(index)", value: "native-\(index)", headers: [["source", "native"]]))
        }
        #expect(expected.map(\.offset) == Array(0..<30), "the native records follow kcat's: \(expected.map(\.offset))")

        let consumed = try await Self.run(kcat, ["-b", bootstrap, "-C", "-t", "lots", "-o", "beginning", "-e", "-q", "-f", "%p\\t%o\\t%k\\t%h\\t%s\\n"])
        let readByKcat = try consumed.split(separator: "\n").map { try Seen(kcatLine: $0) }
        #expect(readByKcat == expected)
        let codecs = try Self.storedCodecs(live, "lots", 1)
        #expect(codecs.count >= 2 && codecs.allSatisfy { $0 == .zstd }, "kcat's -z zstd and the native producer's zstd: \(codecs)")
        #expect(try await Self.nativeRecords(client, "lots") == expected)
        await client.close()
        await live.stop()
    }

    // MARK: confluent-kafka

    /// An idempotent zstd Producer and a group Consumer that commits; AdminClient creates a
    /// topic with retention.ms, reads it back with describe_configs, and deletes it.
    @Test func confluentKafkaProducesConsumesInAGroupAndAdministersTopics() async throws {
        let (live, bootstrap) = try await Self.broker()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await produceAndConsumeInAGroup(script: "confluent_client.py", source: "confluent", live: live, bootstrap: bootstrap, client: client)

        _ = try await Self.python("confluent_client.py", ["create-topic", bootstrap, "scrap", "--partitions", "3", "--config", "retention.ms=3600000"])
        let created = try await client.describeTopic("scrap")
        #expect(created.partitions.count == 3)
        #expect(created.retention == .milliseconds(3_600_000))
        let described = try await Self.python("confluent_client.py", ["describe-configs", bootstrap, "scrap"])
        #expect(described.first { $0.kind == "configs" }?.configs?["retention.ms"] == "3600000", "\(described)")
        let deleted = try await Self.python("confluent_client.py", ["delete-topic", bootstrap, "scrap"])
        #expect(deleted.first { $0.kind == "topics" }?.topics == ["orders"])
        #expect(try await client.listTopics().map(\.name) == ["orders"])
        await #expect(throws: MillraceError.self) { try await client.partitionCount("scrap") }
        await client.close()
        await live.stop()
    }

    // MARK: kafka-python

    /// A zstd KafkaProducer with headers and a KafkaConsumer in a group that commits;
    /// KafkaAdminClient creates and deletes a topic.
    @Test func kafkaPythonProducesConsumesInAGroupAndAdministersTopics() async throws {
        let (live, bootstrap) = try await Self.broker()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        try await produceAndConsumeInAGroup(script: "kafka_python_client.py", source: "kafka-python", live: live, bootstrap: bootstrap, client: client)

        let created = try await Self.python("kafka_python_client.py", ["create-topic", bootstrap, "scratch", "--partitions", "2", "--config", "retention.ms=60000"])
        #expect(created.first { $0.kind == "topics" }?.topics == ["orders", "scratch"])
        let described = try await client.describeTopic("scratch")
        #expect(described.partitions.count == 2)
        #expect(described.retention == .seconds(60))
        let deleted = try await Self.python("kafka_python_client.py", ["delete-topic", bootstrap, "scratch"])
        #expect(deleted.first { $0.kind == "topics" }?.topics == ["orders"])
        #expect(try await client.listTopics().map(\.name) == ["orders"])
        await client.close()
        await live.stop()
    }

    /// Thirty keyed records with headers from `script`'s producer into a 2-partition topic
    /// "orders": offsets in each partition run from 0 with no gap; the native consumer reads
    /// exactly them; the script's group consumer reads exactly them and commits each
    /// partition's end, which the native client sees as the group's committed offsets.
    func produceAndConsumeInAGroup(script: String, source: String, live: LiveServer, bootstrap: String, client: MillraceClient) async throws {
        _ = try await client.createTopic("orders", MillraceClient.TopicConfig(partitions: 2))
        let deliveries = try await Self.python(script, ["produce", bootstrap, "orders", "--count", "30"]).filter { $0.kind == "delivery" }
        #expect(deliveries.count == 30)
        let sent = try deliveries.map { try Seen(line: $0) }
        #expect(sent.allSatisfy { $0.headers.first == ["source", source] }, "\(sent.prefix(3))")
        var ends: [Int32: Int64] = [:]
        for partition in Set(sent.map(\.partition)) {
            let offsets = sent.filter { $0.partition == partition }.map(\.offset).sorted()
            #expect(offsets == Array(0..<Int64(offsets.count)), "partition \(partition): \(offsets)")
            ends[partition] = Int64(offsets.count)
        }
        #expect(ends.keys.sorted() == [0, 1], "the keys spread over both partitions: \(ends)")

        #expect(Set(try await Self.nativeRecords(client, "orders")) == Set(sent))
        for partition in Int32(0)...1 {
            let codecs = try Self.storedCodecs(live, "orders", partition)
            #expect(!codecs.isEmpty && codecs.allSatisfy { $0 == .zstd }, "\(script) sends zstd: partition \(partition) holds \(codecs)")
        }
        let consumed = try await Self.python(script, ["consume", bootstrap, "orders", "--group", "billing"])
        let read = try consumed.filter { $0.kind == "record" }.map { try Seen(line: $0) }
        #expect(read.count == 30)
        #expect(Set(read) == Set(sent))
        #expect(consumed.last { $0.kind == "committed" }?.offsets == Self.keyed(ends))
        #expect(try await client.committedOffsets(group: "billing", topic: "orders") == ends)
        #expect(try await client.offsets(topic: "orders", partitions: [0, 1], at: .latest) == ends)
    }

    // MARK: Groups

    /// Two confluent-kafka consumers in one group on four partitions: each owns some, together
    /// all. With the group stable, 160 records are read exactly once between them and both
    /// commit; the first closes and the second comes to own all four; 160 more are read by
    /// it. Nothing is lost; nothing committed before the hand-over is read again (the new
    /// owner starts from the committed offsets, and everything read had been committed); the
    /// group's committed offsets end at the log end.
    @Test func twoConfluentConsumersShareAndHandOverPartitions() async throws {
        let (live, bootstrap) = try await Self.broker()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        _ = try await client.createTopic("lines", MillraceClient.TopicConfig(partitions: 4))
        let lines = try await Self.python(
            "confluent_client.py", ["group-pair", bootstrap, "lines", "--group", "packing", "--count", "160", "--timeout", "45"], timeoutSeconds: 90)

        let stable = try #require(lines.first { $0.kind == "stable" }?.owned, "\(lines.filter { $0.kind != "record" })")
        let first = Set(stable["c1"] ?? []), second = Set(stable["c2"] ?? [])
        #expect(!first.isEmpty && !second.isEmpty && first.isDisjoint(with: second) && first.union(second) == [0, 1, 2, 3], "\(stable)")
        #expect(lines.first { $0.kind == "phase1-end" }?.owned == stable, "no rebalance while the group was stable")

        func deliveries(_ phase: Int) -> Set<Place> { Set(lines.filter { $0.kind == "delivery" && $0.phase == phase }.compactMap(Place.init)) }
        func reads(_ phase: Int) -> [Place] { lines.filter { $0.kind == "record" && $0.phase == phase }.compactMap(Place.init) }
        let firstSent = deliveries(1), secondSent = deliveries(2)
        #expect(firstSent.count == 160 && secondSent.count == 160)
        let firstRead = reads(1)
        #expect(firstRead.count == 160 && Set(firstRead) == firstSent, "phase 1: each record read exactly once")
        // The first two commits are the members' before the first one closes.
        var firstCommits: [String: Int64] = [:]
        for offsets in lines.filter({ $0.kind == "committed" }).prefix(2).compactMap(\.offsets) { firstCommits.merge(offsets) { old, _ in old } }
        #expect(firstCommits == Self.keyed(Self.ends(of: firstSent)), "both members committed what they read")

        #expect(lines.first { $0.kind == "taken-over" }?.partitions == [0, 1, 2, 3])
        let secondRead = reads(2)
        #expect(secondSent.isSubset(of: Set(secondRead)), "phase 2: nothing lost")
        #expect(Set(secondRead).isDisjoint(with: firstSent), "a record committed before the hand-over was read again")
        let ends = Self.ends(of: firstSent.union(secondSent))
        #expect(ends == [0: 80, 1: 80, 2: 80, 3: 80])
        #expect(lines.last { $0.kind == "committed" }?.offsets == Self.keyed(ends))
        #expect(try await client.committedOffsets(group: "packing", topic: "lines") == ends)
        #expect(try await client.offsets(topic: "lines", partitions: [0, 1, 2, 3], at: .latest) == ends)
        await client.close()
        await live.stop()
    }

    /// Offsets a confluent-kafka consumer committed, moved back by the native client (what
    /// `millrace group reset --execute` sends) once it has left: the consumer, back in the
    /// same group, reads from the moved offsets and no earlier, though told to start at the
    /// end when it finds none.
    @Test func aGroupResetNativelyIsWhereTheKafkaConsumerResumes() async throws {
        let (live, bootstrap) = try await Self.broker()
        defer { live.remove() }
        let client = MillraceClient(host: "127.0.0.1", port: live.port)
        _ = try await client.createTopic("readings", MillraceClient.TopicConfig(partitions: 2))
        let producer = Producer(client: client)
        var handles: [DeliveryHandle] = []
        for partition in Int32(0)...1 {
            for index in 0..<5 {
                let record = ProducerRecord(topic: "readings", partition: partition, key: "R\(partition)-\(index)", value: "reading-\(partition)-\(index)")
                handles.append(try await producer.send(record))
            }
        }
        for handle in handles { _ = try await handle.delivery() }

        let firstRun = try await Self.python("confluent_client.py", ["consume", bootstrap, "readings", "--group", "dashboard"])
        #expect(firstRun.filter { $0.kind == "record" }.count == 10)
        #expect(firstRun.last { $0.kind == "committed" }?.offsets == ["0": 5, "1": 5])
        #expect(try await client.committedOffsets(group: "dashboard", topic: "readings") == [0: 5, 1: 5])

        // Partition 0 to its beginning, partition 1 to offset 3.
        try await client.commitOffsets(group: "dashboard", topic: "readings", offsets: [0: 0, 1: 3])
        let secondRun = try await Self.python("confluent_client.py", ["consume", bootstrap, "readings", "--group", "dashboard", "--reset", "latest"])
        let reread = try secondRun.filter { $0.kind == "record" }.map { try Seen(line: $0) }
        let expected = [(Int32(0), 0..<5), (Int32(1), 3..<5)].flatMap { partition, offsets in
            offsets.map { Seen(partition: partition, offset: Int64($0), key: "R\(partition)-\($0)", value: "reading-\(partition)-\($0)", headers: []) }
        }
        #expect(reread.sorted { ($0.partition, $0.offset) < ($1.partition, $1.offset) } == expected)
        #expect(secondRun.last { $0.kind == "committed" }?.offsets == ["0": 5, "1": 5])
        #expect(try await client.committedOffsets(group: "dashboard", topic: "readings") == [0: 5, 1: 5])
        await client.close()
        await live.stop()
    }
}

// MARK: Support

extension KafkaClientTests {
    /// A broker with its Kafka listener on a free port, and that listener's HOST:PORT.
    static func broker() async throws -> (LiveServer, String) {
        let live = try await LiveServer(configure: { $0.kafka = MillraceServer.KafkaListener(host: "127.0.0.1", port: 0) })
        guard let port = live.server.boundAddress(.kafka)?.port else {
            await live.stop()
            live.remove()
            throw ClientFailure(description: "the Kafka listener did not bind")
        }
        return (live, "127.0.0.1:\(port)")
    }

    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("KafkaClients")

    /// An executable on PATH, or a failure saying how to get it.
    static func tool(_ name: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        throw ClientFailure(description: "\(name) is not on PATH (\(path)): run scripts/install-deps, which installs kcat, librdkafka-dev and the Python Kafka clients")
    }

    /// Runs a script of Tests/KafkaClients and decodes its JSON lines.
    /// `clientConfig`: settings every client of the script gets (security.protocol, sasl.*,
    /// ssl.*; kafka-python's own names for it), as KAFKA_CLIENT_CONFIG.
    static func python(_ script: String, _ arguments: [String], timeoutSeconds: Double = 60, clientConfig: [String: String] = [:]) async throws -> [ClientLine] {
        let config = String(decoding: try JSONSerialization.data(withJSONObject: clientConfig), as: UTF8.self)
        let output = try await run(
            try tool("python3"), [scripts.appendingPathComponent(script).path] + arguments, timeoutSeconds: timeoutSeconds,
            environment: clientConfig.isEmpty ? [:] : ["KAFKA_CLIENT_CONFIG": config])
        return try output.split(separator: "\n").map { line in
            do {
                return try JSONDecoder().decode(ClientLine.self, from: Data(line.utf8))
            } catch {
                throw ClientFailure(description: "\(script) \(arguments.first ?? ""): a line that is not one of its JSON lines: \(line) (\(error))")
            }
        }
    }

    /// Runs a client to its end and returns its standard output; throws when it exits
    /// non-zero or outlives `timeoutSeconds` (it is then killed), with the end of what it said.
    /// The child is killed on every way out, a cancelled test included.
    static func run(_ executable: String, _ arguments: [String], input: String? = nil, timeoutSeconds: Double = 60, environment: [String: String] = [:]) async throws
        -> String
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, given in given } }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let standardInput = input.map { _ in Pipe() }
        process.standardInput = standardInput ?? FileHandle.nullDevice
        let command = ([URL(fileURLWithPath: executable).lastPathComponent] + arguments.map { $0.contains(" ") ? "'\($0)'" : $0 }).joined(separator: " ")
        try process.run()
        defer {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
        // Both pipes are read while the child runs: one that fills a pipe nobody reads never ends.
        let drain = PipeDrain([output, errors])
        if let standardInput, let input {
            standardInput.fileHandleForWriting.write(Data(input.utf8))
            try standardInput.fileHandleForWriting.close()
        }
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutSeconds * 1000))
        var timedOut = false
        while process.isRunning {
            if ContinuousClock.now >= deadline {
                timedOut = true
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let read = await drain.ended()
        let (stdout, stderr) = (String(decoding: read[0], as: UTF8.self), String(decoding: read[1], as: UTF8.self))
        guard !timedOut, process.terminationStatus == 0 else {
            let how = timedOut ? "was killed after \(timeoutSeconds) s" : "exited with \(process.terminationStatus)"
            let lastOutput = stdout.split(separator: "\n").suffix(5).joined(separator: "\n")
            throw ClientFailure(description: "\(command) \(how)\nstandard output (last lines):\n\(lastOutput)\nstandard error (end):\n\(stderr.suffix(3000))")
        }
        return stdout
    }

    /// The codec of each batch stored in a partition, in offset order: what the client sent,
    /// as the broker keeps batches as they came.
    static func storedCodecs(_ live: LiveServer, _ topic: String, _ partition: Int32) throws -> [CompressionCodec?] {
        var codecs: [CompressionCodec?] = []
        _ = try live.storage.read(topic: topic, partition: partition, from: 0, maxBytes: 64 << 20) { batch in
            codecs.append((try? RecordBatchHeader(parsing: batch))?.attributes.codec)
        }
        return codecs
    }

    /// Every record of `topic` as the native consumer reads it, to the log end.
    static func nativeRecords(_ client: MillraceClient, _ topic: String) async throws -> [Seen] {
        var records: [Seen] = []
        for try await record in Consumer(client: client, topic: topic, from: .earliest, stopAtEnd: true) { records.append(Seen(record)) }
        return records
    }

    /// Per partition, one past the highest offset among `places`.
    static func ends(of places: Set<Place>) -> [Int32: Int64] {
        places.reduce(into: [:]) { ends, place in ends[place.partition] = max(ends[place.partition] ?? 0, place.offset + 1) }
    }

    /// Partition-keyed offsets as the scripts print them (JSON keys are strings).
    static func keyed(_ offsets: [Int32: Int64]) -> [String: Int64] {
        Dictionary(uniqueKeysWithValues: offsets.map { ("\($0.key)", $0.value) })
    }
}

extension KafkaClientTests {
    struct ClientFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// One JSON line of a Tests/KafkaClients script; `kind` says which fields it has.
    struct ClientLine: Decodable, Sendable, CustomStringConvertible {
        var kind: String
        var consumer: String?
        var phase: Int?
        var partition: Int32?
        var offset: Int64?
        var key: String?
        var value: String?
        var headers: [[String?]]?
        var partitions: [Int32]?
        /// Committed offsets by partition.
        var offsets: [String: Int64]?
        /// Partitions owned, by member.
        var owned: [String: [Int32]]?
        var configs: [String: String]?
        var topics: [String]?

        var description: String { "\(kind) \(consumer ?? "") \(partition.map { "\($0)" } ?? "")/\(offset.map { "\($0)" } ?? "") \(value ?? "")" }
    }

    /// A record as a client saw it: where, and what.
    struct Seen: Hashable, Sendable, CustomStringConvertible {
        var partition: Int32
        var offset: Int64
        var key: String?
        var value: String?
        var headers: [[String?]]

        init(partition: Int32, offset: Int64, key: String?, value: String?, headers: [[String?]]) {
            self.partition = partition
            self.offset = offset
            self.key = key
            self.value = value
            self.headers = headers
        }

        init(_ record: ConsumedRecord) {
            self.init(
                partition: record.partition, offset: record.offset, key: record.key.map { String(decoding: $0, as: UTF8.self) },
                value: record.value.map { String(decoding: $0, as: UTF8.self) },
                headers: record.headers.map { [$0.key, $0.value.map { String(decoding: $0, as: UTF8.self) }] })
        }

        init(line: ClientLine) throws {
            guard let partition = line.partition, let offset = line.offset else { throw ClientFailure(description: "no partition or offset in \(line)") }
            self.init(partition: partition, offset: offset, key: line.key, value: line.value, headers: line.headers ?? [])
        }

        /// kcat's `%p\t%o\t%k\t%h\t%s` (headers as `k=v,k=v`).
        init(kcatLine: Substring) throws {
            let fields = kcatLine.split(separator: "\t", maxSplits: 4, omittingEmptySubsequences: false)
            guard fields.count == 5, let partition = Int32(fields[0]), let offset = Int64(fields[1]) else {
                throw ClientFailure(description: "kcat printed a line not in the format asked for: \(kcatLine)")
            }
            let headers = fields[3].split(separator: ",").map { pair -> [String?] in
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                return [String(parts[0]), parts.count > 1 ? String(parts[1]) : nil]
            }
            self.init(partition: partition, offset: offset, key: String(fields[2]), value: String(fields[4]), headers: headers)
        }

        var description: String { "\(partition)/\(offset) \(key ?? "-")=\(value ?? "-") \(headers)" }
    }

    /// A record's place.
    struct Place: Hashable, Sendable {
        var partition: Int32
        var offset: Int64

        init?(_ line: ClientLine) {
            guard let partition = line.partition, let offset = line.offset else { return nil }
            self.partition = partition
            self.offset = offset
        }
    }

    /// What `kcat -L -J` prints, as far as the tests read it.
    struct KcatMetadata: Decodable {
        struct Broker: Decodable {
            var id: Int32
            var name: String
        }

        struct Topic: Decodable {
            var topic: String
            var partitions: [Partition]
        }

        struct Partition: Decodable {
            var partition: Int32
            var leader: Int32
        }

        var brokers: [Broker]
        var topics: [Topic]
    }
}
