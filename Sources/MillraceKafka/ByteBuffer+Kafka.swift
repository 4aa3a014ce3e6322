import MillraceFormat
import MillraceWire
import NIOCore

/// The primitive types of Kafka's protocol that the native one does not have: unsigned
/// varints, the "compact" (length + 1) strings, bytes and arrays of flexible versions, nullable
/// strings, and tagged fields (KIP-482). The fixed-width integers, `i16`-length strings and
/// `i32`-count arrays are the native protocol's own (`ByteBuffer+Millrace.swift`): one reader
/// for both listeners. Every read checks the bytes are there and every count is checked
/// against the bytes left before anything is allocated; a short or impossible field throws
/// `malformedRequest`.
extension ByteBuffer {
    /// An unsigned LEB128 varint of at most 5 bytes (a 32-bit value), as Kafka's compact
    /// lengths and tag numbers are.
    public mutating func readKafkaUnsignedVarint(_ what: String) throws -> UInt32 {
        var value: UInt32 = 0
        for index in 0..<5 {
            let byte: UInt8 = try readMillraceInteger(what)
            if index == 4 && byte > 0x0F {
                throw MillraceError(.malformedRequest, "\(what) is a varint longer than 32 bits")
            }
            value |= UInt32(byte & 0x7F) << (7 * UInt32(index))
            if byte & 0x80 == 0 { return value }
        }
        throw MillraceError(.malformedRequest, "\(what) is a varint longer than 5 bytes")
    }

    public mutating func writeKafkaUnsignedVarint(_ value: UInt32) {
        var rest = value
        while rest >= 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        writeInteger(UInt8(rest))
    }

    /// A compact length: the varint holds length + 1, 0 meaning null. Nil for null; a length
    /// the bytes left cannot hold is refused.
    private mutating func readKafkaCompactLength(_ what: String, elementBytes: Int = 1) throws -> Int? {
        let stored = try readKafkaUnsignedVarint(what + " length")
        guard stored > 0 else { return nil }
        let length = Int(stored) - 1
        guard length * max(elementBytes, 1) <= readableBytes else {
            throw MillraceError(.malformedRequest, "\(what) claims \(length) \(elementBytes == 1 ? "bytes" : "elements"), \(readableBytes) bytes remain")
        }
        return length
    }

    /// A nullable `i16`-length string (-1 for null), at most `maxBytes` long.
    public mutating func readKafkaNullableString(_ what: String, maxBytes: Int = Limits.stringBytesMax) throws -> String? {
        guard let length = peekInteger(as: Int16.self) else {
            throw MillraceError(.malformedRequest, "\(what) length is cut off (\(readableBytes) bytes remain)")
        }
        if length == -1 {
            moveReaderIndex(forwardBy: 2)
            return nil
        }
        return try readMillraceString(what, maxBytes: maxBytes)
    }

    public mutating func writeKafkaNullableString(_ string: String?) {
        guard let string else {
            writeInteger(Int16(-1))
            return
        }
        writeMillraceString(string)
    }

    /// A compact string (flexible versions): varint length + 1, then UTF-8. Nil for null.
    public mutating func readKafkaCompactNullableString(_ what: String, maxBytes: Int = Limits.stringBytesMax) throws -> String? {
        guard let length = try readKafkaCompactLength(what) else { return nil }
        guard length <= maxBytes else { throw MillraceError(.invalidRequest, "\(what) is \(length) bytes; the limit is \(maxBytes)") }
        guard let string = readString(length: length) else {
            throw MillraceError(.malformedRequest, "\(what) claims \(length) bytes, \(readableBytes) remain")
        }
        return string
    }

    /// A compact string that may not be null.
    public mutating func readKafkaCompactString(_ what: String, maxBytes: Int = Limits.stringBytesMax) throws -> String {
        guard let string = try readKafkaCompactNullableString(what, maxBytes: maxBytes) else {
            throw MillraceError(.malformedRequest, "\(what) is null where a string is required")
        }
        return string
    }

    public mutating func writeKafkaCompactString(_ string: String?) {
        guard let string else { return writeKafkaUnsignedVarint(0) }
        let bytes = string.clippedUTF8(maxBytes: Limits.stringBytesMax)
        writeKafkaUnsignedVarint(UInt32(bytes.count) + 1)
        writeBytes(bytes)
    }

    /// Compact nullable bytes: varint length + 1, then the bytes, as a slice of this buffer.
    public mutating func readKafkaCompactBytes(_ what: String) throws -> ByteBuffer? {
        guard let length = try readKafkaCompactLength(what) else { return nil }
        return readSlice(length: length)
    }

    public mutating func writeKafkaCompactBytes(_ bytes: ByteBuffer?) {
        guard let bytes else { return writeKafkaUnsignedVarint(0) }
        writeKafkaUnsignedVarint(UInt32(bytes.readableBytes) + 1)
        writeImmutableBuffer(bytes)
    }

