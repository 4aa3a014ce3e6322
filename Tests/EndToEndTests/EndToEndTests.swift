import Foundation
import Logging
import MillraceFormat
import MillraceServer
import MillraceStorage
import MillraceWire
import NIOCore
import TestSupport
import Testing

/// A real server on 127.0.0.1:0 over a real data directory. It can only be started inside a
/// test whose suite carries `.stopsLiveServers`, which stops it when the test ends however the
/// test ends (an error thrown, a `#require` failing), so a failing test never leaves a broker
/// running; `stop()` may also be called earlier (a restart), and more than once.
final class LiveServer: @unchecked Sendable {
    /// The servers started by the running test (set by `StopsLiveServers`).
    @TaskLocal static var started: Started?

    final class Started: @unchecked Sendable {
        private let lock = NSLock()
        private var servers: [LiveServer] = []

        func add(_ server: LiveServer) { lock.withLock { servers.append(server) } }

        func stopAll() async {
            for server in lock.withLock({ servers }) { await server.stop() }
        }
    }

    struct NoScope: Error, CustomStringConvertible {
        var description: String { "a LiveServer was started outside a test of a suite marked .stopsLiveServers" }
    }

    let directory: String
    var storage: Storage
    var server: MillraceServer
    var port: Int
    var http: OperationsHTTPServer?

    /// With `clock`, group sessions and idle connections run on it and only `tick()` checks them.
    init(
        directory: String? = nil, idleTimeoutSeconds: Int64 = 600, clock: ManualClock? = nil, port: Int = 0,
        configure: (inout MillraceServer.Configuration) -> Void = { _ in }, logger: Logger = Logger(label: "test"),
        storageOptions: (inout Storage.Options) -> Void = { _ in }
    ) async throws {
        guard let started = Self.started else { throw NoScope() }
        self.directory = directory ?? NSTemporaryDirectory() + "millrace-e2e-\(UUID().uuidString)"
        var options = Storage.Options()
        options.retentionCheckIntervalMs = nil
        storageOptions(&options)
        storage = try Storage.open(directory: self.directory, options: options)
        var configuration = MillraceServer.Configuration(host: "127.0.0.1", port: port)
        configuration.idleTimeoutSeconds = idleTimeoutSeconds
        if let clock {
            configuration.clock = clock
            configuration.ticksAutomatically = false
        } else {
            // On the real clock a loaded machine can take seconds between a connection and its
            // login: tests of the login deadline drive a ManualClock instead.
            configuration.loginTimeoutSeconds = 600
        }
        configure(&configuration)
        server = MillraceServer(storage: storage, configuration: configuration, logger: logger)
        do {
            self.port = try await server.start().port!
        } catch {
            storage.close()
            throw error
        }
        started.add(self)
    }

    /// The operations HTTP port (`/metrics`, `/healthz`, `/readyz`) on a free port.
    func startHTTP() async throws -> Int {
        let made = OperationsHTTPServer(host: "127.0.0.1", port: 0, broker: server, logger: Logger(label: "test"))
        http = made
        return try await made.start().port!
    }

    private var stopped = false

    /// Stops the listeners (answering what they read, for up to `graceSeconds`) and closes
    /// the storage; once, however often called. Stop a server only through here: the end of
    /// the test calls it again.
    func stop(graceSeconds: Int64 = 10) async {
        guard !stopped else { return }
        stopped = true
        await http?.stop()
        await server.stop(graceSeconds: graceSeconds)
        storage.close()
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// Gives each test its own `LiveServer.started` and stops every server in it when the test
/// returns or throws.
struct StopsLiveServers: TestTrait, SuiteTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        guard !test.isSuite else { return try await function() }
        let started = LiveServer.Started()
        do {
            try await LiveServer.$started.withValue(started) { try await function() }
        } catch {
            await started.stopAll()
            throw error
        }
        await started.stopAll()
    }
}

extension Trait where Self == StopsLiveServers {
    /// Stops every `LiveServer` a test started when it ends, on every path.
    static var stopsLiveServers: Self { Self() }
}

func batchBytes(_ values: [String]) -> [UInt8] {
    try! RecordBatch(timestamp: 1_700_000_000_000, values: values.map { Array($0.utf8) }).encoded()
}

func values(_ records: [UInt8], from offset: Int64 = 0) throws -> [String] {
    var result: [String] = []
    var index = 0
    while index < records.count {
        let batch = try RecordBatch.decode(Array(records[index...].prefix(Int(records[index + 8..<index + 12].reduce(0) { $0 << 8 | Int($1) }) + 12)))
        for record in batch.records where batch.baseOffset + Int64(record.offsetDelta) >= offset {
            result.append(String(decoding: record.value ?? [], as: UTF8.self))
        }
        index += Int(records[index + 8..<index + 12].reduce(0) { $0 << 8 | Int($1) }) + 12
    }
    return result
}

