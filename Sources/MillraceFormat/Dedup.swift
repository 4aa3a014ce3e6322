/// Where a topic's business key for duplicate detection comes from.
public enum DedupKeySpec: Sendable, Equatable, CustomStringConvertible {
    /// The record's key.
    case recordKey
    /// The value of the record header with this name.
    case header(String)
    /// The string, number or boolean at this JSON pointer in the record's value.
    case json(String)

    /// `key`, `header:NAME` or `json:/pointer`.
    public init(parsing text: String) throws {
        if text == "key" {
            self = .recordKey
        } else if text.hasPrefix("header:"), text.count > 7 {
            self = .header(String(text.dropFirst(7)))
        } else if text.hasPrefix("json:/") || text == "json:" {
            self = .json(String(text.dropFirst(5)))
        } else {
            throw MillraceError(.invalidConfig, "dedup key \"\(text)\" is not one of: key, header:NAME, json:/pointer (e.g. json:/event_id)")
        }
        guard description.utf8.count <= Limits.dedupKeySpecBytesMax else {
            throw MillraceError(.invalidConfig, "dedup key \"\(text.prefix(40))...\" is longer than \(Limits.dedupKeySpecBytesMax) bytes")
        }
    }

    public var description: String {
        switch self {
        case .recordKey: "key"
        case .header(let name): "header:\(name)"
        case .json(let pointer): "json:\(pointer)"
        }
    }
}

/// A topic's duplicate detection: the key and how long a key is remembered.
public struct DedupPolicy: Sendable, Equatable {
    public var key: DedupKeySpec
    public var windowMs: Int64

    public static let defaultWindowMs: Int64 = 24 * 3_600_000

    public init(key: DedupKeySpec, windowMs: Int64 = DedupPolicy.defaultWindowMs) {
        self.key = key
        self.windowMs = windowMs
    }

    public func validate() throws {
        guard windowMs >= 1_000, windowMs <= Limits.dedupWindowMsMax else {
            throw MillraceError(.invalidConfig, "dedup window must be 1 s...30 days (got \(windowMs) ms)")
        }
    }
}

/// A business key's 128-bit fingerprint: what the broker stores instead of the key (two
/// keys sharing one is not expected before about 2^64 keys). Stable across processes and
/// machines: it is stored.
public struct DedupHash: Sendable, Hashable, Comparable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public static func < (left: DedupHash, right: DedupHash) -> Bool {
        left.high != right.high ? left.high < right.high : left.low < right.low
    }

    /// Two independent 64-bit lanes of multiply-xorshift mixing over 8-byte words, each
    /// finished with MurmurHash3's fmix64.
    public init(_ bytes: UnsafeRawBufferPointer) {
        var a: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(bytes.count)
        var b: UInt64 = 0xC2B2_AE3D_27D4_EB4F &+ UInt64(bytes.count)
        var index = 0
        while index + 8 <= bytes.count {
            let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            a = Self.mix(a ^ word, 0xFF51_AFD7_ED55_8CCD)
            b = Self.mix(b &+ word, 0xC4CE_B9FE_1A85_EC53)
            index += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while index < bytes.count {
            tail |= UInt64(bytes[index]) << shift
            shift += 8
            index += 1
        }
        a = Self.mix(a ^ tail ^ 0x100, 0xFF51_AFD7_ED55_8CCD)
        b = Self.mix(b &+ tail &+ 0x200, 0xC4CE_B9FE_1A85_EC53)
        high = Self.fmix(a ^ (b >> 29))
        low = Self.fmix(b ^ (a >> 31))
    }

    public init(_ bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { DedupHash($0) }
    }

    @inline(__always) static func mix(_ value: UInt64, _ multiplier: UInt64) -> UInt64 {
        let product = (value ^ (value >> 32)) &* multiplier
        return product ^ (product >> 29)
    }

    @inline(__always) static func fmix(_ value: UInt64) -> UInt64 {
        var k = value
        k ^= k >> 33
        k &*= 0xFF51_AFD7_ED55_8CCD
        k ^= k >> 33
        k &*= 0xC4CE_B9FE_1A85_EC53
        k ^= k >> 33
        return k
    }
}
