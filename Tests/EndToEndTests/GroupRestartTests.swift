import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire
import TestSupport
import Testing

/// Issue 23, item 1: a group follower rides through broker restarts at every moment of its
/// join / commit lookup / log-end lookup / fetch / heartbeat / commit cycle.
@Suite(.serialized, .stopsLiveServers) struct GroupRestartTests {
    struct Moment: CustomStringConvertible {
        let api: ApiKey
        let occurrence: Int
        let cut: FaultProxy.Cut

        init(_ api: ApiKey, _ occurrence: Int, _ cut: FaultProxy.Cut) {
            self.api = api
            self.occurrence = occurrence
            self.cut = cut
        }

        var description: String { "\(api) #\(occurrence) \(cut == .beforeRequest ? "before the broker saw it" : "after the broker acted on it")" }
    }

    /// Twenty moments. Each is armed as the one before it fires, so a rejoin, the commit
    /// lookup and the log-end lookups — which happen right after a restart — are caught too.
    static let moments: [Moment] = [
        Moment(.joinGroup, 1, .beforeRequest),
        Moment(.joinGroup, 1, .afterRequest),
        Moment(.offsetFetch, 1, .beforeRequest),
        Moment(.offsetFetch, 1, .afterRequest),
        Moment(.listOffsets, 1, .beforeRequest),
        Moment(.listOffsets, 2, .afterRequest),
        Moment(.fetch, 1, .beforeRequest),
        Moment(.fetch, 2, .afterRequest),
        Moment(.heartbeat, 1, .beforeRequest),
        Moment(.heartbeat, 2, .afterRequest),
        Moment(.offsetCommit, 1, .beforeRequest),
        Moment(.offsetCommit, 1, .afterRequest),
        Moment(.joinGroup, 1, .afterRequest),
        Moment(.heartbeat, 1, .afterRequest),
        Moment(.fetch, 3, .beforeRequest),
        Moment(.offsetCommit, 1, .beforeRequest),
        Moment(.listOffsets, 1, .afterRequest),
        Moment(.offsetFetch, 1, .beforeRequest),
        Moment(.heartbeat, 1, .beforeRequest),
        Moment(.joinGroup, 1, .beforeRequest),
    ]

    /// The broker is stopped and started again (over the same data directory, on a new port
    /// behind the proxy) at each moment; records are produced after every restart. The
    /// follower never gives up and ends holding every record (at least once: a record read
    /// but not committed before a restart may come twice).
    @Test func aGroupFollowerRidesThroughRestartsAtEveryMomentOfItsCycle() async throws {
        var live = try await LiveServer()
        let directory = live.directory
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var admin = try TestClient(port: live.port)
        _ = try admin.call(.createTopic(CreateTopicRequest(name: "confirmations", partitions: 3)))
        let proxy = FaultProxy(upstreamPort: live.port)
        let proxyPort = try await proxy.start()

        var clientConfiguration = MillraceClient.Configuration()
        clientConfiguration.brokers = ["127.0.0.1:\(proxyPort)"]
        clientConfiguration.reconnectBackoffMin = .milliseconds(10)
        clientConfiguration.reconnectBackoffMax = .milliseconds(200)
        let client = MillraceClient(configuration: clientConfiguration)
        var configuration = GroupConsumer.Configuration()
        configuration.sessionTimeoutMs = 10_000
        configuration.heartbeatInterval = .milliseconds(50)
        configuration.commitInterval = .milliseconds(100)
        configuration.maxWaitMs = 100
        let consumer = GroupConsumer(client: client, group: "erp", topic: "confirmations", configuration: configuration)
        let seen = Locked<Set<String>>([])
        var produced = Set<String>()
        var batch = 0
        func produceBatch(_ admin: inout TestClient) throws {
            batch += 1
            for partition in Int32(0)..<3 {
                let values = (0..<4).map { "b\(batch)-p\(partition)-\($0)" }
                guard case .produce = try admin.call(produce("confirmations", partition, values)).body else {
                    Issue.record("batch \(batch) was not produced")
                    return
                }
                produced.formUnion(values)
            }
        }
        try produceBatch(&admin)

        var moments = Self.moments[...]
        proxy.arm([moments.first!.api.rawValue], occurrence: moments.first!.occurrence, cut: moments.first!.cut)
        let ended = Locked<String?>(nil)
        let reader = Task {
            do {
                for try await record in consumer { _ = seen.withLock { $0.insert(String(decoding: record.value ?? [], as: UTF8.self)) } }
                ended.withLock { $0 = "the records ended" }
            } catch {
                ended.withLock { $0 = "it failed: \(error)" }
            }
        }
        var graceful = true
        var cut = 0
        while let moment = moments.popFirst() {
            cut += 1
            let fired = try await eventually(limitSeconds: 30) { proxy.cuts == cut || ended.withLock { $0 } != nil }
            try #require(fired && proxy.cuts == cut, "the consumer never sent \(moment) (\(ended.withLock { $0 } ?? "it was still reading"))")
            if let next = moments.first { proxy.arm([next.api.rawValue], occurrence: next.occurrence, cut: next.cut) }
            // The broker goes away at that moment (the proxy lets nobody reach it), then
            // comes back on the same data.
            await live.stop(graceSeconds: graceful ? 10 : 0)
            graceful.toggle()
            live = try await LiveServer(directory: directory)
            admin = try TestClient(port: live.port)
            try produceBatch(&admin)
            proxy.setUpstream(port: live.port)
        }
        let everything = try await eventually(limitSeconds: 60) { seen.withLock { produced.isSubset(of: $0) } }
        let missing = produced.subtracting(seen.withLock { $0 })
        #expect(ended.withLock { $0 } == nil, "the follower stopped: \(ended.withLock { $0 } ?? "")")
        #expect(everything, "after \(Self.moments.count) restarts the group follower lacks \(missing.count) records, e.g. \(missing.sorted().prefix(5))")
        reader.cancel()
        _ = await reader.result
        await consumer.close()
        await client.close()
        await proxy.stop()
        await live.stop()
    }

