/// One parse of a JSON text (RFC 8259) into a flat tape: one entry per value, in document
/// order, each container followed by its members and knowing where it ends. No objects are
/// allocated per value; strings and numbers point back into the bytes. One tape is reused for
/// record after record (`parse` keeps its capacity), and the validator, the dedup-key pointer
/// and the index pointers all read the same tape (see DESIGN, "one parse per record").
public struct JSONTape: Sendable {
    public enum Kind: UInt8, Sendable {
        case object, array, string, number, `true`, `false`, null
    }

    public struct Entry: Sendable {
        public var kind: Kind
        /// A string holds a backslash escape (its bytes must be decoded before use).
        public var escaped: Bool
        /// A string holds a byte that is not ASCII (its length in characters is not its
        /// length in bytes).
        public var nonASCII = false
        /// Byte range in the text: a string's contents without the quotes, a number's text;
        /// for a container, its opening and closing brackets.
        public var start: UInt32
        public var end: UInt32
        /// The tape index just after this value and everything inside it.
        public var next: UInt32
        /// A container's member count (pairs for an object).
        public var count: UInt32
        /// A number's value.
        public var number: Double
    }

    public private(set) var entries: [Entry] = []
    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// Parses `text`, replacing what the tape held. Throws `JSONSyntaxError` naming the byte.
    public mutating func parse(_ text: [UInt8], depthMax: Int = 64) throws(JSONSyntaxError) {
        entries.removeAll(keepingCapacity: true)
        bytes = text
        var scanner = JSONScanner(depthMax: depthMax)
        try text.withUnsafeBufferPointer { input throws(JSONSyntaxError) in
            try scanner.document(input, into: &entries)
        }
    }

    /// Parses bytes that live elsewhere (a record inside a batch): copied into the tape's own
    /// buffer, which keeps its capacity from record to record.
    public mutating func parse(_ text: UnsafeRawBufferPointer, depthMax: Int = 64) throws(JSONSyntaxError) {
        entries.removeAll(keepingCapacity: true)
        bytes.removeAll(keepingCapacity: true)
        bytes.append(contentsOf: text)
        var scanner = JSONScanner(depthMax: depthMax)
        try bytes.withUnsafeBufferPointer { input throws(JSONSyntaxError) in
            try scanner.document(input, into: &entries)
        }
    }

    /// Parses bytes where they are, without copying them: the tape holds only entries, and is
    /// read through `withView(over:)` with the same bytes (the produce path checks a record
    /// inside its batch this way).
    public mutating func index(_ text: UnsafeBufferPointer<UInt8>, depthMax: Int = 64) throws(JSONSyntaxError) {
        entries.removeAll(keepingCapacity: true)
        bytes.removeAll(keepingCapacity: true)
        var scanner = JSONScanner(depthMax: depthMax)
        try scanner.document(text, into: &entries)
    }

    public static func parse(_ text: [UInt8], depthMax: Int = 64) throws(JSONSyntaxError) -> JSONTape {
        var tape = JSONTape()
        try tape.parse(text, depthMax: depthMax)
        return tape
    }

    public subscript(index: Int) -> Entry { entries[index] }

    /// The index of the first member of the container at `index` (a key for an object).
    @inline(__always) public func firstMember(of index: Int) -> Int { index + 1 }

    /// The index of the value after the one at `index` inside its container.
    @inline(__always) public func after(_ index: Int) -> Int { Int(entries[index].next) }
}

public struct JSONSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset (0-based) where the text stopped being JSON.
    public let offset: Int
    public let reason: String

    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "not valid JSON at byte \(offset + 1): \(reason)" }
}

/// The recursive-descent scanner behind `JSONTape.parse`, over raw bytes.
struct JSONScanner {
    let depthMax: Int
    private var position = 0

    init(depthMax: Int) { self.depthMax = depthMax }

    mutating func document(_ input: UnsafeBufferPointer<UInt8>, into entries: inout [JSONTape.Entry]) throws(JSONSyntaxError) {
        guard input.count < Int(UInt32.max) else { throw JSONSyntaxError(offset: 0, reason: "the text is larger than 4 GiB") }
        position = 0
        skipSpace(input)
        // A byte-order mark is not JSON; producers strip it (the CLI does).
        try value(input, into: &entries, depth: 0)
        skipSpace(input)
        guard position == input.count else { throw fail("unexpected \(describe(input, position)) after the value") }
    }

    private func fail(_ reason: String) -> JSONSyntaxError { JSONSyntaxError(offset: position, reason: reason) }

    private func describe(_ input: UnsafeBufferPointer<UInt8>, _ at: Int) -> String {
        guard at < input.count else { return "end of text" }
        let byte = input[at]
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x\(String(byte, radix: 16, uppercase: true))"
    }

