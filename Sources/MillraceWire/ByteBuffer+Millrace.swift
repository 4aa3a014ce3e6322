import MillraceFormat
import NIOCore

/// Primitive encodings of the native protocol (docs/PROTOCOL.md, "Primitive types").
/// Reads throw `malformedRequest` when the bytes are not there; callers decode only whole
/// frames, so short input here is always an error, never "wait for more".
extension ByteBuffer {
    /// Writes an `i16`-length string. Decoders refuse every field over its own limit, and
    /// those limits fit a protocol string (LimitsTests), so a longer string here can only be
    /// one the broker made up; it is cut at a character boundary rather than trap.
    public mutating func writeMillraceString(_ string: String, maxBytes: Int = Limits.stringBytesMax) {
        let bytes = string.clippedUTF8(maxBytes: min(maxBytes, Limits.stringBytesMax))
        writeInteger(Int16(bytes.count))
        writeBytes(bytes)
    }

    /// Reads an `i16`-length string. A length over `maxBytes` is refused with `code` (the
    /// frame itself is sound, so the request gets that error and the connection stays open).
    public mutating func readMillraceString(
        _ what: String, maxBytes: Int = Limits.stringBytesMax, code: ErrorCode = .invalidRequest
    ) throws -> String {
        let length: Int16 = try readMillraceInteger(what + " length")
        guard length >= 0 else { throw MillraceError(.malformedRequest, "\(what) has negative length \(length)") }
        guard Int(length) <= maxBytes else {
            throw MillraceError(code, "\(what) is \(length) bytes; the limit is \(maxBytes)")
        }
        guard let string = readString(length: Int(length)) else {
            throw MillraceError(.malformedRequest, "\(what) claims \(length) bytes, \(readableBytes) remain")
        }
        return string
    }

    /// Nullable bytes: `i32` length (-1 for null), then the bytes.
    public mutating func writeMillraceBytes(_ bytes: [UInt8]?) {
        guard let bytes else {
            writeInteger(Int32(-1))
            return
        }
        writeInteger(Int32(bytes.count))
        writeBytes(bytes)
    }

    public mutating func readMillraceBytes(_ what: String) throws -> [UInt8]? {
        let length: Int32 = try readMillraceInteger(what + " length")
        if length == -1 { return nil }
        guard length >= 0 else { throw MillraceError(.malformedRequest, "\(what) has length \(length)") }
        guard let bytes = readBytes(length: Int(length)) else {
            throw MillraceError(.malformedRequest, "\(what) claims \(length) bytes, \(readableBytes) remain")
        }
        return bytes
    }

    /// Bytes as `writeMillraceBytes` writes them, copied from `bytes`' readable bytes.
    public mutating func writeMillraceBytes(_ bytes: ByteBuffer) {
        writeInteger(Int32(bytes.readableBytes))
        writeImmutableBuffer(bytes)
    }

    /// Bytes as `readMillraceBytes` reads them, as a slice sharing this buffer's storage (no
    /// copy); null reads as empty.
    public mutating func readMillraceByteSlice(_ what: String) throws -> ByteBuffer {
        let length: Int32 = try readMillraceInteger(what + " length")
        if length == -1 { return ByteBuffer() }
        guard length >= 0 else { throw MillraceError(.malformedRequest, "\(what) has length \(length)") }
        guard let slice = readSlice(length: Int(length)) else {
            throw MillraceError(.malformedRequest, "\(what) claims \(length) bytes, \(readableBytes) remain")
        }
        return slice
    }

    public mutating func readMillraceInteger<T: FixedWidthInteger>(_ what: String, as: T.Type = T.self) throws -> T {
        guard let value = readInteger(as: T.self) else {
            throw MillraceError(.malformedRequest, "\(what) is cut off (\(readableBytes) bytes remain)")
        }
        return value
    }

    public mutating func writeMillraceArray<Element>(_ elements: [Element], _ write: (inout ByteBuffer, Element) -> Void) {
        writeInteger(Int32(elements.count))
        for element in elements { write(&self, element) }
    }

