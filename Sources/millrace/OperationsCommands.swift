import ArgumentParser
import Foundation
import Logging
import MillraceClient
import MillraceFormat
import MillraceWire
import ServiceLifecycle

/// `millrace status`: one screen on whether the broker is up and what needs attention.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Is the broker up and ready: version, uptime, disk, topics, and groups that are behind.",
        discussion: """
            Exit codes: 0 the broker answered and is ready, 1 it did not answer or is not ready (the reason is printed), 2 bad usage.

            Examples:
              millrace status
              millrace status --behind 10000 --json
            """)

    @OptionGroup var broker: BrokerOptions
    @Option(help: "List groups whose lag is over this many records (default 0: every group with any lag).") var behind: Int64 = 0
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func run() async throws {
        guard behind >= 0 else {
            Output.standardError("error: --behind takes 0 or more records (got \(behind))")
            throw ExitCode(2)
        }
        let client = try broker.client()
        let status: MillraceClient.BrokerStatus
        do {
            status = try await client.brokerStatus()
            await client.close()
        } catch let error as MillraceError {
            await client.close()
            if json {
                print(Output.json(["reachable": false, "broker": broker.address, "error": error.message]))
            } else {
                Output.standardError("error: broker \(broker.address) is not reachable: \(error.message)")
            }
            throw ExitCode(1)
        }
        let lagging = status.groups.filter { $0.lag > behind }
        if json {
            print(Output.json(Self.jsonObject(status, broker: broker.address, lagging: lagging)))
        } else {
            print(Self.text(status, broker: broker.address, lagging: lagging, behind: behind))
        }
        if !status.notReady.isEmpty { throw ExitCode(1) }
    }

    static func text(_ status: MillraceClient.BrokerStatus, broker: String, lagging: [MillraceClient.BrokerStatus.Group], behind: Int64) -> String {
        var lines: [String] = []
        let readiness = status.notReady.isEmpty ? "ready" : "NOT READY: " + status.notReady.joined(separator: "; ")
        lines.append("broker \(broker): millrace \(status.version), up \(Output.duration(milliseconds: status.nowMs - status.startedAtMs)), \(readiness)")
        let used = status.diskTotalBytes > 0 ? 100 - Int(status.diskFreeBytes * 100 / status.diskTotalBytes) : 0
        lines.append(
            "data\(status.dataDirectory.isEmpty ? "" : " " + status.dataDirectory): \(Output.bytes(status.dataFileBytes)) data file; disk \(Output.bytes(status.diskFreeBytes)) free of \(Output.bytes(status.diskTotalBytes)) (\(used) % used)"
        )
        lines.append("connections \(status.connections), requests in flight \(status.requestsInFlight)")
        if status.listeners.count > 1 {
            lines.append(
                "listeners: "
                    + status.listeners.map { "\($0.name) on \($0.address) (\($0.connections) connection\($0.connections == 1 ? "" : "s"))" }.joined(separator: ", "))
        }
        if status.topics.isEmpty {
            lines.append("no topics")
        } else {
            lines.append("")
            lines.append(
                Output.table(
                    // The owner column only when some topic has an owner.
                    ["TOPIC", "PARTITIONS", "RECORDS", "BYTES"] + (status.owners.isEmpty ? [] : ["OWNER"]),
                    status.topics.map {
                        [$0.name, "\($0.partitions)", Output.count($0.records), Output.bytes($0.bytes)] + (status.owners.isEmpty ? [] : [status.owners[$0.name] ?? "-"])
                    }, rightAligned: [1, 2, 3]))
        }
        lines.append("")
        if lagging.isEmpty {
            lines.append(status.groups.isEmpty ? "no consumer groups" : "no group is behind by more than \(Output.count(behind)) records")
        } else {
            lines.append(
                Output.table(
                    ["GROUP", "MEMBERS", "LAG", "PARTITIONS"], lagging.map { [$0.name, "\($0.members)", Output.count($0.lag), "\($0.partitions)"] },
                    rightAligned: [1, 2, 3]))
        }
        return lines.joined(separator: "\n")
    }

    static func jsonObject(_ status: MillraceClient.BrokerStatus, broker: String, lagging: [MillraceClient.BrokerStatus.Group]) -> [String: Any] {
        [
            "reachable": true, "broker": broker, "version": status.version, "uptime_ms": status.nowMs - status.startedAtMs, "ready": status.notReady.isEmpty,
            "not_ready": status.notReady, "data_directory": status.dataDirectory, "data_file_bytes": status.dataFileBytes,
            "disk_free_bytes": status.diskFreeBytes, "disk_total_bytes": status.diskTotalBytes, "connections": Int(status.connections),
            "requests_in_flight": Int(status.requestsInFlight),
            "listeners": status.listeners.map { ["name": $0.name, "address": $0.address, "connections": Int($0.connections)] as [String: Any] },
            "topics": status.topics.map {
                ["name": $0.name, "partitions": Int($0.partitions), "records": $0.records, "bytes": $0.bytes, "owner": status.owners[$0.name] as Any] as [String: Any]
            },
            "groups_behind": lagging.map { ["name": $0.name, "members": Int($0.members), "lag": $0.lag, "partitions": Int($0.partitions)] as [String: Any] },
        ]
    }
}

