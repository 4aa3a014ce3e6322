import Foundation

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