    @inline(__always) private mutating func skipSpace(_ input: UnsafeBufferPointer<UInt8>) {
        while position < input.count {
            switch input[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    private mutating func value(_ input: UnsafeBufferPointer<UInt8>, into entries: inout [JSONTape.Entry], depth: Int) throws(JSONSyntaxError) {
        guard position < input.count else { throw fail("the text ends where a value should be") }
        switch input[position] {
        case UInt8(ascii: "{"): try object(input, into: &entries, depth: depth + 1)
        case UInt8(ascii: "["): try array(input, into: &entries, depth: depth + 1)
        case UInt8(ascii: "\""): try string(input, into: &entries)
        case UInt8(ascii: "t"): try literal(input, "true", .true, into: &entries)
        case UInt8(ascii: "f"): try literal(input, "false", .false, into: &entries)
        case UInt8(ascii: "n"): try literal(input, "null", .null, into: &entries)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number(input, into: &entries)
        default: throw fail("expected a value, found \(describe(input, position))")
        }
    }

    private mutating func literal(
        _ input: UnsafeBufferPointer<UInt8>, _ word: StaticString, _ kind: JSONTape.Kind, into entries: inout [JSONTape.Entry]
    ) throws(JSONSyntaxError) {
        let length = word.utf8CodeUnitCount
        guard position + length <= input.count else { throw fail("expected \(word)") }
        let start = position
        for offset in 0..<length where input[position + offset] != word.utf8Start[offset] {
            throw fail("expected \(word)")
        }
        position += length
        entries.append(JSONTape.Entry(kind: kind, escaped: false, start: UInt32(start), end: UInt32(position), next: UInt32(entries.count + 1), count: 0, number: 0))
    }

    private mutating func object(_ input: UnsafeBufferPointer<UInt8>, into entries: inout [JSONTape.Entry], depth: Int) throws(JSONSyntaxError) {
        guard depth <= depthMax else { throw fail("nested deeper than \(depthMax) levels") }
        let index = entries.count
        let start = position
        entries.append(JSONTape.Entry(kind: .object, escaped: false, start: UInt32(start), end: 0, next: 0, count: 0, number: 0))
        position += 1
        skipSpace(input)
        var count: UInt32 = 0
        if position < input.count && input[position] == UInt8(ascii: "}") {
            position += 1
        } else {
            while true {
                guard position < input.count, input[position] == UInt8(ascii: "\"") else {
                    throw fail("expected a member name in quotes, found \(describe(input, position))")
                }
                try string(input, into: &entries)
                skipSpace(input)
                guard position < input.count, input[position] == UInt8(ascii: ":") else {
                    throw fail("expected ':' after a member name, found \(describe(input, position))")
                }
                position += 1
                skipSpace(input)
                try value(input, into: &entries, depth: depth)
                count += 1
                skipSpace(input)
                guard position < input.count else { throw fail("the text ends inside an object") }
                if input[position] == UInt8(ascii: ",") {
                    position += 1
                    skipSpace(input)
                } else if input[position] == UInt8(ascii: "}") {
                    position += 1
                    break
                } else {
                    throw fail("expected ',' or '}' in an object, found \(describe(input, position))")
                }
            }
        }
        entries[index].end = UInt32(position)
        entries[index].next = UInt32(entries.count)
        entries[index].count = count
    }

    private mutating func array(_ input: UnsafeBufferPointer<UInt8>, into entries: inout [JSONTape.Entry], depth: Int) throws(JSONSyntaxError) {
        guard depth <= depthMax else { throw fail("nested deeper than \(depthMax) levels") }
        let index = entries.count
        entries.append(JSONTape.Entry(kind: .array, escaped: false, start: UInt32(position), end: 0, next: 0, count: 0, number: 0))
        position += 1
        skipSpace(input)
        var count: UInt32 = 0
        if position < input.count && input[position] == UInt8(ascii: "]") {
            position += 1
        } else {
            while true {
                try value(input, into: &entries, depth: depth)
                count += 1
                skipSpace(input)
                guard position < input.count else { throw fail("the text ends inside an array") }
                if input[position] == UInt8(ascii: ",") {
                    position += 1
                    skipSpace(input)
                } else if input[position] == UInt8(ascii: "]") {
                    position += 1
                    break
                } else {
                    throw fail("expected ',' or ']' in an array, found \(describe(input, position))")
                }
            }
        }
        entries[index].end = UInt32(position)
        entries[index].next = UInt32(entries.count)
        entries[index].count = count
    }

    /// A string: control characters refused, escapes checked (decoded later only if needed),
    /// UTF-8 checked only where a byte is not ASCII.
    private mutating func string(_ input: UnsafeBufferPointer<UInt8>, into entries: inout [JSONTape.Entry]) throws(JSONSyntaxError) {
        position += 1
        let start = position
        var escaped = false
        var nonASCII = false
        while true {
            // Eight bytes at a time while none is a quote, a backslash, a control character
            // or non-ASCII (SWAR: each test sets a byte's high bit).
            if let base = input.baseAddress {
                while position + 8 <= input.count {
                    let word = UnsafeRawPointer(base + position).loadUnaligned(as: UInt64.self)
                    let ones: UInt64 = 0x0101_0101_0101_0101
                    let highs: UInt64 = 0x8080_8080_8080_8080
                    let quote = word ^ (ones &* 0x22)
                    let backslash = word ^ (ones &* 0x5C)
                    let special = (((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | (word &- ones &* 0x20) | word) & highs
                    if special != 0 {
                        // The lowest flagged byte is the first special one (little-endian);
                        // flags above it may be borrows, so only it is trusted.
                        position += special.trailingZeroBitCount >> 3
                        break
                    }
                    position += 8
                }
            }
            guard position < input.count else { throw fail("the text ends inside a string") }
            let byte = input[position]
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") {
                escaped = true
                try escape(input)
            } else if byte < 0x20 {
                throw fail("a control character (0x\(String(byte, radix: 16, uppercase: true))) inside a string must be escaped")
            } else if byte < 0x80 {
                position += 1
            } else {
                nonASCII = true
                try multibyte(input)
            }
        }
        entries.append(
            JSONTape.Entry(
                kind: .string, escaped: escaped, nonASCII: nonASCII, start: UInt32(start), end: UInt32(position), next: UInt32(entries.count + 1), count: 0,
                number: 0))
        position += 1
    }

    private mutating func escape(_ input: UnsafeBufferPointer<UInt8>) throws(JSONSyntaxError) {
        guard position + 1 < input.count else { throw fail("the text ends inside an escape") }
        switch input[position + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            position += 2
        case UInt8(ascii: "u"):
            guard position + 6 <= input.count else { throw fail("\\u needs four hex digits") }
            for offset in 2..<6 where JSONScanner.hexValue(input[position + offset]) == nil {
                throw fail("\\u needs four hex digits")
            }
            position += 6
        default:
            throw fail("\\\(Character(Unicode.Scalar(input[position + 1]))) is not a JSON escape")
        }
    }

    /// One UTF-8 sequence of two to four bytes, well formed (no overlongs, no surrogates).
    private mutating func multibyte(_ input: UnsafeBufferPointer<UInt8>) throws(JSONSyntaxError) {
        let lead = input[position]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: throw fail("byte 0x\(String(lead, radix: 16, uppercase: true)) is not UTF-8")
        }
        guard position + length <= input.count else { throw fail("a UTF-8 sequence is cut off") }
        let second = input[position + 1]
        guard second >= low && second <= high else { throw fail("malformed UTF-8") }
        for offset in 2..<length where input[position + offset] & 0xC0 != 0x80 {
            throw fail("malformed UTF-8")
        }
        position += length
    }

    static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? ; integers of up to 15 digits are
    /// converted here, anything else by strtod.
    private mutating func number(_ input: UnsafeBufferPointer<UInt8>, into entries: inout [JSONTape.Entry]) throws(JSONSyntaxError) {
        let start = position
        var negative = false
        if input[position] == UInt8(ascii: "-") {
            negative = true
            position += 1
        }
        guard position < input.count, JSONScanner.isDigit(input[position]) else { throw fail("a number needs a digit after '-'") }
        var mantissa: Int64 = 0
        var digits = 0
        if input[position] == UInt8(ascii: "0") {
            position += 1
            digits = 1
        } else {
            while position < input.count, JSONScanner.isDigit(input[position]) {
                if digits < 18 { mantissa = mantissa * 10 + Int64(input[position] - UInt8(ascii: "0")) }
                digits += 1
                position += 1
            }
        }
        var simple = digits <= 15
        if position < input.count && input[position] == UInt8(ascii: ".") {
            simple = false
            position += 1
            guard position < input.count, JSONScanner.isDigit(input[position]) else { throw fail("a number needs a digit after '.'") }
            while position < input.count, JSONScanner.isDigit(input[position]) { position += 1 }
        }
        if position < input.count && (input[position] == UInt8(ascii: "e") || input[position] == UInt8(ascii: "E")) {
            simple = false
            position += 1
            if position < input.count && (input[position] == UInt8(ascii: "+") || input[position] == UInt8(ascii: "-")) { position += 1 }
            guard position < input.count, JSONScanner.isDigit(input[position]) else { throw fail("a number needs a digit in its exponent") }
            while position < input.count, JSONScanner.isDigit(input[position]) { position += 1 }
        }
        let value: Double
        if simple {
            value = negative ? -Double(mantissa) : Double(mantissa)
        } else {
            value = JSONScanner.convert(input, start, position)
        }
        entries.append(
            JSONTape.Entry(kind: .number, escaped: false, start: UInt32(start), end: UInt32(position), next: UInt32(entries.count + 1), count: 0, number: value))
    }

    @inline(__always) static func isDigit(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "0") < 10 }

    /// The slow path: a number with a fraction, an exponent or many digits.
    static func convert(_ input: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Double {
        let text = String(decoding: UnsafeBufferPointer(rebasing: input[start..<end]), as: UTF8.self)
        return Double(text) ?? .nan
    }
}
