import CZstd

/// zstd compression of a batch's records section.
public enum Zstd {
    public static func compress(_ input: [UInt8], level: Int32 = 3) throws -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var output = [UInt8](repeating: 0, count: bound)
        let written = input.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { destination in
                ZSTD_compress(destination.baseAddress, bound, source.baseAddress, source.count, level)
            }
        }
        if ZSTD_isError(written) != 0 {
            throw MillraceError(.unexpected, "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        }
        output.removeSubrange(written...)
        return output
    }

    /// Decompresses one or more zstd frames, refusing output larger than `maxBytes`.
    /// The streaming API is used so frames without a content size (as some Kafka clients
    /// write them) decode too.
    public static func decompress(_ input: UnsafeRawBufferPointer, maxBytes: Int) throws -> [UInt8] {
        guard let stream = ZSTD_createDStream() else { throw MillraceError(.unexpected, "zstd: out of memory") }
        defer { ZSTD_freeDStream(stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var lastResult = 0
        while true {
            let produced: Int = try chunk.withUnsafeMutableBytes { chunkBytes in
                var outBuffer = ZSTD_outBuffer(dst: chunkBytes.baseAddress, size: chunkBytes.count, pos: 0)
                let result = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
                if ZSTD_isError(result) != 0 {
                    throw MillraceError(.corruptBatch, "zstd: \(String(cString: ZSTD_getErrorName(result)))")
                }
                lastResult = result
                return outBuffer.pos
            }
            guard output.count + produced <= maxBytes else {
                throw MillraceError(.batchTooLarge, "decompressed records exceed \(maxBytes) bytes")
            }
            output.append(contentsOf: chunk[..<produced])
            if inBuffer.pos == inBuffer.size && produced < chunk.count { break }
        }
        guard lastResult == 0 else { throw MillraceError(.corruptBatch, "zstd: frame is truncated") }
        return output
    }
}