/// `millrace top`: a refreshing view of traffic, sizes, lag and its trend.
struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top", abstract: "A live view: per-topic in/out rates and sizes, groups' lag and its trend, connections, disk.",
        discussion: """
            Refreshes every --interval until Ctrl-C or SIGTERM; piped, each refresh is written as it is made. A broker that goes away after the first sample (a restart) is waited for: top says it is reconnecting and goes on when the broker is back. Rates are records per second between two refreshes; a group's trend is how its lag moved per second.

            Examples:
              millrace top
              millrace top --once --json      # two samples --interval apart, one JSON object
            """)

    @OptionGroup var broker: BrokerOptions
    @Option(help: "Time between refreshes, 1s to 1h: a duration (2s, 1m) or a number of seconds.") var interval = "2s"
    @Flag(help: "Take two samples --interval apart, print once, and exit.") var once = false
    @Flag(help: "With --once: one JSON object instead of text.") var json = false

    func run() async throws {
        // Seconds as a bare number (as before), or a duration like every other time value.
        let milliseconds = Int64(interval).map { $0 * 1_000 } ?? Durations.parse(interval)
        guard let milliseconds, milliseconds % 1_000 == 0, (1...3_600).contains(milliseconds / 1_000) else {
            Output.standardError("error: --interval takes 1s to 1h in whole seconds, such as 2s or 1m (got \(interval))")
            throw ExitCode(2)
        }
        let interval = Int(milliseconds / 1_000)
        guard once || !json else {
            Output.standardError("error: --json goes with --once (a refreshing view is for people)")
            throw ExitCode(2)
        }
        let client = try broker.client()
        let view = TopView(client: client, broker: broker.address, interval: interval, once: once, json: json)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: view, successTerminationBehavior: .gracefullyShutdownGroup)], gracefulShutdownSignals: [.sigterm, .sigint],
                logger: Logger(label: "millrace", factory: { _ in SwiftLogNoOpLogHandler() })))
        do {
            try await group.run()
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        if let failure = view.failure.withLock({ $0 }) {
            Output.standardError("error: \(failure)")
            throw ExitCode(1)
        }
    }
}

/// `top`'s loop as a service: it samples, draws and sleeps until a graceful shutdown.
final class TopView: Service, @unchecked Sendable {
    let client: MillraceClient
    let broker: String
    let interval: Int
    let once: Bool
    let json: Bool
    let failure = Locked<String?>(nil)

    init(client: MillraceClient, broker: String, interval: Int, once: Bool, json: Bool) {
        self.client = client
        self.broker = broker
        self.interval = interval
        self.once = once
        self.json = json
    }

