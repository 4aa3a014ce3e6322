import Foundation
import MillraceClient
import MillraceFormat
import MillraceWire

/// `millrace-bench e2e --tls`: what TLS and SCRAM logins cost. Two brokers of this build on
/// this machine, one plain TCP without logins, one with `--auth required` and TLS on every
/// listener (certificates from scripts/make-certs); round by round, the same durable produce
/// and replay through the native Swift client and through librdkafka (kcat; SASL_SSL with
/// SCRAM-SHA-256 against PLAINTEXT), alternating which broker goes first.
struct SecureBench {
    var records: Int
    var rounds: Int
    var json: Bool
    /// Kinds to measure (nil: all); the produce a replay reads runs either way, unmeasured.
    var cases: String?
    static let user = "bench"
    static let password = "bench-password-1"
    static let partitions: Int32 = 4

    func selected(_ kind: String) -> Bool {
        guard let cases else { return true }
        return cases.split(separator: ",").contains { kind == $0.trimmingCharacters(in: .whitespaces) }
    }

    func run() async throws {
        guard let kcat = KafkaBench.which("kcat") else { throw MillraceError(.unexpected, "kcat is not installed; scripts/install-deps installs it") }
        let root = NSTemporaryDirectory() + "millrace-secure-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let certificates = root + "/certs"
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let made = try KafkaBench.run("/bin/bash", [repository.appendingPathComponent("scripts/make-certs").path, certificates])
        guard made.status == 0 else { throw MillraceError(.unexpected, "scripts/make-certs failed") }
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("millrace").path
        try (Self.password + "\n").write(toFile: root + "/password", atomically: true, encoding: .utf8)
        let created = try KafkaBench.run(
            binary, ["user", "create", Self.user, "--role", "enterprise-admin", "--data-dir", root + "/secure", "--password-stdin"], input: root + "/password")
        guard created.status == 0 else { throw MillraceError(.unexpected, "millrace user create failed") }

        let plain = try ServerProcess(directory: root + "/plain", kafka: true)
        defer { plain.stop() }
        let secure = try ServerProcess(
            directory: root + "/secure", kafka: true,
            extra: ["--auth", "required", "--tls-cert", certificates + "/broker.pem", "--tls-key", certificates + "/broker.key"])
        defer { secure.stop() }
        let tls = ClientTLS(caFile: certificates + "/ca.pem")
        let credentials = Credentials(user: Self.user, password: Self.password, mechanism: .sha256)
        let secured: (inout MillraceClient.Configuration) -> Void = {
            $0.tls = tls
            $0.credentials = credentials
        }
        var plainConfiguration = MillraceClient.Configuration()
        plainConfiguration.brokers = ["127.0.0.1:\(plain.port)"]
        var secureConfiguration = MillraceClient.Configuration()
        secureConfiguration.brokers = ["127.0.0.1:\(secure.port)"]
        secured(&secureConfiguration)
        let admins = (plain: MillraceClient(configuration: plainConfiguration), secure: MillraceClient(configuration: secureConfiguration))
        let input = root + "/input"
        try KafkaBench.writeInput(input, records: records)
        let sasl = [
            "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanism=SCRAM-SHA-256", "-X", "sasl.username=\(Self.user)", "-X", "sasl.password=\(Self.password)",
            "-X", "ssl.ca.location=\(certificates)/ca.pem",
        ]
        let e2e = try E2EBench.parse(["--records", "\(records)"])
        if json {
            print(
                Report.jsonLine(
                    Report.conditions(extra: [
                        "bench": "e2e-tls", "records": records, "value_bytes": E2EBench.valueBytes, "rounds": rounds, "kcat": KafkaBench.kcatVersion(kcat),
                    ])))
        }
        var results: [BenchResult] = []
        func report(_ result: BenchResult) {
            results.append(result)
            if json { print(Report.jsonLine(result.json)) } else { FileHandle.standardError.write(Data("  done: \(result.name)\n".utf8)) }
        }
        var ratios: [String: [Double]] = [:]
        for round in 1...rounds {
            let topic = "bench-\(round)"
            let kafkaTopic = "kafka-\(round)"
            for admin in [admins.plain, admins.secure] {
                try await admin.createTopic(CreateTopicRequest(name: topic, partitions: Self.partitions))
                try await admin.createTopic(CreateTopicRequest(name: kafkaTopic, partitions: Self.partitions))
            }
            // Which broker goes first alternates, so neither always meets a warmer machine.
            let order = round % 2 == 1 ? [false, true] : [true, false]
            var measured: [String: [Bool: BenchResult]] = [:]
            func keep(_ kind: String, _ isSecure: Bool, _ result: BenchResult, brokerCPU: Double, clientCPU: Double) {
                var result = result
                let perMillion = 1_000_000 / Double(max(1, result.records))
                result.fields["server_cpu_s_per_million"] = (brokerCPU * perMillion * 100).rounded() / 100
                result.fields["client_cpu_s_per_million"] = (clientCPU * perMillion * 100).rounded() / 100
                result.note = String(format: "CPU s per million records: broker %.2f, client %.2f; ", brokerCPU * perMillion, clientCPU * perMillion) + result.note
                result.name = "\(kind)-\(isSecure ? "tls" : "plain")-r\(round)"
                measured[kind, default: [:]][isSecure] = result
                report(result)
            }
            /// Runs one case against one broker, with the broker's CPU and this process's (the
            /// native client's; kcat's is its own process, not counted) beside it.
            func measure(_ kind: String, _ isSecure: Bool, _ body: () async throws -> BenchResult) async throws {
                let server = isSecure ? secure : plain
                let (brokerBefore, clientBefore) = (server.cpuSeconds, ownCPUSeconds())
                let result = try await body()
                guard selected(kind) else { return }
                keep(kind, isSecure, result, brokerCPU: server.cpuSeconds - brokerBefore, clientCPU: ownCPUSeconds() - clientBefore)
            }
            for isSecure in order {
                let port = isSecure ? secure.port : plain.port
                try await measure("native-produce", isSecure) {
                    try await e2e.produceCase(name: "", producers: 1, port: port, topic: topic, configure: isSecure ? secured : { _ in })
                }
            }
            for isSecure in order {
                let bootstrap = isSecure ? "localhost:\(secure.kafkaPort ?? 0)" : "127.0.0.1:\(plain.kafkaPort ?? 0)"
                try await measure("kafka-produce", isSecure) {
                    try KafkaBench.kcatProduce(kcat, bootstrap: bootstrap, topic: kafkaTopic, input: input, records: records, round: round, settings: isSecure ? sasl : [])
                }
            }
            for isSecure in order where selected("native-replay") {
                let port = isSecure ? secure.port : plain.port
                try await measure("native-replay", isSecure) { try await e2e.consumeCase(port: port, topic: topic, configure: isSecure ? secured : { _ in }) }
            }
            for isSecure in order where selected("kafka-replay") {
                let bootstrap = isSecure ? "localhost:\(secure.kafkaPort ?? 0)" : "127.0.0.1:\(plain.kafkaPort ?? 0)"
                try await measure("kafka-replay", isSecure) {
                    try KafkaBench.kcatReplay(kcat, bootstrap: bootstrap, topic: kafkaTopic, records: records, round: round, settings: isSecure ? sasl : [])
                }
            }
            for (kind, pair) in measured {
                guard let plainResult = pair[false], let secureResult = pair[true] else { continue }
                ratios[kind, default: []].append(secureResult.recordsPerSecond / plainResult.recordsPerSecond)
            }
            for admin in [admins.plain, admins.secure] {
                try await admin.deleteTopic(topic)
                try await admin.deleteTopic(kafkaTopic)
            }
        }
        await admins.plain.close()
        await admins.secure.close()
        let median = { (values: [Double]) in values.sorted()[values.count / 2] }
        let names = ["native-produce": "native produce", "native-replay": "native replay", "kafka-produce": "Kafka (SASL_SSL) produce", "kafka-replay": "Kafka replay"]
        let kinds = ["native-produce", "native-replay", "kafka-produce", "kafka-replay"].filter { ratios[$0]?.isEmpty == false }
        var fields: [String: Any] = [:]
        for kind in kinds {
            fields[kind.replacingOccurrences(of: "-", with: "_") + "_ratio_median"] = (median(ratios[kind] ?? []) * 100).rounded() / 100
            fields[kind.replacingOccurrences(of: "-", with: "_") + "_ratios"] = (ratios[kind] ?? []).map { ($0 * 100).rounded() / 100 }
        }
        let summary = kinds.map { String(format: "%@ %.2f×", names[$0] ?? $0, median(ratios[$0] ?? [])) }.joined(separator: ", ")
        report(
            BenchResult(
                name: "tls-vs-plain", records: 0, bytes: 0, seconds: 1, fields: fields,
                note: "TLS + SCRAM ÷ plain TCP, median of \(rounds) round\(rounds == 1 ? "" : "s"): \(summary)"))
        if !json {
            print(
                "millrace-bench e2e --tls: \(records) records of \(E2EBench.valueBytes) B per case, \(Self.partitions) partitions, \(rounds) rounds; two brokers of this build (plain; TLS 1.2+ with SCRAM-SHA-256 logins) on this machine's \(ProcessInfo.processInfo.activeProcessorCount) cores; every produce acknowledged only when durable; \(KafkaBench.kcatVersion(kcat))"
            )
            Report.printTable(results)
        }
    }
}
