import ArgumentParser
import Dispatch
import Foundation
import Logging
import MillraceFormat
import MillraceServer
import MillraceStorage

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the broker on a data directory until SIGTERM or SIGINT.")

    @Option(help: "The data directory (created when missing).") var dataDir = "./millrace-data"
    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).") var listen = "127.0.0.1:7450"
    @Option(help: "Forget an idempotent producer (its id and sequence numbers) after this many hours without a write.")
    var producerIdleHours = 168
    @Option(
        help: ArgumentHelp(
            "Memory per topic with duplicate detection for its filter over the keys it holds (MiB, 1...1024).",
            discussion: "Fixed, so memory does not grow with the keys held; past about 1 M keys per MiB its false positives rise and look-ups get slower, never wrong (docs/OPERATIONS.md)."))
    var dedupFilterMib = 16
    @Option(
        help: ArgumentHelp(
            "Memory for the key index's newest entries before they are written as one run (MiB, 1...4096).",
            discussion: "48 bytes per entry (64 MiB: ~1.4 M entries). More means fewer, larger runs and a longer start after a crash, when the records behind them are indexed again (docs/OPERATIONS.md, \"Tracing\")."))
    var indexMemoryMib = 64

    func run() async throws {
        // Responses are large, short-lived buffers. glibc raises its mmap threshold after
        // such buffers are freed and then serves them from the heap, where freed memory is
        // not returned: under a fetch flood RSS rose to several times the memory budget.
        // A fixed threshold keeps them mmapped and returned at once (docs/DECISIONS.md).
        _ = glibcMallopt(-3, 256 << 10)  // M_MMAP_THRESHOLD
        _ = glibcMallopt(-8, 4)  // M_ARENA_MAX
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "millrace")
        logger.logLevel = .info
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            Output.standardError("error: --listen takes HOST:PORT, for example 127.0.0.1:7450 (got \(listen))")
            throw ExitCode(2)
        }
        let host = String(listen[..<colon])
        guard producerIdleHours >= 1, producerIdleHours <= 24 * 365 else {
            Output.standardError("error: --producer-idle-hours takes 1...8760 (got \(producerIdleHours))")
            throw ExitCode(2)
        }
        guard (1...1_024).contains(dedupFilterMib) else {
            Output.standardError("error: --dedup-filter-mib takes 1...1024 (got \(dedupFilterMib))")
            throw ExitCode(2)
        }
        guard (1...4_096).contains(indexMemoryMib) else {
            Output.standardError("error: --index-memory-mib takes 1...4096 (got \(indexMemoryMib))")
            throw ExitCode(2)
        }
        var options = Storage.Options()
        options.indexMemoryBytes = indexMemoryMib << 20
        options.producerIdleMs = Int64(producerIdleHours) * 3_600_000
        options.dedupFilterBytes = dedupFilterMib << 20
        let storage: Storage
        do {
            storage = try Storage.open(directory: dataDir, options: options)
        } catch let error as MillraceError {
            Output.standardError("error: \(error.message)")
            throw ExitCode(2)
        }
        let server = MillraceServer(storage: storage, configuration: .init(host: host, port: port), logger: logger)
        let address: String
        do {
            let bound = try await server.start()
            address = "\(host):\(bound.port ?? port)"
        } catch {
            storage.close()
            Output.standardError("error: cannot listen on \(listen): \(error); is another broker running there?")
            throw ExitCode(2)
        }
        if storage.indexReplay.entries > 0 {
            logger.notice(
                "the last stop was not clean: indexed \(storage.indexReplay.entries) entries again from the log in \(Int(storage.indexReplay.seconds * 1_000)) ms")
        }
        logger.info(
            "millrace \(MillraceVersion.current) serving \(dataDir) on \(address), durability: fdatasync before every acknowledgement")
        await waitForTerminationSignal()
        logger.info("shutting down: finishing requests in flight")
        await server.stop()
        storage.close()
        logger.info("stopped; storage closed cleanly")
    }

    private func waitForTerminationSignal() async {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let fired = NSLock()
            nonisolated(unsafe) var done = false
            let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
            for source in sources {
                source.setEventHandler {
                    fired.lock()
                    defer { fired.unlock() }
                    guard !done else { return }
                    done = true
                    for source in sources { source.cancel() }
                    continuation.resume()
                }
                source.resume()
            }
        }
    }
}

/// glibc's mallopt (malloc.h is not in Swift's Glibc module).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