    /// A compact array: varint count + 1 (0 for null, read as empty), then the elements. A
    /// count the bytes left cannot hold (each element takes at least `minimumElementBytes`) is
    /// refused before anything is allocated; one over `countMax` is `invalidRequest`.
    public mutating func readKafkaCompactArray<Element>(
        _ what: String, minimumElementBytes: Int, countMax: Int = Int(Int32.max), _ read: (inout ByteBuffer) throws -> Element
    ) throws -> [Element] {
        guard let count = try readKafkaCompactLength(what, elementBytes: minimumElementBytes) else { return [] }
        guard count <= countMax else { throw MillraceError(.invalidRequest, "\(count) \(what) in one request; the limit is \(countMax)") }
        var elements: [Element] = []
        elements.reserveCapacity(count)
        for _ in 0..<count { elements.append(try read(&self)) }
        return elements
    }

    public mutating func writeKafkaCompactArray<Element>(_ elements: [Element], _ write: (inout ByteBuffer, Element) -> Void) {
        writeKafkaUnsignedVarint(UInt32(elements.count) + 1)
        for element in elements { write(&self, element) }
    }

    /// Tagged fields (flexible versions): a count, then per field a tag, a size and the data.
    /// None is understood yet, so each is skipped by its size; tags must rise (KIP-482).
    public mutating func skipKafkaTaggedFields(_ what: String) throws {
        let count = try readKafkaUnsignedVarint(what + " tagged field count")
        // Each field takes at least two bytes (its tag and its size).
        guard Int(count) * 2 <= readableBytes else {
            throw MillraceError(.malformedRequest, "\(what) claims \(count) tagged fields, \(readableBytes) bytes remain")
        }
        var last: Int64 = -1
        for _ in 0..<count {
            let tag = try readKafkaUnsignedVarint(what + " tag")
            guard Int64(tag) > last else { throw MillraceError(.malformedRequest, "\(what) has tag \(tag) after tag \(last); tags must rise") }
            last = Int64(tag)
            let size = try readKafkaUnsignedVarint(what + " tagged field size")
            guard Int(size) <= readableBytes else {
                throw MillraceError(.malformedRequest, "\(what) tagged field \(tag) claims \(size) bytes, \(readableBytes) remain")
            }
            moveReaderIndex(forwardBy: Int(size))
        }
    }

    /// No tagged fields.
    public mutating func writeKafkaEmptyTaggedFields() { writeKafkaUnsignedVarint(0) }

    // MARK: One call for both encodings: a message's flexible versions use the compact forms.

    public mutating func readKafkaNullableString(_ what: String, flexible: Bool, maxBytes: Int = Limits.stringBytesMax) throws -> String? {
        flexible ? try readKafkaCompactNullableString(what, maxBytes: maxBytes) : try readKafkaNullableString(what, maxBytes: maxBytes)
    }

    public mutating func readKafkaString(_ what: String, flexible: Bool, maxBytes: Int = Limits.stringBytesMax) throws -> String {
        guard let string = try readKafkaNullableString(what, flexible: flexible, maxBytes: maxBytes) else {
            throw MillraceError(.malformedRequest, "\(what) is null where a string is required")
        }
        return string
    }

    public mutating func writeKafkaString(_ string: String?, flexible: Bool) {
        if flexible { writeKafkaCompactString(string) } else { writeKafkaNullableString(string) }
    }

    /// An array, nil when null (`i32` -1, or compact 0).
    public mutating func readKafkaNullableArray<Element>(
        _ what: String, flexible: Bool, minimumElementBytes: Int, countMax: Int = Int(Int32.max), _ read: (inout ByteBuffer) throws -> Element
    ) throws -> [Element]? {
        if flexible {
            // Null is count 0, one byte; anything else (a bad varint too) is read as an array.
            if peekInteger(as: UInt8.self) == 0 {
                moveReaderIndex(forwardBy: 1)
                return nil
            }
            return try readKafkaCompactArray(what, minimumElementBytes: minimumElementBytes, countMax: countMax, read)
        }
        if peekInteger(as: Int32.self) == -1 {
            moveReaderIndex(forwardBy: 4)
            return nil
        }
        return try readMillraceArray(what, minimumElementBytes: minimumElementBytes, countMax: countMax, read)
    }

    public mutating func readKafkaArray<Element>(
        _ what: String, flexible: Bool, minimumElementBytes: Int, countMax: Int = Int(Int32.max), _ read: (inout ByteBuffer) throws -> Element
    ) throws -> [Element] {
        try readKafkaNullableArray(what, flexible: flexible, minimumElementBytes: minimumElementBytes, countMax: countMax, read) ?? []
    }

    public mutating func writeKafkaArray<Element>(_ elements: [Element]?, flexible: Bool, _ write: (inout ByteBuffer, Element) -> Void) {
        guard let elements else {
            if flexible { writeKafkaUnsignedVarint(0) } else { writeInteger(Int32(-1)) }
            return
        }
        if flexible { writeKafkaCompactArray(elements, write) } else { writeMillraceArray(elements, write) }
    }

    /// A Kafka `bool`: one byte, any non-zero value true.
    public mutating func readKafkaBool(_ what: String) throws -> Bool { try readMillraceInteger(what, as: UInt8.self) != 0 }

    public mutating func writeKafkaBool(_ value: Bool) { writeInteger(UInt8(value ? 1 : 0)) }
}
