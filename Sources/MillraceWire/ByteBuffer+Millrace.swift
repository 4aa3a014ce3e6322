import MillraceFormat
import NIOCore

/// Primitive encodings of the native protocol (docs/PROTOCOL.md, "Primitive types").
/// Reads throw `malformedRequest` when the bytes are not there; callers decode only whole
/// frames, so short input here is always an error, never "wait for more".
extension ByteBuffer {
    public mutating func writeMillraceString(_ string: String) {
        let bytes = string.utf8
        precondition(bytes.count <= Limits.stringBytesMax, "protocol strings are at most \(Limits.stringBytesMax) bytes")
        writeInteger(Int16(bytes.count))
        writeBytes(bytes)
    }

    public mutating func readMillraceString(_ what: String) throws -> String {
        let length: Int16 = try readMillraceInteger(what + " length")
        guard length >= 0 else { throw MillraceError(.malformedRequest, "\(what) has negative length \(length)") }
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
    public mutating func readMillraceArray<Element>(
        _ what: String, minimumElementBytes: Int, _ read: (inout ByteBuffer) throws -> Element
    ) throws -> [Element] {
        let count: Int32 = try readMillraceInteger(what + " count")
        guard count >= 0, Int(count) * max(minimumElementBytes, 1) <= readableBytes else {
            throw MillraceError(.malformedRequest, "\(what) count \(count) does not fit the \(readableBytes) bytes left")
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
        topic = try buffer.readMillraceString("topic")
        entries = try [Entry](from: &buffer, "partitions of \(topic)")
    }
}
