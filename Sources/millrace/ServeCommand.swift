import ArgumentParser
import Dispatch
import Foundation
import Logging
import MillraceFormat
import MillraceServer
import MillraceStorage
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the broker on a data directory until SIGTERM or SIGINT.", discussion: Help.exampleLines("millrace serve", "millrace serve --config /etc/millrace/millrace.conf", "MILLRACE_LOG_FORMAT=json millrace serve --data-dir /var/lib/millrace --listen 0.0.0.0:7450"))

    @Option(help: "A config file of `key = value` lines (settings as below, with underscores: data_dir = \"/var/lib/millrace\"). Environment variables MILLRACE_<KEY> override it; flags override both.")
    var config: String?
    @Option(help: "The data directory, created when missing (default ./millrace-data).") var dataDir: String?
    @Option(help: "Address to listen on, HOST:PORT; port 0 picks a free one (default 127.0.0.1:7450).") var listen: String?
    @Option(help: "Address for /metrics, /healthz and /readyz over HTTP, HOST:PORT, or none (default 127.0.0.1:7451).")
    var httpListen: String?
    @Option(help: "Address for Kafka clients, HOST:PORT, or none (default none: off). docs/KAFKA.md says what they can do.") var kafkaListen: String?
    @Option(help: "The address Kafka clients are told to reach the broker at, HOST:PORT (default: the --kafka-listen address).")
    var kafkaAdvertise: String?
    @Option(help: "Whether clients log in (SCRAM): off, optional (those that do not act as anonymous) or required (default off). docs/SECURITY.md.")
    var auth: String?
    @Option(help: "The broker's certificate (PEM, with intermediates): TLS on the native, Kafka and HTTP listeners. SIGHUP reads it again.") var tlsCert: String?
    @Option(help: "The private key of --tls-cert (PEM, unencrypted).") var tlsKey: String?
    @Option(help: "CAs of the client certificates to ask for (mutual TLS); a certificate's subject is its connection's principal.") var tlsClientCa: String?
    @Option(help: "A file whose first line is the token other machines send (Authorization: Bearer) to read /metrics.") var metricsTokenFile: String?
    @Option(help: "Forget an idempotent producer (its id and sequence numbers) after it has not written for this long: a duration, 1h to 365d (default 7d).")
    var producerIdle: String?
    @Option(help: .hidden) var producerIdleHours: String?  // the older form of --producer-idle, in hours
    @Option(
        help: ArgumentHelp(
            "Memory per topic with duplicate detection for its filter over the keys it holds (MiB, 1...1024; default 16).",
            discussion: "Fixed, so memory does not grow with the keys held; past about 1 M keys per MiB its false positives rise and look-ups get slower, never wrong (docs/OPERATIONS.md)."))
    var dedupFilterMib: Int?
    @Option(
        help: ArgumentHelp(
            "Memory for the key index's newest entries before they are written as one run (MiB, 1...4096; default 64).",
            discussion: "48 bytes per entry (64 MiB: ~1.4 M entries). More means fewer, larger runs and a longer start after a crash, when the records behind them are indexed again (docs/OPERATIONS.md, \"Tracing\")."))
    var indexMemoryMib: Int?
    @Option(help: "Least severe log lines written: trace, debug, info, notice, warning, error, critical (default info).") var logLevel: String?
    @Option(help: "Log lines as text or json, one object per line (default text).") var logFormat: String?
    @Flag(help: "Print the settings this would run with, each with where it came from, and exit.") var printConfig = false

    func run() async throws {
        var flags: [String: String] = [:]
        flags["data_dir"] = dataDir
        flags["listen"] = listen
        flags["http_listen"] = httpListen
        flags["kafka_listen"] = kafkaListen
        flags["kafka_advertise"] = kafkaAdvertise
        flags["producer_idle"] = producerIdle
        flags["auth"] = auth
        flags["tls_cert"] = tlsCert
        flags["tls_key"] = tlsKey
        flags["tls_client_ca"] = tlsClientCa
        flags["metrics_token_file"] = metricsTokenFile
        flags["producer_idle_hours"] = producerIdleHours
        flags["dedup_filter_mib"] = dedupFilterMib.map(String.init)
        flags["index_memory_mib"] = indexMemoryMib.map(String.init)
        flags["log_level"] = logLevel
        flags["log_format"] = logFormat
        let environment = ProcessInfo.processInfo.environment
        let settings: ServeSettings
        do {
            settings = try ServeSettings.resolve(configFile: config ?? environment["MILLRACE_CONFIG"], environment: environment, flags: flags)
        } catch {
            Output.standardError("error: \(error)")
            throw ExitCode(2)
        }
        if printConfig {
            print(settings.described)
            return
        }
        // Responses are large, short-lived buffers. glibc raises its mmap threshold after
        // such buffers are freed (up to 32 MiB) and then serves them from the heap, where
        // freed memory is not returned: under a fetch flood RSS rose to several times the
        // memory budget. A fixed threshold of 2 MiB keeps a fetch's per-partition buffers
        // (at most 1 MiB each to start) on the heap, reused without page faults, and anything
        // larger mmapped and returned at once; a heap keeps at most 32 MiB free at its top.
        // See docs/DECISIONS.md, "Replay: fetch ahead, one copy, buffers from the heap".
        _ = glibcMallopt(-3, 2 << 20)  // M_MMAP_THRESHOLD
        _ = glibcMallopt(-1, 32 << 20)  // M_TRIM_THRESHOLD
        _ = glibcMallopt(-8, 4)  // M_ARENA_MAX
        let format: BrokerLogHandler.Format = settings.logFormat == "json" ? .json : .text
        let level = settings.logLevel
        LoggingSystem.bootstrap { BrokerLogHandler(label: $0, format: format, level: level) }
        let logger = Logger(label: "millrace")
        let (host, port) = settings.listen
        let limiter = LogLimiter(clock: SystemClock())
        let metrics = BrokerMetrics(
            onSlowSync: { seconds in
                if let held = limiter.allow("slow-sync") {
                    logger.warning("slow disk: an fdatasync took \(Int(seconds * 1_000)) ms\(held)")
                }
            },
            onDiskFull: { error in
                if let error {
                    logger.error("disk full: \(error.message); writes are refused until there is room (reads go on)")
                } else {
                    logger.notice("the disk has room again: writes are accepted")
                }
            },
            onRetention: { report, seconds in
                guard report.batchesDeleted > 0 || report.indexRunsDeleted > 0 || report.dedupKeysExpired > 0 || report.producersExpired > 0 else {
                    return logger.debug("retention pass: nothing to remove (\(Int(seconds * 1_000)) ms)")
                }
                logger.info(
                    "retention pass: \(report.batchesDeleted) batches (\(report.bytesDeleted) bytes) removed from \(report.partitionsTrimmed) partitions, \(report.dedupKeysExpired) dedup keys expired, \(report.indexRunsDeleted) index runs deleted, \(report.producersExpired) idle producers forgotten (\(Int(seconds * 1_000)) ms)"
                )
            })
        // A start that fails leaves the data directory as it found it (none: none).
        let footprint = DataDirectoryFootprint(settings.dataDir)
        var options = Storage.Options()
        options.indexMemoryBytes = settings.indexMemoryMib << 20
        options.producerIdleMs = settings.producerIdleMs
        options.dedupFilterBytes = settings.dedupFilterMib << 20
        options.events = metrics
        let storage: Storage
        do {
            storage = try Storage.open(directory: settings.dataDir, options: options)
        } catch let error as MillraceError {
            // A directory another broker holds is that broker's: nothing here is ours to remove.
            if error.code != .dataDirectoryLocked { footprint.restore() }
            Output.standardError("error: \(error.message)")
            throw ExitCode(2)
        }
        var configuration = MillraceServer.Configuration(host: host, port: port)
        configuration.metrics = metrics
        configuration.auth = settings.auth
        if let problem = settings.tlsProblem {
            Output.standardError("error: \(problem)")
            throw ExitCode(2)
        }
        configuration.tls = settings.tls
        var metricsToken: String?
        if let file = settings.metricsTokenFile {
            metricsToken = (try? String(contentsOfFile: file, encoding: .utf8))?.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) }
            guard let token = metricsToken, token.count >= 16 else {
                Output.standardError("error: the metrics token in \(file) is missing or shorter than 16 characters")
                throw ExitCode(2)
            }
        }
        if let (kafkaHost, kafkaPort) = settings.kafkaListen {
            configuration.kafka = MillraceServer.KafkaListener(
                host: kafkaHost, port: kafkaPort, advertisedHost: settings.kafkaAdvertise?.host, advertisedPort: settings.kafkaAdvertise?.port)
        }
        let server = MillraceServer(storage: storage, configuration: configuration, logger: logger)
        let address: String
        var kafkaAddress = ""
        do {
            let bound = try await server.start()
            address = "\(host):\(bound.port ?? port)"
            if let kafka = configuration.kafka, let kafkaBound = server.boundAddress(.kafka) {
                let advertised = "\(kafka.advertisedHost ?? kafka.host):\(kafka.advertisedPort ?? kafkaBound.port ?? kafka.port)"
                kafkaAddress = ", Kafka clients on \(kafka.host):\(kafkaBound.port ?? kafka.port) (advertised as \(advertised))"
            }
        } catch let error as MillraceError {
            // The TLS files or the stored security record: not a listening problem.
            storage.close()
            footprint.restore()
            Output.standardError("error: \(error.message)")
            throw ExitCode(2)
        } catch {
            storage.close()
            footprint.restore()
            var which = "\(host):\(port)"
            if let failure = error as? MillraceServer.ListenFailure, failure.listener == .kafka {
                which = "\(failure.host):\(failure.port) for Kafka clients"
            }
            Output.standardError("error: cannot listen on \(which): \(Self.listenFailure((error as? MillraceServer.ListenFailure)?.underlying ?? error))")
            throw ExitCode(2)
        }
        var http: OperationsHTTPServer?
        var httpAddress = "metrics and health over HTTP off"
        if let (httpHost, httpPort) = settings.httpListen {
            var httpConfiguration = OperationsHTTPServer.Configuration()
            httpConfiguration.tls = server.tls
            httpConfiguration.metricsToken = metricsToken
            let made = OperationsHTTPServer(host: httpHost, port: httpPort, broker: server, configuration: httpConfiguration, logger: logger)
            do {
                let bound = try await made.start()
                httpAddress = "metrics and health on \(configuration.tls == nil ? "http" : "https")://\(httpHost):\(bound.port ?? httpPort)"
                http = made
            } catch {
                await server.stop()
                storage.close()
                footprint.restore()
                Output.standardError("error: cannot listen for HTTP on \(httpHost):\(httpPort): \(Self.listenFailure(error)); is another broker running there? (--http-listen none turns it off)")
                throw ExitCode(2)
            }
        }
        if storage.indexReplay.entries > 0 {
            logger.notice(
                "the last stop was not clean: indexed \(storage.indexReplay.entries) entries again from the log in \(Int(storage.indexReplay.seconds * 1_000)) ms")
        }
        if let kafka = configuration.kafka, kafka.advertisedHost == nil, ["0.0.0.0", "::", "[::]"].contains(kafka.host) {
            logger.warning(
                "Kafka clients are told to connect to \(kafka.host), which no client can reach: set --kafka-advertise HOST:PORT (kafka_advertise) to the name or address they use for this machine")
        }
        var info = stat()
        if settings.auth != .off, stat(settings.dataDir + "/data.mdb", &info) == 0, info.st_mode & 0o077 != 0 {
            logger.warning(
                "\(settings.dataDir)/data.mdb can be read by other accounts on this machine, and it holds every record and the users' stored keys: chmod 600 it (and 700 its directory)")
        }
        let loopbackOnly = ([host] + (configuration.kafka.map { [$0.host] } ?? [])).allSatisfy { $0 == "localhost" || $0.hasPrefix("127.") || $0 == "::1" }
        if !loopbackOnly && (settings.auth == .off || configuration.tls == nil) {
            let missing = [settings.auth == .off ? "logins (--auth off: anyone who can reach the port can produce, delete topics and reset groups)" : nil, configuration.tls == nil ? "TLS (records and passwords cross the network readable)" : nil].compactMap { $0 }
            logger.warning(
                "listening beyond this machine without \(missing.joined(separator: " or ")); see docs/SECURITY.md: make an administrator with `millrace user create admin --role enterprise-admin --data-dir DIR`, then serve with --auth required --tls-cert FILE --tls-key FILE")
        }
        logger.info(
            "millrace \(MillraceVersion.current) serving \(settings.dataDir) on \(address)\(kafkaAddress), \(httpAddress), durability: fdatasync before every acknowledgement, logins \(settings.auth.rawValue), \(configuration.tls == nil ? "plain TCP" : configuration.tls?.clientCA == nil ? "TLS" : "mutual TLS")")
        // SIGHUP: read the certificate files again; connections open now keep theirs.
        let reload = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        signal(SIGHUP, SIG_IGN)
        reload.setEventHandler { [server, logger] in
            guard let tls = server.tls else { return logger.notice("SIGHUP: no TLS to reload (the broker runs without --tls-cert)") }
            do {
                try tls.reload()
                logger.notice("SIGHUP: read \(tls.files.certificate) and \(tls.files.key) again; new connections use them")
            } catch {
                logger.error("SIGHUP: kept the certificate in use: \(error)")
            }
        }
        reload.resume()
        defer { reload.cancel() }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [BrokerService(server: server, http: http, storage: storage, logger: logger)], gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

