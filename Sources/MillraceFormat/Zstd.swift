import CZstd
import Synchronization

/// zstd compression of a batch's records section.
public enum Zstd {
    /// Compresses `input` as one frame; with `dictionary` (an id `ZstdDictionaries.shared`
    /// holds), with that dictionary, whose id the frame header then carries.
    public static func compress(_ input: [UInt8], level: Int32 = 3, dictionary: UInt32? = nil) throws -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var output = [UInt8](repeating: 0, count: bound)
        var cdict: OpaquePointer?
        if let dictionary {
            guard let found = ZstdDictionaries.shared.compressionDictionary(dictionary, level: level) else {
                throw MillraceError(.unknownDictionary, "zstd dictionary \(dictionary) is not loaded; fetch it from the broker first")
            }
            cdict = found
        }
        let written = input.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { destination in
                guard let cdict else { return ZSTD_compress(destination.baseAddress, bound, source.baseAddress, source.count, level) }
                let context = ZSTD_createCCtx()
                defer { ZSTD_freeCCtx(context) }
                return ZSTD_compress_usingCDict(context, destination.baseAddress, bound, source.baseAddress, source.count, cdict)
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
        let dictionary = dictionaryID(ofFrame: input)
        if dictionary != 0 {
            guard let ddict = ZstdDictionaries.shared.decompressionDictionary(dictionary) else {
                throw MillraceError(.unknownDictionary, "records are compressed with zstd dictionary \(dictionary), which is not loaded here")
            }
            let referenced = ZSTD_DCtx_refDDict(stream, ddict)
            if ZSTD_isError(referenced) != 0 {
                throw MillraceError(.unexpected, "zstd refused dictionary \(dictionary): \(String(cString: ZSTD_getErrorName(referenced)))")
            }
        }
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

extension Zstd {
    /// The dictionary id each frame of `section` carries, in order (0: none); nil when the
    /// section is not whole zstd frames.
    public static func frameDictionaryIDs(_ section: UnsafeRawBufferPointer) -> [UInt32]? {
        guard let base = section.baseAddress else { return nil }
        var ids: [UInt32] = []
        var position = 0
        while position < section.count {
            let size = ZSTD_findFrameCompressedSize(base + position, section.count - position)
            guard ZSTD_isError(size) == 0, size > 0 else { return nil }
            ids.append(ZSTD_getDictID_fromFrame(base + position, size))
            position += size
        }
        return ids
    }

    /// The dictionary id a zstd frame's header carries (0: none, or not a zstd frame).
    public static func dictionaryID(ofFrame frame: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = frame.baseAddress else { return 0 }
        return ZSTD_getDictID_fromFrame(base, frame.count)
    }

    /// A dictionary of at most `capacity` bytes trained on `samples` (zstd's own trainer),
    /// with the id zstd derives from its content. Fails when the samples are too few or too
    /// alike to train on.
    public static func trainDictionary(samples: [[UInt8]], capacity: Int, level: Int32 = 3, thorough: Bool = false) throws -> [UInt8] {
        try trainer.withLock { _ in try train(samples: samples, capacity: capacity, level: level, thorough: thorough) }
    }

    /// One training at a time in the process: libzstd before 1.5.6 (Debian 12 ships 1.5.4)
    /// sorts through a process-wide pointer to the training context, so two trainings at once
    /// make wrong dictionaries or crash (two topics trained together on one broker did).
    private static let trainer = Mutex(())

    private static func train(samples: [[UInt8]], capacity: Int, level: Int32, thorough: Bool) throws -> [UInt8] {
        let sizes = samples.map { $0.count }
        let joined = samples.flatMap { $0 }
        var dictionary = [UInt8](repeating: 0, count: capacity)
        let size = joined.withUnsafeBytes { source in
            dictionary.withUnsafeMutableBytes { destination in
                sizes.withUnsafeBufferPointer { sizes in
                    var parameters = ZDICT_cover_params_t()
                    parameters.zParams.compressionLevel = level
                    parameters.nbThreads = 1
                    parameters.steps = thorough ? 16 : 4
                    parameters.d = thorough ? 0 : 8
                    parameters.splitPoint = thorough ? 0.8 : 1.0
                    return ZDICT_optimizeTrainFromBuffer_cover(
                        destination.baseAddress, destination.count, source.baseAddress, sizes.baseAddress, UInt32(sizes.count), &parameters)
                }
            }
        }
        if ZDICT_isError(size) != 0 {
            throw MillraceError(
                .invalidRequest,
                "zstd could not train a dictionary from \(samples.count) records (\(String(cString: ZDICT_getErrorName(size)))); it needs more records, or more varied ones")
        }
        dictionary.removeSubrange(size...)
        return dictionary
    }
}

/// The trained zstd dictionaries this process holds, by the id zstd writes into every frame
/// compressed with one (RFC 8878's Dictionary_ID). A broker loads its topics' dictionaries at
/// start and adds each one trained; a client adds the ones it fetches. Ids derive from a
/// dictionary's content, so two processes agree on them. Dictionaries stay for the process's
/// life (a few, of kilobytes each).
public final class ZstdDictionaries: Sendable {
    public static let shared = ZstdDictionaries()

    private struct Entry {
        let bytes: [UInt8]
        let decompression: OpaquePointer
        var compression: [Int32: OpaquePointer] = [:]
    }

    private struct Pointers: @unchecked Sendable {
        var entries: [UInt32: Entry] = [:]
    }

    private let state = Mutex(Pointers())

    /// Adds a dictionary (again: a no-op) and returns its id.
    @discardableResult
    public func add(_ bytes: [UInt8]) throws -> UInt32 {
        let id = bytes.withUnsafeBytes { ZDICT_getDictID($0.baseAddress, $0.count) }
        guard id != 0 else { throw MillraceError(.invalidRequest, "these \(bytes.count) bytes are not a zstd dictionary") }
        return try state.withLock { state in
            if let known = state.entries[id] {
                guard known.bytes == bytes else { throw MillraceError(.invalidRequest, "another zstd dictionary already has id \(id)") }
                return id
            }
            guard let ddict = bytes.withUnsafeBytes({ ZSTD_createDDict($0.baseAddress, $0.count) }) else {
                throw MillraceError(.invalidRequest, "zstd refused dictionary \(id)")
            }
            state.entries[id] = Entry(bytes: bytes, decompression: ddict)
            return id
        }
    }

    public func contains(_ id: UInt32) -> Bool { state.withLock { $0.entries[id] != nil } }

    public func bytes(of id: UInt32) -> [UInt8]? { state.withLock { $0.entries[id]?.bytes } }

    func decompressionDictionary(_ id: UInt32) -> OpaquePointer? { state.withLock { $0.entries[id]?.decompression } }

    func compressionDictionary(_ id: UInt32, level: Int32) -> OpaquePointer? {
        state.withLock { state -> OpaquePointer? in
            guard let entry = state.entries[id] else { return nil }
            if let made = entry.compression[level] { return made }
            guard let made = entry.bytes.withUnsafeBytes({ ZSTD_createCDict($0.baseAddress, $0.count, level) }) else { return nil }
            state.entries[id]?.compression[level] = made
            return made
        }
    }
}