func produce(_ topic: String, _ partition: Int32, _ values: [String]) -> Request {
    .produce(ProduceRequest(timeoutMs: 5000, topics: [TopicEntries(topic: topic, [ProducePartition(partition: partition, records: batchBytes(values))])]))
}

func fetch(_ topic: String, _ partition: Int32, from offset: Int64, maxWaitMs: Int32 = 0, minBytes: Int32 = 0) -> Request {
    .fetch(
        FetchRequest(
            maxWaitMs: maxWaitMs, minBytes: minBytes, maxBytes: 1 << 20,
            topics: [TopicEntries(topic: topic, [FetchPartition(partition: partition, offset: offset, maxBytes: 1 << 20)])]))
}

@Suite(.serialized, .stopsLiveServers) struct EndToEndTests {
    @Test func produceThenFetchAcrossARestart() async throws {
        var live = try await LiveServer()
        defer { live.remove() }
        var client = try TestClient(port: live.port)
        #expect(try client.call(.createTopic(CreateTopicRequest(name: "orders", partitions: 2))).errorCode == .none)
        let produced = try client.call(produce("orders", 1, ["a", "b", "c"]))
        guard case .produce(let topics)? = produced.body else { Issue.record("no produce body: \(produced)"); return }
        #expect(topics.first?.entries.first?.baseOffset == 0)
        _ = try client.call(produce("orders", 1, ["d"]))
        await live.stop()

        live = try await LiveServer(directory: live.directory)
        client = try TestClient(port: live.port)
        let fetched = try client.call(fetch("orders", 1, from: 1))
        guard case .fetch(let results)? = fetched.body, let partition = results.first?.entries.first else {
            Issue.record("no fetch body: \(fetched)")
            return
        }
        #expect(try values(Array(partition.records.readableBytesView), from: 1) == ["b", "c", "d"])
        #expect(partition.logEndOffset == 4)
        guard case .listOffsets(let offsets)? = try client.call(
            .listOffsets(ListOffsetsRequest(topics: [TopicEntries(topic: "orders", [ListOffsetsPartition(partition: 1, timestamp: ListOffsetsPartition.latest)])]))
        ).body else { Issue.record("no list offsets"); return }
        #expect(offsets.first?.entries.first?.offset == 4)
        await live.stop()
    }

