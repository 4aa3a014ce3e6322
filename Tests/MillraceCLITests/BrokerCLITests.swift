import Foundation
import Logging
import MillraceFormat
import MillraceServer
import MillraceStorage
import Testing

/// The CLI's network commands against a live server on 127.0.0.1:0.
@Suite(.serialized) struct BrokerCLITests {
    let cli = CLITests()

    func withBroker(_ body: (String) async throws -> Void) async throws {
        try await withTestBroker { broker, _ in try await body(broker) }
    }

    @Test func topicsProduceAndConsume() async throws {
        try await withBroker { broker in
            let created = try cli.millrace(["topic", "create", "genealogy", "--partitions", "2", "--broker", broker])
            #expect(created.status == 0 && created.stdout == "created topic genealogy with 2 partitions\n")
            #expect(try cli.millrace(["topic", "list", "--broker", broker]).stdout == "TOPIC      PARTITIONS\ngenealogy           2\n")

            let lines = (1...5).map { "{\"parent_lot\":\"L\($0 % 2)\",\"qty\":\($0)}" }
            let produced = try cli.millrace(["produce", "genealogy", "--key-field", "/parent_lot", "--broker", broker], input: lines.joined(separator: "\n") + "\n")
            #expect(produced.status == 0)
            #expect(produced.stdout == "produced 5 records to genealogy\n")

            let consumed = try cli.millrace(["consume", "genealogy", "--from", "earliest", "--broker", broker])
            #expect(consumed.status == 0)
            #expect(consumed.stdout.split(separator: "\n").map(String.init).sorted() == lines.sorted())
            // Records with the same key share a partition, in the order sent.
            let json = try cli.millrace(["consume", "genealogy", "--format", "json", "--broker", broker])
            let records = json.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            let byKey = Dictionary(grouping: records) { $0["key"] as! String }
            for (_, group) in byKey {
                #expect(Set(group.map { $0["partition"] as! Int }).count == 1)
                let quantities = group.map { ($0["value"] as! [String: Any])["qty"] as! Int }
                #expect(quantities == quantities.sorted())
            }
            let limited = try cli.millrace(["consume", "genealogy", "--limit", "2", "--broker", broker])
            #expect(limited.stdout.split(separator: "\n").count == 2)

            let describe = try cli.millrace(["topic", "describe", "genealogy", "--broker", broker])
            #expect(describe.stdout.hasPrefix("topic genealogy: 2 partitions, retention forever, compression none, timestamps create\n"))
            #expect(try cli.millrace(["topic", "delete", "genealogy", "--broker", broker]).stdout == "deleted topic genealogy\n")
        }
    }

    @Test func errorsAreOneLineWithANonZeroExit() async throws {
        try await withBroker { broker in
            let unknown = try cli.millrace(["consume", "nope", "--broker", broker])
            #expect(unknown.status == 1)
            #expect(unknown.stderr == "error: topic \"nope\" does not exist; create it with `millrace topic create nope`\n")
            let produce = try cli.millrace(["produce", "nope", "--broker", broker], input: "x\n")
            #expect(produce.status == 1)
            let badFrom = try cli.millrace(["consume", "nope", "--from", "yesterday", "--broker", broker])
            #expect(badFrom.status == 2 && badFrom.stderr.hasPrefix("error: --from takes earliest, latest, offset:N, time:ISO8601"))
        }
        let noBroker = try cli.millrace(["topic", "list", "--broker", "127.0.0.1:1"])
        #expect(noBroker.status == 1)
        #expect(noBroker.stderr == "error: no broker at 127.0.0.1:1 (connection refused); is it running there? (on a server: `systemctl status millrace`; to start one here: `millrace serve`)\n")
        // Issue 23, item 14: a name that does not resolve is said so (not SocketAddressError).
        let unresolved = try cli.millrace(["topic", "list", "--broker", "no-such-broker.invalid:7450"])
        #expect(unresolved.status == 1)
        #expect(unresolved.stderr.hasPrefix("error: cannot resolve the host name no-such-broker.invalid;"), "\(unresolved.stderr)")
        // The variable is named when it, not a flag, gave the bad address.
        let variable = try cli.millrace(["topic", "list"], environment: ["MILLRACE_BROKER": "localhost"])
        #expect(variable.status == 2)
        #expect(variable.stderr == "error: MILLRACE_BROKER takes HOST:PORT (or several, comma-separated), for example 127.0.0.1:7450 (got localhost)\n")
    }

    /// Issue 23, item 14: a port in use is said in words, not as the socket call's error.
    @Test func aPortInUseIsSaidInWords() throws {
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, length) == 0 && listen(holder, 1) == 0 && getsockname(holder, $0, &length) == 0 }
        }
        #expect(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let directory = NSTemporaryDirectory() + "millrace-inuse-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try cli.millrace(["serve", "--data-dir", directory, "--listen", "127.0.0.1:\(port)", "--http-listen", "none"])
        #expect(run.status == 2)
        #expect(run.stderr.contains("error: cannot listen on 127.0.0.1:\(port): the address is in use (another broker, or another program, listens there"), "\(run.stderr)")
        #expect(!run.stderr.contains("errno"), "\(run.stderr)")
    }
}

/// A broker on 127.0.0.1:0 over a fresh data directory for `body` (given its address and
/// storage), stopped and removed after.
/// With `clock`, the storage and the broker run on it (times in output are then fixed).
func withTestBroker(clock: (any MillraceClock)? = nil, _ body: (String, Storage) async throws -> Void) async throws {
    let directory = NSTemporaryDirectory() + "millrace-cli-broker-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var options = Storage.Options()
    options.retentionCheckIntervalMs = nil
    var configuration = MillraceServer.Configuration(host: "127.0.0.1", port: 0)
    if let clock {
        options.clock = clock
        configuration.clock = clock
        configuration.ticksAutomatically = false
    }
    let storage = try Storage.open(directory: directory, options: options)
    let server = MillraceServer(storage: storage, configuration: configuration, logger: Logger(label: "test"))
    let port = try await server.start().port!
    do {
        try await body("127.0.0.1:\(port)", storage)
    } catch {
        await server.stop()
        storage.close()
        throw error
    }
    await server.stop()
    storage.close()
}