    func run() async throws {
        let terminal = Output.standardOutputIsTerminal && !once
        do {
            try await cancelWhenGracefulShutdown { [self] in
                var previous: MillraceClient.BrokerStatus?
                var reached = false
                var reconnecting = false
                while !Task.isCancelled {
                    let status: MillraceClient.BrokerStatus
                    do {
                        status = try await client.brokerStatus()
                    } catch let error as MillraceError where reached && !once && error.code.isRetriable && !Task.isCancelled {
                        // The broker went away (a restart): say so once, try again until it is back.
                        if !reconnecting {
                            if terminal { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                            print("millrace top: lost the broker; reconnecting to \(broker)…")
                            reconnecting = true
                        }
                        previous = nil
                        fflush(nil)  // into a pipe too, a reader sees it now
                        try await Task.sleep(for: .milliseconds(500))
                        continue
                    }
                    reached = true
                    if let previous {
                        let frame = TopFrame(previous: previous, current: status)
                        if once {
                            print(json ? Output.json(frame.jsonObject(broker: broker)) : frame.text(broker: broker))
                            return
                        }
                        if terminal { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                        print(frame.text(broker: broker))
                        if !terminal { print("") }
                    } else if !once {
                        let again = reconnecting ? "reconnected to \(broker); " : ""
                        print("millrace top: \(again)waiting \(interval) s for a second sample to compute rates…")
                    }
                    reconnecting = false
                    previous = status
                    fflush(nil)  // standard output is block-buffered into a pipe: each refresh goes out whole, now
                    try await Task.sleep(for: .seconds(interval))
                }
            }
        } catch is CancellationError {
            return
        } catch let error as MillraceError {
            failure.withLock { $0 = "broker \(broker): \(error.message)" }
        }
    }
}

/// What one refresh of `top` shows: the later sample, with rates against the earlier.
struct TopFrame {
    let previous: MillraceClient.BrokerStatus
    let current: MillraceClient.BrokerStatus

    var seconds: Double { max(0.001, Double(current.nowMs - previous.nowMs) / 1_000) }

    func rate(_ now: Int64, _ before: Int64?) -> Double { Double(max(0, now - (before ?? now))) / seconds }

    struct TopicRow {
        var status: MillraceClient.BrokerStatus.Topic
        var inPerSecond: Double
        var outPerSecond: Double
    }

    struct GroupRow {
        var status: MillraceClient.BrokerStatus.Group
        /// Records per second the lag moved by (positive: falling behind).
        var trend: Double
    }

    var topics: [TopicRow] {
        let before = Dictionary(previous.topics.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        return current.topics.map { topic in
            TopicRow(
                status: topic, inPerSecond: rate(topic.producedRecords, before[topic.name]?.producedRecords),
                outPerSecond: rate(topic.fetchedRecords, before[topic.name]?.fetchedRecords))
        }
    }

    var groups: [GroupRow] {
        let before = Dictionary(previous.groups.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        return current.groups.map { group in
            GroupRow(status: group, trend: Double(group.lag - (before[group.name]?.lag ?? group.lag)) / seconds)
        }
    }

    func text(broker: String) -> String {
        var lines: [String] = []
        let readiness = current.notReady.isEmpty ? "ready" : "NOT READY: " + current.notReady.joined(separator: "; ")
        lines.append(
            "millrace \(current.version) at \(broker), up \(Output.duration(milliseconds: current.nowMs - current.startedAtMs)), \(readiness); \(current.connections) connection\(current.connections == 1 ? "" : "s")\(Self.byListener(current.listeners)); data file \(Output.bytes(current.dataFileBytes)), disk \(Output.bytes(current.diskFreeBytes)) free"
        )
        lines.append("")
        lines.append(
            Output.table(
                ["TOPIC", "IN/s", "OUT/s", "RECORDS", "BYTES", "RECORDS PER PARTITION"],
                topics.map { row in
                    [
                        row.status.name, Output.count(Int64(row.inPerSecond.rounded())), Output.count(Int64(row.outPerSecond.rounded())),
                        Output.count(row.status.records), Output.bytes(row.status.bytes), Self.perPartition(row.status.partitionSizes),
                    ]
                }, rightAligned: [1, 2, 3, 4]))
        if !groups.isEmpty {
            lines.append("")
            lines.append(
                Output.table(
                    ["GROUP", "MEMBERS", "LAG", "TREND/s"],
                    groups.map { row in
                        let trend = Int64(row.trend.rounded())
                        return [row.status.name, "\(row.status.members)", Output.count(row.status.lag), trend > 0 ? "+\(Output.count(trend))" : Output.count(trend)]
                    }, rightAligned: [1, 2, 3]))
        }
        if !current.kafkaMembers.isEmpty {
            lines.append("")
            lines.append(Output.table(["KAFKA GROUP", "MEMBER", "CLIENT ID", "HOST"], current.kafkaMembers.map { [$0.group, $0.memberID, $0.clientID, $0.host] }))
        }
        return lines.joined(separator: "\n")
    }

    /// " (native 3, kafka 2)" when the broker has more than one listener.
    static func byListener(_ listeners: [MillraceClient.BrokerStatus.Listener]) -> String {
        guard listeners.count > 1 else { return "" }
        return " (" + listeners.map { "\($0.name) \($0.connections)" }.joined(separator: ", ") + ")"
    }

    /// "1,204 / 1,190 / 1,211": records per partition, the first eight.
    static func perPartition(_ sizes: [MillraceClient.BrokerStatus.PartitionSize]) -> String {
        let shown = sizes.prefix(8).map { Output.count($0.records) }.joined(separator: " / ")
        return sizes.count > 8 ? shown + " / … (\(sizes.count))" : shown
    }

    func jsonObject(broker: String) -> [String: Any] {
        [
            "broker": broker, "version": current.version, "uptime_ms": current.nowMs - current.startedAtMs, "ready": current.notReady.isEmpty,
            "not_ready": current.notReady, "seconds": seconds, "connections": Int(current.connections), "data_file_bytes": current.dataFileBytes,
            "listeners": current.listeners.map { ["name": $0.name, "address": $0.address, "connections": Int($0.connections)] as [String: Any] },
            "kafka_members": current.kafkaMembers.map { ["group": $0.group, "member": $0.memberID, "client_id": $0.clientID, "host": $0.host] },
            "disk_free_bytes": current.diskFreeBytes, "disk_total_bytes": current.diskTotalBytes,
            "topics": topics.map { row -> [String: Any] in
                [
                    "name": row.status.name, "in_per_second": row.inPerSecond, "out_per_second": row.outPerSecond, "records": row.status.records,
                    "bytes": row.status.bytes, "partitions": Int(row.status.partitions),
                    "partition_sizes": row.status.partitionSizes.map { ["partition": Int($0.partition), "records": $0.records, "bytes": $0.bytes] as [String: Any] },
                ]
            },
            "groups": groups.map { row -> [String: Any] in
                ["name": row.status.name, "members": Int(row.status.members), "lag": row.status.lag, "lag_trend_per_second": row.trend]
            },
        ]
    }
}