    /// A plain follower that starts while the broker is going down (its first log-end
    /// lookup is cut) keeps trying, as it does for fetches, and reads everything once the
    /// broker is back.
    @Test func aFollowerStartedDuringARestartKeepsTrying() async throws {
        var live = try await LiveServer()
        let directory = live.directory
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var admin = try TestClient(port: live.port)
        _ = try admin.call(.createTopic(CreateTopicRequest(name: "lots", partitions: 2)))
        _ = try admin.call(produce("lots", 0, ["a", "b"]))
        let proxy = FaultProxy(upstreamPort: live.port)
        var clientConfiguration = MillraceClient.Configuration()
        clientConfiguration.brokers = ["127.0.0.1:\(try await proxy.start())"]
        clientConfiguration.reconnectBackoffMin = .milliseconds(10)
        clientConfiguration.reconnectBackoffMax = .milliseconds(100)
        let client = MillraceClient(configuration: clientConfiguration)
        proxy.arm([ApiKey.listOffsets.rawValue], occurrence: 1, cut: .beforeRequest)
        let seen = Locked<[String]>([])
        let ended = Locked<String?>(nil)
        let reader = Task {
            do {
                for try await record in Consumer(client: client, topic: "lots", from: .earliest, stopAtEnd: false) {
                    seen.withLock { $0.append(String(decoding: record.value ?? [], as: UTF8.self)) }
                }
                ended.withLock { $0 = "the records ended" }
            } catch {
                ended.withLock { $0 = "it failed: \(error)" }
            }
        }
        #expect(try await eventually(limitSeconds: 30) { proxy.cuts == 1 })
        await live.stop(graceSeconds: 0)
        live = try await LiveServer(directory: directory)
        admin = try TestClient(port: live.port)
        _ = try admin.call(produce("lots", 1, ["c"]))
        proxy.setUpstream(port: live.port)
        let everything = try await eventually(limitSeconds: 30) { Set(seen.withLock { $0 }) == ["a", "b", "c"] || ended.withLock { $0 } != nil }
        #expect(everything && ended.withLock { $0 } == nil, "read \(seen.withLock { $0 }); \(ended.withLock { $0 } ?? "still reading")")
        reader.cancel()
        await reader.value
        await client.close()
        await proxy.stop()
        await live.stop()
    }
}
