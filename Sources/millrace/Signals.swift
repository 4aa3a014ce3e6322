import MillraceFormat
import Dispatch
import Foundation
import Logging
import ServiceLifecycle

/// Ctrl-C and SIGTERM end a command the same way: the first cancels its work, which then
/// finishes cleanly (commits, leaves its group, flushes output); if that has not happened
/// within `graceSeconds`, or a second signal comes, the process exits at once.
final class TerminationSignals: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]
    private let received = Locked(0)

    init(graceSeconds: Int = 5, onFirst: @escaping @Sendable () -> Void) {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
        for source in sources {
            source.setEventHandler { [self] in
                let count = received.withLock { received -> Int in
                    received += 1
                    return received
                }
                if count == 1 {
                    onFirst()
                    DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(graceSeconds)) {
                        Output.standardError("error: did not stop within \(graceSeconds) s of the signal; exiting without finishing")
                        Self.exitNow(1)
                    }
                } else {
                    Output.standardError("error: second signal; exiting at once")
                    Self.exitNow(1)
                }
            }
            source.resume()
        }
    }

    var signalled: Bool { received.withLock { $0 > 0 } }

    /// Waits for `task` as a service of a swift-service-lifecycle group: SIGTERM or SIGINT
    /// start the group's graceful shutdown, which cancels the task (it then finishes cleanly);
    /// this object's own count of signals still exits at once on a second one, or when the
    /// grace time runs out.
    /// With `cancelling` false the task is left to stop itself (`onFirst` tells it to).
    func wait<T: Sendable>(for task: Task<T, any Error>, cancelling: Bool = true) async throws -> T {
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: TaskService(task: task, cancelling: cancelling), successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "millrace", factory: { _ in SwiftLogNoOpLogHandler() })))
        try await group.run()
        return try await task.value
    }

    static func exitNow(_ code: Int32) -> Never {
        fflush(nil)
        exit(code)
    }

    func cancel() {
        for source in sources { source.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}

/// Log lines for a person at a terminal: "warning: lost the broker ...; reconnecting".
struct StandardErrorLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        Output.standardError("\(event.level): \(event.message)")
    }
}

/// A command's work as a service: done when the task is; a graceful shutdown cancels it.
struct TaskService<T: Sendable>: Service {
    let task: Task<T, any Error>
    var cancelling = true

    func run() async throws {
        await withGracefulShutdownHandler {
            _ = try? await task.value
        } onGracefulShutdown: {
            if cancelling { task.cancel() }
        }
    }
}
