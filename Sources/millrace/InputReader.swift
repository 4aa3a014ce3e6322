import Foundation
import MillraceSchema

/// Reads a file descriptor on a thread of its own and hands its bytes over as an async
/// sequence of chunks, at most `chunksAhead` chunks ahead of the consumer: standard input is
/// streamed as it arrives (a blocking read never holds one of Swift's few pool threads), and a
/// file of any size is read in bounded memory.
final class InputReader: AsyncSequence, @unchecked Sendable {
    typealias Element = [UInt8]

    private let descriptor: Int32
    private let chunkBytes: Int
    /// Chunks the reader may still read ahead (a counting condition: a DispatchSemaphore may
    /// not be released below its starting value).
    private let roomChanged = NSCondition()
    private var room: Int
    private let stream: AsyncThrowingStream<[UInt8], any Error>
    private let continuation: AsyncThrowingStream<[UInt8], any Error>.Continuation

    init(descriptor: Int32, chunkBytes: Int = 256 << 10, chunksAhead: Int = 4) {
        self.descriptor = descriptor
        self.chunkBytes = chunkBytes
        room = chunksAhead
        (stream, continuation) = AsyncThrowingStream.makeStream(of: [UInt8].self)
        let thread = Thread { [self] in run() }
        thread.name = "millrace-input"
        thread.start()
    }

    private func run() {
        while true {
            roomChanged.lock()
            while room == 0 { roomChanged.wait() }
            room -= 1
            roomChanged.unlock()
            var chunk = [UInt8](repeating: 0, count: chunkBytes)
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, chunkBytes) }
            if count < 0 {
                if errno == EINTR {
                    consumed()
                    continue
                }
                continuation.finish(throwing: CommandFailure(message: "error: cannot read input: \(String(cString: strerror(errno)))", exitCode: 1))
                return
            }
            if count == 0 {
                continuation.finish()
                return
            }
            chunk.removeLast(chunkBytes - count)
            continuation.yield(chunk)
        }
    }

    /// Call after handling each chunk: lets the reader read one more.
    func consumed() {
        roomChanged.lock()
        room += 1
        roomChanged.signal()
        roomChanged.unlock()
    }

    func makeAsyncIterator() -> AsyncThrowingStream<[UInt8], any Error>.Iterator { stream.makeAsyncIterator() }
}

/// Input files, opened one way by every command that reads one: a file that cannot be read —
/// missing, a directory, not permitted — is a usage error (exit 2) naming it, found before
/// anything connects to the broker; a line that is not JSON is named by its line and column.
enum InputFile {
    /// A descriptor open for reading `path` (the caller closes it).
    static func open(_ path: String) throws -> Int32 {
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw unreadable(path, errno) }
        // A directory opens, and fails only at the first read: refuse it here.
        var opened = stat()
        if fstat(descriptor, &opened) == 0, (opened.st_mode & S_IFMT) == S_IFDIR {
            close(descriptor)
            throw unreadable(path, EISDIR)
        }
        return descriptor
    }

    /// The whole of `path` (a schema file: small).
    static func contents(_ path: String) throws -> [UInt8] {
        let descriptor = try open(path)
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw unreadable(path, errno) }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
        }
    }

    private static func unreadable(_ path: String, _ code: Int32) -> CommandFailure {
        CommandFailure(message: "error: cannot read \(path): \(String(cString: strerror(code)))", exitCode: 2)
    }

    /// Where a line stopped being JSON, as a column (1-based, in characters), and why.
    static func syntax(_ error: JSONSyntaxError, in line: [UInt8]) -> (column: Int, message: String) {
        let column = String(decoding: line.prefix(error.offset), as: UTF8.self).count + 1
        return (column, "not valid JSON at column \(column): \(error.reason)")
    }
}
