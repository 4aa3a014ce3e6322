#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension JSONTape {
    /// The string at `index` with its escapes decoded (a lone surrogate becomes U+FFFD).
    public func string(at index: Int) -> String { withView { $0.string(at: index) } }

    /// Whether the string at `index` equals `key` (UTF-8), without allocating when it has no
    /// escapes.
    public func stringEquals(_ index: Int, _ key: [UInt8]) -> Bool { withView { $0.stringEquals(index, key) } }

    /// The Unicode scalars of the string at `index`: its length for minLength/maxLength is
    /// their count (JSON Schema counts code points).
    public func scalarCount(at index: Int) -> Int { withView { $0.scalarCount(at: index) } }

    /// The text of the value at `index` as it appears in the document (for messages).
    public func text(at index: Int) -> String { withView { $0.text(at: index) } }

    /// The value at `index` as a tree (for schema documents and enum/const, not for records).
    public func value(at index: Int) -> JSONValue {
        let entry = entries[index]
        switch entry.kind {
        case .null: return .null
        case .true: return .bool(true)
        case .false: return .bool(false)
        case .number: return .number(entry.number)
        case .string: return .string(string(at: index))
        case .array:
            var items: [JSONValue] = []
            items.reserveCapacity(Int(entry.count))
            var member = index + 1
            while member < Int(entry.next) {
                items.append(value(at: member))
                member = Int(entries[member].next)
            }
            return .array(items)
        case .object:
            var members: [(String, JSONValue)] = []
            members.reserveCapacity(Int(entry.count))
            var key = index + 1
            while key < Int(entry.next) {
                let valueIndex = key + 1
                members.append((string(at: key), value(at: valueIndex)))
                key = Int(entries[valueIndex].next)
            }
            return .object(members)
        }
    }

    /// Decodes JSON escapes; the input was checked by the scanner.
    static func unescape(_ raw: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var index = raw.startIndex
        func hex4(_ at: Int) -> UInt32 {
            var value: UInt32 = 0
            for offset in 0..<4 { value = value << 4 | (JSONScanner.hexValue(raw[at + offset]) ?? 0) }
            return value
        }
        while index < raw.endIndex {
            let byte = raw[index]
            guard byte == UInt8(ascii: "\\"), index + 1 < raw.endIndex else {
                out.append(byte)
                index += 1
                continue
            }
            let code = raw[index + 1]
            index += 2
            switch code {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex4(index)
                index += 4
                if (0xD800...0xDBFF).contains(scalar), index + 6 <= raw.endIndex, raw[index] == UInt8(ascii: "\\"), raw[index + 1] == UInt8(ascii: "u") {
                    let low = hex4(index + 2)
                    if (0xDC00...0xDFFF).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        index += 6
                    }
                }
                out.append(contentsOf: Array(String(Unicode.Scalar(scalar).map(Character.init) ?? "\u{FFFD}").utf8))
            default: out.append(code)  // " \ /
            }
        }
        return out
    }
}

/// A JSON value as a tree: schema documents, enum and const values. Equality is JSON's:
/// numbers by value (1 == 1.0), objects regardless of member order.
public enum JSONValue: Sendable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)):
            guard a.count == b.count else { return false }
            for (key, value) in a {
                guard let other = b.first(where: { $0.0 == key }), other.1 == value else { return false }
            }
            return true
        default: return false
        }
    }

    /// A 64-bit digest equal for equal values (member order aside; 0 and -0 alike): a quick
    /// first look for an identical document, confirmed with `==`.
    public var canonicalDigest: UInt64 {
        func mix(_ hash: inout UInt64, _ word: UInt64) {
            hash = (hash ^ word) &* 0x100_0000_01b3
            hash ^= hash >> 29
        }
        func text(_ string: String) -> UInt64 {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in string.utf8 { mix(&hash, UInt64(byte)) }
            return hash
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        switch self {
        case .null: mix(&hash, 1)
        case .bool(let value): mix(&hash, value ? 2 : 3)
        case .number(let value): mix(&hash, 4); mix(&hash, value == 0 ? 0 : value.bitPattern)
        case .string(let value): mix(&hash, 5); mix(&hash, text(value))
        case .array(let items):
            mix(&hash, 6)
            for item in items { mix(&hash, item.canonicalDigest) }
        case .object(let members):
            // Order-free: members' digests are summed.
            var sum: UInt64 = 0
            for (key, value) in members {
                var member = text(key)
                mix(&member, value.canonicalDigest)
                sum &+= member
            }
            mix(&hash, 7)
            mix(&hash, sum)
        }
        return hash
    }

    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    /// Compact JSON text, members in their order.
    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let value): return value ? "true" : "false"
        case .number(let value): return Self.format(value)
        case .string(let value): return Self.quote(value)
        case .array(let items): return "[" + items.map(\.description).joined(separator: ",") + "]"
        case .object(let members): return "{" + members.map { Self.quote($0.0) + ":" + $0.1.description }.joined(separator: ",") + "}"
        }
    }

    static func format(_ number: Double) -> String {
        if number == number.rounded(), abs(number) < 1e15 { return String(Int64(number)) }
        return String(number)
    }

    /// `text` as a JSON string, quotes included (also the audit log's records).
    public static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// The tape seen through pointers for the length of one validation: no bounds checks, no
