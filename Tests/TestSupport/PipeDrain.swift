import Foundation
import MillraceFormat

/// Reads every pipe to its end on threads of its own while a child process runs: a child
/// that fills a pipe nobody reads never ends. `wait()` returns each pipe's bytes, in order.
public final class PipeDrain: Sendable {
    private let collected = Locked<[Int: Data]>([:])
    private let drained = DispatchGroup()

    public init(_ pipes: [Pipe]) {
        for (index, pipe) in pipes.enumerated() {
            let handle = pipe.fileHandleForReading
            DispatchQueue.global().async(group: drained) { [collected] in
                let data = handle.readDataToEndOfFile()
                collected.withLock { $0[index] = data }
            }
        }
    }

    /// Blocks until every pipe has ended.
    public func wait() -> [Data] {
        drained.wait()
        return collected.withLock { collected in (0..<collected.count).map { collected[$0] ?? Data() } }
    }

    /// Suspends until every pipe has ended.
    public func ended() async -> [Data] {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in drained.notify(queue: .global()) { continuation.resume() } }
        return wait()
    }
}