    /// An `i32` count, then the elements. A count that cannot fit the bytes left (every element
    /// takes at least `minimumElementBytes`) is refused before anything is allocated.
    /// A count over `countMax` is refused with `invalidRequest` (the frame is sound).
    public mutating func readMillraceArray<Element>(
        _ what: String, minimumElementBytes: Int, countMax: Int = Int(Int32.max), _ read: (inout ByteBuffer) throws -> Element
    ) throws -> [Element] {
        let count: Int32 = try readMillraceInteger(what + " count")
        guard count >= 0, Int(count) * max(minimumElementBytes, 1) <= readableBytes else {
            throw MillraceError(.malformedRequest, "\(what) count \(count) does not fit the \(readableBytes) bytes left")
        }
        guard Int(count) <= countMax else {
            throw MillraceError(.invalidRequest, "\(count) \(what) in one request; the limit is \(countMax)")
        }
        var elements: [Element] = []
        elements.reserveCapacity(Int(count))
        for _ in 0..<count { elements.append(try read(&self)) }
        return elements
    }
}

/// A type with one fixed wire encoding.
public protocol WireCodable: Equatable, Sendable {
    /// The fewest bytes an encoded value takes (bounds array counts before allocating).
    static var minimumBytes: Int { get }
    func write(to buffer: inout ByteBuffer)
    init(from buffer: inout ByteBuffer) throws
}

extension Array where Element: WireCodable {
    func write(to buffer: inout ByteBuffer) { buffer.writeMillraceArray(self) { $1.write(to: &$0) } }

    init(from buffer: inout ByteBuffer, _ what: String) throws {
        self = try buffer.readMillraceArray(what, minimumElementBytes: Element.minimumBytes) { try Element(from: &$0) }
    }
}

/// A topic name with per-partition entries: the nesting Produce, Fetch and ListOffsets use.
public struct TopicEntries<Entry: WireCodable>: WireCodable {
    public var topic: String
    public var entries: [Entry]

    public init(topic: String, _ entries: [Entry]) {
        self.topic = topic
        self.entries = entries
    }

    public static var minimumBytes: Int { 6 }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(topic)
        entries.write(to: &buffer)
    }

    public init(from buffer: inout ByteBuffer) throws {
        topic = try buffer.readMillraceString("topic", maxBytes: Limits.topicNameBytesMax, code: .invalidTopicName)
        entries = try buffer.readMillraceArray(
            "partitions of \(topic)", minimumElementBytes: Entry.minimumBytes, countMax: Limits.partitionsPerRequestMax
        ) { try Entry(from: &$0) }
    }
}

extension Array {
    /// A request's `[topic, [partition ...]]`: at most `topicsPerRequestMax` topics and
    /// `partitionsPerRequestMax` entries in all.
    init<Entry>(requestTopicsFrom buffer: inout ByteBuffer) throws where Element == TopicEntries<Entry> {
        self = try buffer.readMillraceArray("topics", minimumElementBytes: Element.minimumBytes, countMax: Limits.topicsPerRequestMax) {
            try TopicEntries<Entry>(from: &$0)
        }
        let partitions = reduce(0) { $0 + $1.entries.count }
        guard partitions <= Limits.partitionsPerRequestMax else {
            throw MillraceError(.invalidRequest, "\(partitions) partitions in one request; the limit is \(Limits.partitionsPerRequestMax)")
        }
    }
}

extension String {
    /// The UTF-8 bytes of this string, at most `maxBytes`, cut before a character's first byte.
    public func clippedUTF8(maxBytes: Int) -> Substring.UTF8View {
        let bytes = utf8
        guard bytes.count > maxBytes else { return self[...].utf8 }
        var end = bytes.index(bytes.startIndex, offsetBy: maxBytes)
        // Step back over continuation bytes (10xxxxxx) to the start of a scalar.
        while end > bytes.startIndex, bytes[end] & 0xC0 == 0x80 { end = bytes.index(before: end) }
        return self[..<end].utf8
    }
}