/// reference counting on the hot path. Only valid inside `JSONTape.withView`.
struct TapeView {
    let entries: UnsafeBufferPointer<JSONTape.Entry>
    let bytes: UnsafeBufferPointer<UInt8>

    @inline(__always) subscript(index: Int) -> JSONTape.Entry { entries[index] }

    @inline(__always) func after(_ index: Int) -> Int { Int(entries[index].next) }

    @inline(__always) func stringEquals(_ index: Int, _ key: [UInt8]) -> Bool {
        key.withUnsafeBufferPointer { stringEquals(index, $0.baseAddress, $0.count) }
    }

    /// Whether the string at `index` is the `length` bytes at `key`.
    @inline(__always) func stringEquals(_ index: Int, _ key: UnsafePointer<UInt8>?, _ length: Int) -> Bool {
        let entry = entries[index]
        if entry.escaped {
            // Unescaping never lengthens, and shortens at most six to one (`\u0041` is `A`):
            // a length that cannot match is no match, without decoding a long string.
            let raw = Int(entry.end &- entry.start)
            guard length <= raw, raw <= 6 * length else { return false }
            return Array(string(at: index).utf8) == Array(UnsafeBufferPointer(start: key, count: length))
        }
        guard Int(entry.end &- entry.start) == length else { return false }
        guard length > 0, let base = bytes.baseAddress, let key else { return length == 0 }
        return memcmp(base + Int(entry.start), key, length) == 0
    }

    /// The raw bytes of a string (without quotes) or number entry, or of a container.
    @inline(__always) func raw(_ index: Int) -> UnsafeBufferPointer<UInt8> {
        let entry = entries[index]
        return UnsafeBufferPointer(rebasing: bytes[Int(entry.start)..<Int(entry.end)])
    }

    /// Whether the number at `index` is an integer as written: `3`, `3.0` and `1e2` are;
    /// `1e-400` is not, though a double rounds it to 0 (and `1.0000000000000000001` to 1).
    /// Decided from the digits, so no rounding can make a fraction whole.
    func isInteger(_ index: Int) -> Bool {
        let number = entries[index].number
        guard number.isFinite, number == number.rounded() else { return false }
        let text = raw(index)
        // Plain digits (the common case) are an integer; else read the lexeme.
        guard text.contains(where: { $0 == UInt8(ascii: ".") || $0 | 0x20 == UInt8(ascii: "e") }) else { return true }
        var digits: [UInt8] = []  // every significant digit, integer part then fraction
        var integerDigits = 0
        var position = text.first == UInt8(ascii: "-") ? 1 : 0
        while position < text.count, text[position] >= 0x30, text[position] <= 0x39 {
            digits.append(text[position])
            integerDigits += 1
            position += 1
        }
        if position < text.count, text[position] == UInt8(ascii: ".") {
            position += 1
            while position < text.count, text[position] >= 0x30, text[position] <= 0x39 {
                digits.append(text[position])
                position += 1
            }
        }
        var exponent = 0
        if position < text.count, text[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            var sign = 1
            if position < text.count, text[position] == UInt8(ascii: "-") || text[position] == UInt8(ascii: "+") {
                if text[position] == UInt8(ascii: "-") { sign = -1 }
                position += 1
            }
            while position < text.count, text[position] >= 0x30, text[position] <= 0x39 {
                // Past the digits' count the answer no longer changes: clamp, never overflow.
                exponent = Swift.min(exponent * 10 + Int(text[position] - 0x30), 1 << 20)
                position += 1
            }
            exponent *= sign
        }
        // The decimal point sits after `integerDigits + exponent` digits; all after it must be 0.
        let point = Swift.max(0, integerDigits + exponent)
        return point >= digits.count || digits[point...].allSatisfy { $0 == UInt8(ascii: "0") }
    }

    func string(at index: Int) -> String {
        let text = raw(index)
        guard entries[index].escaped else { return String(decoding: text, as: UTF8.self) }
        return String(decoding: JSONTape.unescape(Array(text)[...]), as: UTF8.self)
    }

    func text(at index: Int) -> String {
        let text = String(decoding: raw(index), as: UTF8.self)
        return entries[index].kind == .string ? "\"" + text + "\"" : text
    }

    func scalarCount(at index: Int) -> Int {
        if entries[index].escaped { return string(at: index).unicodeScalars.count }
        var count = 0
        for byte in raw(index) where byte & 0xC0 != 0x80 { count += 1 }
        return count
    }
}

extension JSONTape {
    /// A view over the tape's own bytes (after `parse`).
    func withView<T>(_ body: (TapeView) -> T) -> T {
        entries.withUnsafeBufferPointer { entries in
            bytes.withUnsafeBufferPointer { bytes in body(TapeView(entries: entries, bytes: bytes)) }
        }
    }

    /// A view over the bytes it was `index`ed from.
    func withView<T>(over text: UnsafeBufferPointer<UInt8>, _ body: (TapeView) -> T) -> T {
        entries.withUnsafeBufferPointer { entries in body(TapeView(entries: entries, bytes: text)) }
    }
}
