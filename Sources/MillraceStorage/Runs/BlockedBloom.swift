import MillraceFormat

/// A Bloom filter whose probes for one key all fall in one 64-byte block (one cache line):
/// seven bits, at about 10 bits per key ≈ 1% false positives. An `ordered` filter picks the
/// block by the hash's high bits (multiply-shift), so keys inserted in hash order — a run
/// being written — fill it front to back instead of missing the cache at every key; the
/// others by a remainder.
enum BlockedBloom {
    static let blockBytes = 64

    static func bytes(forKeys count: Int, bitsPerKey: Int = 10) -> Int {
        max(1, (count * bitsPerKey + 511) / 512) * blockBytes
    }

    @inline(__always) private static func block(_ hash: DedupHash, _ bytes: Int, ordered: Bool) -> Int {
        let blocks = UInt64(bytes / blockBytes)
        return Int(ordered ? hash.high.multipliedFullWidth(by: blocks).high : hash.high % blocks) * blockBytes
    }

    static func insert(_ hash: DedupHash, into filter: UnsafeMutableRawBufferPointer, ordered: Bool = false) {
        guard filter.count >= blockBytes, let base = filter.baseAddress else { return }
        let start = block(hash, filter.count, ordered: ordered)
        var bits = hash.low
        for _ in 0..<7 {
            let bit = Int(bits & 511)
            bits >>= 9
            let byte = base + start + bit >> 3
            byte.storeBytes(of: byte.load(as: UInt8.self) | UInt8(1 << (bit & 7)), as: UInt8.self)
        }
    }

    static func mayContain(_ hash: DedupHash, in filter: UnsafeRawBufferPointer, ordered: Bool = false) -> Bool {
        guard filter.count >= blockBytes, let base = filter.baseAddress else { return true }
        let start = block(hash, filter.count, ordered: ordered)
        var bits = hash.low
        for _ in 0..<7 {
            let bit = Int(bits & 511)
            bits >>= 9
            guard base.load(fromByteOffset: start + bit >> 3, as: UInt8.self) & UInt8(1 << (bit & 7)) != 0 else { return false }
        }
        return true
    }
}