/// glibc's mallopt (malloc.h is not in Swift's Glibc module).
@_silgen_name("mallopt")
func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32

/// For the commands that stream millions of records through a few threads (produce,
/// consume; set at the start of `main`, before other threads exist): one malloc arena. glibc gives each thread that allocates its own arena, and a
/// line read on one thread and freed on another (after the broker's answer) leaves them
/// fragmented: `produce` of 4 M lines peaked at 190-215 MB with the default and at 119-124 MB
/// with one arena, no slower (docs/DECISIONS.md, "The CLI at the library's speed").
func useOneMallocArena() {
    _ = glibcMallopt(-8, 1)  // M_ARENA_MAX
}

extension ServeCommand {
    /// Why a listener could not start, in words: not the socket call's signature.
    static func listenFailure(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("errno: 98") || text.contains("Address already in use") {
            return "the address is in use (another broker, or another program, listens there; `ss -ltnp` shows which)"
        }
        if text.contains("errno: 99") || text.contains("Cannot assign requested address") {
            return "this machine has no such address; listen on one of its own, or 0.0.0.0"
        }
        if text.contains("errno: 13") || text.contains("Permission denied") {
            return "permission denied (ports below 1024 need privileges)"
        }
        return text
    }
}

/// What `serve` found at its data directory before opening it, so that a start that fails
/// (an address in use, a directory it cannot use) leaves no trace: a directory it made is
/// removed with the parents it made, and files it added to one that was there are removed.
struct DataDirectoryFootprint {
    let directory: String
    /// The outermost directory that did not exist (opening makes it and everything below).
    let created: String?
    /// What the directory held, when it existed.
    let entries: Set<String>

    init(_ path: String) {
        directory = URL(fileURLWithPath: path).standardizedFileURL.path
        var missing: String?
        var candidate = URL(fileURLWithPath: directory)
        while candidate.path != "/", !FileManager.default.fileExists(atPath: candidate.path) {
            missing = candidate.path
            candidate = candidate.deletingLastPathComponent()
        }
        created = missing
        entries = Set((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
    }

    /// Removes what opening the directory made (call after closing it).
    func restore() {
        if let created {
            try? FileManager.default.removeItem(atPath: created)
            return
        }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where !entries.contains(entry) {
            try? FileManager.default.removeItem(atPath: directory + "/" + entry)
        }
    }
}