    @Test func aLongPollIsWokenByAProduce() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let consumer = try TestClient(port: live.port)
        let producer = try TestClient(port: live.port)
        _ = try producer.call(.createTopic(CreateTopicRequest(name: "lots", partitions: 1)))
        // A wait of ten minutes: an answer can only come from the commit waking it.
        _ = try consumer.send(fetch("lots", 0, from: 0, maxWaitMs: 600_000, minBytes: 1))
        #expect(try await eventually { live.server.inFlightRequests == 1 })
        _ = try producer.call(produce("lots", 0, ["LOT-123"]))
        let response = try #require(try consumer.receive())
        guard case .fetch(let results)? = response.body else { Issue.record("no fetch body"); return }
        #expect(try values(Array(results[0].entries[0].records.readableBytesView)) == ["LOT-123"])
        await live.stop()
    }

    @Test func aGracefulStopAnswersEverythingItReadAndStoresNothingElse() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = try TestClient(port: live.port)
        _ = try client.call(.createTopic(CreateTopicRequest(name: "t", partitions: 1)))
        var sent: [Int32] = []
        for index in 0..<50 { sent.append(try client.send(produce("t", 0, ["\(index)"]))) }
        // Let the broker read them; a graceful stop answers what it has read.
        _ = try #require(try client.receive())
        await live.stop()
        var answered = 1
        while let response = try? client.receive() {
            #expect(response.errorCode == .none && response.correlationID == sent[answered])
            answered += 1
        }
        var options = Storage.Options()
        options.readOnly = true
        let reopened = try Storage.open(directory: live.directory, options: options)
        // Every answered produce is stored, and nothing unanswered was half-done.
        let stored = try reopened.offsets(topic: "t", partition: 0).nextOffset
        // Requests still unread in the socket when the stop began are not taken (the
        // client sees end-of-stream after the last answer), so the count varies.
        #expect(answered >= 1 && answered <= 50)
        #expect(stored == Int64(answered), "\(stored) stored but \(answered) answered")
        reopened.close()
    }

    @Test func idleConnectionsAreClosedAndBusyOnesAreNot() async throws {
        let clock = ManualClock()
        let live = try await LiveServer(idleTimeoutSeconds: 60, clock: clock)
        defer { live.remove() }
        let idle = try TestClient(port: live.port)
        let busy = try TestClient(port: live.port)
        let quiet = try TestClient(port: live.port)
        _ = try busy.call(.createTopic(CreateTopicRequest(name: "t", partitions: 1)))
        _ = try quiet.call(.listTopics)
        // The busy client long-polls across the idle timeout: a request in flight keeps it open.
        _ = try busy.send(fetch("t", 0, from: 0, maxWaitMs: 600_000, minBytes: 1))
        #expect(try await eventually { live.server.inFlightRequests == 1 })
        clock.advance(by: .seconds(30))
        _ = try quiet.call(.listTopics)  // active again: its idle time starts over
        clock.advance(by: .seconds(31))
        live.server.tick()
        #expect(idle.isClosedByServer())
        #expect(try quiet.call(.listTopics).errorCode == .none)
        _ = try TestClient(port: live.port).call(produce("t", 0, ["wake"]))
        let response = try #require(try busy.receive())
        #expect(response.errorCode == .none)
        await live.stop()
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = try TestClient(port: live.port)
        _ = try client.call(.createTopic(CreateTopicRequest(name: "t", partitions: 1)))
        var sent: [Int32] = []
        for index in 0..<300 {
            // Produces finish after a sync, list calls at once: order must still hold.
            sent.append(try client.send(index % 3 == 0 ? produce("t", 0, ["\(index)"]) : .listTopics))
        }
        var received: [Int32] = []
        for _ in sent { received.append(try #require(try client.receive()).correlationID) }
        #expect(received == sent)
        await live.stop()
    }

    /// All batches of one partition in one produce go in together or not at all: a corrupt
    /// second batch keeps the first out too (a retry then cannot duplicate it).
    @Test func aProduceIsAtomicPerPartition() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let client = try TestClient(port: live.port)
        _ = try client.call(.createTopic(CreateTopicRequest(name: "t", partitions: 2)))
        func send(_ records: [UInt8], partition: Int32 = 0) throws -> ProducePartitionResult {
            let response = try client.call(
                .produce(ProduceRequest(timeoutMs: 1000, topics: [TopicEntries(topic: "t", [ProducePartition(partition: partition, records: records)])])))
            guard case .produce(let topics)? = response.body, let entry = topics.first?.entries.first else {
                throw MillraceError(.unexpected, "no produce body: \(response)")
            }
            return entry
        }
        var corrupt = batchBytes(["one"]) + batchBytes(["two"])
        corrupt[corrupt.count - 1] ^= 0xFF
        let refused = try send(corrupt)
        #expect(refused.errorCode == .corruptBatch)
        #expect(refused.message.contains("batch 2 of 2"), "\(refused.message)")
        var cut = batchBytes(["one"]) + batchBytes(["two"])
        cut.removeLast(3)
        let truncated = try send(cut)
        #expect(truncated.errorCode == .corruptBatch && truncated.message.contains("batch 2"), "\(truncated.message)")
        #expect(try live.storage.offsets(topic: "t", partition: 0).nextOffset == 0)

        let stored = try send(batchBytes(["a", "b"]) + batchBytes(["c"]))
        #expect(stored.errorCode == .none && stored.baseOffset == 0)
        #expect(try live.storage.offsets(topic: "t", partition: 0).nextOffset == 3)
        await live.stop()
    }

    @Test func badInputGetsAnErrorAndOthersAreStillServed() async throws {
        let live = try await LiveServer()
        defer { live.remove() }
        let healthy = try TestClient(port: live.port)
        _ = try healthy.call(.createTopic(CreateTopicRequest(name: "t", partitions: 1)))

        let unknown = try TestClient(port: live.port)
        try unknown.sendRaw([0, 0, 0, 8, 0, 99, 0, 0, 0, 0, 0, 42])
        let unknownResponse = try #require(try unknown.receive())
        #expect(unknownResponse.errorCode == .unknownApi && unknownResponse.correlationID == 42)
        #expect(try unknown.call(.listTopics).errorCode == .none)  // still open
        try unknown.sendRaw([0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 43])
        let versionResponse = try #require(try unknown.receive())
        #expect(versionResponse.errorCode == .unsupportedVersion && versionResponse.correlationID == 43)

        let oversized = try TestClient(port: live.port)
        try oversized.sendRaw([0x7F, 0, 0, 0])
        #expect(try oversized.receive()?.errorCode == .frameTooLarge)
        #expect(oversized.isClosedByServer())

        var generator = SeededGenerator(seed: 77)
        for _ in 0..<20 {
            let garbage = try TestClient(port: live.port)
            try garbage.sendRaw((0..<generator.next(in: 1...300)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }

        // A produce cut off mid-frame, then the socket closed: nothing of it is stored.
        let cut = try TestClient(port: live.port)
        var buffer = ByteBuffer()
        RequestCodec.encode(produce("t", 0, ["half"]), correlationID: 1, into: &buffer)
        try cut.sendRaw(Array(buffer.readableBytesView.prefix(buffer.readableBytes - 5)))
        shutdown(cut.descriptor, Int32(SHUT_WR))
        #expect(cut.isClosedByServer())

        #expect(try healthy.call(.listTopics).errorCode == .none)
        #expect(try live.storage.offsets(topic: "t", partition: 0).nextOffset == 0)
        await live.stop()
    }
}
