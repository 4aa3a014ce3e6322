/// Reads big-endian integers and Kafka zigzag varints from raw bytes, throwing
/// `corruptBatch` with the byte position on short or malformed input.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var index: Int

    public init(_ bytes: UnsafeRawBufferPointer, index: Int = 0) {
        self.bytes = bytes
        self.index = index
    }

    public var remaining: Int { bytes.count - index }

    @inline(__always)
    mutating func require(_ count: Int, _ what: StaticString) throws {
        guard count >= 0, remaining >= count else {
            throw MillraceError(.corruptBatch, "truncated \(what) at byte \(index): need \(count), have \(remaining)")
        }
    }

    @inline(__always)
    public mutating func readInteger<T: FixedWidthInteger>(as: T.Type = T.self, _ what: StaticString) throws -> T {
        try require(MemoryLayout<T>.size, what)
        let value = bytes.loadUnaligned(fromByteOffset: index, as: T.self)
        index += MemoryLayout<T>.size
        return T(bigEndian: value)
    }

    /// A zigzag-encoded variable-length integer (Kafka's `varint`/`varlong`), at most 10 bytes.
    @inline(__always)
    public mutating func readVarint(_ what: StaticString) throws -> Int64 {
        var raw: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < bytes.count else {
                throw MillraceError(.corruptBatch, "truncated \(what) varint at byte \(index)")
            }
            let byte = bytes[index]
            index += 1
            if shift == 63 && byte > 1 {
                throw MillraceError(.corruptBatch, "\(what) varint longer than 64 bits at byte \(index - 1)")
            }
            raw |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// A varint that must fit an `Int32` (Kafka's `varint`, as opposed to `varlong`).
    public mutating func readVarint32(_ what: StaticString) throws -> Int32 {
        let start = index
        let value = try readVarint(what)
        guard let narrow = Int32(exactly: value) else {
            throw MillraceError(.corruptBatch, "\(what) varint \(value) out of 32-bit range at byte \(start)")
        }
        return narrow
    }

    public mutating func readBytes(_ count: Int, _ what: StaticString) throws -> UnsafeRawBufferPointer {
        try require(count, what)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[index..<(index + count)])
        index += count
        return slice
    }
}

/// Appends big-endian integers, zigzag varints and raw bytes to an array.
public struct ByteWriter {
    public var bytes: [UInt8]

    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inline(__always)
    public mutating func writeInteger<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    @inline(__always)
    public mutating func writeVarint(_ value: Int64) {
        var raw = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while raw >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: raw) | 0x80)
            raw >>= 7
        }
        bytes.append(UInt8(raw))
    }

    public mutating func writeBytes<C: Collection>(_ data: C) where C.Element == UInt8 {
        bytes.append(contentsOf: data)
    }

    /// Overwrites a big-endian integer at a position already written.
    public mutating func setInteger<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset + MemoryLayout<T>.size <= bytes.count)
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self) }
    }

    /// How many bytes `writeVarint(value)` writes.
    public static func varintSize(_ value: Int64) -> Int {
        var raw = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        var size = 1
        while raw >= 0x80 {
            raw >>= 7
            size += 1
        }
        return size
    }
}
